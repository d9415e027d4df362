"""WebDataset shards of a dataset folder: their format, their index, and reading them with
all 16 bits.

A folder of millions of PNG files is slow to train from (one open per sample) and does
not spread over machines; sharded tars (`WebDataset <https://github.com/webdataset>`_)
are read sequentially, a shard per worker.  :func:`wavdiff_utils.jobs.write_shards` turns
the pipeline's output (after :func:`~wavdiff_utils.dataset.export_dataset`) into::

    <shards>/train-000000.tar, train-000001.tar, ..., validation-000000.tar, test-000000.tar
    <shards>/shards.json          the index: every shard with its sample count, the totals,
                                  the codec parameters

Each sample (``__key__`` ``<song>_<index:04d>``, dots in a song id made safe) holds:

- ``png``: the tile file's bytes, exactly as written (16-bit RGB, its own metadata chunk);
- ``json``: the tile's metadata (the PNG's ``wavdiff`` chunk: codec, span, source) with
  the dataset row of ``metadata.jsonl`` (``file_name``, ``split``, ``padding``,
  ``caption_source``, ...);
- ``txt``: its caption (the dataset's ``text``, ``""`` without one); other captioners'
  captions of the tile (``<stem>.tags.txt``, ``.prose.txt``, ``.meta.txt``) as
  ``tags.txt``, ``prose.txt``, ``meta.txt``.

Shards are per split (a song's tiles never cross splits), in dataset order, each up to
``shard_size`` (``"1GB"``, or a number of samples).

Reading: :func:`iter_shard_samples` yields decoded samples (the contract:
``key``, ``pixels`` as :func:`~wavdiff_utils.io.decode_png16` returns them, ``meta``,
``caption``, ``split``); :class:`ShardReader` (and its torch ``IterableDataset``,
:class:`~wavdiff_utils.dataset.ShardDataset`) gives the
same items as :class:`~wavdiff_utils.dataset.TileDataset` (float tensors in [-1, 1]),
split over ``DataLoader`` workers and distributed ranks.  Decoding is OpenCV's: the
``webdataset`` library's own image decoders go through Pillow, which keeps 8 of the 16 bits.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .export import SPLITS
from ..io.png16 import decode_png16
from .tensors import pixels_to_tensor
from ..errors import BadParameterError, BadShardError, MissingInputError, one_line
from ..paths import stable_hash

__all__ = ["SHARD_INDEX", "DEFAULT_SHARD_SIZE", "parse_shard_size", "read_shard_index",
           "shard_paths", "iter_shard_raw", "decode_sample", "iter_shard_samples", "sample_key"]

#: The index file in a shard folder.
SHARD_INDEX = "shards.json"
#: Default shard limit: about 1 GB (some 160 tiles of 1024x1024 at PNG level 0).
DEFAULT_SHARD_SIZE = "1GB"
FORMAT = "wavdiff-shards"
_UNITS = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "t": 10 ** 12,
          "ki": 2 ** 10, "mi": 2 ** 20, "gi": 2 ** 30, "ti": 2 ** 40}


def parse_shard_size(value) -> tuple[int | None, int | None]:
    """``(max_bytes, max_samples)`` of a shard limit: ``"1GB"``, ``"500MB"``, ``"2GiB"``
    (bytes) or a whole number such as ``2000`` or ``"2000"`` (samples).

    Raises
    ------
    BadParameterError
        Anything else, naming the value.
    """
    bad = BadParameterError(f"shard_size must be a size with a unit (1GB, 500MB, 2GiB) or a "
                            f"number of samples (2000), got {value!r}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        if value < 1:
            raise bad
        return None, value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt]i?)b|(b?))\s*", str(value).lower())
    if not m:
        raise bad
    number, unit, plain = m.groups()
    if unit is None and not plain:               # a bare number: samples
        if "." in number or int(number) < 1:
            raise bad
        return None, int(number)
    size = int(float(number) * _UNITS[unit or ""])
    if size < 1:
        raise bad
    return size, None


def sample_key(song: str, index: int) -> str:
    """The sample's ``__key__``: ``<song>_<index:04d>``; a song id with dots (WebDataset cuts
    keys at the first dot) gets them replaced and a stable hash of the id appended."""
    if "." in song:
        song = f"{song.replace('.', '_')}-{stable_hash(song)}"
    return f"{song}_{int(index):04d}"


# =========================================================================== the index


def read_shard_index(folder) -> dict:
    """``folder/shards.json``.

    Raises
    ------
    MissingInputError
        There is no index (one line naming the file and how to write it).
    BadShardError
        The file cannot be read or is not a wavdiff shard index (naming it).
    """
    path = Path(folder) / SHARD_INDEX
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist: write the shards first "
                                f"(python -m wavdiff_utils ... --shards, or write_shards())")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadShardError(f"{path}: unreadable shard index ({one_line(exc)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadShardError(f"{path}: not a wavdiff shard index")
    return data


# =========================================================================== writing


# =========================================================================== reading

def shard_paths(folder, *, split: str | None = None) -> list[Path]:
    """The shard files of ``folder`` (all, or one split's), in index order."""
    folder = Path(folder)
    index = read_shard_index(folder)
    known = set(index["splits"]) | {n for n, _ in SPLITS}
    if split is not None and split not in known:
        raise BadParameterError(f"split must be one of {', '.join(sorted(known))} or None, "
                                f"got {split!r}")
    return [folder / s["name"] for s in index["shards"] if split is None or s["split"] == split]


def iter_shard_raw(paths, keep=None):
    """The samples of shard files as WebDataset groups them: ``__key__``, ``__url__`` and the
    bytes of each field (``png``, ``json``, ``txt``, ...).

    The files are read with seeks (they are plain tars): with ``keep(i)`` (``i`` counts the
    samples over all ``paths``) the members of samples not kept are skipped unread.
    """
    import tarfile

    from webdataset.tariterators import base_plus_ext

    i = -1
    for p in paths:
        if not Path(p).is_file():
            raise MissingInputError(f"{p}: shard listed in {SHARD_INDEX} is missing; write the "
                                    f"shards again")
        with open(p, "rb") as fh, tarfile.open(fileobj=fh, mode="r:") as tar:
            sample, wanted = None, False
            for m in tar:
                key, ext = base_plus_ext(m.name) if m.isfile() else (None, None)
                if key is None:
                    continue
                if sample is None or key != sample["__key__"]:
                    if wanted:
                        yield sample
                    i += 1
                    wanted = keep is None or keep(i)
                    sample = {"__key__": key, "__url__": str(p)}
                if wanted:                   # one read, where the member's data lies
                    sample[ext.lower()] = os.pread(fh.fileno(), m.size, m.offset_data)
            if wanted:
                yield sample


def decode_sample(raw: dict) -> dict:
    """A raw sample as :func:`iter_shard_samples` yields it (pixels decoded at 16 bits)."""
    key = raw["__key__"]
    meta = json.loads(raw["json"])
    return {"key": key,
            "pixels": decode_png16(raw["png"], name=f"{raw.get('__url__', 'shard')}:{key}.png"),
            "meta": meta, "caption": raw.get("txt", b"").decode("utf-8"),
            "split": str(meta.get("split", ""))}


def iter_shard_samples(folder, *, split: str | None = None):
    """Every sample of the shards in ``folder`` (or of one ``split``), decoded.

    Yields
    ------
    dict
        ``key`` (str), ``pixels`` (``(H, W, 3)`` uint16 RGB, exactly as
        :func:`~wavdiff_utils.io.decode_png16` returns the tile file), ``meta`` (the
        tile metadata), ``caption`` (str) and ``split`` (str).
    """
    for raw in iter_shard_raw(shard_paths(folder, split=split)):
        yield decode_sample(raw)


class ShardReader:
    """A torch ``IterableDataset`` over WebDataset shards: float tensors in ``[-1, 1]``.

    Parameters
    ----------
    folder : path-like
        A shard folder (with ``shards.json``).
    split : str or None
        ``"train"`` (default), ``"validation"``, ``"test"``, or None for every shard.
    image_key : str
        Key of the tensor in each item (default ``"pixel_values"``).
    transform : callable, optional
        Applied to the tensor.
    shuffle : bool
        Shuffle the order of the shards each epoch (``seed`` + :meth:`set_epoch`); mix
        samples further with a shuffle buffer in the training loop if needed.
    seed : int

    Items are dicts like :class:`~wavdiff_utils.dataset.TileDataset`'s: ``pixel_values``
    (float32 ``(3, H, W)``, see :func:`~wavdiff_utils.dataset.pixels_to_tensor`), ``text``,
    ``key``, and the scalar metadata (``song``, ``tile_index``, ``start_seconds``, ``split``,
    ``file_name``, ...).  With several ``DataLoader`` workers (and distributed ranks, when
    ``torch.distributed`` is initialised) each reads its own shards, or, when whole shards
    cannot be shared out evenly (fewer or unequal shards), every reader reads them all and
    keeps its own share of the samples: every sample is given once per epoch.
    """

    def __init__(self, folder, *, split: str | None = "train", image_key: str = "pixel_values",
                 transform=None, shuffle: bool = False, seed: int = 0):
        self.folder = Path(folder)
        self.paths = shard_paths(self.folder, split=split)
        self.counts = {s["name"]: s["samples"] for s in read_shard_index(self.folder)["shards"]}
        self.n = sum(self.counts[p.name] for p in self.paths)
        self.split, self.image_key, self.transform = split, image_key, transform
        self.shuffle, self.seed, self.epoch = bool(shuffle), int(seed), 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose shard order ``shuffle`` uses."""
        self.epoch = int(epoch)

    def _share(self):
        """This reader's shards, and which of their samples it keeps."""
        import random

        import torch

        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        dist = torch.distributed
        rank, world = ((dist.get_rank(), dist.get_world_size())
                       if dist.is_available() and dist.is_initialized() else (0, 1))
        me, readers = rank * nw + wid, world * nw
        paths = list(self.paths)
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(paths)
        # whole shards per reader (largest first, to the least loaded) while that keeps the
        # readers within 25% of an even share; else every reader reads all and keeps its share
        load, mine = [0] * readers, []
        for p in sorted(paths, key=lambda p: -self.counts[p.name]):
            r = load.index(min(load))
            load[r] += self.counts[p.name]
            if r == me:
                mine.append(p)
        if readers == 1 or max(load) <= 1.25 * self.n / readers:
            return [p for p in paths if p in mine], None
        return paths, lambda i: i % readers == me

    def __iter__(self):
        paths, keep = self._share()
        for raw in iter_shard_raw(paths, keep):
            yield self._item(raw)

    def _item(self, raw: dict) -> dict:
        s = decode_sample(raw)
        x = pixels_to_tensor(s["pixels"])
        if self.transform is not None:
            x = self.transform(x)
        scalars = {k: v for k, v in s["meta"].items()
                   if isinstance(v, (str, int, float, bool)) and k not in ("text", "key")}
        return {self.image_key: x, "key": s["key"], "text": s["caption"], **scalars}
