"""What a training run reads: a dataset made by the pipeline, checked, as exact 16-bit tensors.

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

Tensors
-------
Pixels map to ``[-1, 1]`` with ``x = pixel / 32767.5 - 1`` and back bit-exactly
(:func:`~wavdiff_utils.dataset.pixels_to_tensor`,
:func:`~wavdiff_utils.dataset.tensor_to_pixels`).  With ``planes="magnitude"``
the model sees channel 0 only, and :func:`model_to_tile` gives its samples flat
phase planes (no phase information) for the decode to rebuild.  A tile is never
resized (that would move its bins' frequencies); a narrower training width is a
crop along time at full height.  Crops and the order of tiles are functions of
``(seed, epoch, index)``, so a resumed run sees exactly what an uninterrupted one does.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..dataset.export import METADATA_NAME, export_dataset, read_metadata
from ..dataset.shards import (SHARD_INDEX, ShardReader, decode_sample, iter_shard_raw,
                              read_shard_index, shard_paths)
from ..dataset.tensors import pixels_to_tensor
from ..errors import BadTileError, MissingInputError, WavdiffError
from ..io.audio import audio_info, load_audio, write_audio
from ..io.manifest import MANIFEST_NAME, manifest_params, read_manifest, same_codec
from ..io.png16 import decode_png16
from ..io.tiles import png_header, read_tile_metadata
from ..jobs.pipeline import run_pipeline
from ..paths import SAMPLE_AUDIO, display_path

__all__ = ["TrainDataError", "TileSource", "scan_dataset", "tile_to_model", "model_to_tile",
           "TrainTiles", "EpochSampler", "shard_tiles", "crop_offset", "collate", "DEMO_SPLITS",
           "build_demo_dataset", "CAPTION_LOOK"]

#: Training samples of a shard folder whose captions :func:`scan_dataset` looks at.
CAPTION_LOOK = 32


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
        The codec every tile was made with (samples are written with it).
    height, width : int
        Tile size in pixels (rows = frequency bins, columns = STFT frames).
    rows : dict
        Split name -> metadata rows (imagefolder; empty for shards, which are streamed).
    notes : list of str
        Things worth knowing that do not stop training.
    looked : dict
        Shards only: split name -> ``(samples looked at, captioned among them)``, the
        first :data:`CAPTION_LOOK` training samples.
    """

    root: Path
    kind: str
    params: CodecParams
    height: int
    width: int
    rows: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    looked: dict = field(default_factory=dict)

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

        return (f"{display_path(self.root)}: {what}, {self.height}x{self.width} px, "
                f"{self.params.sample_rate} Hz, "
                f"{self.params.tile_seconds:.2f} s per tile, layout {self.params.layout!r}")

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


def scan_dataset(folder) -> TileSource:
    """Check a dataset folder and describe it (see the module notes).

    Parameters
    ----------
    folder : path-like
        The pipeline's export (``metadata.jsonl``) or a shard folder (``shards.json``).

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
    if root.is_file():
        raise TrainDataError(f"{root}: is a file; give the dataset folder (the one holding "
                             f"{METADATA_NAME} or {SHARD_INDEX})")
    if not root.is_dir():
        raise MissingInputError(f"dataset folder {str(root)!r} does not exist; make one with "
                                f"`python -m wavdiff_utils --input AUDIO --output {root}`")
    if (root / SHARD_INDEX).is_file():
        return _scan_shards(root)
    if (root / METADATA_NAME).is_file():
        return _scan_imagefolder(root)
    if not any(root.iterdir()):
        raise TrainDataError(f"dataset folder {root} is empty: no {METADATA_NAME} or {SHARD_INDEX}; "
                             f"make a dataset with `python -m wavdiff_utils --input AUDIO --output {root}`")
    if any(root.rglob("*.png")):
        raise TrainDataError(f"{root}: has tiles but no {METADATA_NAME} (which holds the split "
                             f"column); write it with `wavdiff_utils.export_dataset({str(root)!r})`")
    raise TrainDataError(f"{root}: holds no tiles, {METADATA_NAME} or {SHARD_INDEX}; make a dataset "
                         f"with `python -m wavdiff_utils --input AUDIO --output {root}`")


def _scan_imagefolder(root: Path) -> TileSource:
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
    headers, missing, eight, not_rgb = {}, [], [], []
    for r in rows:
        path = root / r["file_name"]
        try:
            h = png_header(path)
        except OSError:
            missing.append(r["file_name"])
            continue
        if h is None:
            raise TrainDataError(f"{path}: is not a PNG; tiles are 16-bit RGB PNGs")
        if h["bit_depth"] != 16:
            eight.append(r["file_name"])
        if h["channels"] != 3:
            not_rgb.append((r["file_name"], h["channels"]))
        headers[r["file_name"]] = (h["height"], h["width"])
    n = len(rows)
    if missing:
        raise TrainDataError(f"{root}: {len(missing)} of {n} tile(s) listed in {METADATA_NAME} are "
                             f"missing (e.g. {missing[0]}); re-run the pipeline or export_dataset")
    if eight:
        raise TrainDataError(f"{root}: {len(eight)} of {n} tile(s) are 8-bit PNGs (e.g. {eight[0]}); "
                             f"training needs the 16-bit tiles the pipeline writes (8 bits lose the "
                             f"magnitude's fine steps and the phase)")
    if not_rgb:
        raise TrainDataError(f"{root}: {len(not_rgb)} of {n} tile(s) have {not_rgb[0][1]} channel(s), "
                             f"not 3 (e.g. {not_rgb[0][0]}); tiles are RGB: magnitude, cos, sin")
    sizes = Counter(headers.values())
    if len(sizes) > 1:
        rare = min(sizes, key=sizes.get)
        example = next(f for f, s in headers.items() if s == rare)
        listing = ", ".join(f"{w}x{h}: {k}" for (h, w), k in sizes.most_common())
        raise TrainDataError(f"{root}: tiles of {len(sizes)} sizes ({listing}; e.g. {example}); "
                             f"a model trains on one tile size: make one dataset per size")
    (height, width), = sizes
    params, notes = _codec_of(root, rows, height)
    splits: dict[str, list] = {}
    if not all("split" in r for r in rows):
        notes.append(f"{METADATA_NAME} has no split column: every tile is training data and no "
                     f"validation loss is made; export_dataset writes the column")
    for r in rows:
        splits.setdefault(str(r.get("split", "train")), []).append(r)
    if not splits.get("train"):
        have = ", ".join(f"{s} {len(v)}" for s, v in sorted(splits.items()))
        raise TrainDataError(f"{root}: no tile is in split 'train' ({have}); "
                             f"export_dataset(..., splits=...) decides the shares")
    if not splits.get("validation"):
        notes.append("no tile is in split 'validation': no validation loss is made")
    return TileSource(root, "imagefolder", params, height, width, splits, notes)


def _codec_of(root: Path, rows: list, height: int) -> tuple[CodecParams, list]:
    """The one codec of a dataset's songs (from their manifests, else the tiles' metadata)."""
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
        found.setdefault(p.to_json(), (p, folder.name))
    notes = []
    if not found:
        p = CodecParams(size=height)
        notes.append(f"no {MANIFEST_NAME} or tile metadata says the codec: assumed {p.describe()}")
        return p, notes
    if len(found) > 1:
        (a, sa), (b, sb) = list(found.values())[:2]
        diff = next(k for k, v in a.to_dict().items() if b.to_dict()[k] != v)
        raise TrainDataError(f"{root}: songs were made with {len(found)} codec parameter sets ({sa}: "
                             f"{diff}={a.to_dict()[diff]}, {sb}: {diff}={b.to_dict()[diff]}); train "
                             f"on one (one dataset per codec)")
    p = next(iter(found.values()))[0]
    if p.size != height:
        raise TrainDataError(f"{root}: tiles are {height} px high but their codec says size {p.size}")
    if p.layout != "exact":
        notes.append(f"tiles in layout {p.layout!r} were resized when encoded (lossy); layout "
                     f"'exact' tiles train and decode better")
    return p, notes


def _check_sample(root: Path, sample: dict, shape=None) -> np.ndarray:
    px = np.asarray(sample.get("pixels"))
    key = sample.get("key", "?")
    if px.dtype != np.uint16 or px.ndim != 3 or px.shape[2] != 3:
        raise TrainDataError(f"{root}: sample {key} is not a 16-bit RGB tile ({px.shape} {px.dtype})")
    if shape is not None and px.shape != shape:
        raise TrainDataError(f"{root}: sample {key} is {px.shape[1]}x{px.shape[0]}, the first was "
                             f"{shape[1]}x{shape[0]}; a model trains on one tile size")
    if px.size and not np.any(px % 257):
        raise TrainDataError(f"{root}: sample {key} is an 8-bit image scaled to 16 bits; training "
                             f"needs the 16-bit tiles the pipeline writes")
    return px


def _scan_shards(root: Path) -> TileSource:
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
    codec = (first.get("meta") or {}).get("codec")
    if not isinstance(codec, dict):
        codec = index.get("codec")
    if not isinstance(codec, dict):
        raise TrainDataError(f"{root}: sample {first.get('key')} carries no codec parameters "
                             f"(meta['codec']); the samples cannot be written back as tiles")
    params = CodecParams.from_dict(codec)
    captioned = sum(bool(r.get("txt", b"").decode("utf-8", "replace").strip()) for r in raws)
    notes = ["shards are streamed: every sample's size is checked as it is read"]
    return TileSource(root, "shards", params, px.shape[0], px.shape[1], {}, notes,
                      looked={"train": (len(raws), captioned)})

# =========================================================================== tensors


def tile_to_model(pixels: np.ndarray, planes: str = "all"):
    """``(H, W, 3)`` uint16 pixels -> float32 tensor ``(C, H, W)`` in ``[-1, 1]`` (C = 3, or 1
    for ``planes="magnitude"``), exactly as :func:`~wavdiff_utils.dataset.pixels_to_tensor`."""
    x = pixels_to_tensor(pixels)
    return x[:1].contiguous() if planes == "magnitude" else x


def model_to_tile(x, planes: str = "all"):
    """A model's ``(C, H, W)`` or ``(N, C, H, W)`` output -> 3-plane tensors for
    :func:`~wavdiff_utils.dataset.write_tensor_tiles`; magnitude-only output gets flat phase
    planes (cos = sin = 0: no phase information, so the decode rebuilds one)."""
    import torch

    x = x.detach().float().cpu()
    if planes != "magnitude":
        return x
    flat = torch.zeros_like(x).expand(*x.shape[:-3], 2, *x.shape[-2:])
    return torch.cat([x, flat], dim=-3)


def crop_offset(width: int, crop: int, *, seed: int, epoch: int, index: int) -> int:
    """Where a training crop starts: random, but a function of ``(seed, epoch, index)`` only.
    ``epoch < 0`` gives the fixed centre crop that probes and validation use."""
    if not crop or crop >= width:
        return 0
    if epoch < 0:
        return (width - crop) // 2
    rng = np.random.default_rng([int(seed), int(epoch), int(index)])
    return int(rng.integers(0, width - crop + 1))


class TrainTiles:
    """Map-style dataset of one split's tiles as model tensors (torch's DataLoader takes it).

    Parameters
    ----------
    source : TileSource
    split : str
    planes : {"all", "magnitude"}
    crop : int
        Crop width in frames (0: whole tiles).
    seed : int
    fixed : bool
        Centre crops (validation, probes) instead of random ones per epoch.
    limit : int
        Use only the first ``limit`` rows (0: all).
    """

    def __init__(self, source: TileSource, split: str, *, planes: str = "all", crop: int = 0,
                 seed: int = 0, fixed: bool = False, limit: int = 0):
        self.root = source.root
        self.rows = list(source.rows.get(split, []))
        if limit:
            self.rows = self.rows[:limit]
        self.split, self.planes, self.crop, self.seed = split, planes, int(crop), int(seed)
        self.width = source.width
        self.fixed = fixed
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:
        """Crops of epoch ``epoch`` (named so that accelerate's own ``set_epoch`` leaves it alone)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        path = self.root / row["file_name"]
        px = decode_png16(path)
        if px.shape[1] != self.width:
            raise TrainDataError(f"{path}: is {px.shape[1]} px wide, the dataset's tiles {self.width}")
        x = tile_to_model(px, self.planes)
        off = crop_offset(self.width, self.crop, seed=self.seed, index=index,
                          epoch=-1 if self.fixed else self.epoch)
        if self.crop and self.crop < self.width:
            x = x[:, :, off:off + self.crop].contiguous()
        return {"pixel_values": x, "text": str(row.get("text") or ""), "index": index}


class EpochSampler:
    """Indices in an order that depends only on ``(seed, epoch)``: a resumed run replays it."""

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, 0

    def use_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        return iter(rng.permutation(self.n).tolist())


def collate(items: list[dict]) -> dict:
    """Stack a list of items into a batch (tensors stacked, texts and indices as lists)."""
    import torch

    return {"pixel_values": torch.stack([i["pixel_values"] for i in items]),
            "text": [i["text"] for i in items], "index": [i["index"] for i in items]}


def shard_tiles(source: TileSource, split: str, *, planes: str = "all", crop: int = 0, seed: int = 0,
                fixed: bool = False, limit: int = 0, shuffle_buffer: int = 256):
    """An iterable dataset streaming one split of a shard folder (same items as :class:`TrainTiles`).

    Each ``DataLoader`` worker (and distributed rank) reads the share that
    :class:`wavdiff_utils.dataset.ShardDataset` gives it (whole shards, or every n-th sample
    when shards cannot be shared out evenly) and decodes only those samples: every
    sample once per epoch.  A sample's ``index`` is its place in the split (index order),
    which the crops depend on.  Training order: shards shuffled per epoch, then samples
    through a buffer of ``shuffle_buffer`` seeded by ``(seed, epoch, reader)``; ``fixed``
    (probes, validation) reads the first ``limit`` samples in order, all of them in every
    reader.
    """
    from torch.utils.data import IterableDataset

    reader = ShardReader(source.root, split=split, shuffle=not fixed, seed=seed)
    stream = _ShardStream(source.root, reader, _shard_starts(reader), planes, crop, seed,
                          fixed, limit, shuffle_buffer)

    class ShardTiles(IterableDataset):
        def __init__(self):
            self.epoch = 0

        def use_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)
            reader.set_epoch(epoch)

        def __iter__(self):
            yield from _stream_items(stream, self.epoch)

    return ShardTiles()


@dataclass(frozen=True)
class _ShardStream:
    """One split of a shard folder as :func:`shard_tiles` streams it (its arguments)."""

    root: Path
    reader: ShardReader
    starts: dict                # each shard's first index in the split
    planes: str
    crop: int
    seed: int
    fixed: bool
    limit: int
    shuffle_buffer: int


def _shard_starts(reader: ShardReader) -> dict:
    """Each shard's first index in the split (shard name -> index)."""
    starts, at = {}, 0
    for p in reader.paths:
        starts[p.name], at = at, at + reader.counts[p.name]
    return starts


def _share_shards(stream: _ShardStream):
    """This reader's paths, ``keep(i)`` (``i`` counts their samples) or None, and
    ``(i, index)`` of each path's first sample."""
    reader, starts = stream.reader, stream.starts
    if stream.fixed:
        paths = [p for p in reader.paths if starts[p.name] < (stream.limit or reader.n)]
        keep = None
    else:
        paths, keep = reader._share()
    firsts, at = [], 0
    for p in paths:
        firsts.append((at, starts[p.name]))
        at += reader.counts[p.name]
    return paths, keep, firsts


def _read_samples(stream: _ShardStream):
    """Decode and check this reader's samples: ``(index, pixels, caption)`` of each."""
    from bisect import bisect_right

    paths, keep, firsts = _share_shards(stream)
    heads = [f[0] for f in firsts]
    last = [0]
    limit = stream.limit

    def wanted(i: int) -> bool:
        first, base = firsts[bisect_right(heads, i) - 1]
        last[0] = base + i - first
        return (not limit or last[0] < limit) and (keep is None or keep(i))

    shape = None
    for raw in iter_shard_raw(paths, wanted):
        sample = decode_sample(raw)
        px = _check_sample(stream.root, sample, shape)
        shape = px.shape
        yield last[0], px, str(sample.get("caption") or "")


def _stream_items(stream: _ShardStream, epoch: int):
    """The items of epoch ``epoch``, through the shuffle buffer unless ``fixed``."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    rng = np.random.default_rng([stream.seed, epoch, info.id if info is not None else 0, 11])
    fixed, buffer = stream.fixed, []

    def pop() -> tuple:
        return buffer.pop(int(rng.integers(len(buffer))) if not fixed else 0)

    for k, px, text in _read_samples(stream):
        buffer.append((k, px, text))
        if not fixed and len(buffer) < stream.shuffle_buffer:
            continue
        yield _shard_item(stream, epoch, *pop())
    while buffer:
        yield _shard_item(stream, epoch, *pop())


def _shard_item(stream: _ShardStream, epoch: int, k: int, px: np.ndarray, text: str) -> dict:
    """A training item from sample ``k``: model tensor (cropped), caption and index."""
    x = tile_to_model(px, stream.planes)
    crop = stream.crop
    if crop and crop < px.shape[1]:
        off = crop_offset(px.shape[1], crop, seed=stream.seed, index=k,
                          epoch=-1 if stream.fixed else epoch)
        x = x[:, :, off:off + crop].contiguous()
    return {"pixel_values": x, "text": text, "index": k}

# =========================================================================== the demo dataset

#: Split shares of the demo dataset: its four parts are assigned by a hash of their names, which
#: puts one of them (``wavdiff_demo_part_3``) in validation.
DEMO_SPLITS = (("train", 0.75), ("validation", 0.25))


def build_demo_dataset(folder, *, size: int = 128, sample_rate: int = 22050, parts: int = 4,
                       seconds: float | None = None, progress: bool = False) -> TileSource:
    """A small dataset from the bundled sample, for the quick run of ``07_train`` and the tests.

    The sample is cut into ``parts`` songs (``<folder>_audio/wavdiff_demo_part_<k>.wav``), which
    the pipeline encodes in layout "exact" at ``size`` (never resized: a smaller size is a
    shorter STFT) with metadata captions, and exports with :data:`DEMO_SPLITS`.  ``seconds``
    keeps only the sample's start (tests).  A re-run reuses the songs already encoded with the
    same codec parameters (nothing is encoded again) and re-encodes those made with others.

    Returns
    -------
    TileSource
    """

    folder = Path(folder)
    params = CodecParams(size=size, sample_rate=sample_rate)
    audio = folder.parent / f"{folder.name}_audio"
    y = load_audio(SAMPLE_AUDIO, sample_rate=sample_rate)
    if seconds:
        y = y[:int(seconds * sample_rate)]
    n = len(y) // int(parts)
    for k in range(int(parts)):
        path = audio / f"{SAMPLE_AUDIO.stem}_part_{k + 1}.wav"
        part = y[k * n:(k + 1) * n]
        info = audio_info(path) if path.is_file() else {}
        if (info.get("sample_rate"), info.get("frames")) != (sample_rate, len(part)):
            write_audio(path, part, sample_rate=sample_rate)     # missing, or another cut

    other = False                                # a song encoded with other codec parameters
    for song in (folder.iterdir() if folder.is_dir() else ()):
        try:
            man = read_manifest(song) if song.is_dir() else None
        except (ValueError, BadTileError):
            man = None
        other = other or (man is not None and not same_codec(man, params))
    result = run_pipeline(audio, folder, params=params, captioner="metadata", workers=1,
                          report=False, progress=progress, log=None, overwrite=other)
    if not result.ok:
        raise TrainDataError(f"{folder}: the demo dataset could not be made: {result.summary()}")
    export_dataset(folder, splits=DEMO_SPLITS)
    return scan_dataset(folder)
