import csv
import math

import cv2
import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import music_like, write
from wavdiff_utils.compare.tiles import AVERAGE_KEY, compare_tiles
from wavdiff_utils.compare.preview import HEADER_PX, SEPARATOR_PX, render_preview
from wavdiff_utils.codec.metrics import lsd_db
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.jobs.encode import encode_batch
from wavdiff_utils.io.tiles import TileImageError, write_tile

N = 32                                   # tiny tiles: every code path, milliseconds each
P = CodecParams(size=N)


def tile(seed: int, size: int = N) -> np.ndarray:
    """A tile with values well inside the range, so added offsets never clip."""
    rng = np.random.default_rng(seed)
    return rng.integers(10000, 50000, size=(size, size, 3)).astype(np.uint16)


def make(folder, tiles: dict, *, metadata=True):
    for name, px in tiles.items():
        meta = {"codec": P.to_dict()} if metadata else None
        write_tile(folder / name, px, meta)
    return folder


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("match", ["name", "path"])
def test_identical_tiles_have_infinite_psnr(tmp_path, match):
    px = {f"s/s_{i:04d}.png": tile(i) for i in range(3)}
    make(tmp_path / "a", px)
    make(tmp_path / "b", px)
    res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "out", match=match,
                        progress=False)
    assert res.ok and len(res.tiles) == 3 and res.identical == 3
    for t in res.tiles:
        assert math.isinf(t.psnr) and math.isinf(t.psnr_magnitude) and math.isinf(t.psnr_phase)
        assert math.isinf(t.stft_snr) and t.max_abs_diff == 0 and t.magnitude_mae_db == 0
    assert math.isinf(res.mean_psnr) and math.isinf(res.pooled_psnr)
    assert [t.key for t in res.tiles] == ([f"s_{i:04d}.png" for i in range(3)] if match == "name"
                                          else [f"s/s_{i:04d}.png" for i in range(3)])
    assert "identical" in res.summary()


@pytest.mark.parametrize("channel, offset", [(0, 1), (0, 100), (1, 37), (2, 2000), (None, 655)])
def test_known_offset_gives_formula_psnr(tmp_path, channel, offset):
    a = tile(7)
    b = a.astype(np.int32)
    if channel is None:
        b += offset                                      # every channel
    else:
        b[..., channel] += offset
    make(tmp_path / "a", {"x_0000.png": a})
    make(tmp_path / "b", {"x_0000.png": b.astype(np.uint16)})
    t = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", previews=False,
                      progress=False).tiles[0]
    per_channel = 20 * math.log10(65535 / offset)       # MSE = offset^2 in a changed channel
    n_changed = 3 if channel is None else 1
    overall = 10 * math.log10(65535 ** 2 / (offset ** 2 * n_changed / 3))
    assert t.psnr == pytest.approx(overall, abs=0.01)
    assert t.max_abs_diff == offset
    if channel == 0 or channel is None:
        assert t.psnr_magnitude == pytest.approx(per_channel, abs=0.01)
        assert t.magnitude_mae_db == pytest.approx(offset / 65535 * (P.db_max - P.db_min))
    else:
        assert math.isinf(t.psnr_magnitude)
    if channel in (1, 2):                                # phase = green and blue together
        assert t.psnr_phase == pytest.approx(10 * math.log10(65535 ** 2 / (offset ** 2 / 2)),
                                             abs=0.01)
    elif channel == 0:
        assert math.isinf(t.psnr_phase)


def test_random_noise_matches_numpy_psnr(tmp_path):
    a = tile(1)
    noise = np.random.default_rng(2).normal(0, 300, a.shape)
    b = np.clip(a + noise, 0, 65535).astype(np.uint16)
    make(tmp_path / "a", {"n_0000.png": a})
    make(tmp_path / "b", {"n_0000.png": b})
    res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", progress=False)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert res.tiles[0].psnr == pytest.approx(10 * np.log10(65535 ** 2 / mse), abs=0.01)
    assert res.mean_psnr == pytest.approx(res.tiles[0].psnr) == pytest.approx(res.pooled_psnr)
    assert 35 < res.tiles[0].psnr < 50


def test_unmatched_tiles_are_reported_on_both_sides(tmp_path):
    make(tmp_path / "a", {"s_0000.png": tile(0), "s_0001.png": tile(1), "only_a_0000.png": tile(2)})
    make(tmp_path / "b" / "deep", {"s_0000.png": tile(0), "s_0001.png": tile(1),
                                    "only_b_0003.png": tile(3)})
    (tmp_path / "b" / "notes.png").write_bytes(b"not a tile name, ignored")
    res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", progress=False)
    assert [t.key for t in res.tiles] == ["s_0000.png", "s_0001.png"]   # paired across folders
    assert [p.name for p in res.only_original] == ["only_a_0000.png"]
    assert [p.name for p in res.only_reconstructed] == ["only_b_0003.png"]
    assert not res.ok and not res.errors
    text = res.summary()
    assert "1 tile(s) only in original" in text and "only_a_0000.png" in text
    assert "1 tile(s) only in reconstructed" in text and "only_b_0003.png" in text


def test_same_name_in_two_folders_needs_match_path(tmp_path):
    for side in "ab":
        make(tmp_path / side / "x", {"s_0000.png": tile(0)})
        make(tmp_path / side / "y", {"s_0000.png": tile(1)})
    res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", progress=False)
    assert not res.tiles and any("match='path'" in m for _, m in res.errors)
    res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", match="path",
                        progress=False)
    assert [t.key for t in res.tiles] == ["x/s_0000.png", "y/s_0000.png"] and res.ok


def test_size_mismatch_names_both_files_and_the_rest_is_scored(tmp_path):
    make(tmp_path / "a", {"s_0000.png": tile(0), "s_0001.png": tile(1)})
    make(tmp_path / "b", {"s_0000.png": tile(0, size=64), "s_0001.png": tile(1)})
    (tmp_path / "b" / "s_0002.png").write_bytes(b"broken")
    make(tmp_path / "a", {"s_0002.png": tile(2)})
    res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", progress=False)
    assert [t.key for t in res.tiles] == ["s_0001.png"]
    (key, msg), (key2, msg2) = res.errors
    assert key == "s_0000.png"
    assert str(tmp_path / "a" / "s_0000.png") in msg and str(tmp_path / "b" / "s_0000.png") in msg
    assert "32x32" in msg and "64x64" in msg
    assert key2 == "s_0002.png" and str(tmp_path / "b" / "s_0002.png") in msg2
    assert "ERROR s_0000.png" in res.summary()


def test_csv_rows_and_average(tmp_path):
    a = {f"s_{i:04d}.png": tile(i) for i in range(4)}
    b = {k: (v.astype(np.int32) + 10 * (i + 1)).astype(np.uint16) for i, (k, v) in enumerate(a.items())}
    b["s_0003.png"] = a["s_0003.png"]                    # one identical pair
    make(tmp_path / "a", a)
    make(tmp_path / "b", b)
    res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", progress=False)
    rows = read_csv(tmp_path / "o" / "scores.csv")
    assert res.scores_csv == tmp_path / "o" / "scores.csv"
    assert [r["key"] for r in rows] == list(a) + [AVERAGE_KEY]
    psnrs = [float(r["psnr_db"]) for r in rows[:-1]]
    assert psnrs[3] == math.inf
    expect = np.mean([20 * math.log10(65535 / (10 * (i + 1))) for i in range(3)])
    assert float(rows[-1]["psnr_db"]) == pytest.approx(expect, abs=1e-3)
    assert res.mean_psnr == pytest.approx(expect)
    assert res.identical == 1 and "left out of the means" in res.summary()
    df = res.table(average=True)
    assert len(df) == 5 and df["key"].iloc[-1] == AVERAGE_KEY
    assert res.table()["psnr_db"].tolist()[:3] == pytest.approx(psnrs[:3], abs=1e-3)
    assert not list((tmp_path / "o").glob(".*"))        # no temporary files left behind
    assert (tmp_path / "o" / "summary.txt").read_text().startswith("compared")


@pytest.mark.parametrize("previews, expect", [(True, 3), (False, 0), (2, 2)])
def test_previews_have_three_panels(tmp_path, previews, expect):
    px = {f"s_{i:04d}.png": tile(i) for i in range(3)}
    make(tmp_path / "a", px)
    make(tmp_path / "b", {k: v[..., ::-1].copy() for k, v in px.items()})
    res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", previews=previews,
                        progress=False)
    made = sorted((tmp_path / "o" / "previews").glob("*.png"))
    assert len(made) == expect == sum(t.preview is not None for t in res.tiles)
    for p in made:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.shape == (HEADER_PX + N, 3 * N + 2 * SEPARATOR_PX, 3)
        assert p.name.endswith("_compare.png")


def test_preview_panels_are_shrunk_and_show_the_difference():
    a = tile(0, size=64)
    b = a.copy()
    b[:32, :, 0] += 1400                                 # top half of the magnitude differs
    img = render_preview(a, b, max_edge=32)
    assert img.shape == (HEADER_PX + 32, 3 * 32 + 2 * SEPARATOR_PX, 3)
    diff = img[HEADER_PX:, 2 * (32 + SEPARATOR_PX):]
    assert diff[:16].min() == 255 and diff[16:].max() == 0   # x50 saturates; equal = black
    sep = img[HEADER_PX:, 32:32 + SEPARATOR_PX]
    assert sep.min() == 255


def test_audio_scores_files_and_folders(tmp_path):
    sr = 22050
    y = music_like(0.5, sr, seed=3)
    noisy = y + np.random.default_rng(0).normal(0, 0.003, len(y)).astype(np.float32)
    (tmp_path / "orig").mkdir()
    (tmp_path / "rec").mkdir()
    write(tmp_path / "orig" / "song.wav", y, sr)
    write(tmp_path / "rec" / "song.wav", noisy[:-100], sr)        # 100 samples short
    write(tmp_path / "rec" / "extra.wav", noisy, sr)
    make(tmp_path / "a", {"song_0000.png": tile(0)})
    make(tmp_path / "b", {"song_0000.png": tile(0)})
    for ao, ar in [(tmp_path / "orig" / "song.wav", tmp_path / "rec" / "song.wav"),
                   (tmp_path / "orig", tmp_path / "rec")]:
        res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", audio_original=ao,
                            audio_reconstructed=ar, sample_rate=sr, progress=False)
        (a,) = res.audio
        assert a.song == "song" and a.samples_original - a.samples_reconstructed == 100
        ref, _ = sf.read(tmp_path / "orig" / "song.wav")
        est, _ = sf.read(tmp_path / "rec" / "song.wav")
        r, e = ref[:len(est)], est                      # compared over the shorter length
        assert a.snr_db == pytest.approx(10 * np.log10(np.sum(r ** 2) / np.sum((r - e) ** 2)),
                                         abs=0.01)
        assert a.lsd_db == pytest.approx(lsd_db(r, e), abs=1e-4) and a.lsd_db > 0
        assert 25 < a.snr_db < 50
        rows = read_csv(tmp_path / "o" / "audio_scores.csv")
        assert len(rows) == 1 and float(rows[0]["snr_db"]) == pytest.approx(a.snr_db, abs=1e-3)
        assert "audio song: SNR" in res.summary()
    # the folder form reports the song found on one side only
    assert any("extra.wav" in m for _, m in res.errors)
    assert res.audio_table()["snr_db"].iloc[0] == pytest.approx(a.snr_db)


def test_audio_rate_defaults_to_the_tiles_codec_rate(tmp_path):
    y = music_like(0.3, 22050, seed=4)
    write(tmp_path / "o.wav", y, 22050)
    make(tmp_path / "a", {"s_0000.png": tile(0)})     # metadata says 44100 Hz
    res = compare_tiles(tmp_path / "a", tmp_path / "a", tmp_path / "r",
                        audio_original=tmp_path / "o.wav", audio_reconstructed=tmp_path / "o.wav",
                        progress=False)
    assert res.audio[0].sample_rate == 44100 and math.isinf(res.audio[0].snr_db)
    assert res.audio[0].lsd_db == 0


def test_grey_reconstruction_scores_magnitude_only(tmp_path):
    a = tile(5)
    make(tmp_path / "a", {"g_0000.png": a})
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "b" / "g_0000.png"), a[..., 0])
    (t,) = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o", progress=False).tiles
    assert math.isinf(t.psnr_magnitude) and math.isinf(t.psnr) and math.isnan(t.psnr_phase)
    assert "grey" in t.note


@pytest.mark.parametrize("kwargs, words", [
    ({"match": "fuzzy"}, ["match", "'fuzzy'"]),
    ({"diff": "phase"}, ["diff", "'phase'"]),
    ({"previews": -1}, ["previews", "-1"]),
    ({"preview_size": 2}, ["preview_size", "2"]),
    ({"colormap": "nope"}, ["colormap", "'nope'"]),
    ({"sample_rate": 0}, ["sample_rate", "0"]),
    ({"audio_original": "x.wav"}, ["audio_original", "audio_reconstructed"]),
])
def test_bad_options_are_named(tmp_path, kwargs, words):
    make(tmp_path / "a", {"s_0000.png": tile(0)})
    with pytest.raises(ValueError) as err:
        compare_tiles(tmp_path / "a", tmp_path / "a", tmp_path / "o", progress=False, **kwargs)
    assert all(w in str(err.value) for w in words)


def test_missing_or_empty_inputs(tmp_path):
    make(tmp_path / "a", {"s_0000.png": tile(0)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        compare_tiles(tmp_path / "a", tmp_path / "nowhere", tmp_path / "o", progress=False)
    with pytest.raises(TileImageError, match="empty"):
        compare_tiles(tmp_path / "empty", tmp_path / "a", tmp_path / "o", progress=False)


def test_report_inside_an_input_folder_is_not_compared(tmp_path):
    make(tmp_path / "a", {"s_0000.png": tile(0)})
    make(tmp_path / "b", {"s_0000.png": tile(1)})
    make(tmp_path / "a" / "report", {"s_0009.png": tile(9)})   # a tile-named file in the report
    for _ in range(2):                                   # a second run must not see the report
        res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "a" / "report",
                            match="path", progress=False)
        assert [t.key for t in res.tiles] == ["s_0000.png"] and res.ok


def test_headline_leads_with_audio_and_explains_psnr(tmp_path):
    from wavdiff_utils.compare.notebook import _psnr_words, headline_markdown

    sr = 22050
    y = music_like(0.5, sr, seed=3)
    (tmp_path / "orig").mkdir()
    (tmp_path / "rec").mkdir()
    write(tmp_path / "orig" / "song.wav", y, sr)
    write(tmp_path / "rec" / "song.wav", y + np.float32(0.001), sr)
    make(tmp_path / "a", {"song_0000.png": tile(0)})
    make(tmp_path / "b", {"song_0000.png": tile(0)})
    res = compare_tiles(tmp_path / "a", tmp_path / "b", tmp_path / "o",
                        audio_original=tmp_path / "orig", audio_reconstructed=tmp_path / "rec",
                        sample_rate=sr, progress=False)
    text = headline_markdown(res, what="two test sets")
    lines = text.splitlines()
    assert lines[0] == "**What is compared:** two test sets"
    assert lines[1].startswith("- **Audio `song`: SNR") and "log-spectral distance" in lines[1]
    assert "96 dB is one 16-bit step" in text
    # PSNR in words: 16-bit steps of RMS error
    assert _psnr_words(96.33) .startswith("96.3 dB: below one 16-bit step")
    assert "about 655 of 65,535 steps (1% of full scale)" in _psnr_words(40.0)
    assert _psnr_words(float("inf")) == "identical"
    assert str(tmp_path) not in res.summary()                 # shared reports show no local folders


def test_compare_inputs_makes_the_demo_round_trip(tmp_path):
    from wavdiff_utils.compare.notebook import compare_inputs

    inp = compare_inputs(workdir=tmp_path / "w", params=CodecParams(size=128))
    assert inp.original == tmp_path / "w" / "original" and inp.reconstructed.name == "reconstructed"
    assert inp.audio_original.name == "wavdiff_demo.mp3" and inp.audio_reconstructed.name == "decoded"
    assert "round trip" in inp.what and str(tmp_path) not in inp.describe()
    with pytest.warns(UserWarning, match="audio scores skipped"):
        half = compare_inputs(inp.original, inp.reconstructed, audio_original=inp.audio_original)
    assert half.audio_original is None and half.what == ""


def test_folders_whose_names_do_not_pair_point_at_08_evaluate(tmp_path):
    """Generated tiles have no namesake among real ones: the comparison says so and where to go."""
    from wavdiff_utils.compare.notebook import headline_markdown
    from wavdiff_utils.compare.tiles import UNPAIRED_HINT

    a, b = tmp_path / "real", tmp_path / "generated"
    encode_batch(write(tmp_path / "x.wav", music_like(1.0, 44100), 44100), a,
                 params=CodecParams(size=64), progress=False)
    encode_batch(write(tmp_path / "y.wav", music_like(1.0, 44100, seed=3), 44100), b,
                 params=CodecParams(size=64), progress=False)
    res = compare_tiles(a, b, tmp_path / "report")
    assert res.unpaired and not res.tiles
    assert UNPAIRED_HINT in res.summary() and "08_evaluate" in UNPAIRED_HINT
    assert "08_evaluate" in headline_markdown(res)
