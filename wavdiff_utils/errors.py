"""The errors a user can meet: one base class, a few kinds, each naming the file or the value.

Every kind also derives from the built-in error it refines (``ValueError``,
``FileNotFoundError``, ``FileExistsError``), so ``except ValueError`` keeps
working.  The classes raised elsewhere derive from these without moving:
:class:`wavdiff_utils.audio_io.AudioError` is a :class:`BadAudioError`,
:class:`wavdiff_utils.tile_io.TileImageError` a :class:`BadTileError`,
:class:`wavdiff_utils.encoding.OutputExistsError` an :class:`OutputConflictError`.

>>> from wavdiff_utils.errors import WavdiffError, one_line
>>> try:
...     raise BadParameterError("size must be at least 16 pixels, got 8")
... except WavdiffError as exc:
...     print(one_line(exc))
size must be at least 16 pixels, got 8
"""
from __future__ import annotations

__all__ = ["WavdiffError", "BadAudioError", "BadTileError", "WeightsMissingError",
           "BadParameterError", "OutputConflictError", "one_line", "first_line"]


class WavdiffError(Exception):
    """Base of every error wavdiff raises on purpose; its message says what to do."""


class BadAudioError(WavdiffError, ValueError):
    """Audio that cannot be used (unreadable, empty, silent, too short); names the file."""


class BadTileError(WavdiffError, ValueError):
    """An image that cannot be used as a tile (size, bit depth, channels); names the file."""


class WeightsMissingError(WavdiffError, FileNotFoundError):
    """Model weights that are not there; names the model, the download command and the parameter."""


class BadParameterError(WavdiffError, ValueError):
    """An option value that cannot be used; names the option and the value."""


class OutputConflictError(WavdiffError, FileExistsError):
    """An output that exists and was made differently; says how to replace it or write beside it."""


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its lines joined), or the class name when it is empty."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " ".join(lines) if lines else type(exc).__name__


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its class name when the message is empty."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
