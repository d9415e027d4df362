"""Hostile options and write faults on the pipeline's newer surfaces (issue 20, items 1, 5, 7).

- absurd parameters (``--size 100000``, ``n_fft``, ``--workers`` x a song's memory) are refused
  before anything is allocated, in one line naming the option, the estimate and the limit; the
  machine's memory is patched (``codec.resources.available_memory``) where a test needs a
  small one, and the real CLI runs in a subprocess under a memory limit, timed and measured;
- a worker process that dies (``os._exit`` in a forked worker) is named with its song and size;
- read-only and full outputs: a patched writer (``PermissionError``/``ENOSPC``, runs everywhere)
  and, where ``mount`` works, a read-only or a small tmpfs (the real fault), as in
  ``test_faults.py``;
- requested outputs (shards, report) that are not written make the CLI exit 2 and the summary
  say why; every song that fails on a full disk is one line naming it, no error class names;
- ``output_dir`` and ``BatchResult.table()`` on names the system refuses (too long, a file above,
  a symlink loop).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.codec import resources
from wavdiff_utils.codec.params import MAX_SIZE, CodecParams, tile_memory
from wavdiff_utils.errors import (BadParameterError, OutputIsAFileError, UnwritableOutputError,
                                  WavdiffError)
from wavdiff_utils.jobs.cli import main
from wavdiff_utils.jobs.encode import encode_batch
from wavdiff_utils.jobs.pipeline import default_workers, run_pipeline
from wavdiff_utils.jobs.settings import PipelineSettings, song_memory
from wavdiff_utils.paths import display_path, output_dir
from wavdiff_utils.results import BatchFailedError

P = CodecParams(size=128)
SMALL = ["--size", "128", "--captioner", "none", "-q"]
REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
GB = 1_000_000_000


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """Four 2-second songs (11 tiles of 128 px each, about 1.1 MB of tiles a song)."""
    d = tmp_path_factory.mktemp("faults") / "songs"
    d.mkdir()
    for k in range(4):
        write(d / f"song{k}.wav", music_like(2.0, seed=20 + k), 44100)
    return d


@pytest.fixture
def memory(monkeypatch):
    """``memory(bytes, cores)``: the machine seen by the guards has that much available."""
    def set_to(avail, cores=8):
        monkeypatch.setattr(resources, "available_memory", lambda: int(avail))
        monkeypatch.setattr("wavdiff_utils.jobs.settings.usable_cores", lambda: cores)
        monkeypatch.setattr("wavdiff_utils.jobs.pipeline.usable_cores", lambda: cores)
    return set_to


def one_line(text: str) -> str:
    assert "Traceback" not in text, text
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


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


# =========================================================================== item 1: resources

#: The CLI under a 4 GB address-space limit (a guard that let a value through fails the test
#: with a MemoryError instead of taking the machine down), printing its own peak at exit:
#: ``VmHWM`` counts this program only (``ru_maxrss`` would count the forking test process).
MEASURED_CLI = """
import atexit, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

def peak():
    with open("/proc/self/status") as fh:
        kb = [int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")]
    print(f"PEAK {kb[0] * 1024}", file=sys.stderr)
atexit.register(peak)
from wavdiff_utils.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_defect_01_size_100000_is_refused_in_one_line_fast_and_small(tmp_path, songs):
    """The CLI in a subprocess: exit 2 in under 5 s with under 500 MB, naming --size and the
    estimate (it grew a worker to 13 GB before)."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", MEASURED_CLI, "-i", str(songs), "-o",
                        str(tmp_path / "out"), "--size", "100000", "--captioner", "none", "-q"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t0
    assert r.returncode == 2, r.stdout + r.stderr
    *_, line, peak = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and line.startswith("error: --size 100000: needs about ")
    assert "available; at most " in line
    assert seconds < 5, seconds
    assert int(peak.split()[1]) < 500e6, peak
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kw,words", [
    (dict(size=100000), "size 100000: needs about 800.0 GB, 4.0 GB available; at most 4999"),
    (dict(size=10**9), "size 1000000000: needs about"),
    (dict(size=16000), "size 16000: needs about 20.5 GB"),
    (dict(layout="seed", size=256, n_fft=10**6), "n_fft 1000000: needs about 20000.1 GB"),
    (dict(layout="seed", size=256, n_fft=2 ** 16), "n_fft 65536: needs about"),
], ids=["size-1e5", "size-1e9", "size-16000", "seed-nfft-1e6", "seed-nfft-65536"])
def test_absurd_codec_values_are_refused_before_allocating(memory, kw, words):
    memory(4 * GB)
    t0 = time.monotonic()
    with pytest.raises(BadParameterError) as info:
        CodecParams(**kw)
    assert time.monotonic() - t0 < 0.5
    msg = str(info.value)
    assert words in msg and "\n" not in msg and isinstance(info.value, WavdiffError)


def test_the_largest_size_that_fits_is_accepted_and_one_more_is_not(memory):
    memory(4 * GB)
    most = int(str(pytest.raises(BadParameterError, CodecParams, size=9000).value)
               .rsplit("at most ", 1)[1])
    assert tile_memory(most, 2 * most) <= 2 * GB < tile_memory(most + 1, 2 * most + 2)
    assert CodecParams(size=most).tile_memory <= 2 * GB
    with pytest.raises(BadParameterError, match=f"size {most + 1}: needs about"):
        CodecParams(size=most + 1)


def test_a_huge_machine_still_has_a_hard_maximum(memory):
    memory(100_000 * GB)
    with pytest.raises(BadParameterError) as info:
        CodecParams(size=MAX_SIZE + 1)
    assert str(info.value) == (f"size {MAX_SIZE + 1}: at most {MAX_SIZE} (the largest tile "
                               f"wavdiff makes)")
    assert CodecParams(size=MAX_SIZE).size == MAX_SIZE


def test_ordinary_sizes_are_not_checked_against_the_machine(memory):
    memory(1)                        # even with no memory left: 1024 px tiles need 84 MB
    assert CodecParams(size=1024).tile_memory < 100e6
    assert CodecParams(layout="seed", size=512).n_fft == 2048


def test_workers_times_a_songs_memory_is_checked(memory):
    memory(2 * GB, cores=8)
    p = CodecParams(size=2048)
    with pytest.raises(BadParameterError) as info:
        PipelineSettings(params=p, workers=8)
    per = song_memory(p)
    most = int(GB // per)
    assert str(info.value) == (f"workers 8: needs about {8 * per / 1e9:.1f} GB, 2.0 GB "
                               f"available; at most {most}")
    assert PipelineSettings(params=p, workers=most).workers == most
    assert PipelineSettings(params=p, workers=0).workers == 0         # auto: picks what fits
    assert default_workers(p) == most and default_workers() == 8
    assert PipelineSettings(params=p, workers=8, engine="ray",       # a cluster: its own memory
                            ray_address="auto").workers == 8


def test_workers_beyond_the_cores_count_as_the_cores(memory):
    memory(2 * GB, cores=2)
    assert PipelineSettings(params=CodecParams(size=2048), workers=999).workers == 999


def test_cli_workers_over_memory_is_one_line_exit_2(memory, tmp_path, songs, capsys):
    memory(2 * GB, cores=8)
    rc = main(["-i", str(songs), "-o", str(tmp_path / "out"), "--workers", "8", "--size", "2048",
               "--captioner", "none", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().splitlines()[-1].startswith("error: --workers 8: needs about ")
    assert not (tmp_path / "out").exists()


def test_a_worker_killed_mid_song_is_named_with_its_size(tmp_path, songs, monkeypatch):
    """It said only ``worker failed: BrokenProcessPool``."""
    import wavdiff_utils.jobs.pipeline as pl
    real = pl.encode_one

    def dies_on_song1(path, output, **kw):
        if Path(path).name == "song1.wav":
            os._exit(9)                      # as the kernel's out-of-memory killer ends it
        return real(path, output, **kw)
    monkeypatch.setattr(pl, "encode_one", dies_on_song1)
    monkeypatch.setattr("wavdiff_utils.jobs.encode.usable_cores", lambda: 2)   # a pool, never here
    res = run_pipeline(songs, tmp_path / "out", params=P, captioner="none", workers=2,
                       report=False, progress=False, log=None)
    fails = dict(res.encode.failures)
    msg = fails[str(songs / "song1.wav")]
    assert msg.startswith(f"{songs / 'song1.wav'}: the worker process encoding it ended "
                          f"unexpectedly (killed, or out of memory: one 128 x 128 tile")
    assert "BrokenProcessPool" not in res.summary() and "\n" not in msg


# =========================================================================== item 7: outputs

def _fail_shards(monkeypatch, err):
    import wavdiff_utils.jobs.pipeline as pl

    def refuse(dataset, folder, **kw):
        raise UnwritableOutputError(Path(folder) / "train-000000.tar", OSError(err, os.strerror(err)))
    monkeypatch.setattr(pl, "write_shards", refuse)


def _fail_report(monkeypatch, err):
    import wavdiff_utils.jobs.pipeline as pl

    def refuse(notebook, **kw):
        raise UnwritableOutputError(Path(kw["output"]) / "batch_report.ipynb",
                                    OSError(err, os.strerror(err)))
    monkeypatch.setattr(pl, "run_notebook", refuse)


@pytest.mark.parametrize("err,words", [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full")],
                         ids=["EROFS", "ENOSPC"])
def test_defect_07_shards_not_written_exit_2_saying_why(tmp_path, songs, monkeypatch, capsys,
                                                        err, words):
    """It exited 0 with the shards asked for missing."""
    _fail_shards(monkeypatch, err)
    out = tmp_path / "out"
    assert main(["-i", str(songs), "-o", str(out), "--shards", "--no-report", *SMALL]) == 2
    text = capsys.readouterr().out
    line, = [ln for ln in text.splitlines() if ln.startswith("  shards:")]
    assert line.startswith(f"  shards:   not written: {out}/shards/train-000000.tar: cannot be "
                           f"written ({os.strerror(err)}): ")
    assert words in line and "NOT WRITTEN: shards (asked for" in text
    assert "4 encoded" in text and "FAILED" not in text
    record = json.loads((out / "wavdiff_batch.json").read_text())
    assert record["missing"] == ["shards"] and words in record["shards_error"]
    monkeypatch.undo()                      # fixed: the same command finishes, exit 0
    assert main(["-i", str(songs), "-o", str(out), "--shards", "--no-report", *SMALL]) == 0


@pytest.mark.parametrize("err,words", [(errno.EACCES, "no permission"),
                                       (errno.ENOSPC, "disk is full")], ids=["EACCES", "ENOSPC"])
def test_defect_07_report_not_written_exit_2_saying_why(tmp_path, songs, monkeypatch, capsys,
                                                        err, words):
    _fail_report(monkeypatch, err)
    out = tmp_path / "out"
    assert main(["-i", str(songs), "-o", str(out), *SMALL]) == 2
    text = capsys.readouterr().out
    line, = [ln for ln in text.splitlines() if ln.startswith("  report:")]
    assert f"{out}/report/batch_report.ipynb: cannot be written" in line and words in line
    assert "Error" not in line and "NOT WRITTEN: report" in text


def test_no_song_made_stays_exit_1_not_a_missing_output(tmp_path, songs, monkeypatch, capsys):
    """Every song failing is the songs' failure (exit 1): the dataset is not 'missing'."""
    import wavdiff_utils.jobs.encode as enc

    def refuse(path, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(enc, "write_tile", refuse)
    assert main(["-i", str(songs), "-o", str(tmp_path / "out"), "--shards", *SMALL]) == 1
    text = capsys.readouterr().out
    assert "NOT WRITTEN" not in text and text.count("FAILED") == 4


def test_defect_07_full_disk_one_line_per_song_without_class_names(tmp_path, songs, monkeypatch,
                                                                   capsys):
    """Two workers on a full disk (patched writer): one FAILED line per song naming its file and
    the disk; the error class name was printed once per song."""
    import wavdiff_utils.jobs.encode as enc

    def refuse(path, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(enc, "write_tile", refuse)
    assert main(["-i", str(songs), "-o", str(tmp_path / "out"), "--workers", "2", *SMALL]) == 1
    text = capsys.readouterr().out
    fails = [ln for ln in text.splitlines() if "FAILED" in ln]
    assert sorted(Path(ln.split(": ")[1]).name for ln in fails) == \
        [f"song{k}.wav" for k in range(4)]
    assert all("disk is full" in ln and "UnwritableOutputError" not in ln for ln in fails)
    assert "Error" not in text


def test_full_disk_for_real_songs_that_fit_are_kept_shards_refused_exit_2(tmp_path, songs,
                                                                         mounted):
    """A 2.6 MB tmpfs: two songs fit, two fail (one line each), the shards cannot be written."""
    out = mounted(tmp_path / "small", "size=2600k")
    r = subprocess.run([sys.executable, "-m", "wavdiff_utils", "-i", str(songs), "-o",
                        str(out / "ds"), "--workers", "1", "--shards", "--no-report", *SMALL],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr and "Error" not in r.stdout
    fails = [ln for ln in r.stdout.splitlines() if "FAILED" in ln]
    assert fails and all(str(songs) in ln and "disk is full" in ln for ln in fails)
    assert len(fails) == len({ln.split(": ")[1] for ln in fails}) < 4     # some songs finished
    missing, = [ln for ln in r.stdout.splitlines() if "NOT WRITTEN: " in ln]
    assert "  shards:   not written: " in r.stdout and "shards" in missing


def test_read_only_report_folder_exit_2_naming_it(tmp_path, songs, mounted):
    ro = mounted(tmp_path / "ro", "ro,size=64k")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "wavdiff_utils", "-i", str(songs), "-o", str(out),
                        "--report-dir", str(ro / "report"), *SMALL], cwd=tmp_path, env=ENV,
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r.stdout + r.stderr
    line, = [ln for ln in r.stdout.splitlines() if ln.startswith("  report:")]
    assert str(ro / "report") in line and "read-only" in line and "Error" not in line


# =========================================================================== reports

def _fake_papermill(monkeypatch, *, fail_after: bytes | None = None, cell_error=False):
    """papermill.execute_notebook writing a notebook; ``fail_after``: its first bytes, then a
    full disk; ``cell_error``: a whole notebook whose cell failed, then papermill's error."""
    import nbformat
    import papermill as pm

    def fake(nb, out, **kw):
        book = nbformat.v4.new_notebook()
        err = nbformat.v4.new_output("error", ename="BadParameterError",
                                     evalue="size must be at least 16 pixels, got 7",
                                     traceback=["BadParameterError: size must be ..."])
        book.cells = [nbformat.v4.new_code_cell("x = 1", outputs=[err] if cell_error else [])]
        text = nbformat.writes(book)
        if fail_after is not None:
            Path(out).write_text(text[: len(fail_after)])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        Path(out).write_text(text)
        if cell_error:
            raise pm.PapermillExecutionError(0, 3, "x = 1", "BadParameterError",
                                             "size must be at least 16 pixels, got 7", [])
    monkeypatch.setattr(pm, "execute_notebook", fake)


def test_report_on_a_full_disk_names_the_final_notebook_and_leaves_nothing(tmp_path,
                                                                           monkeypatch):
    """papermill cut short by a full disk: it was a NotJSONError from the half-written copy."""
    from wavdiff_utils.views.report import run_notebook
    _fake_papermill(monkeypatch, fail_after=b"x" * 40)
    out = tmp_path / "reports"
    with pytest.raises(UnwritableOutputError) as info:
        run_notebook(REPO / "notebooks" / "01_encode.ipynb", output=out)
    assert str(info.value) == (f"{out / '01_encode.ipynb'}: cannot be written (No space left on "
                               f"device): the disk is full; free space and run again")
    assert list(out.iterdir()) == []                   # no cut notebook, no temporary, no HTML


def test_a_failed_cell_still_writes_and_renders_the_copy_and_says_one_line(tmp_path,
                                                                           monkeypatch):
    import papermill as pm
    from wavdiff_utils.views.report import failure_line, run_notebook
    _fake_papermill(monkeypatch, cell_error=True)
    with pytest.raises(pm.PapermillExecutionError) as info:
        run_notebook(REPO / "notebooks" / "01_encode.ipynb", output=tmp_path)
    assert failure_line(info.value) == "In [3]: size must be at least 16 pixels, got 7"
    assert "This run failed" in (tmp_path / "01_encode.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_encode.html", "01_encode.ipynb"]


@pytest.mark.parametrize("args,words,rc", [
    (["notebooks/nope.ipynb"], "notebook", 2),
    (["notebooks/01_encode.ipynb", "-f", "nope.yaml"], "parameter file", 2),
    (["notebooks/01_encode.ipynb", "-o", "/" + "r" * 300], "cannot be written", 2),
], ids=["missing-notebook", "missing-yaml", "unwritable-folder"])
def test_report_command_errors_are_one_line(tmp_path, monkeypatch, capsys, args, words, rc):
    from wavdiff_utils.views.report import main as report_main
    monkeypatch.chdir(tmp_path)
    assert report_main(args) == rc
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: ") and words in line


# =========================================================================== item 5: folders

@pytest.mark.parametrize("make,kind,words", [
    (lambda t: t / ("n" * 300), UnwritableOutputError, "File name too long"),
    (lambda t: (t / "f.txt").write_text("x") and t / "f.txt" / "sub" / "deeper",
     OutputIsAFileError, "is a file, not a folder"),
    (lambda t: os.symlink("loop", t / "loop") or t / "loop" / "sub", UnwritableOutputError,
     "symbolic links"),
], ids=["name-too-long", "a-file-above", "symlink-loop"])
def test_defect_05_output_dir_that_cannot_be_made_is_one_error(tmp_path, make, kind, words):
    """It raised the OSError of mkdir (or of the path lookup) as it was."""
    path = make(tmp_path)
    with pytest.raises(kind) as info:
        output_dir(path)
    msg = str(info.value)
    assert words in msg and "\n" not in msg and isinstance(info.value, WavdiffError)


def test_output_dir_on_a_read_only_disk(tmp_path, mounted):
    ro = mounted(tmp_path / "ro", "ro,size=64k")
    with pytest.raises(UnwritableOutputError) as info:
        output_dir(ro / "tiles")
    assert str(info.value).startswith(f"{ro / 'tiles'}: cannot be written (Read-only file system)")


def test_defect_05_table_shows_a_symlink_loop_as_a_failure_row(tmp_path):
    """``BatchResult.table()`` raised RuntimeError (Path.resolve on the loop)."""
    d = tmp_path / "in"
    d.mkdir()
    write(d / "good.wav", music_like(0.4), 44100)
    os.symlink("loop.wav", d / "loop.wav")
    batch = encode_batch(d, tmp_path / "out", params=P, progress=False)
    table = batch.table()
    row = table[table["status"] == "FAILED"].iloc[0]
    assert row["song"] == "loop.wav" and "symbolic links" in row["output"]
    assert "FAILED" in batch._repr_html_() and "loop.wav" in batch.summary_markdown()
    assert display_path(d / "loop.wav", d) == "loop.wav"
    with pytest.raises(BatchFailedError) as info:
        batch.raise_if_failed()
    assert isinstance(info.value, RuntimeError) and str(d / "loop.wav") in str(info.value)
