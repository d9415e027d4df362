"""channels: stereo (mid and side tiles): mono runs unchanged, the mid tile is the mono tile,
side tiles and stereo manifests, resume and hostile input."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.codec.transform import tile_magnitude_db
from wavdiff_utils.errors import WavdiffError
from wavdiff_utils.io.manifest import read_manifest
from wavdiff_utils.io.tiles import parse_tile_name, read_tile, read_tile_metadata
from wavdiff_utils.jobs.encode import check_complete, encode_batch, encode_song

BEFORE = Path(__file__).parent / "data" / "mono_before_stereo.json"
VOLATILE = ("created", "source", "source_mtime_ns")


def before_signal(rate: int, seconds: float = 2.5) -> np.ndarray:
    """The stereo signal the files of ``data/mono_before_stereo.json`` were encoded from."""
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(7)
    left = 0.9 * np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 3300 * t) * (t % 0.5 < 0.25)
    right = 0.7 * np.sin(2 * np.pi * 330 * t + 1.0) + 0.1 * rng.standard_normal(len(t))
    return (np.stack([left, right], 1) * 1.1).astype(np.float32)   # peaks beyond 1


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(folder: Path) -> dict:
    man = json.loads((folder / "manifest.json").read_text())
    return {k: v for k, v in man.items() if k not in VOLATILE}


@pytest.mark.parametrize("case", ["stereo_44100_exact", "stereo_22050_exact", "stereo_44100_seed"])
def test_mono_run_is_byte_identical_to_files_written_before_stereo(tmp_path, case):
    rec = json.loads(BEFORE.read_text())[case]
    wav = tmp_path / f"{case}.wav"
    sf.write(wav, before_signal(rec["rate"]), rec["rate"], subtype="FLOAT")
    res = encode_song(wav, tmp_path / "tiles", params=CodecParams(**rec["params"]), song=case)
    folder = Path(res.output)
    assert {p.name: _sha(p) for p in folder.glob("*.png")} == rec["tiles"]
    assert _manifest(folder) == rec["manifest"]      # its source_hash: the same samples as then
    raw = (folder / "manifest.json").read_text()
    assert '"channels"' not in raw and '"side' not in raw


@pytest.fixture
def stereo_wav(tmp_path) -> Path:
    wav = tmp_path / "src" / "duet.wav"
    wav.parent.mkdir()
    sf.write(wav, before_signal(22050, 3.0), 22050, subtype="FLOAT")
    return wav


def test_stereo_mid_tiles_are_the_mono_files_and_side_tiles_sit_beside_them(tmp_path, stereo_wav):
    small = dict(size=64)
    mono = Path(encode_song(stereo_wav, tmp_path / "mono", params=CodecParams(**small)).output)
    res = encode_song(stereo_wav, tmp_path / "st", params=CodecParams(**small, channels="stereo"))
    st = Path(res.output)
    mono_tiles = sorted(p.name for p in mono.glob("*.png"))
    assert mono_tiles and all((st / n).read_bytes() == (mono / n).read_bytes() for n in mono_tiles)
    sides = sorted(p.name for p in st.glob("*.side.png"))
    assert sides == [n[:-4] + ".side.png" for n in mono_tiles]
    assert all(parse_tile_name(n) is None for n in sides)          # mono readers skip them
    mid_meta = read_tile_metadata(st / mono_tiles[1])
    side_meta = read_tile_metadata(st / sides[1])
    side_codec = {**mid_meta["codec"], "db_min": mid_meta["codec"]["db_min"] - 20.0}
    assert side_meta == {**mid_meta, "codec": side_codec, "channel": "side", "channels": "stereo"}
    man = read_manifest(st)
    assert man["codec"]["channels"] == "stereo" and "mono" not in man["codec"]
    assert [t["side_file"] for t in man["tiles"]] == sides
    assert man["side_clipped_high"] == 0 and 0 < man["side_peak"] < man["peak"] * 2
    assert check_complete(res) == ""


def test_side_tile_holds_the_half_difference_of_the_channels(tmp_path):
    rate, n = 44100, 44100
    t = np.arange(n) / rate
    left, right = np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 440 * t)
    wav = tmp_path / "pan.wav"
    sf.write(wav, np.stack([left, right], 1).astype(np.float32), rate, subtype="FLOAT")
    params = CodecParams(size=64, channels="stereo")
    folder = Path(encode_song(wav, tmp_path / "o", params=params).output)
    mid = tile_magnitude_db(read_tile(folder / "pan_0005.png").pixels, params.tile_codec())
    side = tile_magnitude_db(read_tile(folder / "pan_0005.side.png").pixels, params.side_codec())
    k = int(np.argmax(mid.max(axis=1)))
    # mid = 0.625 * sine, side = 0.375 * sine: 20*log10(0.375/0.625) = -4.44 dB
    assert np.median(side[k] - mid[k]) == pytest.approx(-4.44, abs=0.1)


def test_a_mono_file_encoded_as_stereo_gets_a_silent_side_said_once(tmp_path):
    wav = tmp_path / "solo.wav"
    sf.write(wav, before_signal(44100, 1.0)[:, 0], 44100, subtype="FLOAT")
    res = encode_song(wav, tmp_path / "o", params=CodecParams(size=64, channels="stereo"))
    said = [w for w in res.warnings if "mono" in w]
    assert len(said) == 1 and "silent" in said[0]
    side = read_tile(Path(res.output) / "solo_0003.side.png").pixels
    assert int(side[..., 0].max()) == 0                       # red plane 0: at or below db_min


def test_switching_channels_re_encodes_only_after_overwrite(tmp_path, stereo_wav):
    out = tmp_path / "o"
    encode_song(stereo_wav, out, params=CodecParams(size=64))
    with pytest.raises(WavdiffError, match="other codec parameters") as info:
        encode_song(stereo_wav, out, params=CodecParams(size=64, channels="stereo"))
    assert "(channels 'mono' vs 'stereo': there vs asked)" in str(info.value)   # what differs
    assert "--overwrite on the command line" in str(info.value)
    res = encode_song(stereo_wav, out, params=CodecParams(size=64, channels="stereo"), overwrite=True)
    assert res.status == "encoded" and any(Path(res.output).glob("*.side.png"))
    res = encode_song(stereo_wav, out, params=CodecParams(size=64), overwrite=True)
    assert res.status == "encoded" and not any(Path(res.output).glob("*.side.png"))
    again = encode_song(stereo_wav, out, params=CodecParams(size=64))
    assert again.status == "skipped"


def test_a_missing_side_tile_makes_the_song_incomplete_and_a_rerun_redoes_it(tmp_path, stereo_wav):
    params = CodecParams(size=64, channels="stereo")
    res = encode_song(stereo_wav, tmp_path / "o", params=params)
    victim = Path(res.output) / "duet_0002.side.png"
    victim.unlink()
    assert "missing" in check_complete(res) and "duet_0002.side.png" in check_complete(res)
    batch = encode_batch(stereo_wav, tmp_path / "o", params=params, progress=False)
    assert not batch.failures and victim.is_file()


@pytest.mark.parametrize("bad", ["Stereo", "left", "", None, 2])
def test_absurd_channels_are_refused_in_one_line(bad):
    with pytest.raises(WavdiffError, match="channels must be one of"):
        CodecParams(channels=bad)


def test_stereo_encode_killed_then_rerun_gives_the_same_files(tmp_path):
    src = tmp_path / "long.wav"
    rate = 44100
    y = np.tile(before_signal(rate, 5.0), (4, 1))            # 20 s, many small tiles
    sf.write(src, y, rate, subtype="FLOAT")
    code = (f"from wavdiff_utils.codec.params import CodecParams\n"
            f"from wavdiff_utils.jobs.encode import encode_song\n"
            f"encode_song({str(src)!r}, {str(tmp_path / 'o')!r}, "
            f"params=CodecParams(size=32, channels='stereo'), png_compression=9)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    partial = tmp_path / "o" / ".long.partial"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(partial.glob("*.side.png"))) < 20:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    res = encode_song(src, tmp_path / "o", params=CodecParams(size=32, channels="stereo"))
    assert res.status == "encoded" and check_complete(res) == ""
    ref = encode_song(src, tmp_path / "ref", params=CodecParams(size=32, channels="stereo"))
    names = sorted(p.name for p in Path(ref.output).glob("*.png"))
    assert names == sorted(p.name for p in Path(res.output).glob("*.png"))
    for n in names:                # tiles kept from the killed run were written at level 9
        a, b = read_tile(Path(res.output) / n), read_tile(Path(ref.output) / n)
        assert np.array_equal(a.pixels, b.pixels) and a.metadata == b.metadata, n


def test_the_side_keeps_quiet_detail_below_the_mid_floor(tmp_path):
    """A side 120 dB below full scale (under the mid's -110 dB floor) survives in the side
    tile, whose floor is 20 dB lower (the measured choice: see SIDE_FLOOR_DROP_DB)."""
    from wavdiff_utils.codec.params import SIDE_FLOOR_DROP_DB

    rate, n = 44100, 44100
    t = np.arange(n) / rate
    centre, quiet = 0.5 * np.sin(2 * np.pi * 440 * t), 1e-6 * np.sin(2 * np.pi * 5000 * t)
    wav = tmp_path / "quiet.wav"
    sf.write(wav, np.stack([centre + quiet, centre - quiet], 1).astype(np.float32), rate,
             subtype="FLOAT")
    params = CodecParams(size=64, channels="stereo")
    folder = Path(encode_song(wav, tmp_path / "o", params=params).output)
    side = read_tile(folder / "quiet_0005.side.png")
    assert side.metadata["codec"]["db_min"] == params.db_min - SIDE_FLOOR_DROP_DB
    db = tile_magnitude_db(side.pixels, params.side_codec())
    k = int(round(5000 / (rate / params.n_fft)))
    assert np.median(db[k]) == pytest.approx(-120, abs=1.5)       # kept, near its true level
    assert float(np.median(db[k])) < params.db_min                 # where a mid tile keeps nothing


def test_the_full_scale_warning_of_a_stereo_song_names_the_louder_channel(tmp_path):
    """Left peaking at 1.15 and right at 1.51: the mid's peak is lower than either channel's,
    so the warning and the manifest give the louder channel's, 1.51."""
    t = np.arange(44100) / 44100
    left = (1.15 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    right = (1.51 * np.sin(2 * np.pi * 330 * t + 1.0)).astype(np.float32)
    wav = tmp_path / "loud.wav"
    sf.write(wav, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    res = encode_song(wav, tmp_path / "o", params=CodecParams(size=64, channels="stereo"))
    man = _manifest(Path(res.output))
    want = float(np.max(np.abs(np.stack([left, right]))))
    assert man["channel_peak"] == pytest.approx(want, rel=1e-6) and man["peak"] < want - 0.05
    full = [w for w in man["warnings"] if "full scale" in w]
    assert full == [f"input reaches full scale (peak {want:.3f}, the louder of left and right): "
                    f"it may be clipped"]
    mono = encode_song(wav, tmp_path / "m", params=CodecParams(size=64))
    assert "channel_peak" not in _manifest(Path(mono.output))


def test_a_stereo_run_that_encoded_nothing_does_not_claim_side_tiles(tmp_path, stereo_wav):
    """Asked for stereo over a mono dataset (no --overwrite): the song fails, the dataset stays
    mono, and the summary does not say its rows name side tiles."""
    from wavdiff_utils.jobs.pipeline import run_pipeline

    kw = dict(captioner="none", report=False, progress=False, workers=1, log=None)
    run_pipeline(stereo_wav, tmp_path / "ds", params=CodecParams(size=64), **kw)
    res = run_pipeline(stereo_wav, tmp_path / "ds", params=CodecParams(size=64, channels="stereo"),
                       **kw)
    text = res.summary()
    assert "1 failed" in text and "channels 'mono' vs 'stereo'" in text
    assert "side_file_name" not in text
    res = run_pipeline(stereo_wav, tmp_path / "ds", overwrite=True,
                       params=CodecParams(size=64, channels="stereo"), **kw)
    assert "each row a mid tile naming its side tile (side_file_name)" in res.summary()
