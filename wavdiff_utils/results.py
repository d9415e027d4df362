"""What a batch did: one :class:`SongResult` per song, a :class:`BatchResult` with the failures,
and the summary lines every batch (encode, decode, captions, the pipeline) prints alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import WavdiffError, one_line
from .paths import display_message, display_path

__all__ = ["SongResult", "BatchResult", "BatchFailedError", "failure_lines", "warning_lines",
           "SUMMARY_NAME", "error_names", "plain_failure"]

#: Where a pipeline run records what it did, in its output folder.
SUMMARY_NAME = "wavdiff_batch.json"


class BatchFailedError(WavdiffError, RuntimeError):
    """Some files of a batch failed (:meth:`BatchResult.raise_if_failed`); one line listing each
    failure with its file and reason (in a notebook: that line, no traceback).  ``except
    RuntimeError`` still catches it."""


def error_names() -> set[str]:
    """Class names of every :class:`WavdiffError` kind (their messages say all; a name is noise)."""
    names, todo = set(), [WavdiffError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo += cls.__subclasses__()
    return names


def plain_failure(fail: tuple) -> tuple:
    """``(path, message)`` without a wavdiff error's class name after the file's name
    (``a.wav: UnwritableOutputError: x.png: cannot be written ...`` -> ``a.wav: x.png: ...``)."""
    path, msg = fail
    head = f"{path}: "
    if str(msg).startswith(head):
        kind, sep, rest = str(msg)[len(head):].partition(": ")
        if sep and kind in error_names():
            return path, head + rest
    return fail


def failure_lines(failures) -> list[str]:
    """``FAILED ...`` lines for ``(path, message)`` pairs; the path is left out when the message names it."""
    return [f"  FAILED {msg}" if str(path) in msg else f"  FAILED {path}: {msg}" for path, msg in failures]


@dataclass
class SongResult:
    """What happened to one song."""

    song: str
    source: str
    output: str
    status: str                      # "encoded", "skipped", "decoded"
    n_tiles: int = 0
    n_samples: int = 0
    sample_rate: int = 0
    seconds: float = 0.0             # wall time
    clipped_high: int = 0
    below_floor: int = 0
    warnings: list = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate if self.sample_rate else 0.0


@dataclass
class BatchResult:
    """Results of a batch: finished songs, and failures with their reasons."""

    results: list = field(default_factory=list)
    failures: list = field(default_factory=list)   # (path, message)
    notes: list = field(default_factory=list)      # one-line notes (e.g. workers capped)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """Human-readable summary, failures last."""
        made = [r for r in self.results if r.status != "skipped"]
        skipped = [r for r in self.results if r.status == "skipped"]
        lines = [f"{len(made)} song(s) processed, {len(skipped)} already done (skipped), "
                 f"{len(self.failures)} failed"]
        lines += [f"  {n}" for n in self.notes]
        lines += warning_lines(self.results)
        return "\n".join(lines + failure_lines(self.failures))

    def to_dict(self) -> dict:
        """JSON-ready record: per song its status, tiles and warnings; failures; notes."""
        return {"songs": [{"song": r.song, "source": r.source, "status": r.status,
                           "tiles": r.n_tiles, "warnings": list(r.warnings)} for r in self.results],
                "failures": [{"path": str(p), "message": m} for p, m in self.failures],
                "notes": list(self.notes)}

    def raise_if_failed(self):
        """Raise :class:`BatchFailedError` (a ``RuntimeError``) listing every failure on one line
        (each naming its file and reason), if any."""
        if self.failures:
            items = [one_line(m) if str(p) in str(m) else f"{p}: {one_line(m)}"
                     for p, m in self.failures]
            raise BatchFailedError(f"{len(self.failures)} failed, {len(self.results)} done: "
                                   + "; ".join(items))

    def table(self):
        """Results as a pandas DataFrame (one row per song)."""
        import pandas as pd
        rows = [{"song": r.song, "status": r.status, "tiles": r.n_tiles,
                 "seconds of audio": round(r.duration, 2), "wall s": round(r.seconds, 2),
                 "clipped high": r.clipped_high, "below floor": r.below_floor,
                 "warnings": "; ".join(r.warnings), "output": display_path(r.output, self.root)}
                for r in self.results]
        rows += [{"song": Path(p).name, "status": "FAILED", "output": display_message(m, self.root)}
                 for p, m in self.failures]
        return pd.DataFrame(rows)

    def __repr__(self) -> str:                # short, and without the machine's folders
        return f"<{type(self).__name__}: {self.summary().splitlines()[0]}>"

    def _repr_html_(self) -> str:
        """Returned last in a notebook cell: the summary's first line and :meth:`table`."""
        import html

        return (f"<p>{html.escape(self.summary().splitlines()[0])}</p>"
                + self.table().to_html(index=False, na_rep=""))

    #: Folder that tables show paths relative to (the output root), when set.
    root = None

    def summary_markdown(self, params=None) -> str:
        """Short Markdown summary for a notebook's last cell: counts, codec, speed, warnings, failures."""
        made = [r for r in self.results if r.status == "encoded"]
        lines = [f"- **{len(self.results)}** song(s) in `{display_path(self.root or '.')}` "
                 f"({len(made)} encoded now, {len(self.results) - len(made)} already done), "
                 f"**{sum(r.n_tiles for r in self.results)}** tiles"]
        if params is not None:
            lines += [f"- codec: {params.describe()}",
                      f"- magnitude values clipped above {params.db_max:g} dB: "
                      f"**{sum(r.clipped_high for r in self.results)}**"]
        if made:
            audio_s = sum(r.duration for r in made)
            wall = sum(r.seconds for r in made)
            lines.append(f"- speed: {audio_s / max(wall, 1e-9):.1f} s of audio per wall second")
        lines += [f"- note: {n}" for n in self.notes]
        lines += [f"- warning `{r.song}` ({Path(r.source).name}): {w}" for r in self.results
                  for w in r.warnings]
        lines += [f"- FAILED: {display_message(msg, self.root)}" for _, msg in self.failures]
        return "\n".join(lines)


def warning_lines(results) -> list[str]:
    """``warning: <song>: ...`` lines for every per-song warning of ``results``."""
    return [f"  warning:  {r.song} ({Path(r.source).name}): {w}" for r in results for w in r.warnings]


