"""Notebooks under hostile parameters and faults (issue 20): ``01_encode`` and ``03_decode`` run
through papermill (``-k python3``) on a tiny clip in ``tmp_path`` stop with the one-line
:class:`~wavdiff_utils.errors.WavdiffError` message, never a traceback, for a missing input, an
output that cannot be made, a bad or absurd parameter value, and a file that fails in a batch
(a symlink loop: its results table shows the failure first).

Each run costs one kernel start (1-3 s), so the cases are few and each checks several things:
the error's name and message as papermill reports them, the executed notebook's error output
(one line), and that nothing was left where the run stopped.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pm = pytest.importorskip("papermill")

from tests.audio_fixtures import music_like, write  # noqa: E402
from wavdiff_utils.codec.params import CodecParams  # noqa: E402
from wavdiff_utils.jobs.encode import encode_batch  # noqa: E402
from wavdiff_utils.paths import REPO_ROOT  # noqa: E402

NOTEBOOKS = REPO_ROOT / "notebooks"
LONG = "n" * 300                          # a folder name the system refuses (name too long)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A tiny clip and its 64 px tiles (what 03_decode reads)."""
    root = tmp_path_factory.mktemp("nbfaults")
    clip = write(root / "clip.wav", music_like(0.4, seed=5), 44100)
    encode_batch(clip, root / "tiles", params=CodecParams(size=64), progress=False)
    return root


def run(notebook: str, folder: Path, **parameters):
    """Execute ``notebook`` in ``folder`` (the launch folder); return papermill's error and the
    executed notebook's error outputs."""
    executed = folder / f"{notebook}.out.ipynb"
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with pytest.raises(pm.PapermillExecutionError) as info:
            pm.execute_notebook(str(NOTEBOOKS / f"{notebook}.ipynb"), str(executed),
                                parameters=parameters, kernel_name="python3", progress_bar=False)
    finally:
        os.chdir(cwd)
    nb = json.loads(executed.read_text(encoding="utf-8"))
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    return info.value, errors, nb


def assert_one_line(exc, errors, ename, *words):
    assert exc.ename == ename, (exc.ename, exc.evalue)
    assert all(w in exc.evalue for w in words), exc.evalue
    assert "\n" not in exc.evalue
    err, = errors
    assert err["traceback"] == [f"{ename}: {exc.evalue}"]          # one line, not a traceback
    assert not any("Traceback" in t or "-----" in t or 'File "' in t for t in err["traceback"])


ENCODE = [
    ("missing-input", dict(input="nope.wav", output="tiles_out"), "MissingInputError",
     ["nope.wav", "does not exist"]),
    ("unwritable-output", dict(input="clip.wav", output=LONG, size=64), "UnwritableOutputError",
     [LONG, "cannot be written (File name too long)"]),
    ("size-7", dict(input="clip.wav", output="tiles_out", size=7), "BadParameterError",
     ["size must be at least 16 pixels, got 7"]),
    ("size-100000", dict(input="clip.wav", output="tiles_out", size=100000), "BadParameterError",
     ["size 100000: needs about 800.0 GB", "available; at most"]),
]


@pytest.mark.parametrize("params,ename,words", [c[1:] for c in ENCODE], ids=[c[0] for c in ENCODE])
def test_01_encode_stops_with_one_line(work, tmp_path, params, ename, words):
    shutil.copy(work / "clip.wav", tmp_path / "clip.wav")
    exc, errors, _ = run("01_encode", tmp_path, **params)
    assert_one_line(exc, errors, ename, *words)
    assert not (tmp_path / "tiles_out").exists()           # nothing made before it stopped


DECODE = [
    ("missing-input", dict(input="nope", output="decoded"), "MissingInputError",
     ["nope", "does not exist"]),
    ("unwritable-output", dict(input="tiles", output=LONG), "UnwritableOutputError",
     [LONG, "cannot be written (File name too long)"]),
    ("size-7", dict(input="tiles", output="decoded", size=7), "BadParameterError",
     ["size must be at least 16 pixels, got 7"]),
]


@pytest.mark.parametrize("params,ename,words", [c[1:] for c in DECODE], ids=[c[0] for c in DECODE])
def test_03_decode_stops_with_one_line(work, tmp_path, params, ename, words):
    shutil.copytree(work / "tiles", tmp_path / "tiles")
    exc, errors, _ = run("03_decode", tmp_path, **params)
    assert_one_line(exc, errors, ename, *words)
    assert not (tmp_path / "decoded").exists()


def test_01_encode_read_only_output_is_one_line(work, tmp_path):
    """The real fault: a read-only tmpfs as the output's parent (skipped where mount fails)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the name-too-long case covers the same path")
    try:
        shutil.copy(work / "clip.wav", tmp_path / "clip.wav")
        exc, errors, _ = run("01_encode", tmp_path, input="clip.wav", output=str(ro / "tiles"),
                             size=64)
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
    assert_one_line(exc, errors, "UnwritableOutputError", str(ro / "tiles"),
                    "cannot be written (Read-only file system)", "disk is read-only")


def test_defect_05_01_encode_shows_a_symlink_loop_in_its_table_then_one_line(work, tmp_path):
    """The results table raised RuntimeError (a symlink loop in the input): now the table shows
    the failure row and the last cell stops with the batch's failures on one line."""
    songs = tmp_path / "songs"
    songs.mkdir()
    shutil.copy(work / "clip.wav", songs / "clip.wav")
    os.symlink("loop.wav", songs / "loop.wav")
    exc, errors, nb = run("01_encode", tmp_path, input="songs", output="tiles_out", size=64,
                          max_players=1)
    assert_one_line(exc, errors, "BatchFailedError", "1 failed, 1 done: ",
                    str(songs / "loop.wav"), "symbolic links")
    cell, = [c for c in nb["cells"] if "result = encode_batch(" in "".join(c["source"])]
    table = [o for o in cell["outputs"] if o["output_type"] == "execute_result"]
    html = "".join(table[0]["data"]["text/html"])
    assert "FAILED" in html and "loop.wav" in html and "symbolic links" in html
    assert (tmp_path / "tiles_out" / "clip" / "manifest.json").is_file()    # the good song


def test_03_decode_corrupt_metadata_names_the_parameter_that_decodes_it(work, tmp_path):
    """A tile with corrupt metadata stops 03_decode with one line that names ``bad_metadata``,
    a parameter the notebook has: passed as "defaults", the song decodes, with a warning."""
    from tests.jobs.test_decode_faults import splice_chunk

    shutil.copytree(work / "tiles", tmp_path / "tiles")
    tile = sorted((tmp_path / "tiles" / "clip").glob("clip_*.png"))[1]
    splice_chunk(tile, b'{"format": "wavdiff-tile", codec: }')
    exc, errors, _ = run("03_decode", tmp_path, input="tiles", output="decoded")
    assert_one_line(exc, errors, "BatchFailedError", tile.name, "not valid JSON",
                    "bad_metadata='defaults'")
    assert not (tmp_path / "decoded" / "clip.wav").exists()

    executed = tmp_path / "03_decode.defaults.ipynb"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        pm.execute_notebook(str(NOTEBOOKS / "03_decode.ipynb"), str(executed), kernel_name="python3",
                            progress_bar=False, parameters=dict(input="tiles", output="decoded",
                                                                bad_metadata="defaults"))
    finally:
        os.chdir(cwd)
    assert (tmp_path / "decoded" / "clip.wav").is_file()
    text = "".join("".join(o.get("text", "")) for c in json.loads(executed.read_text())["cells"]
                   for o in c.get("outputs", []))
    assert f"{tile.name}: wavdiff metadata is corrupt" in text
