import json

import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import music_like, write
from wavdiff_utils.io.audio import AudioError, find_audio_files, load_audio
from wavdiff_utils.io.manifest import read_manifest
from wavdiff_utils.codec.metrics import snr_db
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils import decode_batch, decode_song, encode_batch, encode_song
from wavdiff_utils.jobs.encode import OutputExistsError
from wavdiff_utils.io.tiles import read_tile, read_tile_metadata

P = CodecParams(size=128)          # 128x128 tiles, 0.19 s each: fast, same code path as 1024


@pytest.fixture
def songs(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    write(d / "a.wav", music_like(1.0, 44100, seed=1, channels=2), 44100)
    write(d / "sub" / "b.flac", music_like(0.7, 22050, seed=2), 22050)
    write(d / "sub" / "c.ogg", music_like(0.5, 48000, seed=4), 48000)
    return d


@pytest.mark.parametrize("sr", [44100, 22050, 48000, 11025])
def test_round_trip_through_files(tmp_path, sr):
    src = write(tmp_path / "s.wav", music_like(0.9, sr, seed=5), sr)
    p = CodecParams(size=128, sample_rate=sr)
    res = encode_song(src, tmp_path / "tiles", params=p)
    assert res.status == "encoded" and res.n_samples == int(round(0.9 * sr))
    out = decode_song(tmp_path / "tiles" / "s", tmp_path / "s_dec.wav")
    ref = load_audio(src, sample_rate=sr)
    y, got_sr = sf.read(tmp_path / "s_dec.wav")
    assert got_sr == sr and len(y) == len(ref) == out.n_samples
    assert snr_db(ref, y) > 80


def test_every_tile_is_self_describing(songs, tmp_path):
    encode_song(songs / "a.wav", tmp_path / "t", params=P)
    man = read_manifest(tmp_path / "t" / "a")
    assert man["n_samples"] == 44100 and man["n_tiles"] == len(man["tiles"]) == 6
    for t in man["tiles"]:
        meta = read_tile_metadata(tmp_path / "t" / "a" / t["file"])
        assert (meta["start"], meta["end"], meta["pad"]) == (t["start"], t["end"], t["pad"])
        assert meta["codec"] == P.to_dict() and meta["source"] == "a.wav"
    assert meta["is_last"] and meta["end"] == 44100 and meta["pad"] == 6 * 8192 - 44100
    # one tile alone decodes to exactly its own span
    one = decode_song(tmp_path / "t" / "a" / "a_0005.png", tmp_path / "one.wav")
    ref = load_audio(songs / "a.wav", sample_rate=44100)[meta["start"]:meta["end"]]
    y, _ = sf.read(tmp_path / "one.wav")
    assert one.n_samples == len(ref) and snr_db(ref, y) > 70


def test_batch_recursive_resumes_and_reports_failures(songs, tmp_path):
    (songs / "broken.mp3").write_bytes(b"\x00" * 300)
    (songs / "empty.wav").write_bytes(b"")
    write(songs / "silent.wav", np.zeros(5000, np.float32), 44100)
    write(songs / "short.wav", np.full(100, 0.1, np.float32), 44100)
    out = tmp_path / "tiles"
    r = encode_batch(songs, out, params=P, progress=False)
    assert sorted(x.song for x in r.results) == ["a", "b", "c"]
    fails = dict((p.split("/")[-1], m) for p, m in r.failures)
    assert set(fails) == {"broken.mp3", "empty.wav", "silent.wav", "short.wav"}
    assert "silent" in fails["silent.wav"] and "too short" in fails["short.wav"]
    assert "empty" in fails["empty.wav"] and "cannot be decoded" in fails["broken.mp3"]
    assert all(name in msg for name, msg in fails.items())          # each names its file
    assert "4 failed" in r.summary()
    # nothing partial anywhere
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]
    again = encode_batch(songs, out, params=P, progress=False)
    assert [x.status for x in again.results] == ["skipped"] * 3


def test_interrupted_song_resumes(songs, tmp_path, monkeypatch):
    import wavdiff_utils.jobs.encode as pl
    out = tmp_path / "tiles"
    calls = {"n": 0}
    real = pl.write_tile

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pl, "write_tile", dying)
    with pytest.raises(KeyboardInterrupt):
        encode_song(songs / "a.wav", out, params=P)
    assert not (out / "a").exists()           # the song is not published half-done
    monkeypatch.setattr(pl, "write_tile", real)
    res = encode_song(songs / "a.wav", out, params=P)
    assert res.status == "encoded" and read_manifest(out / "a")["n_tiles"] == 6


def test_existing_output_with_other_parameters(songs, tmp_path):
    encode_song(songs / "a.wav", tmp_path / "t", params=P)
    with pytest.raises(OutputExistsError, match="other codec parameters") as info:
        encode_song(songs / "a.wav", tmp_path / "t", params=CodecParams(size=64))
    assert f"(size {P.size} vs 64, n_fft {P.n_fft} vs 128, hop_length {P.hop_length} vs 32: " \
        f"there vs asked)" in str(info.value)
    res = encode_song(songs / "a.wav", tmp_path / "t", params=CodecParams(size=64), overwrite=True)
    assert res.status == "encoded"
    assert len(list((tmp_path / "t" / "a").glob("*.png"))) == res.n_tiles


def test_missing_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        find_audio_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="no audio files"):
        find_audio_files(tmp_path / "empty")


def test_decode_generated_tiles_without_metadata(songs, tmp_path):
    encode_song(songs / "a.wav", tmp_path / "t", params=P)
    gen = tmp_path / "generated"
    gen.mkdir()
    import cv2
    for png in sorted((tmp_path / "t" / "a").glob("*.png")):       # strip metadata: re-save
        px = read_tile(png).pixels
        cv2.imwrite(str(gen / png.name.replace("a_", "gen_")), px[..., ::-1])
    assert read_tile_metadata(gen / "gen_0000.png") is None
    # generator output: one clip per image by default, the assumed codec stated
    r = decode_batch(gen, tmp_path / "clips", params=P, progress=False)
    assert r.ok and [x.song for x in r.results] == [f"gen_{i:04d}" for i in range(6)]
    assert all(x.n_samples == 8192 for x in r.results)
    assert all(x.assumed.startswith("no wavdiff metadata: assumed") for x in r.results)
    # joined on request: one song, padding kept (no metadata says where the song ended)
    r = decode_batch(gen, tmp_path / "dec", params=P, join="song", progress=False)
    assert r.ok and r.results[0].n_samples == 6 * 8192
    bad = decode_batch(gen, tmp_path / "dec4", params=CodecParams(size=64), join="song",
                       progress=False)
    assert not bad.ok and "expected 64x64" in bad.failures[0][1]
    assert not (tmp_path / "dec4").exists() or not list((tmp_path / "dec4").iterdir())
    (gen / "gen_0002.png").unlink()
    r = decode_batch(gen, tmp_path / "dec2", params=P, join="song", progress=False)
    assert not r.ok and "gen_0002.png" in r.failures[0][1]
    r = decode_batch(gen, tmp_path / "dec3", params=P, join="song", missing="silence",
                     progress=False)
    assert r.ok and r.results[0].n_samples == 6 * 8192


def test_griffinlim_option(songs, tmp_path):
    encode_song(songs / "a.wav", tmp_path / "t", params=P)
    r = decode_batch(tmp_path / "t", tmp_path / "gl", phase="griffinlim", n_iter=8, progress=False)
    assert r.ok and {x.song for x in r.results} == {"a"}
    assert [t.method for t in r.results[0].tiles] == ["griffinlim"] * 6
    assert all(t.iterations == 8 for t in r.results[0].tiles)
    y, _ = sf.read(tmp_path / "gl" / "a.wav")
    assert len(y) == 44100 and np.abs(y).max() > 0.01


def test_holdout_puts_more_songs_in_validation_and_test_from_the_command_line(tmp_path):
    """Eight songs all but one in train at the default 0.05; ``--holdout 0.2`` moves whole songs
    (every tile of a song in one split) into validation and test, the same ones on every run."""
    from wavdiff_utils.dataset.export import holdout_splits, read_metadata, song_split
    from wavdiff_utils.jobs.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for i in range(8):
        write(src / f"song{i}.wav", music_like(0.3, 44100, seed=i), 44100)
    splits = {}
    for holdout in ("0.05", "0.2"):
        out = tmp_path / f"ds{holdout}"
        args = ["--input", str(src), "--output", str(out), "--captioner", "none", "--size", "64",
                "--no-report", "-q", "--holdout", holdout]
        assert main(args) == 0
        rows = read_metadata(out)
        splits[holdout] = {r["song"]: r["split"] for r in rows}
        for r in rows:                                   # a song's tiles share one split
            assert r["split"] == song_split(r["song"], holdout_splits(float(holdout)))
    assert sorted(splits["0.05"].values()).count("train") == 7
    assert {"validation", "test"} <= set(splits["0.2"].values())
