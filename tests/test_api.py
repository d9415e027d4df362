"""The package's top-level API: lazy, complete, and light on the codec path."""
import json
from pathlib import Path
import subprocess
import sys

import pytest

import wavdiff_utils
from wavdiff_utils.paths import REPO_ROOT

HEAVY = ("torch", "transformers", "matplotlib", "muq", "ipywidgets")
#: Not even these on the exact encode and decode: librosa's import pulls in scipy.signal and
#: numba (about 2 s and 200 MB per process), scipy.fft alone 0.4 s; the phase reconstruction loads
#: numba and scipy.fft itself.
CODEC_FREE = ("librosa", "numba", "scipy")


def test_every_export_resolves_to_its_module():
    for name in wavdiff_utils.__all__:
        obj = getattr(wavdiff_utils, name)
        if callable(obj):                        # functions and classes are the package's own
            assert obj.__module__ == f"wavdiff_utils.{wavdiff_utils._WHERE[name]}", name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        wavdiff_utils.nope


def test_encode_and_decode_import_nothing_heavy(tmp_path):
    """Importing the package, encoding a song and decoding it (exact and rebuilt phase) in a
    fresh interpreter loads none of torch, transformers, matplotlib; the exact encode and decode
    not even librosa or numba."""
    code = f"""
import json, sys
import numpy as np, soundfile as sf
y = (0.3 * np.sin(np.arange(44100) * 0.05)).astype('float32')
sf.write({str(tmp_path / 's.wav')!r}, y, 44100)
import wavdiff_utils
after_import = sorted(m for m in {HEAVY!r} if m in sys.modules)
from wavdiff_utils import CodecParams, decode_batch, decode_song, encode_song
p = CodecParams(size=128)
encode_song({str(tmp_path / 's.wav')!r}, {str(tmp_path / 't')!r}, params=p)
decode_song({str(tmp_path / 't' / 's')!r}, {str(tmp_path / 'a.wav')!r})
codec_path = sorted(m for m in {HEAVY + CODEC_FREE!r} if m in sys.modules)
decode_song({str(tmp_path / 't' / 's')!r}, {str(tmp_path / 'b.wav')!r}, phase="fgla", n_iter=2)
print(json.dumps([after_import, codec_path, sorted(m for m in {HEAVY!r} if m in sys.modules)]))
"""
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    after_import, codec_path, after_work = json.loads(out.stdout.strip().splitlines()[-1])
    assert after_import == [] and codec_path == [] and after_work == []


def test_wavdiff_errors_show_as_one_line_in_a_notebook(capsys):
    """In a kernel (IPython), a WavdiffError prints its message on one line, not a traceback;
    the cell still fails, so papermill and nbval stop on it."""
    from IPython.core.interactiveshell import InteractiveShell

    from wavdiff_utils.errors import install_notebook_handler

    shell = InteractiveShell.instance()
    try:
        assert install_notebook_handler()
        res = shell.run_cell("from wavdiff_utils import decode_batch\n"
                             "decode_batch('nowhere', 'out', phase='magic')")
        out = capsys.readouterr().out
        assert not res.success and type(res.error_in_exec).__name__ == "BadParameterError"
        assert "BadParameterError: phase must be one of" in out and "Traceback" not in out
        res = shell.run_cell("raise KeyError('other errors keep their traceback')")
        assert "Traceback" in capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()


def test_a_codec_only_install_is_told_which_extra_to_add(tmp_path, monkeypatch):
    """`pip install -e .` has no transformers and no papermill: the pipeline still makes tiles,
    metadata captions and the dataset, and says in one line which extra adds what is missing."""
    import builtins

    from wavdiff_utils import run_pipeline
    from wavdiff_utils.captioning.registry import fallback_notice

    note = fallback_notice("muq", ModuleNotFoundError("No module named 'transformers'",
                                                      name="transformers"))
    assert note == ("captions: muq unavailable, metadata captions instead: the muq extra is not "
                    "installed (no module 'transformers'): pip install -e '.[muq]'")
    real_import = builtins.__import__

    def no_papermill(name, *a, **k):
        if name == "papermill" or name.startswith("papermill."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="papermill")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_papermill)
    res = run_pipeline(REPO_ROOT / "sample_data", tmp_path / "out", captioner="metadata",
                       report=True, progress=False)
    assert res.report is None and "pip install -e '.[notebooks]'" in res.report_error
    assert (tmp_path / "out" / "metadata.jsonl").is_file()


@pytest.mark.parametrize("make", [
    lambda: wavdiff_utils.CodecParams(size=7),
    lambda: wavdiff_utils.CodecParams(layout="wide"),
    lambda: wavdiff_utils.CodecParams(size="big"),
    lambda: wavdiff_utils.PhaseSettings(n_iter=-1),
    lambda: wavdiff_utils.PipelineSettings(workers=-1),
    lambda: wavdiff_utils.TrainConfig(steps=0),
    lambda: wavdiff_utils.tile_spans(100, frames_per_tile=0, hop_length=512),
], ids=["size", "layout", "size-type", "n_iter", "workers", "steps", "tile_spans"])
def test_a_bad_value_is_a_wavdiff_error_and_still_a_value_error(make):
    """A notebook catching WavdiffError shows one line; code catching ValueError still works."""
    with pytest.raises(wavdiff_utils.BadParameterError) as info:
        make()
    assert isinstance(info.value, wavdiff_utils.WavdiffError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_a_test_session_never_writes_into_the_users_outputs(monkeypatch, tmp_path):
    """conftest.py points $WAVDIFF_OUTPUTS at a folder of the session: every outputs/... default
    (07_train's, the reports', the caches') resolves there, never into the repository."""
    import os

    from wavdiff_utils.paths import OUTPUTS_ENV, resolve

    session = os.environ.get(OUTPUTS_ENV)
    assert session and not Path(session).resolve().is_relative_to(REPO_ROOT)
    assert resolve("outputs/train") == Path(session) / "train"
    monkeypatch.setenv(OUTPUTS_ENV, str(tmp_path))
    assert resolve("outputs/reports/x.html") == tmp_path / "reports" / "x.html"
    assert resolve("elsewhere/y") != tmp_path / "elsewhere" / "y"
    monkeypatch.delenv(OUTPUTS_ENV)
    assert resolve("outputs/train").is_relative_to(Path.cwd().resolve()) or \
        resolve("outputs/train").is_relative_to(REPO_ROOT)


def test_outputs_run_from_another_folder_stay_there_while_inputs_fall_back_to_the_repo(
        monkeypatch, tmp_path):
    """A user's project folder: ``outputs/...`` (which exists in the repository too) resolves
    under it, never into the repository; ``sample_data/...`` still comes from the repository."""
    from wavdiff_utils.paths import OUTPUTS_ENV, output_dir, resolve

    monkeypatch.delenv(OUTPUTS_ENV, raising=False)
    (REPO_ROOT / "outputs").mkdir(exist_ok=True)           # as after any run in the repository
    monkeypatch.chdir(tmp_path)
    assert resolve("outputs") == tmp_path / "outputs"
    assert output_dir("outputs/compare") == tmp_path / "outputs" / "compare"
    assert resolve("sample_data/wavdiff_demo.mp3", must_exist=True) == \
        REPO_ROOT / "sample_data" / "wavdiff_demo.mp3"
