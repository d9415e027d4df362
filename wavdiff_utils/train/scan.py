"""Which dataset a training run reads: a folder made by the pipeline, checked before any training.

Sources
-------
- The pipeline's imagefolder export (``metadata.jsonl`` beside the song
  folders, with the ``split`` column): rows of each split, tiles read with the
  16-bit loader (:func:`wavdiff_utils.io.decode_png16`).
- WebDataset shards (a folder with ``shards.json``), read through
  :mod:`wavdiff_utils.dataset.shards`: each ``DataLoader`` worker (and distributed rank)
  decodes only its own share of the samples (``ShardDataset``'s sharing), the
  others' are skipped unread.

:func:`scan_dataset` checks a folder before any training starts and says in one
line what is wrong: an empty folder, tiles without ``metadata.jsonl``, 8-bit
images, tiles of several sizes or codecs, missing files, no training split.

Stereo
------
A dataset encoded with ``channels: stereo`` holds a side tile beside each (mid) tile: the
rows' ``side_file_name``, the shards' ``side.png`` member.  ``scan_dataset(folder,
stereo=True)`` reads both (the side tiles checked as the mid ones are: present, 16-bit
RGB, the size of their mid tile, made with the side codec of the dataset's), and refuses a
mono dataset in one line; ``stereo=False`` (the default) reads the mid tiles alone, as
every mono reader does, so a stereo dataset then trains exactly as its mono mix would.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..dataset.export import METADATA_NAME, read_metadata, rows_without_side
from ..dataset.shards import (SHARD_INDEX, SIDE_EXT, decode_sample, iter_shard_raw,
                              read_shard_index, shard_paths)
from ..errors import BadTileError, MissingInputError, WavdiffError
from ..io.manifest import MANIFEST_NAME, manifest_params, read_manifest
from ..io.tiles import png_header, read_tile_metadata
from ..paths import display_path

__all__ = ["TrainDataError", "TileSource", "scan_dataset", "CAPTION_LOOK", "MONO_HINT"]

#: Training samples of a shard folder whose captions :func:`scan_dataset` looks at.
CAPTION_LOOK = 32
#: How a mono dataset becomes one that ``stereo=True`` trains on (the end of its refusal).
MONO_HINT = ("stereo=True needs a dataset encoded with channels: stereo (python -m "
             "wavdiff_utils --channels stereo ...); or use stereo=False")


class TrainDataError(BadTileError):
    """A dataset that cannot be trained on; the message names the folder or file and the problem."""


@dataclass
class TileSource:
    """A checked dataset: where it is, its tiles per split, their size and codec.

    Attributes
    ----------
    root : Path
    kind : {"imagefolder", "shards"}
    params : CodecParams
        The codec of the tiles as the run reads them (samples are written with it):
        ``channels="stereo"`` when read in stereo, else a mono tile's codec (a stereo
        dataset read without ``stereo`` gives its mid tiles').
    height, width : int
        Tile size in pixels (rows = frequency bins, columns = STFT frames).
    rows : dict
        Split name -> metadata rows (imagefolder; empty for shards, which are streamed).
    notes : list of str
        Things worth knowing that do not stop training.
    looked : dict
        Shards only: split name -> ``(samples looked at, captioned among them)``, the
        first :data:`CAPTION_LOOK` training samples.
    stereo : bool
        Read in stereo: each tile's side tile too (6 planes: mid, then side).
    """

    root: Path
    kind: str
    params: CodecParams
    height: int
    width: int
    rows: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    looked: dict = field(default_factory=dict)
    stereo: bool = False

    def count(self, split: str) -> int | None:
        """Tiles in ``split`` (``None`` for shards: not known before they are read)."""
        return len(self.rows.get(split, [])) if self.kind == "imagefolder" else None

    def captioned(self, split: str) -> int | None:
        """Tiles of ``split`` with a non-empty caption; for shards, among the samples looked at
        when scanning (:attr:`looked`; ``None`` for a split not looked at)."""
        if self.kind != "imagefolder":
            return self.looked[split][1] if split in self.looked else None
        return sum(bool(str(r.get("text") or "").strip()) for r in self.rows.get(split, []))

    def summary(self) -> str:
        """One line: where, how many tiles per split, size, codec."""
        if self.kind == "imagefolder":
            parts = ", ".join(f"{s} {len(r)}" for s, r in sorted(self.rows.items()))
            what = f"{sum(len(r) for r in self.rows.values())} tiles ({parts})"
        else:
            what = "WebDataset shards"
        stereo = ", stereo (mid and side tiles)" if self.stereo else ""
        return (f"{display_path(self.root)}: {what}, {self.height}x{self.width} px, "
                f"{self.params.sample_rate} Hz, "
                f"{self.params.tile_seconds:.2f} s per tile, layout {self.params.layout!r}{stereo}")

    def table(self):
        """One row per split: tiles and captioned tiles."""
        import pandas as pd

        return pd.DataFrame([{"split": s, "tiles": len(r), "captioned": self.captioned(s)}
                             for s, r in sorted(self.rows.items())])

    def _repr_html_(self) -> str:
        import html

        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        table = self.table().to_html(index=False) if self.kind == "imagefolder" else ""
        return (f"<p>{html.escape(self.summary())}</p>{table}"
                + (f"<ul>{notes}</ul>" if notes else ""))

# =========================================================================== checking a folder


def scan_dataset(folder, *, stereo: bool = False) -> TileSource:
    """Check a dataset folder and describe it (see the module notes).

    Parameters
    ----------
    folder : path-like
        The pipeline's export (``metadata.jsonl``) or a shard folder (``shards.json``).
    stereo : bool
        Read each tile's side tile too (a dataset encoded with ``channels: stereo``);
        a mono dataset is refused.

    Returns
    -------
    TileSource

    Raises
    ------
    MissingInputError
        ``folder`` does not exist.
    TrainDataError
        Anything that stops training: one line naming the file and the problem.
    """
    root = Path(folder)
    make = (f"`python -m wavdiff_utils --input AUDIO --output {root}"
            f"{' --channels stereo' if stereo else ''}`")
    if root.is_file():
        raise TrainDataError(f"{root}: is a file; give the dataset folder (the one holding "
                             f"{METADATA_NAME} or {SHARD_INDEX})")
    if not root.is_dir():
        raise MissingInputError(f"dataset folder {str(root)!r} does not exist; make one with "
                                f"{make}")
    if (root / SHARD_INDEX).is_file():
        return _scan_shards(root, bool(stereo))
    if (root / METADATA_NAME).is_file():
        return _scan_imagefolder(root, bool(stereo))
    if not any(root.iterdir()):
        raise TrainDataError(f"dataset folder {root} is empty: no {METADATA_NAME} or {SHARD_INDEX}; "
                             f"make a dataset with {make}")
    if any(root.rglob("*.png")):
        raise TrainDataError(f"{root}: has tiles but no {METADATA_NAME} (which holds the split "
                             f"column); write it with `wavdiff_utils.export_dataset({str(root)!r})`")
    raise TrainDataError(f"{root}: holds no tiles, {METADATA_NAME} or {SHARD_INDEX}; make a dataset "
                         f"with {make}")


def _headers(root: Path, files: list, what: str = "tile") -> dict:
    """``file -> (height, width)`` of each listed PNG; one line for a missing, non-PNG, 8-bit
    or non-RGB one (``what``: "tile" or "side tile")."""
    headers, missing, eight, not_rgb = {}, [], [], []
    for name in files:
        path = root / name
        try:
            h = png_header(path)
        except OSError:
            missing.append(name)
            continue
        if h is None:
            raise TrainDataError(f"{path}: is not a PNG; tiles are 16-bit RGB PNGs")
        if h["bit_depth"] != 16:
            eight.append(name)
        if h["channels"] != 3:
            not_rgb.append((name, h["channels"]))
        headers[name] = (h["height"], h["width"])
    n = len(files)
    if missing:
        raise TrainDataError(f"{root}: {len(missing)} of {n} {what}(s) listed in {METADATA_NAME} "
                             f"are missing (e.g. {missing[0]}); re-run the pipeline or export_dataset")
    if eight:
        raise TrainDataError(f"{root}: {len(eight)} of {n} {what}(s) are 8-bit PNGs (e.g. {eight[0]}); "
                             f"training needs the 16-bit tiles the pipeline writes (8 bits lose the "
                             f"magnitude's fine steps and the phase)")
    if not_rgb:
        raise TrainDataError(f"{root}: {len(not_rgb)} of {n} {what}(s) have {not_rgb[0][1]} "
                             f"channel(s), not 3 (e.g. {not_rgb[0][0]}); tiles are RGB: magnitude, "
                             f"cos, sin")
    return headers


def _side_files(root: Path, rows: list) -> list:
    """The side tile of every row (``stereo=True``); one line for a mono dataset, a row
    without its side tile, or a side tile that is its mid tile's size no more."""
    lacking = rows_without_side(rows)
    if len(lacking) == len(rows):
        raise TrainDataError(f"{root}: a mono dataset (no side_file_name in {METADATA_NAME}); "
                             f"{MONO_HINT}")
    if lacking:
        raise TrainDataError(f"{root}: {len(lacking)} of {len(rows)} tile(s) have no side tile "
                             f"(e.g. {lacking[0]}); encode every song with channels: stereo (or "
                             f"export_dataset again), or use stereo=False")
    return [r["side_file_name"] for r in rows]


def _scan_imagefolder(root: Path, stereo: bool = False) -> TileSource:
    try:
        rows = read_metadata(root)
    except ValueError as exc:
        raise TrainDataError(f"{root / METADATA_NAME}: unreadable ({exc})") from None
    if not rows:
        raise TrainDataError(f"{root / METADATA_NAME}: has no rows (no tiles); run the pipeline "
                             f"into {root} first")
    bad = [r for r in rows if not isinstance(r, dict) or not isinstance(r.get("file_name"), str)]
    if bad:
        raise TrainDataError(f"{root / METADATA_NAME}: a row has no file_name ({str(bad[0])[:80]})")
    headers = _headers(root, [r["file_name"] for r in rows])
    sizes = Counter(headers.values())
    if len(sizes) > 1:
        rare = min(sizes, key=sizes.get)
        example = next(f for f, s in headers.items() if s == rare)
        listing = ", ".join(f"{w}x{h}: {k}" for (h, w), k in sizes.most_common())
        raise TrainDataError(f"{root}: tiles of {len(sizes)} sizes ({listing}; e.g. {example}); "
                             f"a model trains on one tile size: make one dataset per size")
    (height, width), = sizes
    if stereo:
        sides = _side_files(root, rows)
        side_headers = _headers(root, sides, "side tile")
        odd = next((s for s in sides if side_headers[s] != (height, width)), None)
        if odd is not None:
            h, w = side_headers[odd]
            raise TrainDataError(f"{root / odd}: a side tile of {w}x{h} px, its mid tile "
                                 f"{width}x{height}; re-encode its song")
    params, notes = _codec_of(root, rows, height, stereo=stereo)
    if not stereo and any(r.get("side_file_name") for r in rows):
        notes.append("the dataset is stereo (side tiles beside the tiles): this run trains on "
                     "the mid tiles alone; stereo=True trains on both")
    splits: dict[str, list] = {}
    if not all("split" in r for r in rows):
        notes.append(f"{METADATA_NAME} has no split column: every tile is training data and no "
                     f"validation loss is made; export_dataset writes the column")
    for r in rows:
        splits.setdefault(str(r.get("split", "train")), []).append(r)
    if not splits.get("train"):
        have = ", ".join(f"{s} {len(v)}" for s, v in sorted(splits.items()))
        raise TrainDataError(f"{root}: no tile is in split 'train' ({have}); the pipeline's "
                             f"--holdout (export_dataset(..., splits=...)) decides the shares")
    if not splits.get("validation"):
        songs = len({r.get("song") for r in rows})
        notes.append(f"no tile is in split 'validation': no validation loss is made ({songs} "
                     f"song(s); the pipeline's --holdout, default 0.05, sets the share held "
                     f"out: 0.2 holds about one song in five)")
    return TileSource(root, "imagefolder", params, height, width, splits, notes, stereo=stereo)


def _codec_of(root: Path, rows: list, height: int, *,
              stereo: bool = False) -> tuple[CodecParams, list]:
    """The one codec of a dataset's tiles (from their songs' manifests, else the tiles'
    metadata): a mono tile's, or with ``stereo`` its ``channels="stereo"`` form."""
    found: dict[str, tuple[CodecParams, str]] = {}
    for folder in sorted({(root / r["file_name"]).parent for r in rows}):
        try:
            man = read_manifest(folder)
        except (ValueError, BadTileError):
            man = None
        if man is not None:
            p = manifest_params(man)
        else:
            first = next(root / r["file_name"] for r in rows if (root / r["file_name"]).parent == folder)
            meta = read_tile_metadata(first)
            if not isinstance(meta, dict) or not isinstance(meta.get("codec"), dict):
                continue
            p = CodecParams.from_dict(meta["codec"])
        p = p.tile_codec()                  # a stereo song's mid tile is a mono tile
        found.setdefault(p.to_json(), (p, folder.name))
    notes = []
    if not found:
        p = CodecParams(size=height)
        notes.append(f"no {MANIFEST_NAME} or tile metadata says the codec: assumed {p.describe()}")
        return (dataclasses.replace(p, channels="stereo") if stereo else p), notes
    if len(found) > 1:
        (a, sa), (b, sb) = list(found.values())[:2]
        da, db = a.to_dict(), b.to_dict()
        diff = next(k for k in {**da, **db} if da.get(k) != db.get(k))
        raise TrainDataError(f"{root}: songs were made with {len(found)} codec parameter sets ({sa}: "
                             f"{diff}={da.get(diff)}, {sb}: {diff}={db.get(diff)}); train "
                             f"on one (one dataset per codec)")
    p = next(iter(found.values()))[0]
    if p.size != height:
        raise TrainDataError(f"{root}: tiles are {height} px high but their codec says size {p.size}")
    if p.layout != "exact":
        notes.append(f"tiles in layout {p.layout!r} were resized when encoded (lossy); layout "
                     f"'exact' tiles train and decode better")
    if stereo:
        _check_side_codec(root, rows[0]["side_file_name"], p)
        p = dataclasses.replace(p, channels="stereo")
    return p, notes


def _check_side_codec(root: Path, side: str, p: CodecParams) -> None:
    """Refuse a side tile whose metadata names another codec than ``p``'s side codec (the
    samples' side tiles are written with it, and decoded by it)."""
    meta = read_tile_metadata(root / side)
    if not isinstance(meta, dict) or not isinstance(meta.get("codec"), dict):
        return
    try:
        have = CodecParams.from_dict(meta["codec"]).to_dict()
    except (TypeError, ValueError) as exc:
        raise TrainDataError(f"{root / side}: its codec metadata cannot be used ({exc})") from None
    want = p.side_codec().to_dict()
    diff = next((k for k in {**want, **have} if want.get(k) != have.get(k)), None)
    if diff is not None:
        raise TrainDataError(f"{root / side}: a side tile made with {diff}={have.get(diff)!r}, "
                             f"but the side codec of the dataset's tiles has {diff}="
                             f"{want.get(diff)!r}; re-encode the dataset with this version")


def _check_sample(root: Path, sample: dict, shape=None, *, pixels: str = "pixels",
                  member: str = "") -> np.ndarray:
    px = np.asarray(sample.get(pixels))
    key = f"{sample.get('key', '?')}{member}"
    if px.dtype != np.uint16 or px.ndim != 3 or px.shape[2] != 3:
        raise TrainDataError(f"{root}: sample {key} is not a 16-bit RGB tile ({px.shape} {px.dtype})")
    if shape is not None and px.shape != shape:
        raise TrainDataError(f"{root}: sample {key} is {px.shape[1]}x{px.shape[0]}, the first was "
                             f"{shape[1]}x{shape[0]}; a model trains on one tile size")
    if px.size and not np.any(px % 257):
        raise TrainDataError(f"{root}: sample {key} is an 8-bit image scaled to 16 bits; training "
                             f"needs the 16-bit tiles the pipeline writes")
    return px


def _check_side_sample(root: Path, sample: dict, url, shape) -> np.ndarray:
    """A stereo sample's side pixels, checked as its mid's (one line naming a missing member)."""
    if "side_pixels" not in sample:
        raise TrainDataError(f"{url}: sample {sample.get('key', '?')} has no side tile "
                             f"({SIDE_EXT}); write the shards of a stereo dataset again, or use "
                             f"stereo=False")
    return _check_sample(root, sample, shape, pixels="side_pixels", member=f".{SIDE_EXT}")


def _scan_shards(root: Path, stereo: bool = False) -> TileSource:
    from itertools import islice

    try:
        index = read_shard_index(root)
        raws = list(islice(iter_shard_raw(shard_paths(root, split="train")), CAPTION_LOOK))
    except WavdiffError:               # a damaged shard: its one line names the .tar and member
        raise
    except (OSError, ValueError) as exc:
        raise TrainDataError(f"{root}: unreadable shards ({exc})") from None
    if not raws:
        raise TrainDataError(f"{root}: the shards hold no sample in split 'train'")
    first = decode_sample(raws[0])
    px = _check_sample(root, first)
    notes = ["shards are streamed: every sample's size is checked as it is read"]
    if stereo and "side_pixels" not in first:
        raise TrainDataError(f"{root}: mono shards (sample {first.get('key')} has no "
                             f"{SIDE_EXT}); {MONO_HINT}")
    if stereo:
        _check_side_sample(root, first, raws[0].get("__url__", root), px.shape)
    elif "side_pixels" in first:
        notes.append("the shards are stereo (side.png beside each tile): this run trains on the "
                     "mid tiles alone; stereo=True trains on both")
    codec = (first.get("meta") or {}).get("codec")
    if not isinstance(codec, dict):
        codec = index.get("codec")
    if not isinstance(codec, dict):
        raise TrainDataError(f"{root}: sample {first.get('key')} carries no codec parameters "
                             f"(meta['codec']); the samples cannot be written back as tiles")
    params = CodecParams.from_dict(codec).tile_codec()
    if stereo:
        params = dataclasses.replace(params, channels="stereo")
    captioned = sum(bool(r.get("txt", b"").decode("utf-8", "replace").strip()) for r in raws)
    return TileSource(root, "shards", params, px.shape[0], px.shape[1], {}, notes,
                      looked={"train": (len(raws), captioned)}, stereo=stereo)
