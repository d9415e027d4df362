"""Nothing lost, nothing silent: hostile inputs and faults (issue 10).

Every case asserts the exit status or the exception, that the one-line message
names the file, and that the output folder afterwards is complete and
byte-identical to an uninterrupted run, or is made so by one re-run.

How the faults are made (tests run as root, where permissions are not checked):

- unreadable file: ``open`` patched to raise ``PermissionError`` for that file, a
  FIFO named ``.wav``, a symlink loop, a dangling symlink, a folder named ``.wav``;
- read-only output and disk full: a read-only / a 320 KiB tmpfs mounted on the
  output folder when ``mount`` works (it does in the CI container), else the test is
  skipped; the same faults through a patched tile writer (``PermissionError``,
  ``ENOSPC``) run everywhere;
- kill -9 / SIGTERM / SIGINT: the CLI in a subprocess whose tile writer is slowed
  (a wrapper that patches it and calls ``main``), so that workers are mid-song.
"""
from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import music_like, write
from wavdiff_utils.jobs.cli import main
from wavdiff_utils.io.audio import AudioError, AudioNotFiniteError, AudioUnreadableError
from wavdiff_utils.jobs.encode import capped_workers, encode_batch, encode_song
from wavdiff_utils.paths import song_ids
from wavdiff_utils.codec.threads import usable_cores
from wavdiff_utils.errors import (BadTileError, NonFiniteAudioError, OutputLockedError,
                                  UnreadableAudioError, UnwritableOutputError, WavdiffError)
from wavdiff_utils.io.locking import LOCK_NAME, output_lock, read_lock
from wavdiff_utils.io.manifest import read_manifest
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.paths import MAX_SONG_BYTES, song_id
from wavdiff_utils.jobs.pipeline import run_pipeline

P = CodecParams(size=128)                  # 0.19 s tiles: fast, the same code path as 1024
SMALL = ["--size", "128", "--captioner", "none", "--no-report", "-q"]
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


# =========================================================================== helpers

def snapshot(folder) -> dict:
    """Every song file's bytes (hashed) under ``folder``; manifests without their time stamp.

    Run records (``wavdiff_batch.json``, the dataset card, the report, the lock) are
    left out: they name the time of the run.
    """
    out = {}
    folder = Path(folder)
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).as_posix()
        if not f.is_file() or rel in ("wavdiff_batch.json", "README.md", LOCK_NAME) \
                or rel.startswith("report/"):
            continue
        data = f.read_bytes()
        if f.name == "manifest.json":
            man = json.loads(data)
            man.pop("created")
            data = json.dumps(man, sort_keys=True).encode()
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def assert_one_line_naming(text: str, name: str):
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if name in ln]
    assert lines, f"no line names {name!r}:\n{text}"


def cli(args, cwd, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "wavdiff_utils", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


SLOW_CLI = """
import sys, time
import wavdiff_utils.jobs.encode as enc
_write = enc.write_tile
def slow(*a, **k):
    time.sleep({delay})
    return _write(*a, **k)
enc.write_tile = slow
from wavdiff_utils.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def slow_cli(tmp, args, delay=0.04):
    """The CLI in a subprocess whose tile writes each take ``delay`` s longer (workers inherit it)."""
    script = tmp / "slow_cli.py"
    script.write_text(SLOW_CLI.format(delay=delay))
    return subprocess.Popen([sys.executable, str(script), *args], cwd=tmp, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def wait_for(cond, timeout=30.0, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def alive(pids) -> list[int]:
    import psutil
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


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


# =========================================================================== songs

@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Four 2-second songs (11 tiles each) and their uninterrupted encode (the reference)."""
    root = tmp_path_factory.mktemp("lib")
    songs = root / "songs"
    songs.mkdir()
    for k in range(4):
        write(songs / f"song{k}.wav", music_like(2.0, seed=10 + k), 44100)
    ref = root / "ref"
    res = run_pipeline(songs, ref, params=P, captioner="none", workers=1, report=False,
                       progress=False, log=None)
    assert res.ok
    return songs, snapshot(ref)


# --------------------------------------------------------------------------- hostile files

def _wav(y, sr=44100, **kw):
    return lambda p: write(p, y, sr, **kw)


def _bytes(data: bytes):
    return lambda p: p.write_bytes(data)


def _nan(value):
    def make(p):
        y = music_like(0.5)
        y[1000] = value
        write(p, y, 44100, subtype="FLOAT")
    return make


def _fifo(p):
    os.mkfifo(p)


def _loop(p):
    os.symlink(p.name, p)


def _dangling(p):
    os.symlink(p.parent / "nowhere.wav", p)


def _png_as_wav(p):
    import cv2
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    p.write_bytes(buf.tobytes())


#: name, maker, error class, words the message must hold
BAD = [
    ("empty.wav", _bytes(b""), AudioError, "empty"),
    ("text.mp3", _bytes(b"this is not an mp3\n" * 40), AudioError, "cannot be decoded"),
    ("random.flac", _bytes(np.random.default_rng(0).bytes(5000)), AudioError, "cannot be decoded"),
    ("png.wav", _png_as_wav, AudioError, "cannot be decoded"),
    ("header_only.wav", _wav(np.zeros(0, np.float32)), AudioError, "no audio samples"),
    ("one_sample.wav", _wav(np.array([0.5], np.float32)), AudioError, "too short"),
    ("short.wav", _wav(music_like(0.002)), AudioError, "too short"),
    ("silent.wav", _wav(np.zeros(44100, np.float32)), AudioError, "silent"),
    ("nan.wav", _nan(np.nan), AudioNotFiniteError, "NaN or infinite"),
    ("inf.wav", _nan(np.inf), AudioNotFiniteError, "NaN or infinite"),
    ("minus_inf.wav", _nan(-np.inf), AudioNotFiniteError, "NaN or infinite"),
    ("fifo.wav", _fifo, AudioUnreadableError, "FIFO"),
    ("loop.wav", _loop, AudioUnreadableError, "symbolic links"),
    ("dangling.wav", _dangling, AudioUnreadableError, "cannot be read"),
]


@pytest.mark.parametrize("name,make,kind,words", BAD, ids=[b[0] for b in BAD])
def test_hostile_file_alone_one_error_naming_it_nothing_left(tmp_path, name, make, kind, words):
    src = tmp_path / name
    make(src)
    out = tmp_path / "out"
    with pytest.raises(kind) as info:
        encode_song(src, out, params=P)
    msg = str(info.value)
    assert str(src) in msg and words in msg and "\n" not in msg
    assert isinstance(info.value, WavdiffError)
    assert not out.exists() or not any(out.iterdir())          # nothing partial left


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory):
    """Every hostile file in one folder with two good songs, through the CLI's pipeline."""
    d = tmp_path_factory.mktemp("hostile")
    src = d / "in"
    src.mkdir()
    for name, make, *_ in BAD:
        make(src / name)
    (src / "folder.wav").mkdir()                     # a folder named like audio: searched
    write(src / "folder.wav" / "inside.wav", music_like(0.4, seed=7), 44100)
    write(src / "good.wav", music_like(0.4, seed=8), 44100)
    res = run_pipeline(src, d / "out", params=P, captioner="none", workers=2, report=False,
                       progress=False, log=None)
    return res, src, d / "out"


@pytest.mark.parametrize("name,make,kind,words", BAD, ids=[b[0] for b in BAD])
def test_hostile_file_in_a_batch_fails_alone_named(hostile_batch, name, make, kind, words):
    res, src, out = hostile_batch
    fails = {Path(p).name: m for p, m in res.encode.failures}
    assert name in fails and str(src / name) in fails[name] and words in fails[name]
    assert {r.song for r in res.encode.results} == {"good", "inside"}
    assert not list(out.glob(".*.partial"))
    assert not (out / LOCK_NAME).exists()


def test_hostile_batch_summary_and_json_name_every_file(hostile_batch):
    res, src, out = hostile_batch
    text = res.summary()
    record = json.loads((out / "wavdiff_batch.json").read_text())
    for name, *_ in BAD:
        assert_one_line_naming(text, str(src / name))
        assert any(str(src / name) in f["message"] for f in record["failures"])


# --------------------------------------------------------------------------- odd but good input

def _odd(seconds=0.5, sr=44100, channels=1, scale=1.0, **kw):
    return lambda p: write(p, music_like(seconds, sr, seed=3, channels=channels) * scale, sr, **kw)


GOOD = [
    ("six_channels.wav", _odd(channels=6), ""),
    ("stereo.flac", _odd(channels=2), ""),
    ("low_8k.wav", _odd(sr=8000), "resampled from 8000 Hz"),
    ("high_192k.wav", _odd(sr=192000), "resampled from 192000 Hz"),
    ("loud_float.wav", _odd(scale=1.44, subtype="FLOAT"), "full scale"),
    ("clipped_pcm16.wav", lambda p: write(p, np.clip(music_like(0.5, seed=3) * 3, -1, 1), 44100,
                                          subtype="PCM_16"), "full scale"),
    ("just_n_fft.wav", lambda p: write(p, music_like(0.5)[:256], 44100), ""),
    ("spaces and (brackets) #1; 'q'.wav", _odd(), ""),
    ("-leading-dash.ogg", _odd(), ""),
    ("ünïcödé 歌 🎵.wav", _odd(), ""),
    ("x" * 246 + ".wav", _odd(), ""),
    ("é" * 120 + ".wav", _odd(), ""),
    ("song.mp3", lambda p: write(p, music_like(0.5, seed=3), 44100, format="MP3"), ""),
    ("truncated.mp3", lambda p: _truncated_mp3(p), "stream ended early"),
]


def _truncated_mp3(p):
    write(p, music_like(2.0, seed=3), 44100, format="MP3")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def test_encode_batch_keeps_decoder_chatter_off_stderr(tmp_path, capfd):
    """The notebook path (encode_batch in this process): no mpg123 lines on file descriptor 2."""
    _truncated_mp3(tmp_path / "cut.mp3")
    batch = encode_batch(tmp_path / "cut.mp3", tmp_path / "out", params=P, progress=False)
    assert batch.ok and "stream ended early" in batch.summary()
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("name,make,warning", GOOD, ids=[g[0][:24] for g in GOOD])
def test_odd_but_good_input_encodes_identically_and_resumes(tmp_path, name, make, warning):
    src = tmp_path / name
    make(src)
    a = encode_song(src, tmp_path / "a", params=P)
    b = encode_song(src, tmp_path / "b", params=P)
    assert a.status == b.status == "encoded" and a.n_tiles >= 1
    assert len(a.song.encode()) <= MAX_SONG_BYTES
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")      # deterministic
    again = encode_song(src, tmp_path / "a", params=P)
    assert again.status == "skipped" and again.warnings == a.warnings
    if warning:
        assert any(warning in w for w in a.warnings), a.warnings
    else:
        assert not a.warnings


# =========================================================================== the 14 defects

def test_defect_01_concurrent_runs_on_one_folder(tmp_path, library):
    """A second run on a folder in use stops at once, naming the holder; the first completes."""
    songs, ref = library
    out = tmp_path / "out"
    first = slow_cli(tmp_path, ["-i", str(songs), "-o", str(out), "--workers", "2", *SMALL])
    try:
        assert wait_for(lambda: (out / LOCK_NAME).exists())
        t0 = time.monotonic()
        second = cli(["-i", str(songs), "-o", str(out), "--workers", "2", *SMALL], tmp_path)
        assert second.returncode == 2
        assert time.monotonic() - t0 < 20
        line = second.stderr.strip()
        assert "\n" not in line and str(out) in line and "in use" in line
        assert f"pid {first.pid}" in line and socket.gethostname() in line
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert snapshot(out) == ref and not (out / LOCK_NAME).exists()


def test_lock_held_by_a_live_process_is_refused_with_its_pid_and_host(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from wavdiff_utils.io.locking import output_lock\n"
                               "with output_lock(sys.argv[1]):\n print('held', flush=True)\n"
                               " time.sleep(60)", str(tmp_path / "out")],
                              env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError) as info:
            with output_lock(tmp_path / "out"):
                pass
        assert f"pid {holder.pid}" in str(info.value) and str(tmp_path / "out") in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    with output_lock(tmp_path / "out"):          # its holder is gone: the stale lock is taken over
        assert read_lock(tmp_path / "out")["pid"] == os.getpid()


@pytest.mark.parametrize("host,age,taken", [("elsewhere", 0, False), ("elsewhere", 3600, True)],
                         ids=["other-host-fresh", "other-host-no-heartbeat"])
def test_lock_of_another_host_is_stale_only_without_heartbeat(tmp_path, host, age, taken):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": host, "started": "then"}))
    os.utime(lock, (time.time() - age, time.time() - age))
    if taken:
        with output_lock(out):
            assert read_lock(out)["host"] == socket.gethostname()
        assert not lock.exists()
    else:
        with pytest.raises(OutputLockedError, match="host elsewhere"):
            with output_lock(out):
                pass
        assert lock.exists()


def test_lock_heartbeat_and_reentry(tmp_path):
    with output_lock(tmp_path, heartbeat=0.05) as folder:
        t0 = (folder / LOCK_NAME).stat().st_mtime
        with output_lock(tmp_path):             # the same process (pipeline -> encode) re-enters
            pass
        assert (folder / LOCK_NAME).exists()
        assert wait_for(lambda: (folder / LOCK_NAME).stat().st_mtime > t0, timeout=5)
    assert not (tmp_path / LOCK_NAME).exists()


def _kill_mid_run(tmp_path, library, sig, *, group=False):
    """Start the slowed CLI with 2 workers, send ``sig`` once a song is finished and others are
    in progress; returns (process, its output, worker pids seen just before)."""
    import psutil
    songs, _ = library
    out = tmp_path / "out"
    proc = slow_cli(tmp_path, ["-i", str(songs), "-o", str(out), "--workers", "2", *SMALL])
    assert wait_for(lambda: any(out.glob("*/manifest.json")) and any(out.glob(".*.partial/*.png")))
    workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert workers
    proc.send_signal(sig)
    if group:                   # Ctrl-C reaches the CLI and its workers (its process group)
        for pid in alive(workers):
            os.kill(pid, sig)
    return proc, out, workers


def test_defect_02_sigkill_of_the_cli_takes_its_workers_with_it(tmp_path, library):
    _, ref = library
    proc, out, workers = _kill_mid_run(tmp_path, library, signal.SIGKILL)
    proc.wait(timeout=10)
    t0 = time.monotonic()
    assert wait_for(lambda: not alive(workers), timeout=5), f"workers alive: {alive(workers)}"
    gone_after = time.monotonic() - t0
    before = snapshot(out)
    time.sleep(0.5)
    assert snapshot(out) == before                   # nobody writes after the command died
    assert gone_after < 5
    again = cli(["-i", str(library[0]), "-o", str(out), *SMALL], tmp_path)
    assert again.returncode == 0, again.stderr
    assert snapshot(out) == ref                       # one re-run repairs it, byte for byte


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_sigint_keep_finished_work_and_print_the_resume_line(tmp_path, library, sig):
    _, ref = library
    proc, out, workers = _kill_mid_run(tmp_path, library, sig, group=sig == signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert wait_for(lambda: not alive(workers), timeout=5)
    assert not (out / LOCK_NAME).exists()
    done = [m.parent.name for m in out.glob("*/manifest.json")]
    assert done and all(snapshot(out / s) == {k.split("/", 1)[1]: v for k, v in ref.items()
                                              if k.startswith(s + "/")} for s in done)
    again = cli(["-i", str(library[0]), "-o", str(out), *SMALL], tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{len(done)} already done" in again.stdout
    assert snapshot(out) == ref


def _deny_writes(monkeypatch, err):
    import wavdiff_utils.jobs.encode as enc

    def refuse(path, *a, **k):
        raise OSError(err, os.strerror(err), str(path))
    monkeypatch.setattr(enc, "write_tile", refuse)


@pytest.mark.parametrize("err,words", [(errno.EACCES, "no permission"),
                                       (errno.EROFS, "read-only"),
                                       (errno.ENOSPC, "disk is full")],
                         ids=["EACCES", "EROFS", "ENOSPC"])
def test_defect_03_unwritable_output_gives_the_summary_not_a_traceback(tmp_path, monkeypatch,
                                                                       capsys, library, err,
                                                                       words):
    """Patched writer (root ignores permissions): every song fails naming its tile, summary shown."""
    songs, ref = library
    out = tmp_path / "out"
    _deny_writes(monkeypatch, err)
    assert main(["-i", str(songs), "-o", str(out), "--workers", "1", *SMALL]) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err and "0 encoded" in cap.out
    fails = [ln for ln in cap.out.splitlines() if "FAILED" in ln]
    assert len(fails) == 4 and all(str(out) in ln and "_0000.png" in ln and words in ln
                                   for ln in fails)
    assert not any(".partial" in ln for ln in fails)     # the final tile path, not a temporary
    monkeypatch.undo()
    assert main(["-i", str(songs), "-o", str(out), *SMALL]) == 0
    assert snapshot(out) == ref


def test_read_only_output_folder_is_one_line_exit_2(tmp_path, mounted, library):
    """A read-only tmpfs as output (the real fault)."""
    out = mounted(tmp_path / "ro", "ro,size=64k")
    r = cli(["-i", str(library[0]), "-o", str(out / "dataset"), *SMALL], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line = r.stderr.strip()
    assert "\n" not in line and str(out / "dataset") in line and "read-only" in line


def test_disk_full_fails_named_and_one_rerun_with_space_repairs(tmp_path, mounted, library):
    """A 320 KiB tmpfs as output (the real fault), then more space and one re-run."""
    songs, ref = library
    out = mounted(tmp_path / "small", "size=320k")
    r = cli(["-i", str(songs), "-o", str(out), "--workers", "1", *SMALL], tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    fails = [ln for ln in r.stdout.splitlines() if "FAILED" in ln]
    assert fails and all(str(out) in ln and "disk is full" in ln for ln in fails)
    subprocess.run(["mount", "-o", "remount,size=40m", str(out)], check=True)
    again = cli(["-i", str(songs), "-o", str(out), *SMALL], tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot(out) == ref


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_defect_04_non_finite_file_does_not_abort_encode_batch(tmp_path, value):
    d = tmp_path / "in"
    d.mkdir()
    _nan(value)(d / "bad.wav")
    write(d / "good.wav", music_like(0.4), 44100)
    batch = encode_batch(d, tmp_path / "out", params=P, progress=False)
    assert [r.song for r in batch.results] == ["good"]
    (path, msg), = batch.failures
    assert path == str(d / "bad.wav") and str(d / "bad.wav") in msg and "NaN or infinite" in msg


def test_defect_05_players_of_audio_peaking_above_full_scale(tmp_path):
    from wavdiff_utils.views.encoded import tile_players
    src = write(tmp_path / "loud.wav", music_like(0.5) * 1.44, 44100, subtype="FLOAT")
    res = encode_song(src, tmp_path / "out", params=P)
    players = tile_players(res.output, max_tiles=2)
    assert len(players) == 2


def _encode_with_captions(tmp_path, src):
    from wavdiff_utils.dataset.export import export_dataset
    out = tmp_path / "out"
    encode_batch(src.parent, out, params=P, progress=False)
    (out / "s" / "s_0000.txt").write_text("a caption of the old audio")
    (out / "s" / "captions_metadata.json").write_text("{}")
    export_dataset(out)
    return out


@pytest.mark.parametrize("change", ["same-size", "other-size"])
def test_defect_06_changed_source_is_reencoded_and_its_captions_dropped(tmp_path, change):
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    src = write(src_dir / "s.wav", music_like(0.6, seed=1), 44100)
    out = _encode_with_captions(tmp_path, src)
    assert any(json.loads(ln)["file_name"].startswith("s/")
               for ln in (out / "metadata.jsonl").read_text().splitlines())
    new = music_like(0.6 if change == "same-size" else 0.9, seed=2)
    write(src, new, 44100)
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    batch = encode_batch(src_dir, out, params=P, progress=False)
    assert [r.status for r in batch.results] == ["encoded"]
    assert not (out / "s" / "s_0000.txt").exists() and not (out / "s" / "captions_metadata.json").exists()
    assert not any(json.loads(ln)["file_name"].startswith("s/")
                   for ln in (out / "metadata.jsonl").read_text().splitlines() if ln.strip())
    fresh = tmp_path / "fresh"
    encode_batch(src_dir, fresh, params=P, progress=False)
    assert snapshot(out / "s") == snapshot(fresh / "s")


def test_touched_source_with_the_same_samples_is_skipped(tmp_path):
    src = write(tmp_path / "s.wav", music_like(0.5), 44100)
    encode_song(src, tmp_path / "out", params=P)
    tile = tmp_path / "out" / "s" / "s_0000.png"
    before = tile.stat().st_mtime_ns
    os.utime(src, (time.time() + 5, time.time() + 5))
    assert encode_song(src, tmp_path / "out", params=P).status == "skipped"
    assert tile.stat().st_mtime_ns == before
    assert read_manifest(tmp_path / "out" / "s")["source_mtime_ns"] == src.stat().st_mtime_ns


def test_old_manifest_is_upgraded_without_reencoding(tmp_path):
    src = write(tmp_path / "s.wav", music_like(0.5), 44100)
    encode_song(src, tmp_path / "out", params=P)
    folder = tmp_path / "out" / "s"
    man = read_manifest(folder)
    old = {k: v for k, v in man.items()
           if k not in ("source_size", "source_mtime_ns", "source_hash", "warnings")}
    (folder / "manifest.json").write_text(json.dumps(old))
    tiles = {f.name: f.stat().st_mtime_ns for f in folder.glob("*.png")}
    assert encode_song(src, tmp_path / "out", params=P).status == "skipped"
    up = read_manifest(folder)
    assert up["source_size"] == src.stat().st_size and up["n_tiles"] == man["n_tiles"]
    assert {f.name: f.stat().st_mtime_ns for f in folder.glob("*.png")} == tiles


def test_interrupted_song_whose_source_changed_is_not_resumed_from_old_tiles(tmp_path):
    src = write(tmp_path / "s.wav", music_like(1.0, seed=1), 44100)

    def stop(n, seen=[0]):
        seen[0] += n
        if seen[0] == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        encode_song(src, tmp_path / "out", params=P, progress=stop)
    assert len(list((tmp_path / "out" / ".s.partial").glob("*.png"))) == 2
    write(src, music_like(1.0, seed=2), 44100)
    os.utime(src, (time.time() + 5, time.time() + 5))
    encode_song(src, tmp_path / "out", params=P)
    encode_song(src, tmp_path / "fresh", params=P)
    assert snapshot(tmp_path / "out") == snapshot(tmp_path / "fresh")


@pytest.mark.parametrize("meta,field", [("just a string", "JSON object"),
                                        ({"format": "wavdiff-tile", "codec": "x"}, "'codec'"),
                                        ({"format": "wavdiff-tile", "codec": P.to_dict(),
                                          "start": "zero", "end": 1, "stop": 1, "pad": 0,
                                          "song": "s", "tile_index": 0, "is_last": True},
                                         "'start'")],
                         ids=["string", "codec-string", "start-string"])
def test_defect_07_bad_tile_metadata_names_the_tile_and_the_field(tmp_path, meta, field):
    from wavdiff_utils import decode_song
    from wavdiff_utils.io.tiles import write_tile
    tile = write_tile(tmp_path / "t_0000.png", np.zeros((128, 128, 3), np.uint16), meta)
    with pytest.raises(BadTileError) as info:
        decode_song(tile, tmp_path / "o.wav")
    assert str(tile) in str(info.value) and field in str(info.value)


@pytest.mark.parametrize("field,value", [("tiles", "s_0000.png"), ("codec", "exact"),
                                         ("n_tiles", "3")])
def test_manifest_of_the_wrong_shape_names_the_file_and_field(tmp_path, field, value):
    src = write(tmp_path / "s.wav", music_like(0.3), 44100)
    encode_song(src, tmp_path / "out", params=P)
    path = tmp_path / "out" / "s" / "manifest.json"
    man = json.loads(path.read_text())
    man[field] = value
    path.write_text(json.dumps(man))
    with pytest.raises(BadTileError) as info:
        encode_song(src, tmp_path / "out", params=P)
    assert str(path) in str(info.value) and repr(field) in str(info.value)


def test_defect_08_decode_warnings_reach_the_batch_summary_and_json(tmp_path):
    """Out-of-range peaks and mixed songs are warnings, a JPEG named .png a failure naming it;
    all three are in ``DecodeBatch.summary()`` and ``to_dict()`` (the batch JSON)."""
    import cv2
    from wavdiff_utils import decode_batch
    (tmp_path / "in").mkdir()
    write(tmp_path / "in" / "loud.wav", music_like(0.5) * 1.44, 44100, subtype="FLOAT")
    write(tmp_path / "in" / "calm.wav", music_like(0.5, seed=4), 44100)
    tiles = tmp_path / "tiles"
    encode_batch(tmp_path / "in", tiles, params=P, progress=False)
    (tiles / "mix").mkdir()
    shutil.copy(tiles / "calm" / "calm_0000.png", tiles / "mix" / "mix_0000.png")
    shutil.copy(tiles / "loud" / "loud_0001.png", tiles / "mix" / "mix_0001.png")
    (tiles / "clip").mkdir()
    ok, jpg = cv2.imencode(".jpg", np.full((128, 128, 3), 90, np.uint8))
    (tiles / "clip" / "clip_0000.png").write_bytes(jpg.tobytes())
    batch = decode_batch(tiles, tmp_path / "dec", params=P, progress=False)
    record = json.loads(json.dumps(batch.to_dict()))
    warned = {s["song"]: s["warnings"] for s in record["songs"]}
    assert any("peaks at" in w for w in warned["loud"])
    assert any("different songs" in w for w in warned["mix"])
    jpeg = str(tiles / "clip" / "clip_0000.png")
    assert any(jpeg in f["message"] and "JPEG" in f["message"] for f in record["failures"])
    text = batch.summary()
    assert "loud: decoded audio peaks at" in text and "mix: tiles of 2 different songs" in text
    assert_one_line_naming(text, "clip/clip_0000.png")       # relative to the input folder


def test_defect_09_a_250_character_name_gets_a_short_stable_id(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    long_a, long_b = "a" * 240 + "_one.wav", "a" * 240 + "_two.wav"
    for n in (long_a, long_b):
        write(d / n, music_like(0.3), 44100)
    batch = encode_batch(d, tmp_path / "out", params=P, progress=False)
    assert not batch.failures
    ids = sorted(r.song for r in batch.results)
    assert len(set(ids)) == 2 and all(len(s.encode()) <= MAX_SONG_BYTES for s in ids)
    assert ids == sorted([song_id(d / long_a), song_id(d / long_b)])       # stable
    assert all(read_manifest(tmp_path / "out" / s) for s in ids)


def test_defect_10_song_wav_and_song_mp3_are_kept_apart(tmp_path):
    d = tmp_path / "in"
    (d / "live").mkdir(parents=True)
    write(d / "song.wav", music_like(0.3, seed=1), 44100)
    write(d / "song.mp3", music_like(0.3, seed=2), 44100, format="MP3")
    write(d / "live" / "song.flac", music_like(0.3, seed=3), 44100)
    assert set(song_ids(sorted(d.rglob("*.*")) ).values()) == {"song_wav", "song_mp3", "live__song"}
    batch = encode_batch(d, tmp_path / "out", params=P, progress=False)
    assert not batch.failures and len(batch.results) == 3
    for r in batch.results:
        assert read_manifest(r.output)["source_name"] == Path(r.source).name


def test_defect_11_permission_denied_is_not_called_damaged(tmp_path, monkeypatch):
    """Root reads any file, so ``open`` is patched to refuse this one."""
    src = write(tmp_path / "locked.wav", music_like(0.3), 44100)
    real_open = builtins.open

    def guarded(file, *a, **k):
        if str(file) == str(src):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *a, **k)
    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(UnreadableAudioError) as info:
        encode_song(src, tmp_path / "out", params=P)
    msg = str(info.value)
    assert str(src) in msg and "permission denied" in msg and "damaged" not in msg


def test_defect_12_song_warnings_in_cli_summary_and_batch_json(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    write(d / "hi.wav", music_like(0.4, 96000), 96000)
    write(d / "loud.wav", music_like(0.4) * 1.3, 44100, subtype="FLOAT")
    for run in range(2):                       # encoded, then skipped: warnings both times
        assert main(["-i", str(d), "-o", str(tmp_path / "out"), *SMALL]) == 0
        text = capsys.readouterr().out
        assert "warning:  hi (hi.wav): resampled from 96000 Hz to 44100 Hz" in text
        assert "warning:  loud (loud.wav): input reaches full scale" in text
        songs = json.loads((tmp_path / "out" / "wavdiff_batch.json").read_text())["songs"]
        assert all(s["warnings"] for s in songs)


def test_defect_13_workers_are_capped_at_the_cores_with_a_note(tmp_path, monkeypatch, capsys):
    import wavdiff_utils.jobs.pipeline as pl
    d = tmp_path / "in"
    d.mkdir()
    for k in range(4):
        write(d / f"s{k}.wav", music_like(0.3, seed=k), 44100)
    sizes = []
    real = pl.make_pool
    monkeypatch.setattr(pl, "make_pool", lambda n, *a: sizes.append(n) or real(n, *a))
    monkeypatch.setattr(pl, "usable_cores", lambda: 2)
    monkeypatch.setattr("wavdiff_utils.jobs.encode.usable_cores", lambda: 2)
    assert main(["-i", str(d), "-o", str(tmp_path / "out"), "--workers", "999", *SMALL]) == 0
    out = capsys.readouterr().out
    assert sizes == [2] and "--workers 999 capped at 2" in out
    assert capped_workers(1) == (1, "") and capped_workers(999)[0] == usable_cores()


def test_defect_14_no_library_chatter_on_stderr(tmp_path):
    """Hostile files that make librosa, audioread, libsndfile and libpng talk; warnings forced on."""
    d = tmp_path / "in"
    d.mkdir()
    for name, make, *_ in BAD[:4]:
        make(d / name)
    write(d / "hi.wav", music_like(0.3, 8000), 8000)
    write(d / "loud.wav", music_like(0.3) * 1.3, 44100, subtype="FLOAT")
    env = {**ENV, "PYTHONWARNINGS": "always"}
    r = subprocess.run([sys.executable, "-X", "dev", "-m", "wavdiff_utils", "-i", str(d), "-o",
                        str(tmp_path / "out"), "--workers", "2", *SMALL], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert r.stderr.strip() == "", r.stderr
    for name, *_ in BAD[:4]:
        assert_one_line_naming(r.stdout, str(d / name))


# =========================================================================== the targets

def test_no_run_exits_0_with_incomplete_output(tmp_path, monkeypatch):
    """A tile removed behind the encoder's back is a failure of that song, not a success."""
    import wavdiff_utils.jobs.encode as enc
    src = write(tmp_path / "s.wav", music_like(0.5), 44100)
    real = enc.write_manifest

    def and_lose_a_tile(folder, data):
        path = real(folder, data)
        (Path(folder) / data["tiles"][1]["file"]).unlink()
        return path
    monkeypatch.setattr(enc, "write_manifest", and_lose_a_tile)
    batch = encode_batch(src, tmp_path / "out", params=P, progress=False)
    assert not batch.ok and "incomplete output" in batch.failures[0][1]
    monkeypatch.undo()
    assert encode_batch(src, tmp_path / "out", params=P, progress=False).ok


def test_every_error_kind_derives_from_its_builtin(tmp_path):
    assert issubclass(AudioNotFiniteError, NonFiniteAudioError)
    assert issubclass(AudioUnreadableError, UnreadableAudioError)
    e = UnwritableOutputError(tmp_path / "x.png", OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC and str(tmp_path / "x.png") in str(e)


def test_a_bug_is_one_line_with_the_traceback_in_a_file(tmp_path, monkeypatch, capsys):
    import wavdiff_utils.jobs.cli as pl

    def broken(*a, **k):
        raise TypeError("an unforeseen bug")
    monkeypatch.setattr(pl, "run_pipeline", broken)
    write(tmp_path / "s.wav", music_like(0.3), 44100)
    assert main(["-i", str(tmp_path / "s.wav"), "-o", str(tmp_path / "out"), *SMALL]) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unexpected TypeError: an unforeseen bug" in err
    log = Path(err.split("traceback in ")[1].split(";")[0])
    assert "Traceback" in log.read_text()
    log.unlink()


def test_leftovers_of_a_killed_writer_are_swept_by_the_next_run(tmp_path, library):
    """A kill inside an atomic write leaves ``.manifest.json.<random>.json``; the re-run removes
    it, so the folder ends byte-identical to an uninterrupted run."""
    songs, ref = library
    out = tmp_path / "out"
    run_pipeline(songs, out, params=P, captioner="none", workers=1, report=False,
                 progress=False, log=None)
    (out / "song0" / ".manifest.json.k1ll3d.json").write_text("{")
    (out / ".metadata.jsonl.k1ll3d.jsonl").write_text("{")
    (out / ".song1.partial").mkdir()                 # killed between publishing and clean-up
    (out / ".song1.partial" / "song1_0000.png").write_bytes(b"old")
    run_pipeline(songs, out, params=P, captioner="none", workers=1, report=False,
                 progress=False, log=None)
    assert snapshot(out) == ref


def test_a_stale_lock_replaced_meanwhile_is_put_back(tmp_path):
    from wavdiff_utils.io.locking import _remove_stale
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": 2, "host": "b"}))       # someone else's, newer
    _remove_stale(lock, {"pid": 1, "host": "a"})                # what we judged stale
    assert json.loads(lock.read_text())["pid"] == 2
    _remove_stale(lock, {"pid": 2, "host": "b"})
    assert not lock.exists() and not list(tmp_path.iterdir())


def test_01_encode_notebook_survives_a_nan_file_and_shows_warnings(tmp_path):
    """What 01_encode runs on a folder with a NaN file, a 96 kHz file and a loud one (the notebook
    itself runs once, under nbval): the batch goes on, and its summary cell (``summary_markdown``)
    names the failure without the machine's folders and shows the per-song warnings."""
    from wavdiff_utils import CodecParams
    d = tmp_path / "in"
    d.mkdir()
    _nan(np.nan)(d / "nan.wav")
    write(d / "hi.wav", music_like(0.4, 96000), 96000)
    write(d / "loud.wav", music_like(0.4) * 1.3, 44100, subtype="FLOAT")
    p = CodecParams(size=128)
    result = encode_batch(d, tmp_path / "tiles", params=p, progress=False)
    assert sorted(r.song for r in result.results) == ["hi", "loud"]
    summary = result.summary_markdown(p)
    assert "FAILED: nan.wav" in summary and "NaN or infinite" in summary
    assert "warning `hi` (hi.wav): resampled from 96000 Hz" in summary
    assert "warning `loud` (loud.wav): input reaches full scale" in summary
    assert str(tmp_path) not in summary
