"""What captioning returns: a caption per tile, a result per song, a batch; each shows itself.

Returned last in a notebook cell, :class:`CaptionResult` and :class:`CaptionBatch`
render as a Markdown table (``_repr_markdown_``): song, tile, seconds, file, caption.
"""
from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..codec.params import CodecParams
from ..results import BatchResult, SongResult, failure_lines

__all__ = ["TileCaption", "CaptionResult", "CaptionBatch"]

_COLUMNS = ["song", "tile", "seconds", "file", "caption"]


@dataclass
class TileCaption:
    """The ``caption`` of tile ``index`` (real samples ``[start, end)``), written to ``path`` by
    the captioner ``caption_source``; ``bpm`` is the tempo it names, ``tags`` what it was built from
    (MuQ: labels per category; metadata: the file tags), ``top`` MuQ's best scores per category."""

    index: int
    start: int
    end: int
    caption: str
    path: str = ""
    bpm: float | None = None
    silent: bool = False
    tags: dict = field(default_factory=dict)
    top: dict = field(default_factory=dict)
    caption_source: str = ""

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
        return head + "\n\n" + _markdown_table(_COLUMNS, self._rows())


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

    def _table_rows(self) -> list[list]:
        return ([row for r in self.results for row in r._rows()]
                + [[Path(p).name, "", "", "FAILED", m] for p, m in self.failures])

    def table(self):
        """One row per tile (song, tile, seconds, file, caption); failures with file FAILED."""
        import pandas as pd
        return pd.DataFrame(self._table_rows(), columns=_COLUMNS)

    def _repr_markdown_(self) -> str:
        return self.summary().splitlines()[0] + "\n\n" + _markdown_table(_COLUMNS, self._table_rows())
