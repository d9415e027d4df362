"""Stereo decode (issue 25, item 3): mid and side tiles back to left and right, the planner,
per-channel figures and width, damaged stereo songs, 03_decode on a stereo folder, and the
round trip against mono (synthetic always; real music when outputs/music is there)."""
from __future__ import annotations

import errno
import json
import shutil
import struct
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import music_like
from tests.jobs.test_decode_faults import fail_writes
from wavdiff_utils.codec.metrics import snr_db, stereo_width
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.errors import UnwritableOutputError
from wavdiff_utils.io.audio import load_audio
from wavdiff_utils.io.tiles import (CorruptMetadataError, read_tile, read_tile_metadata,
                                    write_tile)
from wavdiff_utils.jobs.decode import (decode_batch, decode_song, find_images, plan_decode,
                                       summary_markdown)
from wavdiff_utils.jobs.decode_stereo import StereoFigures, UnpairedSideError, WidthMeter
from wavdiff_utils.jobs.encode import encode_song
from wavdiff_utils.paths import REPO_ROOT

P = CodecParams(size=128)                        # 0.19 s tiles at 44.1 kHz
PS = CodecParams(size=128, channels="stereo")
SR = 44100


def duet(seconds: float, seed: int = 1) -> np.ndarray:
    """Two different parts panned apart: a real stereo image (correlation about 0.7)."""
    a, b = music_like(seconds, SR, seed=seed), music_like(seconds, SR, seed=seed + 1)
    return np.stack([0.75 * a + 0.25 * b, 0.3 * a + 0.7 * b], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """A 2 s duet encoded stereo and mono, made once: (source, stereo root, mono root)."""
    root = tmp_path_factory.mktemp("stereo")
    src = root / "duet.wav"
    sf.write(src, duet(2.0), SR, subtype="FLOAT")
    encode_song(src, root / "st", params=PS)
    encode_song(src, root / "mono", params=P)
    return src, root / "st", root / "mono"


@pytest.fixture
def song(encoded, tmp_path):
    """A fresh copy of the stereo song folder, for a test to damage."""
    return Path(shutil.copytree(encoded[1] / "duet", tmp_path / "tiles" / "duet"))


def _one_line(msg: str, *names: str):
    assert "\n" not in msg and "Traceback" not in msg, msg
    for n in names:
        assert n in msg, (n, msg)

# =========================================================================== the decode


def test_stereo_folder_decodes_to_left_and_right_within_2_db_of_mono(encoded, tmp_path):
    src, st, mono = encoded
    r = decode_batch(st, tmp_path / "st", progress=False)
    m = decode_batch(mono, tmp_path / "mono", progress=False)
    assert r.ok and m.ok and len(r.results) == 1
    res = r.results[0]
    y, sr = sf.read(res.output, dtype="float32")
    ref = load_audio(src, sample_rate=SR, mono=False)
    assert sr == SR and y.shape == ref.shape == (2 * SR, 2)       # joined and trimmed like mono
    z, _ = sf.read(m.results[0].output, dtype="float32")
    mono_snr = snr_db(load_audio(src, sample_rate=SR), z)
    left, right = snr_db(ref[:, 0], y[:, 0]), snr_db(ref[:, 1], y[:, 1])
    assert mono_snr > 80 and abs(left - mono_snr) < 2 and abs(right - mono_snr) < 2, \
        (left, right, mono_snr)
    # the mid is the mono decode: (L + R) / 2 of the stereo file is the mono file
    assert np.max(np.abs((y[:, 0] + y[:, 1]) / 2 - z)) < 1e-6
    assert m.results[0].stereo is None and z.ndim == 1            # mono stays mono
    assert {t.method for t in res.tiles} == {"image"} and res.stereo.side_methods() == "image x11"


def test_side_tiles_are_not_songs_or_images_of_their_own(encoded, song):
    assert not any(p.name.endswith(".side.png") for p in find_images(song.parent))
    job, = plan_decode(song.parent)
    assert job.name == "duet" and len(job.tiles) == 11
    assert [p.name for p in job.sides] == [f"duet_{i:04d}.side.png" for i in range(11)]
    mono_job, = plan_decode(encoded[2])
    assert mono_job.sides is None and not mono_job.stray
    # one mid tile given alone decodes with its side
    one = decode_song(song / "duet_0003.png", song.parent / "one.wav")
    assert one.stereo is not None and sf.info(one.output).channels == 2


def test_generator_images_without_metadata_pair_by_name(song, tmp_path):
    """``sample_0.png`` and ``sample_0.side.png`` as a generator writes them (plain PNGs, the
    side's 8-bit): one stereo clip with the codec given, the side read with its side codec."""
    gen = tmp_path / "gen"
    gen.mkdir()
    for name, tile in (("sample_0.png", "duet_0004.png"),
                       ("sample_0.side.png", "duet_0004.side.png")):
        px = read_tile(song / tile).pixels[..., ::-1]
        cv2.imwrite(str(gen / name), px if "side" not in name else (px >> 8).astype(np.uint8))
    r = decode_batch(gen, tmp_path / "out", params=P, progress=False)
    res, = r.results
    assert r.ok and res.song == "sample_0" and res.stereo is not None
    assert sf.info(res.output).channels == 2 and "assumed" in res.assumed
    assert r.summary().count("8-bit image") == 1
    (gen / "sample_0.png").unlink()                          # its mid gone: refused
    (_, msg), = decode_batch(gen, tmp_path / "b", params=P, progress=False).failures
    assert "sample_0.side.png" in msg and "without its mid tile sample_0.png" in msg


def test_report_gives_per_channel_figures_and_width(song, tmp_path):
    r = decode_batch(song, tmp_path / "out", progress=False)
    res = r.results[0]
    y, _ = sf.read(res.output, dtype="float64")
    width = stereo_width(y)
    for k in width:                                # gathered block by block, the same figures
        assert res.stereo.width[k] == pytest.approx(width[k], abs=1e-6)
    assert 0.5 < width["correlation"] < 0.95 and width["side_to_mid_db"] < -5
    assert res.stereo.peak == pytest.approx(tuple(np.abs(y).max(axis=0)), rel=1e-6)
    row = r.table().iloc[0]
    assert row["L/R correlation"] == pytest.approx(width["correlation"], abs=1e-4)
    assert {"L peak dBFS", "R peak dBFS", "L clipped", "R clipped", "side phase",
            "side consistency dB (worst)", "side-to-mid dB"} <= set(row.index)
    tiles = r.tile_table()
    assert list(tiles["channel"].value_counts().sort_index()) == [11, 11]
    text = summary_markdown(r, tmp_path / "out")
    assert "stereo: left peak" in text and "correlation" in text and "clipped)" not in text
    assert "samples beyond full scale), right" in text     # counted, not clipped (peak="keep")


def test_loud_stereo_limits_and_normalizes_both_channels(tmp_path):
    y = duet(1.0)
    y *= np.float32([1.3, 0.5]) / np.abs(y).max(axis=0)     # left peaks at 1.3, right at 0.5
    src = tmp_path / "loud.wav"
    sf.write(src, y, SR, subtype="FLOAT")
    encode_song(src, tmp_path / "t", params=PS)
    res = decode_song(tmp_path / "t" / "loud", tmp_path / "keep.wav")
    assert res.stereo.clipped[0] > 0 and res.stereo.clipped[1] == 0
    assert res.clipped == sum(res.stereo.clipped) and any("beyond full scale" in w
                                                          for w in res.warnings)
    for peak, top in (("limit", 1.0), ("normalize", 10 ** (-1 / 20))):
        decode_song(tmp_path / "t" / "loud", tmp_path / f"{peak}.flac", peak=peak)
        z, _ = sf.read(tmp_path / f"{peak}.flac")
        assert z.shape[1] == 2 and np.abs(z).max() == pytest.approx(top, abs=2e-3)


def test_the_stereo_decode_streams_block_by_block():
    """Left and right leave for the writer one tile at a time: nothing waits for the song."""
    pulled = []

    def channel(tag):
        for k in range(1000):
            pulled.append((tag, k))
            yield np.full(8, 0.1 * (tag == "m"), np.float32)

    fig = StereoFigures()
    blocks = fig.combined(channel("m"), channel("s"))
    first = next(blocks)
    assert first.shape == (8, 2) and len(pulled) == 2
    blocks.close()                                   # the writer stops: both channels closed


def test_memory_does_not_grow_with_the_song(tmp_path):
    """Peak memory of a 12 s and a 72 s stereo decode (0.74 s tiles): holding the song would
    add the extra 60 s of float32 stereo (21 MB); measured, the peaks differ by the noise of
    the read-ahead threads (+-2 MB about 21 MB at any length)."""
    peaks = []
    for seconds in (12.0, 72.0):
        src = tmp_path / f"s{seconds:g}.wav"
        sf.write(src, duet(seconds, seed=3), SR, subtype="FLOAT")
        encode_song(src, tmp_path / "t", params=CodecParams(size=256, channels="stereo"))
        tracemalloc.start()
        decode_song(tmp_path / "t" / src.stem, tmp_path / f"{src.stem}.wav")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] - peaks[0] < 0.25 * 60 * SR * 2 * 4, peaks


def test_width_meter_gives_stereo_width_figures_at_the_edges():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 2)) * [0.3, 0.1] + 0.05
    cases = [x, np.repeat(x[:, :1], 2, axis=1),                     # mono: side -inf, corr 1
             np.stack([x[:, 0], np.zeros(5000)], 1),                 # a silent right channel
             np.stack([x[:, 0], -x[:, 0]], 1)]                       # out of phase
    for audio in cases:
        meter = WidthMeter()
        for block in np.array_split(audio, 7):
            meter.add(block)
        want, got = stereo_width(audio), meter.result()
        for k in want:
            assert (np.isnan(want[k]) and np.isnan(got[k])) or got[k] == pytest.approx(want[k]), \
                (k, want[k], got[k])

# =========================================================================== damaged songs


def test_missing_side_tile_is_refused_naming_it_or_silent_when_asked(song, tmp_path):
    (song / "duet_0004.side.png").unlink()
    out = tmp_path / "out" / "duet.wav"
    with pytest.raises(UnpairedSideError) as info:
        decode_song(song, out)
    _one_line(str(info.value), "duet_0004.side.png", "duet_0004.png", "missing='silence'")
    assert not out.exists()
    r = decode_batch(song, tmp_path / "b", progress=False)
    (where, msg), = r.failures
    assert "duet_0004.side.png" in msg and not r.results
    res = decode_song(song, out, missing="silence")
    said = [w for w in res.warnings if "duet_0004.side.png" in w]
    assert len(said) == 1 and "silent side" in said[0]
    y, _ = sf.read(out)
    span = slice(4 * P.tile_samples + 2048, 5 * P.tile_samples - 2048)   # inside tile 4
    assert np.max(np.abs(y[span, 0] - y[span, 1])) < 1e-4                # centred there
    assert np.max(np.abs(y[:P.tile_samples, 0] - y[:P.tile_samples, 1])) > 0.01


def test_side_tile_without_its_mid_is_refused(song, tmp_path):
    shutil.copy(song / "duet_0010.side.png", song / "duet_0011.side.png")   # beyond the song
    with pytest.raises(UnpairedSideError) as info:
        decode_song(song, tmp_path / "a.wav")
    _one_line(str(info.value), "duet_0011.side.png", "without its mid tile duet_0011.png")
    for p in song.glob("duet_????.png"):               # every mid gone: still refused, not skipped
        p.unlink()
    r = decode_batch(song.parent, tmp_path / "b", progress=False)
    (where, msg), = r.failures
    assert "side tile without its mid tile" in msg and "(and 11 more side tile(s))" in msg
    with pytest.raises(UnpairedSideError, match="duet_0002.side.png"):
        decode_song(song / "duet_0002.side.png", tmp_path / "c.wav")    # one side tile alone


@pytest.mark.parametrize("change, words", [
    (lambda m: {**m, "codec": {**m["codec"], "hop_length": 32}},
     "other codec parameters than its mid tile duet_0003.png (hop_length 32 vs 64)"),
    (lambda m: {**m, "codec": {**m["codec"], "db_min": m["codec"]["db_min"] + 1}},
     "other codec parameters than the song's side tile duet_0000.side.png (db_min"),
    (lambda m: {**m, "tile_index": 5, "start": 5 * P.tile_samples, "end": 6 * P.tile_samples,
                "stop": 6 * P.tile_samples}, "is not the side of its mid tile duet_0003.png"),
    (lambda m: {k: v for k, v in m.items() if k not in ("channel", "channels")},
     "its wavdiff metadata is a mid (mono) tile's"),
])
def test_side_tile_of_another_codec_span_or_kind_is_refused(song, tmp_path, change, words):
    side = song / "duet_0003.side.png"
    write_tile(side, read_tile(side).pixels, change(read_tile_metadata(side)))
    out = tmp_path / "a.wav"
    with pytest.raises(UnpairedSideError) as info:
        decode_song(song, out)
    _one_line(str(info.value), "duet_0003.side.png", words)
    assert not out.exists()


def test_damaged_side_tile_fails_its_song_alone(song, encoded, tmp_path):
    shutil.copytree(encoded[2] / "duet", song.parent / "mono_duet")      # a healthy mono song
    for p in (song.parent / "mono_duet").glob("duet_*.png"):
        p.rename(p.with_name(p.name.replace("duet_", "solo_")))
    (song.parent / "mono_duet" / "manifest.json").unlink()
    side = song / "duet_0006.side.png"
    side.write_bytes(side.read_bytes()[:-500])          # truncated
    r = decode_batch(song.parent, tmp_path / "out", progress=False)
    assert [x.song for x in r.results] == ["solo"]
    (where, msg), = r.failures
    _one_line(msg, "duet_0006.side.png", "truncated PNG")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["solo.wav"]


def test_corrupt_side_metadata_is_refused_or_set_aside_when_asked(song, tmp_path):
    side = song / "duet_0002.side.png"
    bgr = cv2.imread(str(side), cv2.IMREAD_UNCHANGED)
    body = b"wavdiff\x00\x00\x00\x00\x00" + b'{"format": "wavdiff-tile", "codec": '   # cut
    crc = struct.pack(">I", zlib.crc32(b"iTXt" + body))
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body + crc
    enc = cv2.imencode(".png", bgr)[1].tobytes()
    side.write_bytes(enc[:33] + chunk + enc[33:])          # a hand-made wavdiff chunk after IHDR
    with pytest.raises(CorruptMetadataError):
        read_tile_metadata(side, strict=True)
    with pytest.raises(CorruptMetadataError) as info:
        decode_song(song, tmp_path / "a.wav")
    _one_line(str(info.value), "duet_0002.side.png", "bad_metadata='defaults'")
    res = decode_song(song, tmp_path / "a.wav", bad_metadata="defaults")
    assert any("duet_0002.side.png" in w and "corrupt" in w for w in res.warnings)


def test_unwritable_stereo_output_is_one_line_naming_it(song, tmp_path, monkeypatch):
    fail_writes(monkeypatch, errno.EROFS)                  # the writer's files: a read-only disk
    out = tmp_path / "out" / "duet.wav"
    with pytest.raises(UnwritableOutputError) as info:
        decode_song(song, out)
    _one_line(str(info.value), str(out), "read-only")
    assert not any((tmp_path / "out").iterdir())            # no temporary left either

# =========================================================================== 03_decode


def test_03_decode_shows_a_stereo_song(song, tmp_path):
    pm = pytest.importorskip("papermill")
    executed = tmp_path / "03.ipynb"
    pm.execute_notebook(str(REPO_ROOT / "notebooks" / "03_decode.ipynb"), str(executed),
                        parameters={"input": str(song), "output": str(tmp_path / "dec")},
                        kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    nb = json.loads(executed.read_text(encoding="utf-8"))
    text = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert "L/R correlation" in text and "SNR L dB" in text and "stereo: left peak" in text
    assert "dB SNR** (left " in text                       # the summary: each channel's SNR
    assert text.count("<audio") >= 2 and sf.info(tmp_path / "dec" / "duet.wav").channels == 2

# =========================================================================== real music

MUSIC = REPO_ROOT / "outputs" / "music"


@pytest.mark.skipif(not any(MUSIC.glob("*.ogg")), reason="no real music in outputs/music")
def test_real_stereo_music_round_trip_each_channel_within_2_db_of_mono(tmp_path):
    """45 s (from 0:30) of a real stereo song at the default codec (1024 px tiles): left and
    right lose at most 2 dB of SNR against the mono round trip's (measured on the 8 songs of
    outputs/music: -1.0 to +1.8 dB; a channel can do better than the mono mix, whose
    quieter half-sum meets the same relative error: battle.ogg from 0:20 gains 2.1 dB)."""
    song = sorted(MUSIC.glob("*.ogg"))[0]
    y = load_audio(song, sample_rate=SR, mono=False)[30 * SR:75 * SR]
    src = tmp_path / "excerpt.wav"
    sf.write(src, y, SR, subtype="FLOAT")
    snr = {}
    for channels in ("mono", "stereo"):
        encode_song(src, tmp_path / channels, params=CodecParams(channels=channels))
        res = decode_song(tmp_path / channels / "excerpt", tmp_path / f"{channels}.wav")
        z, _ = sf.read(res.output, dtype="float32")
        ref = load_audio(src, sample_rate=SR, mono=channels == "mono")
        snr[channels] = [snr_db(ref, z)] if z.ndim == 1 else \
            [snr_db(ref[:, k], z[:, k]) for k in (0, 1)]
    mono, = snr["mono"]
    assert mono > 80 and all(s > mono - 2 for s in snr["stereo"]), snr
