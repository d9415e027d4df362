"""What a run of the one-step pipeline did: :class:`PipelineResult`, its summary and its record.

``<output>/wavdiff_batch.json`` (:data:`SUMMARY_NAME`) records the last run: songs, captions,
dataset, report, warnings and failures.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..results import SUMMARY_NAME, BatchResult, failure_lines, warning_lines
from ..dataset.card import hms
from ..errors import UnwritableOutputError
from ..io.manifest import read_manifest
from ..paths import atomic_path

__all__ = ["PipelineResult", "write_summary", "side_tile_count"]

#: Record of the last run, in the output folder.


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` did.

    Attributes
    ----------
    input, output : Path
    encode : BatchResult
        One :class:`~wavdiff_utils.jobs.encode.SongResult` per finished song
        (``"encoded"`` now or ``"skipped"``: done before) and the failures.
    captioner : str
    caption_source : str
        The captioner that wrote the captions (``"metadata"`` when it stood in).
    captions : list of dict
        Per song: ``song``, ``status`` (``"captioned"`` or ``"skipped"``), ``tiles``,
        ``caption_source``.
    caption_failures : list of (path, message)
    caption_notice : str
        One line saying why the metadata captioner stood in (missing weights); ``""`` otherwise.
    export : DatasetExport or None
    export_error : str
    report : Path or None
        The HTML report.
    report_error : str
    shards : ShardIndex or None
        The WebDataset shards written (``--shards``).
    shards_error : str
        Why the shards were not written.
    parquet : ParquetExport or None
        The Parquet export (``format="parquet"``).
    parquet_error : str
    seconds : dict
        Wall time per step.
    warnings : list of str
    asked : tuple of str
        The outputs the run was asked for besides the songs: ``"dataset"`` always, and
        ``"shards"``, ``"report"`` when asked (see :attr:`missing`).
    channels : {"mono", "stereo"}
        The codec's channels; a stereo run's summary counts the side tiles and says that each
        dataset row is a mid (mono) tile naming its side tile.
    """

    input: Path
    output: Path
    encode: BatchResult = field(default_factory=BatchResult)
    captioner: str = "none"
    caption_source: str = ""
    captions: list = field(default_factory=list)
    caption_failures: list = field(default_factory=list)
    caption_notice: str = ""
    export: object = None
    export_error: str = ""
    report: Path | None = None
    report_error: str = ""
    shards: object = None
    shards_error: str = ""
    parquet: object = None
    parquet_error: str = ""
    seconds: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    asked: tuple = ("dataset",)
    channels: str = "mono"

    @property
    def missing(self) -> list:
        """The outputs asked for that were not written for a reason of their own (a full disk, a
        read-only folder): ``"dataset"``, ``"shards"``, ``"report"``.  Nothing is missing when
        no song was made at all: the song failures say why."""
        if not self.encode.results:
            return []
        made = {"dataset": self.export, "shards": self.shards, "report": self.report,
                "parquet": self.parquet}
        return [name for name in self.asked if made.get(name) is None]

    @property
    def exit_status(self) -> int:
        """What ``python -m wavdiff_utils`` exits with: 0 all made; 1 some songs failed (the rest
        made); 2 an output asked for was not written (:attr:`missing`)."""
        return 2 if self.missing else 0 if self.ok else 1

    @property
    def failures(self) -> list:
        """Every per-song failure, ``(path, "step: message")``."""
        return ([(p, f"encode: {m}") for p, m in self.encode.failures]
                + [(p, f"caption: {m}") for p, m in self.caption_failures])

    @property
    def ok(self) -> bool:
        """True when no song failed (skipped captions and a failed report do not count)."""
        return not self.failures

    def summary(self) -> str:
        """What was made and what failed, and why; one line per fact, failures last."""
        enc = self.encode.results
        made = [r for r in enc if r.status == "encoded"]
        n_tiles = sum(r.n_tiles for r in enc)
        audio = sum(r.duration for r in enc)
        total = sum(self.seconds.values())
        lines = [f"wavdiff pipeline: {self.input} -> {self.output} ({total:.1f} s)",
                 f"  songs:    {len(made)} encoded, {len(enc) - len(made)} already done, "
                 f"{len(self.encode.failures)} failed; {n_tiles} tiles"
                 + (f" and {side_tile_count(enc)} side tiles (stereo)"
                    if self.channels == "stereo" else "") + f", {hms(audio)} of audio"]
        lines += [f"  note:     {n}" for n in self.encode.notes]
        if self.captioner == "none":
            lines.append("  captions: none asked for (--captioner none)")
        else:
            if self.caption_notice:
                lines.append(f"  {self.caption_notice}")
            done = [c for c in self.captions if c["status"] != "skipped"]
            lines.append(f"  captions: {self.caption_source or self.captioner}: "
                         f"{sum(c['tiles'] for c in done)} tiles in "
                         f"{len(done)} song(s) captioned, {len(self.captions) - len(done)} song(s) "
                         f"already done, {len(self.caption_failures)} failed")
        if self.export is not None:
            e = self.export
            lines.append(f"  dataset:  {e.metadata} ({e.n_tiles} rows, {e.n_captioned} with a "
                         f"caption), card {e.card.name}"
                         + ("; each row a mid tile naming its side tile (side_file_name)"
                            if any(c.get("channels") == "stereo" for c in e.codecs) else ""))
        elif self.export_error:
            lines.append(f"  dataset:  not written: {self.export_error}")
        if self.shards is not None:
            lines.append(f"  shards:   {self.shards.summary()}")
        elif self.shards_error:
            lines.append(f"  shards:   not written: {self.shards_error}")
        if self.parquet is not None:
            lines.append(f"  parquet:  {self.parquet.summary()}")
        elif self.parquet_error:
            lines.append(f"  parquet:  not written: {self.parquet_error}")
        if self.report is not None:
            lines.append(f"  report:   {self.report}")
        elif self.report_error:
            lines.append(f"  report:   not written: {self.report_error}")
        lines += warning_lines(enc)
        lines += [f"  warning:  {w}" for w in self.warnings]
        if self.missing:
            lines.append(f"  NOT WRITTEN: {', '.join(self.missing)} (asked for; the reason is on "
                         f"its line above); fix it and run again: finished songs are kept")
        return "\n".join(lines + failure_lines(self.failures))

    def to_dict(self) -> dict:
        """JSON-ready record of the run (written to ``<output>/wavdiff_batch.json``)."""
        return {
            "format": "wavdiff-batch", "version": 1,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "input": str(self.input), "output": str(self.output), "captioner": self.captioner,
            "songs": [{"song": r.song, "source": r.source, "status": r.status, "tiles": r.n_tiles,
                       "seconds_of_audio": round(r.duration, 3), "wall_seconds": round(r.seconds, 3),
                       "warnings": list(r.warnings)}
                      for r in self.encode.results],
            "notes": list(self.encode.notes),
            "caption_source": self.caption_source, "captions": self.captions,
            "caption_notice": self.caption_notice,
            "failures": [{"path": p, "message": m} for p, m in self.failures],
            "dataset": None if self.export is None else {
                "metadata": str(self.export.metadata), "card": str(self.export.card),
                "songs": self.export.n_songs, "tiles": self.export.n_tiles,
                "captioned": self.export.n_captioned, "seconds": round(self.export.seconds, 3)},
            "export_error": self.export_error, "warnings": self.warnings,
            "shards": None if self.shards is None else self.shards.record(),
            "shards_error": self.shards_error, "missing": self.missing,
            "parquet": None if self.parquet is None else self.parquet.record(),
            "parquet_error": self.parquet_error,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            **({"channels": "stereo", "side_tiles": side_tile_count(self.encode.results)}
               if self.channels == "stereo" else {}),
        }


def side_tile_count(results) -> int:
    """Side tiles (``<song>_<index:04d>.side.png``) of finished songs, from their manifests.

    Parameters
    ----------
    results : iterable of SongResult
        Finished songs (``BatchResult.results``); ``output`` is each song's folder.

    Returns
    -------
    int
        Tile entries with a ``side_file`` whose file is there; 0 for mono songs.
    """
    count = 0
    for r in results:
        folder = Path(r.output)
        try:
            manifest = read_manifest(folder) or {}
        except (ValueError, OSError):
            continue
        count += sum(1 for t in manifest.get("tiles", [])
                     if t.get("side_file") and (folder / t["side_file"]).is_file())
    return count


def write_summary(res: PipelineResult) -> None:
    """Write ``wavdiff_batch.json``; an unwritable output becomes one warning, not a traceback."""
    path = res.output / SUMMARY_NAME
    data = res.to_dict()
    data["report"] = str(res.report) if res.report else None
    data["report_error"] = res.report_error
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    except OSError as exc:
        msg = str(UnwritableOutputError(path, exc))
        if msg not in res.warnings:
            res.warnings.append(msg)


