"""Checkpoints of a training run: written whole or not at all, checked before a run resumes.

A checkpoint is ``checkpoints/checkpoint-<step>/``: what ``accelerate``'s ``save_state``
writes (the weights in ``model.safetensors``, ``optimizer.bin``, ``scheduler.bin``,
``random_states_0.pkl`` and the run's own states ``custom_checkpoint_<i>.pkl``) and
``wavdiff_checkpoint.json``, the size and SHA-256 of each of those files, written last.
It is written into ``.checkpoint-<step>.partial`` and renamed once complete, so a run
killed while saving leaves the earlier checkpoints as they were (the next run removes
the partial folder).

Before a run resumes, its checkpoint is checked (:func:`check_checkpoint`): every file
there, sizes and checksums as written, the weights' header readable and the states
loadable.  A damaged newest checkpoint is said so in one line, moved aside
(``damaged-checkpoint-<step>``, kept for a look) and the run resumes from the newest
intact one (:func:`pick_checkpoint`); with none intact, one line says so and how to
start afresh (``resume="restart"``).  A ``resume`` that names something other than a
checkpoint (a file, an empty folder, a dataset) is refused in one line
(:func:`named_checkpoint`).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import struct
from contextlib import contextmanager
from pathlib import Path

from ..errors import BadParameterError, MissingInputError, UnwritableOutputError, WavdiffError
from ..paths import atomic_path, writing

__all__ = ["CHECKPOINTS", "CHECKPOINT_MANIFEST", "BadCheckpointError", "checkpoint_folders",
           "latest_checkpoint", "save_checkpoint", "check_checkpoint", "pick_checkpoint",
           "named_checkpoint", "load_checkpoint", "remove_leftovers", "remove_checkpoints",
           "saving", "save_failure"]

#: Checkpoint folder of a run.
CHECKPOINTS = "checkpoints"
#: Sizes and checksums of a checkpoint's files, written last into it.
CHECKPOINT_MANIFEST = "wavdiff_checkpoint.json"
_FORMAT = "wavdiff-checkpoint"
_DAMAGED = "damaged-"
#: What ``save_state`` writes for a run like ours (custom states: the run's state and its
#: noise generator, then the weights' average when ``use_ema``).
_STATE_FILES = ("optimizer.bin", "scheduler.bin", "random_states_0.pkl")
_MODEL_FILES = ("model.safetensors", "pytorch_model.bin")
_STATE_SUFFIXES = (".bin", ".pkl", ".pt")


class BadCheckpointError(WavdiffError, ValueError):
    """A checkpoint that cannot be resumed from; names it, the file and the problem.

    Attributes
    ----------
    folder : Path
        The checkpoint.
    problem : str
        What is wrong, without the folder (``"model.safetensors is cut short ..."``).
    """

    def __init__(self, folder, problem: str, hint: str = ""):
        super().__init__(f"{folder}: {problem}" + (f"; {hint}" if hint else ""))
        self.folder, self.problem = Path(folder), problem


def _step(path: Path) -> int:
    return int(path.name.split("-")[1])


def checkpoint_folders(run) -> list[Path]:
    """The ``checkpoint-<step>`` folders under ``run/checkpoints``, oldest first."""
    root = Path(run) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")
             and p.name.split("-")[1].isdigit()]
    return sorted(found, key=_step)


def latest_checkpoint(folder) -> Path | None:
    """The newest ``checkpoint-<step>`` under ``folder/checkpoints`` (``None`` if there is none)."""
    found = checkpoint_folders(folder)
    return found[-1] if found else None


# =========================================================================== writing

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(folder: Path, step: int) -> None:
    files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKPOINT_MANIFEST}
    with atomic_path(folder / CHECKPOINT_MANIFEST) as tmp:
        tmp.write_text(json.dumps({"format": _FORMAT, "step": int(step), "files": files},
                                  indent=1), encoding="utf-8")


def save_failure(exc: BaseException, folder) -> OSError | None:
    """The operating-system error behind a failed save into ``folder`` (torch and safetensors
    report a full disk in their own words), or None when it was no write failure."""
    if isinstance(exc, OSError):
        return exc
    text = str(exc)
    for code, words in ((errno.ENOSPC, ("No space left", "os error 28")),
                        (errno.EROFS, ("Read-only file system", "os error 30")),
                        (errno.EACCES, ("Permission denied", "os error 13"))):
        if any(w in text for w in words):
            return OSError(code, os.strerror(code))
    try:
        full = shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        full = False
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if full else None


@contextmanager
def saving(final, *, partial=None):
    """Like :func:`wavdiff_utils.paths.writing` (an OSError becomes
    :class:`UnwritableOutputError` naming ``final``), also for the words in which torch and
    safetensors report a full disk; the folder ``partial`` is removed when the body fails."""
    final = Path(final)

    def clean():
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)

    try:
        yield
    except WavdiffError:
        clean()
        raise
    except Exception as exc:
        cause = save_failure(exc, final.parent if final.parent.exists() else Path(final.anchor))
        clean()
        if cause is None:
            raise
        raise UnwritableOutputError(final, cause) from None
    except BaseException:
        clean()
        raise


def _replace(tmp: Path, final: Path) -> None:
    """Rename the complete ``tmp`` onto ``final`` (an older ``final`` is kept aside until then)."""
    if not final.exists():
        tmp.rename(final)
        return
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(accelerator, run, step: int, *, kept: int) -> Path:
    """Save the accelerator's state as ``run/checkpoints/checkpoint-<step>`` (whole or not at all)
    and drop all but the newest ``kept`` checkpoints.

    Raises
    ------
    UnwritableOutputError
        The disk is full, read-only or not ours; names the checkpoint (nothing partial is left).
    """
    root = Path(run) / CHECKPOINTS
    final = root / f"checkpoint-{int(step):06d}"
    tmp = root / f".{final.name}.partial"
    with saving(final, partial=tmp):
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.save_state(str(tmp))
        _write_manifest(tmp, step)
        _replace(tmp, final)
        for old in checkpoint_folders(run)[:-int(kept)]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def remove_leftovers(run) -> None:
    """Remove what a run killed while saving left (``.checkpoint-*.partial``); put back a
    checkpoint it had set aside to be replaced (``.checkpoint-*.old``) when the new one is
    missing.  Call it only while holding the run folder's lock."""
    root = Path(run) / CHECKPOINTS
    if not root.is_dir():
        return
    with writing(root):
        for p in sorted(root.glob(".checkpoint-*.old")):
            final = root / p.name[1:-len(".old")]
            if final.exists():
                shutil.rmtree(p)
            else:
                p.rename(final)
        for p in root.glob(".checkpoint-*.partial"):
            shutil.rmtree(p)


def remove_checkpoints(run) -> None:
    """Delete every checkpoint of ``run`` (intact, damaged or partial): ``resume="restart"``."""
    root = Path(run) / CHECKPOINTS
    if root.exists():
        with writing(root):
            shutil.rmtree(root)


# =========================================================================== checking

def _read_manifest(folder: Path) -> dict | None:
    path = folder / CHECKPOINT_MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != _FORMAT or not all(
                isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
                for e in files.values()):
            raise TypeError
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        raise BadCheckpointError(folder, f"{CHECKPOINT_MANIFEST} is damaged (not the list of "
                                         f"the checkpoint's files)") from None
    return manifest


def _check_manifest(folder: Path, files: dict) -> list[str]:
    """Every file of the manifest there, with its size and checksum; their names."""
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            raise BadCheckpointError(folder, f"{name} is missing")
        size = path.stat().st_size
        if size != entry["size"]:
            raise BadCheckpointError(folder, f"{name} is {size} bytes, {entry['size']} were "
                                             f"written (cut short or damaged)")
        if _sha256(path) != entry["sha256"]:
            raise BadCheckpointError(folder, f"{name} changed after it was written (its "
                                             f"checksum differs: damaged)")
    return list(files)


def _expected_files(folder: Path, custom_states: int) -> list[str]:
    """The files a checkpoint written without a manifest must hold; raises for a missing one."""
    model = next((m for m in _MODEL_FILES if (folder / m).is_file()), None)
    if model is None:
        raise BadCheckpointError(folder, f"{_MODEL_FILES[0]} (the weights) is missing")
    names = [model, *_STATE_FILES] + [f"custom_checkpoint_{i}.pkl" for i in range(custom_states)]
    for name in names:
        if not (folder / name).is_file():
            raise BadCheckpointError(folder, f"{name} is missing")
    return names + sorted(p.name for p in folder.glob("custom_checkpoint_*.pkl")
                          if p.name not in names)


def _check_safetensors(folder: Path, path: Path) -> None:
    """The weights file's header readable and its length that of the tensors it lists."""
    size = path.stat().st_size
    cut = BadCheckpointError(folder, f"{path.name} is cut short ({size} bytes)")
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise cut
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            raise cut
        try:
            header = json.loads(fh.read(n))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise BadCheckpointError(folder, f"{path.name} is damaged (its header cannot be "
                                             f"read)") from None
    need = 8 + n + max(ends, default=0)
    if size < need:
        raise BadCheckpointError(folder, f"{path.name} is cut short ({size} of {need} bytes)")
    if size > need:
        raise BadCheckpointError(folder, f"{path.name} is damaged ({size} bytes, its header "
                                         f"says {need})")


def _check_loadable(folder: Path, path: Path) -> None:
    """A saved state that loads (as accelerate loads it) and holds a state's mapping."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:       # noqa: BLE001 - a damaged pickle fails in any of a dozen ways
        raise BadCheckpointError(folder, f"{path.name} cannot be loaded (damaged or cut "
                                         f"short)") from None
    if not isinstance(state, dict):
        raise BadCheckpointError(folder, f"{path.name} does not hold a saved state")
    if path.name.startswith("optimizer") and not _optimizer_fits(state):
        raise BadCheckpointError(folder, f"{path.name} is damaged (it holds states of parameters "
                                         f"the optimizer does not have)")


def _optimizer_fits(state: dict) -> bool:
    """Whether an optimizer's saved states belong to the parameters of its groups (a damaged
    byte can rename one: ``KeyError: 111`` later)."""
    try:
        ids = {i for group in state["param_groups"] for i in group["params"]}
        return isinstance(state["state"], dict) and set(state["state"]) <= ids
    except (KeyError, TypeError):
        return False


def check_checkpoint(folder, *, custom_states: int = 2) -> None:
    """Raise :class:`BadCheckpointError` unless ``folder`` is an intact checkpoint.

    Checks every file there (those of its manifest, or those ``save_state`` writes for
    ``custom_states`` registered objects when it has none), their sizes and checksums, the
    weights' header and that every state loads.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadCheckpointError(folder, "is not a folder")
    manifest = _read_manifest(folder)
    if manifest is not None:
        names = _check_manifest(folder, manifest["files"])
    elif not any(folder.iterdir()):
        raise BadCheckpointError(folder, "is empty (a save that never finished)")
    else:
        names = _expected_files(folder, custom_states)
    for name in names:
        path = folder / name
        if name.endswith(".safetensors"):
            _check_safetensors(folder, path)
        elif name.endswith(_STATE_SUFFIXES):
            _check_loadable(folder, path)


def _set_aside(ckpt: Path) -> Path:
    """Rename a damaged checkpoint to ``damaged-checkpoint-<step>[-n]`` beside it."""
    target = ckpt.with_name(_DAMAGED + ckpt.name)
    n = 1
    while target.exists():
        n += 1
        target = ckpt.with_name(f"{_DAMAGED}{ckpt.name}-{n}")
    with writing(ckpt):
        ckpt.rename(target)
    return target


def pick_checkpoint(run, *, custom_states: int = 2) -> tuple[Path | None, list[str]]:
    """The newest intact checkpoint of ``run`` (None without any) and one note per damaged newer
    one, which is moved aside; call it only while holding the run folder's lock.

    Raises
    ------
    BadCheckpointError
        Checkpoints are there but none is intact; the line names the newest, its problem,
        and how to start afresh.
    """
    found = checkpoint_folders(run)
    damaged = []
    for ckpt in reversed(found):
        try:
            check_checkpoint(ckpt, custom_states=custom_states)
        except BadCheckpointError as exc:
            damaged.append(exc)
            continue
        notes = []
        for exc in damaged:
            aside = _set_aside(exc.folder)
            notes.append(f"{exc.folder.name}: {exc.problem}; resumed from {ckpt.name}, the "
                         f"newest intact checkpoint (the damaged one is kept as "
                         f"{CHECKPOINTS}/{aside.name})")
        return ckpt, notes
    if not damaged:
        return None, []
    first = damaged[0]
    raise BadCheckpointError(
        first.folder, first.problem,
        f"no intact checkpoint to resume from ({len(damaged)} damaged in "
        f"{first.folder.parent}); start afresh with resume='restart' (deletes them)")


def _looks_like_checkpoint(folder: Path) -> bool:
    names = (CHECKPOINT_MANIFEST, *_MODEL_FILES, *_STATE_FILES, "custom_checkpoint_0.pkl")
    return any((folder / n).exists() for n in names)


def named_checkpoint(value: str, path: Path, *, custom_states: int = 2) -> Path:
    """The checkpoint a ``resume`` setting names, checked; one line when it is not one.

    Raises
    ------
    MissingInputError
        Nothing is there.
    BadParameterError
        ``path`` is a file, or a folder that is no checkpoint (empty, a dataset, a run folder).
    BadCheckpointError
        A damaged checkpoint.
    """
    path = Path(path)
    what = "resume=" + repr(str(value))
    if not path.exists():
        raise MissingInputError(f"{what}: no such checkpoint folder ({path})")
    if not path.is_dir():
        raise BadParameterError(f"{what}: {path} is a file, not a checkpoint folder; give a "
                                f"run's {CHECKPOINTS}/checkpoint-<step> folder, 'auto' or 'restart'")
    if not _looks_like_checkpoint(path):
        newest = latest_checkpoint(path)
        hint = (f"it is a run folder: give one of its checkpoints ({newest})" if newest else
                f"give a run's {CHECKPOINTS}/checkpoint-<step> folder, 'auto' or 'restart'")
        raise BadParameterError(f"{what}: {path} is not a checkpoint (it holds none of "
                                f"{_MODEL_FILES[0]}, {', '.join(_STATE_FILES)}); {hint}")
    try:
        check_checkpoint(path, custom_states=custom_states)
    except BadCheckpointError as exc:
        raise BadCheckpointError(path, exc.problem, "give another checkpoint, resume='auto' "
                                 "(the newest intact one) or resume='restart'") from None
    return path


def load_checkpoint(accelerator, ckpt: Path) -> None:
    """``accelerator.load_state(ckpt)`` of a checked checkpoint; one line if it still fails."""
    try:
        accelerator.load_state(str(ckpt))
    except Exception:       # noqa: BLE001 - checked, so what fails is that it does not fit
        raise BadCheckpointError(ckpt, "cannot be loaded into this run (its weights or states "
                                       "do not fit this model and these settings)",
                                 "resume='restart' starts the run afresh") from None
