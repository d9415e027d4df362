"""Training-ready export of a tile folder.

:func:`export_dataset` turns the pipeline's output folder (one sub-folder per
song, ``<song>/<song>_<index:04d>.png`` beside ``<song>_<index:04d>.txt``
captions and ``manifest.json``) into a dataset in place:

- ``metadata.jsonl``: one row per tile with ``file_name`` (relative path),
  ``text`` (the ``.txt`` caption with the tile's stem, ``""`` when there is
  none), ``song``, ``tile_index``, ``start_seconds``, ``end_seconds``,
  ``start_sample``, ``end_sample``, ``sample_rate`` and ``caption_source``
  (the captioner whose record holds that caption, ``"unknown"`` for one no
  record claims, ``""`` without a caption); stereo songs' rows also hold
  ``side_file_name``, the side tile of the (mid) tile ``file_name``.  Hugging Face
  ``datasets.load_dataset("imagefolder", data_dir=folder)`` reads it as
  image + text + those columns; kohya-style trainers read the ``.txt`` sidecars.
- ``README.md``: a dataset card with the codec parameters, counts and
  durations, so the set can be rebuilt and its tiles decoded later.

The 16-bit loaders that read it back are in :mod:`wavdiff_utils.dataset.loader`.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..captioning.batch import recorded_captions
from ..errors import BadParameterError, MissingInputError
from ..io.manifest import MANIFEST_NAME, manifest_params, read_manifest
from ..paths import atomic_path
from .card import hms as _hms, write_card
from .parquet import write_parquet

__all__ = ["METADATA_NAME", "CARD_NAME", "CHANNELS", "DatasetExport", "export_dataset",
           "holdout_splits", "rows_without_side", "song_split", "read_metadata"]

#: The rows file ``datasets``' imagefolder loader reads.
METADATA_NAME = "metadata.jsonl"
#: The dataset card.
CARD_NAME = "README.md"
#: What each tensor channel holds (see the module notes).
CHANNELS = ("magnitude: x=-1 is db_min (silence), +1 is db_max, linear in dB",
            "cos(phase)", "sin(phase)")

# =========================================================================== export


@dataclass
class DatasetExport:
    """What :func:`export_dataset` wrote.

    Attributes
    ----------
    folder : Path
        The dataset folder (the pipeline's output).
    metadata : Path
        ``metadata.jsonl``.
    card : Path
        ``README.md``.
    n_songs, n_tiles, n_captioned : int
        Songs, tiles, and tiles with a non-empty caption.
    seconds : float
        Seconds of audio covered by the tiles (real samples, padding excluded).
    codecs : list of dict
        Distinct codec parameters among the songs (one in a consistent set).
    songs : list of dict
        One summary row per song.
    warnings : list of str
    """

    folder: Path
    metadata: Path
    card: Path
    n_songs: int = 0
    n_tiles: int = 0
    n_captioned: int = 0
    seconds: float = 0.0
    codecs: list = field(default_factory=list)
    songs: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    parquet: object = None

    def summary(self) -> str:
        """One line: songs, tiles, captions, duration, where."""
        return (f"dataset {self.folder}: {self.n_songs} song(s), {self.n_tiles} tiles "
                f"({self.n_captioned} captioned), {_hms(self.seconds)} of audio")


def _song_folders(folder: Path) -> list[Path]:
    """Finished song folders (holding ``manifest.json``) under ``folder``, hidden ones excluded."""
    out = []
    for m in sorted(folder.rglob(MANIFEST_NAME)):
        rel = m.parent.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue                     # .<song>.partial of an interrupted encode
        out.append(m.parent)
    return out


def caption_of(png: Path) -> str:
    txt = png.with_suffix(".txt")
    try:
        return txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return ""

#: Default shares of the train / validation / test splits.
SPLITS = (("train", 0.9), ("validation", 0.05), ("test", 0.05))


def holdout_splits(holdout: float) -> tuple:
    """Split shares with ``holdout`` of the songs in validation and as many in test (the
    pipeline's ``holdout`` option; 0.05 gives :data:`SPLITS`)."""
    h = float(holdout)
    if not 0 <= h < 0.5:
        raise BadParameterError(f"holdout must be a share of the songs from 0 to under 0.5, "
                                f"got {holdout!r}")
    return (("train", 1 - 2 * h), ("validation", h), ("test", h))


def song_split(song: str, splits=SPLITS) -> str:
    """The split a song belongs to, from a hash of its name: stable across runs and machines,
    and the same for every tile of the song (no song's audio leaks across splits)."""
    import hashlib

    total = sum(share for _, share in splits)
    if total <= 0 or any(share < 0 for _, share in splits):
        raise BadParameterError(f"split shares must be >= 0 with a positive sum, got {splits!r}")
    x = int.from_bytes(hashlib.sha256(song.encode("utf-8")).digest()[:8], "big") / 2 ** 64 * total
    for name, share in splits:
        if x < share:
            return name
        x -= share
    return splits[-1][0]


def _readable(folder: Path) -> str:
    """A dataset name from the folder's own name: ``my_songs-v2`` -> ``My songs v2``."""
    words = re.sub(r"[_\-.]+", " ", folder.resolve().name).strip()
    return (words[:1].upper() + words[1:]) if words else "wavdiff spectrogram tiles"


def export_dataset(folder, *, name: str | None = None, card: bool = True,
                   max_padding: float = 1.0, splits=SPLITS, format: str = "png") -> DatasetExport:
    """Write ``metadata.jsonl`` and a dataset card for every finished song under ``folder``.

    Parameters
    ----------
    folder : path-like
        The pipeline's (or ``01_encode``'s) output folder: one sub-folder per song
        with ``manifest.json``, tiles and optional ``<song>_<index:04d>.txt`` captions.
    name : str, optional
        Dataset name in the card (default: made readable from the folder's own
        name, e.g. ``my_songs`` -> "My songs"; never a path).
    card : bool
        Write ``README.md`` (default).  An existing ``README.md`` that this
        function did not write is never replaced; a warning says so.
    max_padding : float
        Leave out tiles whose share of padding (silence after the song's end,
        in the last tile) is above this, 0-1.  Default 1.0 keeps every tile;
        every row says its ``padding`` share either way.
    splits : sequence of (name, share)
        Shares of the ``split`` column, assigned per song by a hash of its name
        (default 0.9 train, 0.05 validation, 0.05 test).
    format : {"png", "parquet"}
        ``"parquet"`` also writes the Parquet export into ``folder/parquet`` (16-bit tiles
        that ``datasets.load_dataset("parquet", ...)`` reads exactly; see
        :func:`wavdiff_utils.dataset.write_parquet`), as ``result.parquet``.

    Returns
    -------
    DatasetExport

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist.
    ValueError
        ``folder`` holds no finished song (no ``manifest.json`` below it).

    Notes
    -----
    Songs are listed in folder order; a re-run rewrites both files from what is
    on disk (atomically), so it is cheap and always matches the folder.  Songs
    made with different codec parameters are exported together, with a warning:
    a trainer needs one tile size, and the card lists each parameter set.
    """
    if format not in ("png", "parquet"):
        raise BadParameterError(f"format must be png or parquet, got {format!r}")
    opt = _check_export(folder, max_padding, splits)
    rows, song_rows, codecs, notes = [], [], [], []
    for sf in opt.songs:
        song = _export_song(sf, opt)
        if song.codec not in codecs:
            codecs.append(song.codec)
        song_rows.append({**song.summary, "codec": codecs.index(song.codec)})
        rows += song.rows
        notes += song.notes
    if len(codecs) > 1:
        notes.append(f"{opt.folder}: songs were made with {len(codecs)} different codec parameter "
                     f"sets; a trainer needs one tile size, see the card")
    meta_path = opt.folder / METADATA_NAME
    _write_metadata(meta_path, rows)
    result = DatasetExport(opt.folder, meta_path, opt.folder / CARD_NAME, len(song_rows),
                           len(rows), sum(bool(r["text"]) for r in rows),
                           sum(s["seconds"] for s in song_rows), codecs, song_rows, notes)
    if card:
        write_card(result, name or _readable(opt.folder))
    if format == "parquet":
        result.parquet = write_parquet(opt.folder, name=name or _readable(opt.folder),
                                       progress=False)
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return result


@dataclass(frozen=True)
class _ExportOptions:
    """Checked options of one export: the folder, its finished songs, padding limit, splits."""

    folder: Path
    songs: tuple
    max_padding: float
    splits: tuple


@dataclass(frozen=True)
class _SongExport:
    """One song's part of an export: its metadata rows, summary row, codec and notes."""

    rows: list
    summary: dict
    codec: dict
    notes: list


def _check_export(folder, max_padding, splits) -> _ExportOptions:
    """Check :func:`export_dataset`'s folder and options, and find its finished songs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"dataset folder {str(folder)!r} does not exist")
    if not 0.0 <= float(max_padding) <= 1.0:
        raise BadParameterError(f"max_padding must be a share between 0 and 1, "
                                f"got {max_padding!r}")
    splits = tuple((str(n), float(v)) for n, v in splits)
    song_split("", splits)                       # checks the shares
    songs = _song_folders(folder)
    if not songs:
        raise BadParameterError(f"{folder}: holds no finished song (no <song>/{MANIFEST_NAME}); "
                                f"encode some audio into it first")
    return _ExportOptions(folder, tuple(songs), max_padding, splits)


def _export_song(sf: Path, opt: _ExportOptions) -> _SongExport:
    """Read one song folder's manifest and captions into its metadata rows and summary."""
    man = read_manifest(sf)
    params = manifest_params(man)
    sr = params.sample_rate
    missing, rows = [], []
    recorded = recorded_captions(sf)
    split = song_split(man["song"], opt.splits)
    dropped = 0
    for t in man["tiles"]:
        png = sf / t["file"]
        side = sf / t["side_file"] if t.get("side_file") else None
        lost = [f for f in (png, side) if f is not None and not f.is_file()]
        if lost:
            missing.append(lost[0].name)
            continue
        padding = t["pad"] / max(t["stop"] - t["start"], 1)
        if padding > opt.max_padding:
            dropped += 1
            continue
        text = caption_of(png)
        rows.append({"file_name": png.relative_to(opt.folder).as_posix(), "text": text,
                     "caption_source": _caption_source(recorded, png, text),
                     "song": man["song"], "tile_index": int(t["index"]),
                     "start_seconds": round(t["start"] / sr, 6),
                     "end_seconds": round(t["end"] / sr, 6),
                     "start_sample": int(t["start"]), "end_sample": int(t["end"]),
                     "sample_rate": sr, "padding": round(padding, 4), "split": split})
        if side is not None:                     # stereo songs only: mono rows are unchanged
            rows[-1]["side_file_name"] = side.relative_to(opt.folder).as_posix()
    notes = []
    if missing:
        notes.append(f"{sf}: {len(missing)} tile(s) listed in {MANIFEST_NAME} are missing "
                     f"(e.g. {missing[0]}); left out, re-run the pipeline to remake them")
    summary = {"song": man["song"], "source": man.get("source_name", ""),
               "tiles": len(man["tiles"]) - len(missing) - dropped,
               "captioned": sum(bool(r["text"]) for r in rows), "split": split,
               "seconds": float(man["n_samples"]) / sr}
    return _SongExport(rows, summary, params.to_dict(), notes)


def _caption_source(recorded: dict, png: Path, text: str) -> str:
    """A tile's ``caption_source``: its captioner, ``"unknown"``, or ``""`` without a caption."""
    if not text:
        return ""
    rec = recorded.get(png.with_suffix(".txt").name, {})
    return rec["caption_source"] if rec.get("caption") == text else "unknown"


def _write_metadata(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` to ``metadata.jsonl`` at ``path``, one JSON object a line, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def rows_without_side(rows: list) -> list[str]:
    """The ``file_name`` of every row that names no side tile (all of a mono dataset's)."""
    return [r["file_name"] for r in rows
            if not isinstance(r.get("side_file_name"), str) or not r["side_file_name"]]


def read_metadata(folder) -> list[dict]:
    """Rows of ``folder/metadata.jsonl`` (written by :func:`export_dataset`)."""
    path = Path(folder) / METADATA_NAME
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist; run export_dataset({str(folder)!r}) "
                                f"or the pipeline first")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]

# =========================================================================== 16-bit pixels

# =========================================================================== back to tiles

