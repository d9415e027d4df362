"""What a training run reads, as exact 16-bit tensors: tiles of a checked dataset, cropped, in order.

The dataset is checked first (:func:`wavdiff_utils.train.scan.scan_dataset`: an
imagefolder export or WebDataset shards).  Pixels map to ``[-1, 1]`` with
``x = pixel / 32767.5 - 1`` and back bit-exactly
(:func:`~wavdiff_utils.dataset.pixels_to_tensor`,
:func:`~wavdiff_utils.dataset.tensor_to_pixels`).  With ``planes="magnitude"``
the model sees channel 0 only, and :func:`model_to_tile` gives its samples flat
phase planes (no phase information) for the decode to rebuild.  A dataset read in
stereo gives the mid tile's planes, then the side tile's (6 planes, or the two
magnitudes), as :func:`~wavdiff_utils.dataset.write_tensor_tiles` writes them back.  A
tile is never resized (that would move its bins' frequencies); a narrower training width
is a crop along time at full height.  Crops and the order of tiles are functions of
``(seed, epoch, index)``, so a resumed run sees exactly what an uninterrupted one does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..dataset.export import export_dataset
from ..dataset.shards import ShardReader, decode_sample, iter_shard_raw
from ..dataset.tensors import pixels_to_tensor
from ..errors import BadTileError
from ..io.audio import audio_info, load_audio, write_audio
from ..io.manifest import read_manifest, same_codec
from ..io.png16 import decode_png16
from ..jobs.pipeline import run_pipeline
from ..paths import SAMPLE_AUDIO
from .scan import TileSource, TrainDataError, _check_sample, _check_side_sample, scan_dataset

__all__ = ["tile_to_model", "model_to_tile", "TrainTiles", "EpochSampler", "shard_tiles",
           "crop_offset", "collate", "DEMO_SPLITS", "build_demo_dataset"]

# =========================================================================== tensors


def tile_to_model(pixels: np.ndarray, planes: str = "all", side: np.ndarray | None = None):
    """``(H, W, 3)`` uint16 pixels -> float32 tensor ``(C, H, W)`` in ``[-1, 1]`` (C = 3, or 1
    for ``planes="magnitude"``), exactly as :func:`~wavdiff_utils.dataset.pixels_to_tensor`.
    With the ``side`` tile's pixels (stereo), its planes follow the mid's: C = 6, or 2."""
    x = pixels_to_tensor(pixels)
    x = x[:1].contiguous() if planes == "magnitude" else x
    if side is None:
        return x
    import torch

    s = pixels_to_tensor(side)
    return torch.cat([x, s[:1] if planes == "magnitude" else s])


def model_to_tile(x, planes: str = "all"):
    """A model's ``(C, H, W)`` or ``(N, C, H, W)`` output -> tensors of 3 planes per channel for
    :func:`~wavdiff_utils.dataset.write_tensor_tiles` (6 for stereo: mid, then side);
    magnitude-only output (1 plane per channel) gets flat phase planes (cos = sin = 0: no
    phase information, so the decode rebuilds one)."""
    import torch

    x = x.detach().float().cpu()
    if planes != "magnitude":
        return x
    flat = torch.zeros_like(x[..., :1, :, :]).expand(*x.shape[:-3], 2, *x.shape[-2:])
    parts = []
    for c in range(x.shape[-3]):                # each channel's magnitude, then its flat phase
        parts += [x[..., c:c + 1, :, :], flat]
    return torch.cat(parts, dim=-3)


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

    A source read in stereo (:attr:`TileSource.stereo`) gives each row's side tile's planes
    after its mid tile's.
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
        self.stereo = bool(source.stereo)
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
        side = self._side(row, px.shape) if self.stereo else None
        x = tile_to_model(px, self.planes, side)
        off = crop_offset(self.width, self.crop, seed=self.seed, index=index,
                          epoch=-1 if self.fixed else self.epoch)
        if self.crop and self.crop < self.width:
            x = x[:, :, off:off + self.crop].contiguous()
        return {"pixel_values": x, "text": str(row.get("text") or ""), "index": index}

    def _side(self, row: dict, shape: tuple) -> np.ndarray:
        """The side tile of ``row``: the shape of its mid tile's pixels, or one line naming it."""
        path = self.root / row["side_file_name"]
        px = decode_png16(path)
        if px.shape != shape:
            raise TrainDataError(f"{path}: a side tile of {px.shape[1]}x{px.shape[0]} px, its mid "
                                 f"tile {row['file_name']} {shape[1]}x{shape[0]}; re-encode its song")
        return px


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
    reader.  A source read in stereo gives each sample's ``side.png`` planes after its tile's
    (a sample without one is a one-line :class:`TrainDataError` naming it).
    """
    from torch.utils.data import IterableDataset

    reader = ShardReader(source.root, split=split, shuffle=not fixed, seed=seed)
    stream = _ShardStream(source.root, reader, _shard_starts(reader), planes, crop, seed,
                          fixed, limit, shuffle_buffer, bool(source.stereo))

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
    stereo: bool = False


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
    """Decode and check this reader's samples: ``(index, pixels, side pixels or None,
    caption)`` of each."""
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
        side = _check_side_sample(stream.root, sample, raw.get("__url__", stream.root), shape) \
            if stream.stereo else None
        yield last[0], px, side, str(sample.get("caption") or "")


def _stream_items(stream: _ShardStream, epoch: int):
    """The items of epoch ``epoch``, through the shuffle buffer unless ``fixed``."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    rng = np.random.default_rng([stream.seed, epoch, info.id if info is not None else 0, 11])
    fixed, buffer = stream.fixed, []

    def pop() -> tuple:
        return buffer.pop(int(rng.integers(len(buffer))) if not fixed else 0)

    for item in _read_samples(stream):
        buffer.append(item)
        if not fixed and len(buffer) < stream.shuffle_buffer:
            continue
        yield _shard_item(stream, epoch, *pop())
    while buffer:
        yield _shard_item(stream, epoch, *pop())


def _shard_item(stream: _ShardStream, epoch: int, k: int, px: np.ndarray, side, text: str) -> dict:
    """A training item from sample ``k``: model tensor (cropped), caption and index."""
    x = tile_to_model(px, stream.planes, side)
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
                       seconds: float | None = None, stereo: bool = False,
                       progress: bool = False) -> TileSource:
    """A small dataset from the bundled sample, for the quick run of ``07_train`` and the tests.

    The sample is cut into ``parts`` songs (``<folder>_audio/wavdiff_demo_part_<k>.wav``), which
    the pipeline encodes in layout "exact" at ``size`` (never resized: a smaller size is a
    shorter STFT) with metadata captions, and exports with :data:`DEMO_SPLITS`.  ``seconds``
    keeps only the sample's start (tests).  A re-run reuses the songs already encoded with the
    same codec parameters (nothing is encoded again) and re-encodes those made with others.
    ``stereo``: the parts keep the sample's two channels and are encoded with ``channels:
    stereo`` (a side tile beside each tile), and the dataset is read in stereo.

    Returns
    -------
    TileSource
    """

    folder = Path(folder)
    params = CodecParams(size=size, sample_rate=sample_rate,
                         channels="stereo" if stereo else "mono")
    audio = folder.parent / f"{folder.name}_audio"
    y = load_audio(SAMPLE_AUDIO, sample_rate=sample_rate, mono=not stereo)
    if seconds:
        y = y[:int(seconds * sample_rate)]
    n = len(y) // int(parts)
    for k in range(int(parts)):
        path = audio / f"{SAMPLE_AUDIO.stem}_part_{k + 1}.wav"
        part = y[k * n:(k + 1) * n]
        info = audio_info(path) if path.is_file() else {}
        have = (info.get("sample_rate"), info.get("frames"), info.get("channels"))
        if have != (sample_rate, len(part), part.shape[1] if part.ndim == 2 else 1):
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
    return scan_dataset(folder, stereo=stereo)
