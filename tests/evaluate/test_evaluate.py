"""The evaluation end to end on real music (the bundled sample and test music, split in halves),
with the fallback embedding, and with the tiny MuQ-MuLan the test session builds."""
import json
import shutil

import numpy as np
import pytest

from tests.audio_fixtures import write
from tests.evaluate.conftest import PARAMS, noisy_tile
from wavdiff_utils.evaluate import evaluate_sets
from wavdiff_utils.evaluate.cli import main
from wavdiff_utils.io.audio import load_audio


def run(gen, ref, out, **kw):
    """The evaluation, quick: 16 phase iterations unless a test asks for more."""
    kw.setdefault("embedding", "fallback")
    kw.setdefault("n_iter", 16)
    kw.setdefault("params", PARAMS)
    kw.setdefault("bootstrap", 20)
    return evaluate_sets(gen, ref, out, progress=False, **kw)


def test_held_out_real_scores_far_below_phase_noise_decoded_below_pure_noise(music_sets, tmp_path):
    got = {d: run(music_sets / d, music_sets / "ref", tmp_path / d, n_iter=64).scores
           for d in ("held", "noisy", "noise")}
    fad = {d: s.fad for d, s in got.items()}
    kad = {d: s.kad for d, s in got.items()}
    assert 2 * fad["held"] < fad["noisy"] < fad["noise"], fad      # measured: 32, 135, 427
    assert kad["held"] + 4 < kad["noisy"] < kad["noise"], kad      # measured: 0.6, 10.6, 105
    noisy = got["noisy"]
    assert noisy.fad_interval is not None and noisy.fad_interval.low <= noisy.fad <= noisy.fad_interval.high
    assert noisy.fad_inf is None and "50 samples a side" in noisy.fad_inf_note


def test_fad_is_zero_against_itself_and_grows_with_added_noise(music_sets, tmp_path):
    rng = np.random.default_rng(1)
    fads = [run(music_sets / "ref", music_sets / "ref", tmp_path / "self", bootstrap=0).scores.fad]
    assert abs(fads[0]) < 1e-4                      # round-off; the set of 50 windows spans 49 of 128 dims
    for snr in (30, 20, 10):                                 # noise added to one side, 3 levels
        d = tmp_path / f"snr{snr}"
        d.mkdir()
        for f in sorted((music_sets / "ref").glob("*.wav")):
            y = load_audio(f, sample_rate=PARAMS.sample_rate)
            noise = rng.standard_normal(len(y)).astype(np.float32)
            noise *= np.sqrt(np.mean(y ** 2) / np.mean(noise ** 2)) * 10 ** (-snr / 20)
            write(d / f.name, y + noise, PARAMS.sample_rate)
        fads.append(run(d, music_sets / "ref", tmp_path / f"out{snr}", bootstrap=0).scores.fad)
    assert fads == sorted(fads) and fads[1] > 0, fads


def test_images_decoded_with_the_report_kept_and_the_record_written(music_sets, tmp_path):
    out = tmp_path / "out"
    (out / ".decoded-killed").mkdir(parents=True)             # what a killed run leaves: swept
    (out / ".decoded-killed" / "x.wav").write_bytes(b"")
    r = run(music_sets / "noisy", music_sets / "ref", out)
    data = json.loads((out / "evaluation.json").read_text())
    assert [row["metric"] for row in data["headline"]][:3] == ["FAD", "FAD-inf", "KAD"]
    assert all("fallback" in row["embedding"] for row in data["headline"][:3])
    assert data["counts"]["generated"] == len(list((music_sets / "noisy").glob("*.png")))
    files = data["decode"]["files"]
    assert len(files) == r.gen.n and all(f["tiles"][0]["method"].startswith("fgla") for f in files)
    decoded = sorted((out / "decoded" / "generated").glob("*.wav"))
    assert len(decoded) == r.gen.n and all(p.exists() for p in r.gen.decoded.values())
    rows = data["samples"]
    assert all(row["SC dB"] < -10 and row["phase"] for row in rows)
    assert set(data["figures"]) == {"distance_histogram", "worst", "best", "nearest_pairs"}
    table = r.sample_table()
    assert list(table["sample"]) == r.gen.names and "nearest (cosine)" in table
    assert r.headline()["metric"].tolist()[:3] == ["FAD", "FAD-inf", "KAD"]
    assert not list(out.glob(".*-*")), "scratch folders left behind"


def test_reference_embeddings_are_cached_and_reused(tile_dataset, music_sets, tmp_path, monkeypatch):
    from wavdiff_utils.evaluate import collect

    first = run(music_sets / "noisy", tile_dataset, tmp_path / "a", split="validation")
    assert first.ref.cached == 0 and first.ref.n == len(list(tile_dataset.rglob("*.png")))
    calls = []
    real = collect.decode_images
    monkeypatch.setattr(collect, "decode_images", lambda samples, *a, **k: (calls.append(len(samples)),
                                                                            real(samples, *a, **k))[1])
    again = run(music_sets / "noisy", tile_dataset, tmp_path / "b", split="validation",
                cache_dir=tmp_path / "a" / "cache")
    assert again.ref.cached == again.ref.n and calls == [again.gen.n]    # only the generated decoded
    assert again.scores.fad == pytest.approx(first.scores.fad, rel=1e-6)
    assert again.scores.kad == pytest.approx(first.scores.kad, rel=1e-6)


def test_a_copy_of_a_reference_tile_is_flagged_as_memorized(tile_dataset, tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    tiles = sorted(tile_dataset.rglob("*.png"))
    shutil.copy(tiles[3], gen / "sample_0.png")               # a copy, metadata and all
    rng = np.random.default_rng(2)
    for k, t in enumerate(tiles[:3]):                         # others: audio of other music
        y = load_audio(next(iter(sorted(tile_dataset.parent.glob("src/*.wav")))), sample_rate=22050)
        from wavdiff_utils.io.tiles import write_tile
        write_tile(gen / f"sample_{k + 1}.png", noisy_tile(rng.standard_normal(len(y))[:PARAMS.tile_samples]
                                                           .astype(np.float32) * 0.1, rng))
    r = run(gen, tile_dataset, tmp_path / "out")
    rows = {row["sample"]: row for row in r.sample_rows()}
    copy = rows["sample_0.png"]
    assert copy["memorized"] and copy["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert copy["magnitude corr"] == pytest.approx(1.0, abs=1e-6)
    assert copy["nearest (cosine)"] == copy["nearest (magnitude)"] == tiles[3].relative_to(tile_dataset).as_posix()
    assert not any(rows[f"sample_{k}.png"]["memorized"] for k in (1, 2, 3))


def test_muq_end_to_end_with_the_tiny_model(tile_dataset, music_sets, tmp_path):
    """Plumbing only: random weights give no ordering.  Text-audio scores for the generated
    samples (their captions beside them) and the reference (its dataset's captions)."""
    gen = tmp_path / "gen"
    gen.mkdir()
    for k, png in enumerate(sorted((music_sets / "noisy").glob("*.png"))[:4]):
        shutil.copy(png, gen / f"sample_{k}.png")
        (gen / f"sample_{k}.txt").write_text("a calm piano piece with soft strings", encoding="utf-8")
    r = run(gen, tile_dataset, tmp_path / "out", embedding="muq", device="cpu", batch_size=2)
    assert r.embedding == "muq" and r.embedding_label.startswith("MuQ (")
    assert r.gen.windows.shape == (r.gen.n * 5, 32) and r.gen.joint.shape == (4, 16)
    data = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert data["embedding"]["name"] == "muq"
    assert -1 <= data["metrics"]["text_audio"] <= 1 and -1 <= data["metrics"]["reference_text_audio"] <= 1
    assert all(row["embedding"].startswith("MuQ") for row in data["headline"][:3])
    assert np.isfinite(r.scores.fad) and np.isfinite(r.scores.kad)


def test_auto_falls_back_with_one_notice_when_muq_is_missing(music_sets, tmp_path, monkeypatch):
    monkeypatch.setenv("WAVDIFF_MUQ_MODEL", str(tmp_path / "no-such-model"))
    r = run(music_sets / "held", music_sets / "ref", tmp_path / "out", embedding="auto")
    assert r.embedding == "fallback" and len(r.notes) >= 1
    notice = r.notes[0]
    assert "\n" not in notice and "MuQ is not available" in notice and "fallback" in notice


def test_command_line(music_sets, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main([str(music_sets / "noisy"), str(music_sets / "ref"), "--output", str(out),
                 "--embedding", "fallback", "--size", "512", "--sample-rate", "22050",
                 "--bootstrap", "10", "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0 and "FAD" in printed and "KAD" in printed
    assert json.loads((out / "evaluation.json").read_text())["counts"]["reference"] > 0
    code = main([str(tmp_path / "missing"), str(music_sets / "ref"), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "missing" in err
