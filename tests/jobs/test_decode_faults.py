"""Decode under faults and hostile tiles (issue 20, items 4 and 8): one line, the final name.

Every case asserts the error's type, that its one line names the file (the final audio
path for a write, the tile for its metadata) and holds no library class name, and that
nothing partial is left under the final name; where it applies, that one re-run repairs.

How the faults are made (tests run as root, where permissions are not checked):

- full disk, read-only, no permission through a patched writer: the ``open`` that
  :mod:`wavdiff_utils.jobs.decode_audio` writes the audio with returns a file that fails
  with ``ENOSPC`` (after some bytes: a disk that fills mid-file), ``EROFS`` or ``EACCES``;
  the temporary file's creation patched to raise ``PermissionError``;
- the real faults: a 64 KiB tmpfs (full) and a read-only tmpfs mounted on the output
  folder when ``mount`` works, else skipped (the patched-writer cases cover them);
- corrupt metadata: the PNG's ``wavdiff`` text chunk spliced by hand (bogus JSON, cut,
  not UTF-8, bad compression, nested too deeply, NaN in the codec);
- kill -9: ``decode_song`` in a subprocess slowed per tile, killed mid-file.
"""
from __future__ import annotations

import builtins
import errno
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import wavdiff_utils.jobs.decode_audio as decode_audio
import wavdiff_utils.paths as paths
from tests.audio_fixtures import music_like, write
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.errors import (BadParameterError, BadTileError, OutputIsAFileError,
                                  UnwritableOutputError, WavdiffError)
from wavdiff_utils.io.tiles import (CorruptMetadataError, read_tile, read_tile_metadata,
                                    write_tile)
from wavdiff_utils.jobs.decode import decode_batch, decode_song
from wavdiff_utils.jobs.encode import encode_song

P = CodecParams(size=128)                        # 0.19 s tiles at 44.1 kHz
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
#: A library's class name in a message (``LibsndfileError``, ``JSONDecodeError``, ...).
CLASS_NAME = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b")


# =========================================================================== helpers

@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """Two songs' tiles from the encoder (1 s and 0.6 s), made once."""
    root = tmp_path_factory.mktemp("enc")
    for name, secs, seed in (("a", 1.0, 1), ("b", 0.6, 2)):
        src = write(root / f"{name}.wav", music_like(secs, 44100, seed=seed), 44100)
        encode_song(src, root / "tiles", params=P)
    return root / "tiles"


@pytest.fixture
def tiles(encoded, tmp_path):
    """A fresh copy of the encoded tiles, for a test to damage."""
    return Path(shutil.copytree(encoded, tmp_path / "tiles"))


def assert_one_line(msg: str, *names: str):
    assert "\n" not in msg and "Traceback" not in msg, msg
    assert not CLASS_NAME.search(msg), msg
    assert "System error" not in msg and "Errno" not in msg, msg
    for name in names:
        assert name in msg, (name, msg)


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder``, hidden temporaries too."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) \
        if folder.exists() else []


class _FailingFile:
    """A binary file that takes ``room`` bytes, then fails every write with ``err``."""

    def __init__(self, fh, room: int, err: int):
        self._fh, self._room, self._err = fh, room, err

    def write(self, data) -> int:
        if len(data) > self._room:
            if self._room:
                self._fh.write(bytes(data[:self._room]))
                self._room = 0
            raise OSError(self._err, os.strerror(self._err))
        self._room -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def fail_writes(monkeypatch, err: int, room: int = 0):
    """The audio writer's files fail with ``err`` after ``room`` bytes."""
    real_open = builtins.open

    def patched(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        return _FailingFile(fh, room, err) if "w" in mode else fh
    monkeypatch.setattr(decode_audio, "open", patched, raising=False)


def can_mount(tmp) -> bool:
    d = tmp / "probe"
    d.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(d)], capture_output=True)
    return ok


@pytest.fixture
def mounted(tmp_path):
    """``mount(folder, opts)``: a tmpfs on ``folder``; every mount is undone afterwards."""
    if shutil.which("mount") is None or not can_mount(tmp_path):
        pytest.skip("cannot mount a tmpfs here; the patched-writer tests cover the same fault")
    done = []

    def mount(folder, opts):
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], check=True)
        done.append(folder)
        return folder
    yield mount
    for f in reversed(done):
        subprocess.run(["umount", "-l", str(f)], capture_output=True)


def splice_chunk(tile: Path, text: bytes, *, compressed: bool = False, length=None) -> Path:
    """Rewrite ``tile`` with its pixels and a hand-made ``wavdiff`` chunk holding ``text``."""
    bgr = cv2.imread(str(tile), cv2.IMREAD_UNCHANGED)           # the pixels, whatever the chunk
    body = b"wavdiff\x00" + (b"\x01\x00" if compressed else b"\x00\x00") + b"\x00\x00" + text
    size = len(body) if length is None else length
    chunk = struct.pack(">I", size) + b"iTXt" + body + struct.pack(">I", zlib.crc32(b"iTXt" + body))
    enc = cv2.imencode(".png", bgr)[1].tobytes()
    tile.write_bytes(enc[:33] + chunk + enc[33:])
    return tile


# =========================================================================== item 4: writes

FAULTS = [(errno.ENOSPC, 4_000, "disk is full"), (errno.EROFS, 0, "read-only"),
          (errno.EACCES, 0, "no permission")]
FORMATS = [("wav", "keep"), ("flac", "keep"), ("wav", "normalize"), ("ogg", "limit")]


@pytest.mark.parametrize("err,room,words", FAULTS, ids=["ENOSPC", "EROFS", "EACCES"])
@pytest.mark.parametrize("fmt,peak", FORMATS, ids=[f"{f}-{p}" for f, p in FORMATS])
def test_defect_20_4_failed_write_is_one_line_naming_the_final_audio_file(
        tiles, tmp_path, monkeypatch, err, room, words, fmt, peak):
    out = tmp_path / "out" / f"a.{fmt}"
    fail_writes(monkeypatch, err, room)
    with pytest.raises(UnwritableOutputError) as info:
        decode_song(tiles / "a", out, peak=peak)
    msg = str(info.value)
    assert_one_line(msg, str(out), "cannot be written", words)
    assert isinstance(info.value, WavdiffError) and info.value.errno == err and info.value.path == str(out)
    assert f".{out.name}." not in msg                     # the final name, not the temporary one
    assert files_in(tmp_path / "out") == []              # nothing partial, no temporary left
    monkeypatch.undo()
    assert decode_song(tiles / "a", out, peak=peak).n_samples == 44100      # a re-run repairs


def test_defect_20_4_temporary_file_refused_names_the_final_path(tiles, tmp_path, monkeypatch):
    """A read-only folder (root ignores modes: the temporary file's creation refuses)."""
    out = tmp_path / "out" / "a.wav"

    def refuse(*a, dir=None, prefix="", suffix="", **k):
        raise PermissionError(errno.EACCES, "Permission denied",
                              os.path.join(dir, prefix + "k3j9x" + suffix))
    monkeypatch.setattr(paths.tempfile, "mkstemp", refuse)
    with pytest.raises(UnwritableOutputError) as info:
        decode_song(tiles / "a", out)
    msg = str(info.value)
    assert_one_line(msg, str(out), "no permission")
    assert "k3j9x" not in msg and not out.exists()


def test_defect_20_4_decode_batch_lists_unwritable_outputs_among_failures(tiles, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "out"
    fail_writes(monkeypatch, errno.ENOSPC, 10_000)
    batch = decode_batch(tiles, out, progress=False)            # no exception
    assert batch.results == [] and len(batch.failures) == 2
    for (where, msg), song in zip(sorted(batch.failures), ("a", "b")):
        assert where == str(tiles / song)
        assert_one_line(msg, str(out / f"{song}.wav"), "disk is full")
    text = batch.summary()
    assert "2 failed" in text and text.count("FAILED") == 2
    assert_one_line(text.splitlines()[1], "a.wav", "disk is full")
    assert files_in(out) == []
    assert set(batch.table()["status"]) == {"FAILED"}


def test_defect_20_4_existing_output_is_kept_when_its_rewrite_fails(tiles, tmp_path, monkeypatch):
    out = tmp_path / "a.wav"
    decode_song(tiles / "a", out)
    before = out.read_bytes()
    fail_writes(monkeypatch, errno.ENOSPC, 20_000)
    with pytest.raises(UnwritableOutputError):
        decode_song(tiles / "a", out, peak="normalize")
    assert out.read_bytes() == before
    assert [f for f in files_in(tmp_path) if not f.startswith("tiles/")] == ["a.wav"]


@pytest.mark.parametrize("fmt,peak", FORMATS, ids=[f"{f}-{p}" for f, p in FORMATS])
def test_defect_20_4_real_full_disk_then_more_space_repairs(tiles, tmp_path, mounted, fmt, peak):
    """A 64 KiB tmpfs (the real fault: the library used to say only "System error.")."""
    disk = mounted(tmp_path / "small", "size=64k")
    out = disk / f"a.{fmt}"
    with pytest.raises(UnwritableOutputError) as info:
        decode_song(tiles / "a", out, peak=peak)
    assert_one_line(str(info.value), str(out), "disk is full")
    assert files_in(disk) == []
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    res = decode_song(tiles / "a", out, peak=peak)
    assert res.output == str(out) and files_in(disk) == [out.name]


def test_defect_20_4_real_full_disk_in_decode_batch_is_listed(tiles, tmp_path, mounted):
    disk = mounted(tmp_path / "small", "size=64k")
    batch = decode_batch(tiles, disk / "dec", progress=False)
    assert len(batch.failures) == 2 and not batch.results
    assert all("disk is full" in m and str(disk / "dec") in m for _, m in batch.failures)
    assert files_in(disk) == []


@pytest.mark.parametrize("sub", ["", "new/folder"], ids=["folder", "missing-subfolder"])
def test_defect_20_4_real_read_only_folder(tiles, tmp_path, mounted, sub):
    disk = mounted(tmp_path / "ro", "ro,size=64k")
    out = disk / sub / "a.wav"
    with pytest.raises(UnwritableOutputError) as info:
        decode_song(tiles / "a", out)
    msg = str(info.value)
    assert_one_line(msg, str(out), "read-only")
    assert ".a.wav." not in msg and files_in(disk) == []


def test_output_folder_that_is_a_file_is_refused_before_decoding(tiles, tmp_path):
    out = tmp_path / "taken"
    out.write_text("not a folder")
    with pytest.raises(OutputIsAFileError) as info:
        decode_batch(tiles, out, progress=False)
    assert_one_line(str(info.value), str(out), "is a file")
    assert out.read_text() == "not a folder"


SLOW_DECODE = """
import sys, time
from wavdiff_utils.jobs.decode import decode_song
decode_song(sys.argv[1], sys.argv[2], progress=lambda n: time.sleep(0.4))
"""


def test_kill_9_mid_write_leaves_nothing_under_the_final_name(tiles, tmp_path):
    out = tmp_path / "out" / "a.wav"
    script = tmp_path / "slow.py"
    script.write_text(SLOW_DECODE)
    proc = subprocess.Popen([sys.executable, str(script), str(tiles / "a"), str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 60
    while time.monotonic() < end and not any((tmp_path / "out").glob(".a.wav.*")):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL          # killed mid-file, not finished
    assert not out.exists()                             # the temporary holds the partial audio
    res = decode_song(tiles / "a", out)                  # the re-run writes the whole file
    ref = decode_song(tiles / "a", tmp_path / "ref.wav")
    assert res.n_samples == ref.n_samples == 44100
    assert _no_peak_time(out.read_bytes()) == _no_peak_time((tmp_path / "ref.wav").read_bytes())


def _no_peak_time(wav: bytes) -> bytes:
    """A float WAV's bytes with the time stamp of its PEAK chunk (libsndfile writes the clock's
    second there) blanked: two writes of the same audio a second apart differ only in it."""
    at = wav.find(b"PEAK")
    return wav if at < 0 else wav[:at + 12] + bytes(4) + wav[at + 16:]


# =========================================================================== item 8: metadata

#: name, chunk text, splice options, words the message must hold
CORRUPT = [
    ("bogus-json", b'{"format": "wavdiff-tile", codec: }', {}, "not valid JSON"),
    ("cut-json", b'{"format": "wavdiff-tile", "codec": {"size": 12', {}, "not valid JSON"),
    ("empty", b"", {}, "not valid JSON"),
    ("not-utf8", b'{"song": "\xff\xfe"}', {}, "not UTF-8"),
    ("bad-compression", b"this is not zlib data", {"compressed": True}, "cannot be unpacked"),
    ("nested", b"[" * 200_000, {}, "nested too deeply"),
    ("chunk-past-end", b'{"a": 1}', {"length": 1 << 30}, "cut short"),
]


@pytest.mark.parametrize("text,opts,words", [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_defect_20_8_corrupt_metadata_is_called_corrupt_and_refused(tmp_path, tiles, text, opts,
                                                                    words):
    tile = splice_chunk(tiles / "a" / "a_0002.png", text, **opts)
    out = tmp_path / "a.wav"
    with pytest.raises(CorruptMetadataError) as info:
        decode_song(tiles / "a", out)
    msg = str(info.value)
    assert_one_line(msg, str(tile), "wavdiff metadata is corrupt", words,
                    "bad_metadata='defaults'")
    assert "no wavdiff metadata" not in msg and isinstance(info.value, BadTileError)
    assert not out.exists()
    batch = decode_batch(tiles, tmp_path / "dec", progress=False)   # the song fails, alone
    assert [r.song for r in batch.results] == ["b"]
    (where, fail), = batch.failures
    assert where == str(tiles / "a") and "a_0002.png" in fail and words in fail
    assert not (tmp_path / "dec" / "a.wav").exists()


def test_defect_20_8_corrupt_metadata_decodes_with_defaults_only_when_asked(tmp_path, tiles):
    splice_chunk(tiles / "a" / "a_0003.png", b"{not json")
    res = decode_song(tiles / "a", tmp_path / "a.wav", bad_metadata="defaults")
    warned = [w for w in res.warnings if "a_0003.png" in w]
    assert len(warned) == 1 and "corrupt" in warned[0] and "not valid JSON" in warned[0]
    assert "bad_metadata='defaults'" in warned[0] and res.n_tiles == 6
    batch = decode_batch(tiles, tmp_path / "dec", bad_metadata="defaults", progress=False)
    assert batch.ok and len(batch.results) == 2 and "a_0003.png" in batch.summary()


def test_defect_20_8_lone_image_with_corrupt_metadata_is_not_taken_for_a_plain_image(tmp_path,
                                                                                     tiles):
    """The old code said "no wavdiff metadata: assumed ..." and decoded it."""
    clip = tmp_path / "gen" / "sample.png"
    clip.parent.mkdir()
    shutil.copy(tiles / "a" / "a_0001.png", clip)
    splice_chunk(clip, b'{"format": "wavdiff-tile", "codec": [}')
    batch = decode_batch(clip.parent, tmp_path / "dec", params=P, progress=False)
    (where, msg), = batch.failures
    assert where == str(clip) and "corrupt" in msg and "no wavdiff metadata" not in batch.summary()
    res = decode_song(clip, tmp_path / "x.wav", params=P, bad_metadata="defaults")
    assert res.n_samples == P.tile_samples and any("corrupt" in w for w in res.warnings)


@pytest.mark.parametrize("change,field", [
    (lambda m: {**m, "tile_index": "three"}, "field 'tile_index'"),
    (lambda m: {**m, "codec": {**m["codec"], "db_max": float("inf")}}, "db_max must be a finite"),
    (lambda m: {**m, "codec": {**m["codec"], "db_min": float("nan")}}, "field 'codec' is invalid"),
], ids=["tile_index-string", "db_max-infinite", "db_min-nan"])
def test_defect_20_8_bad_field_names_it_and_the_option(tmp_path, tiles, change, field):
    tile = tiles / "a" / "a_0001.png"
    write_tile(tile, read_tile(tile).pixels, change(read_tile_metadata(tile)))
    with pytest.raises(CorruptMetadataError) as info:
        decode_song(tiles / "a", tmp_path / "a.wav")
    assert_one_line(str(info.value), str(tile), "corrupt", field, "bad_metadata='defaults'")
    res = decode_song(tiles / "a", tmp_path / "a.wav", bad_metadata="defaults")
    assert np.isfinite(res.peak) and any(field in w for w in res.warnings)


@pytest.mark.parametrize("value", ["ignore", "", None, "DEFAULTS"])
def test_bad_metadata_option_is_checked_before_any_file(tmp_path, value):
    with pytest.raises(BadParameterError) as info:
        decode_batch(tmp_path / "nowhere", tmp_path / "out", bad_metadata=value, progress=False)
    assert_one_line(str(info.value), "bad_metadata", repr(value))
    assert not (tmp_path / "out").exists()


def test_tile_reader_keeps_corrupt_metadata_apart(tmp_path, tiles):
    tile = splice_chunk(tiles / "a" / "a_0000.png", b"{oops")
    assert read_tile_metadata(tile) is None                 # lenient: the encoder's re-run check
    with pytest.raises(CorruptMetadataError, match="not valid JSON") as info:
        read_tile_metadata(tile, strict=True)
    assert info.value.path == str(tile)
    with pytest.raises(CorruptMetadataError, match="a_0000.png: wavdiff metadata is corrupt"):
        read_tile(tile)
    loaded = read_tile(tile, bad_metadata="ignore")
    assert loaded.metadata is None and "not valid JSON" in loaded.metadata_problem
    with pytest.raises(BadParameterError, match="bad_metadata"):
        read_tile(tile, bad_metadata="defaults")


def test_metadata_larger_than_the_first_read_is_still_found(tmp_path):
    meta = {"note": "x" * 200_000, "k": [1, 2, 3]}
    path = write_tile(tmp_path / "big_0000.png", np.zeros((32, 32, 3), np.uint16), meta)
    assert read_tile_metadata(path) == meta == read_tile_metadata(path, strict=True)
    assert read_tile(path).metadata == meta


def test_unreadable_tile_is_named_not_a_raw_errno(tmp_path, tiles, monkeypatch):
    tile = tiles / "a" / "a_0001.png"
    real_fromfile = np.fromfile

    def guarded(file, *a, **k):
        if str(file) == str(tile):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_fromfile(file, *a, **k)
    monkeypatch.setattr(np, "fromfile", guarded)
    batch = decode_batch(tiles, tmp_path / "dec", progress=False)
    (where, msg), = batch.failures
    assert_one_line(msg, str(tile), "cannot be read (Permission denied)")
    assert where == str(tiles / "a") and not (tmp_path / "dec" / "a.wav").exists()
    assert json.loads(json.dumps(batch.to_dict()))["failures"]
