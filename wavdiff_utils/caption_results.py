"""What captioning returns: a caption per tile, a result per song, a batch; each shows itself.

Returned last in a notebook cell, :class:`CaptionResult` and :class:`CaptionBatch`
render as a Markdown table (``_repr_markdown_``): song, tile, seconds, file, caption.
"""
from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .params import CodecParams
from .pipeline import BatchResult, SongResult, failure_lines

__all__ = ["TileCaption", "CaptionResult", "CaptionBatch"]


@dataclass
class TileCaption:
    """The caption of one tile.

    Attributes
    ----------
    index, start, end : int
        Tile index and its real samples ``[start, end)`` at the codec rate.
    caption : str
    path : str
        The caption file.
    bpm : float or None
        Tempo the caption names, if any.
    silent : bool
        The tile held (near) silence.
    tags : dict
        What the caption was built from (MuQ: labels per category; metadata: the file tags).
    top : dict
        MuQ: best scores per category, ``[(label, score), ...]``.
    source : str
        The captioner that wrote it (``caption_source``).
    """

    index: int
    start: int
    end: int
    caption: str
    path: str = ""
    bpm: float | None = None
    silent: bool = False
    tags: dict = field(default_factory=dict)
    top: dict = field(default_factory=dict)
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return html.escape(str(v)).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows])


@dataclass
class CaptionResult(SongResult):
    """What happened to one song: ``status`` is ``"captioned"`` or ``"skipped"`` (up to date).

    Returned last in a notebook cell, it shows as a table of its tiles and captions.
    """

    captioner: str = ""
    from_manifest: bool = False
    prefix: str = ""
    params: CodecParams | None = None
    tiles: list = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        """The caption file of every tile, in tile order."""
        return [t.path for t in self.tiles]

    @property
    def texts(self) -> list[str]:
        """The caption of every tile, in tile order."""
        return [t.caption for t in self.tiles]

    @property
    def spans(self) -> list[tuple[float, float]]:
        """Start and end of every tile's real audio, in seconds."""
        return [(t.start / self.sample_rate, t.end / self.sample_rate) for t in self.tiles]

    def _rows(self) -> list[list]:
        return [[self.song, t.index, f"{a:.2f}-{b:.2f}", Path(t.path).name, t.caption]
                for t, (a, b) in zip(self.tiles, self.spans)]

    def _repr_markdown_(self) -> str:
        head = (f"**{self.song}** ({self.captioner}): {self.n_tiles} tiles, {self.status}, spans "
                f"{'from 01_encode' if self.from_manifest else 'computed (no tiles yet)'}")
        return head + "\n\n" + _markdown_table(["song", "tile", "seconds", "file", "caption"],
                                               self._rows())


@dataclass
class CaptionBatch(BatchResult):
    """Captioned songs and failures (``summary()``, ``raise_if_failed()``, ``table()``).

    Returned last in a notebook cell, it shows as a table: one row per tile, failures last.
    """

    captioner: str = ""
    model: str = ""

    @property
    def songs(self) -> list:
        """The per-song results (:class:`CaptionResult`), the same as ``results``."""
        return self.results

    @property
    def n_files(self) -> int:
        return sum(len(r.tiles) for r in self.results)

    def summary(self) -> str:
        """Songs captioned, skipped and failed; warnings, then failures with their reasons."""
        done = [r for r in self.results if r.status != "skipped"]
        lines = [f"{self.captioner or 'captions'}: {len(done)} song(s) captioned "
                 f"({sum(r.n_tiles for r in done)} tiles), {len(self.results) - len(done)} already "
                 f"done (skipped), {len(self.failures)} failed"]
        lines += [f"  warning {r.song}: {w}" for r in self.results for w in r.warnings]
        return "\n".join(lines + failure_lines(self.failures))

    def table(self):
        """One row per tile (song, tile, seconds, status, caption); failures as rows with status FAILED."""
        import pandas as pd
        rows = [{"song": r.song, "tile": t.index, "start s": round(a, 2), "end s": round(b, 2),
                 "status": r.status, "file": Path(t.path).name, "caption": t.caption}
                for r in self.results for t, (a, b) in zip(r.tiles, r.spans)]
        rows += [{"song": Path(p).name, "status": "FAILED", "caption": m} for p, m in self.failures]
        return pd.DataFrame(rows)

    def _repr_markdown_(self) -> str:
        rows = [row for r in self.results for row in r._rows()]
        rows += [[Path(p).name, "", "", "FAILED", m] for p, m in self.failures]
        return (self.summary().splitlines()[0] + "\n\n"
                + _markdown_table(["song", "tile", "seconds", "file", "caption"], rows))
