"""The errors a user can meet: one base class, a few kinds, each naming the file or the value.

Every kind also derives from the built-in error it refines (``ValueError``,
``FileNotFoundError``, ``FileExistsError``, ``OSError``), so ``except ValueError``
keeps working.  Each is raised where its cause is known: an input that cannot be
opened (:class:`UnreadableAudioError`: permission, a FIFO, a symlink loop) is not
called damaged (:class:`BadAudioError`); NaN or infinite samples are
:class:`NonFiniteAudioError`; an output that cannot be written (permission,
read-only disk, disk full) is :class:`UnwritableOutputError`; a folder another run
is writing to is :class:`OutputLockedError`.  The classes raised elsewhere derive from these without moving:
:class:`wavdiff_utils.io.audio.AudioError` is a :class:`BadAudioError`,
:class:`wavdiff_utils.io.tiles.TileImageError` a :class:`BadTileError`,
:class:`wavdiff_utils.jobs.encode.OutputExistsError` an :class:`OutputConflictError`.

>>> from wavdiff_utils.errors import WavdiffError, one_line
>>> try:
...     raise BadParameterError("size must be at least 16 pixels, got 8")
... except WavdiffError as exc:
...     print(one_line(exc))
size must be at least 16 pixels, got 8
"""
from __future__ import annotations

__all__ = ["WavdiffError", "BadAudioError", "UnreadableAudioError", "NonFiniteAudioError",
           "BadTileError", "BadShardError", "WeightsMissingError", "MissingInputError", "BadParameterError",
           "OutputConflictError", "OutputIsAFileError", "OutputLockedError", "UnwritableOutputError", "one_line",
           "first_line", "install_notebook_handler"]


class WavdiffError(Exception):
    """Base of every error wavdiff raises on purpose; its message says what to do."""


class BadAudioError(WavdiffError, ValueError):
    """Audio that cannot be used (unreadable, empty, silent, too short); names the file."""


class UnreadableAudioError(BadAudioError):
    """An input that exists but cannot be opened (no permission, not a regular file); names it."""


class NonFiniteAudioError(BadAudioError):
    """Audio holding NaN or infinite samples; names the file and the first bad sample."""


class BadTileError(WavdiffError, ValueError):
    """An image that cannot be used as a tile (size, bit depth, channels); names the file."""


class BadShardError(WavdiffError, ValueError):
    """A shard index (``shards.json``) or a shard's input that cannot be used; names the file."""


class WeightsMissingError(WavdiffError, FileNotFoundError):
    """Model weights that are not there; names the model, the download command and the parameter."""


class MissingInputError(WavdiffError, FileNotFoundError):
    """An input file or folder that does not exist; names it."""


class BadParameterError(WavdiffError, ValueError):
    """An option value that cannot be used; names the option and the value."""


class OutputConflictError(WavdiffError, FileExistsError):
    """An output that exists and was made differently; says how to replace it or write beside it."""


class OutputIsAFileError(OutputConflictError, NotADirectoryError):
    """An output folder's path names a file; says which."""


class OutputLockedError(OutputConflictError):
    """Another run holds the output folder's lock; names the folder and the holder (pid, host)."""


class UnwritableOutputError(WavdiffError, OSError):
    """An output that cannot be written (no permission, read-only disk, disk full); names the path.

    ``errno`` is the operating system's error number (e.g. ``errno.ENOSPC``).
    """

    def __init__(self, path, exc: OSError | None = None, what: str = "cannot be written"):
        why = (exc.strerror or str(exc)) if exc is not None else ""
        hint = {28: "the disk is full; free space and run again",
                30: "the disk is read-only; choose another output folder",
                13: "no permission; choose another output folder"}.get(getattr(exc, "errno", None),
                                                                        "run again once it is fixed")
        super().__init__(getattr(exc, "errno", None), f"{path}: {what}" + (f" ({why})" if why else "")
                         + f": {hint}")
        self.path = str(path)

    def __str__(self) -> str:
        return self.strerror


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its lines joined), or the class name when it is empty."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines) if lines else type(exc).__name__


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its class name when the message is empty."""
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


def _one_line_traceback(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: a wavdiff error shows as its message, on one line."""
    line = f"{etype.__name__}: {one_line(value)}"
    shell._showtraceback(etype, value, [line])  # the cell still fails (papermill and nbval see it)
    return [line]


def install_notebook_handler() -> bool:
    """In a Jupyter kernel, show every :class:`WavdiffError` as one line instead of a traceback.

    Called when the package is imported; returns whether a kernel was there.
    The cell still counts as failed, so papermill and nbval stop on it.
    """
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    shell.set_custom_exc((WavdiffError,), _one_line_traceback)
    return True
