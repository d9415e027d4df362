"""Captioners by name: :func:`make_captioner`, and the metadata captioner standing in when a
model's weights are missing (:func:`captioner_or_fallback`)."""
from __future__ import annotations

from .interface import Captioner
from ..errors import BadParameterError, WeightsMissingError, one_line
from .metadata import MetadataCaptioner
from .muq import DEFAULT_MODEL as MUQ_MODEL, MuQCaptioner
from .qwen import DEFAULT_MODEL as QWEN_MODEL, QwenCaptioner

__all__ = ["CAPTIONERS", "make_captioner", "captioner_or_fallback", "fallback_notice",
           "CAPTIONER_CLASSES"]

#: Captioners :func:`make_captioner` knows, by name (also the ``caption_source`` of their rows).
CAPTIONERS = ("muq", "qwen", "metadata")
#: Their classes, in the order their records are read.
CAPTIONER_CLASSES = (MuQCaptioner, QwenCaptioner, MetadataCaptioner)

def make_captioner(name: str, *, model=None, device: str = "auto", **options) -> Captioner:
    """A captioner by name (one of :data:`CAPTIONERS`).

    ``model`` (hub id or folder) defaults to the captioner's own, which
    ``$WAVDIFF_MUQ_MODEL`` / ``$WAVDIFF_QWEN_MODEL`` replace; ``"metadata"``
    takes neither ``model`` nor ``device``.  ``options`` go to the class.
    Raises :class:`WeightsMissingError` (one line) when the weights are not there.
    """
    if name == "metadata":
        return MetadataCaptioner(**options)
    if name == "muq":
        return MuQCaptioner(model or MUQ_MODEL, device=device, **options)
    if name == "qwen":
        return QwenCaptioner(model or QWEN_MODEL, device=device, **options)
    raise BadParameterError(f"captioner must be one of {', '.join(CAPTIONERS)}, got {name!r}")


def captioner_or_fallback(name: str, *, model=None, device: str = "auto") -> tuple[Captioner, str]:
    """The captioner asked for and ``""``, or the metadata captioner and a one-line notice
    saying why it stands in (missing weights) and how to get the weights."""
    try:
        return make_captioner(name, model=model, device=device), ""
    except (WeightsMissingError, ImportError, RuntimeError) as exc:
        return make_captioner("metadata"), fallback_notice(name, exc)


def fallback_notice(name: str, exc: BaseException) -> str:
    """One line: which captioner could not run, that metadata captions stand in, and why."""
    if isinstance(exc, ImportError) and getattr(exc, "name", None):   # a codec-only install
        why = (f"the {name} extra is not installed (no module {exc.name!r}): "
               f"pip install -e '.[{name}]'")
    else:
        why = one_line(exc)
    return f"captions: {name} unavailable, metadata captions instead: {why}"
