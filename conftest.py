"""Test-session setup shared by the unit tests and the notebooks run under nbval.

Every ``outputs/...`` path the package resolves goes to a temporary folder of the test
session (``$WAVDIFF_OUTPUTS``), removed at the end: tests and notebooks never write into the
user's ``outputs/``.  Only the tiny models are cached in the tree.

Tiny, randomly initialised models are built once per checkout into
``outputs/test-models/<name>/`` (git-ignored) by the builders in
``tests/captioning/tiny_models.py``, and the environment variables the package reads are
pointed at them.  ``pytest_configure`` runs before any notebook kernel starts,
so kernels launched by nbval inherit the variables; the notebooks' own default
parameters stay the real model ids (the package only uses a variable when its
``model`` parameter is the default id).

To add a model, add one line to :data:`TINY_MODELS`.  A model is rebuilt when
the builder's module or the installed torch / transformers / muq change.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent
#: Where the tiny models are cached between sessions.
TEST_MODELS = ROOT / "outputs" / "test-models"
#: Environment variable -> (folder name under TEST_MODELS, builder as "module:function").
TINY_MODELS = {
    "WAVDIFF_MUQ_MODEL": ("muq-mulan-tiny", "tests.captioning.tiny_models:build_tiny_muq_mulan"),
    "WAVDIFF_QWEN_MODEL": ("qwen2-audio-tiny", "tests.captioning.tiny_qwen:build_tiny_qwen2_audio"),
}
STAMP = ".wavdiff-tiny-model.json"

_saved_env: dict = {}
_SESSION_OUTPUTS: dict = {}
#: The package's variable for the outputs folder (wavdiff_utils.paths.OUTPUTS_ENV).
OUTPUTS_ENV = "WAVDIFF_OUTPUTS"


def _stamp(builder: str) -> dict:
    versions = {}
    for dist in ("torch", "transformers", "muq", "tokenizers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    module = builder.partition(":")[0]
    source = (ROOT / f"{module.replace('.', '/')}.py").read_bytes()
    return {"builder": builder, "source": hashlib.sha256(source).hexdigest(), **versions}


def _ensure_model(name: str, builder: str) -> Path:
    """The model folder, built now unless an up-to-date build is cached."""
    folder = TEST_MODELS / name
    want = _stamp(builder)
    try:
        if json.loads((folder / STAMP).read_text()) == want:
            return folder
    except (OSError, ValueError):
        pass
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module, _, func = builder.rpartition(":")
    build = getattr(importlib.import_module(module), func)
    TEST_MODELS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=TEST_MODELS))
    try:
        build(tmp)
        (tmp / STAMP).write_text(json.dumps(want))
        # replace the stale folder; a parallel session may have finished first, keep one
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / STAMP).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def pytest_configure(config):
    # every outputs/... default of the package (and of the notebooks under nbval) goes to a
    # folder of this session, so a test run never leaves figures in the user's outputs/
    _saved_env[OUTPUTS_ENV] = os.environ.get(OUTPUTS_ENV)
    os.environ[OUTPUTS_ENV] = _SESSION_OUTPUTS.setdefault(
        "path", tempfile.mkdtemp(prefix="wavdiff-test-outputs-"))
    for env, (name, builder) in TINY_MODELS.items():
        path = _ensure_model(name, builder)
        _saved_env[env] = os.environ.get(env)
        os.environ[env] = str(path)


def pytest_unconfigure(config):
    if "path" in _SESSION_OUTPUTS:
        shutil.rmtree(_SESSION_OUTPUTS.pop("path"), ignore_errors=True)
    for env, old in _saved_env.items():
        if old is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = old
