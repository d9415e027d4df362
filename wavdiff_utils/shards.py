"""WebDataset shards of a dataset folder, and a loader that keeps all 16 bits.

A folder of millions of PNG files is slow to train from (one open per sample) and does
not spread over machines; sharded tars (`WebDataset <https://github.com/webdataset>`_)
are read sequentially, a shard per worker.  :func:`write_shards` turns the pipeline's
output (after :func:`~wavdiff_utils.dataset.export_dataset`) into::

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
``shard_size`` (``"1GB"``, or a number of samples).  Writing is atomic per shard (a
temporary name, then a rename); the index is removed while shards change and written
last.  A re-run rewrites only the shards whose tiles, captions or rows changed.

Reading: :func:`iter_shard_samples` yields decoded samples (the contract:
``key``, ``pixels`` as :func:`~wavdiff_utils.dataset.decode_png16` returns them, ``meta``,
``caption``, ``split``); :class:`ShardDataset` is a torch ``IterableDataset`` giving the
same items as :class:`~wavdiff_utils.dataset.TileDataset` (float tensors in [-1, 1]),
split over ``DataLoader`` workers and distributed ranks.  Decoding is OpenCV's: the
``webdataset`` library's own image decoders go through Pillow, which keeps 8 of the 16 bits.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .dataset import (METADATA_NAME, SPLITS, decode_png16, pixels_to_tensor, read_metadata,
                      torch_dataset_class)
from .errors import BadParameterError, BadShardError, MissingInputError, WavdiffError, one_line
from .paths import atomic_path, stable_hash

__all__ = ["SHARD_INDEX", "DEFAULT_SHARD_SIZE", "ShardIndex", "ShardWriteError", "parse_shard_size",
           "write_shards", "read_shard_index", "shard_paths", "iter_shard_raw", "decode_sample",
           "iter_shard_samples", "ShardDataset", "sample_key"]

#: The index file in a shard folder.
SHARD_INDEX = "shards.json"
#: Default shard limit: about 1 GB (some 160 tiles of 1024x1024 at PNG level 0).
DEFAULT_SHARD_SIZE = "1GB"
FORMAT = "wavdiff-shards"
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{6}\.tar$")
_BLOCK = 512
_MTIME = 0                     # fixed member times: the same tiles give the same shard bytes
_META_GUESS = 700              # bytes of a tile's JSON before it is read (planning only)
_UNITS = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "t": 10 ** 12,
          "ki": 2 ** 10, "mi": 2 ** 20, "gi": 2 ** 30, "ti": 2 ** 40}


class ShardWriteError(WavdiffError, OSError):
    """Shards that could not be written; names the first shard and why."""


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


def _tar_bytes(n: int) -> int:
    return _BLOCK + -(-n // _BLOCK) * _BLOCK


# =========================================================================== the index

@dataclass
class ShardIndex:
    """What :func:`write_shards` made: ``data`` is ``shards.json``'s content."""

    folder: Path
    data: dict
    written: int = 0
    kept: int = 0
    notes: list = field(default_factory=list)

    @property
    def shards(self) -> list[dict]:
        return self.data["shards"]

    @property
    def total_samples(self) -> int:
        return self.data["total_samples"]

    def summary(self) -> str:
        """One line: shards per split, samples, size, what was rewritten."""
        splits = ", ".join(f"{k} {v['shards']}" for k, v in self.data["splits"].items())
        return (f"{len(self.shards)} shard(s) in {self.folder} ({splits}): "
                f"{self.total_samples} samples, {self.data['total_bytes'] / 1e9:.2f} GB; "
                f"{self.written} written, {self.kept} up to date")

    def record(self) -> dict:
        """JSON-ready: folder, totals, counts of written and kept shards."""
        return {"folder": str(self.folder), "shards": len(self.shards),
                "samples": self.total_samples, "bytes": self.data["total_bytes"],
                "splits": self.data["splits"], "written": self.written, "kept": self.kept}


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

def _caption_files(song_dir: Path, cache: dict) -> dict:
    if song_dir not in cache:
        cache[song_dir] = {p.name: p for p in song_dir.glob("*.txt")} if song_dir.is_dir() else {}
    return cache[song_dir]


def _plan(folder: Path, rows, max_bytes, max_samples) -> list[dict]:
    """Shards to write: name, split, entries (one per row) and a fingerprint of their inputs."""
    txt_cache: dict = {}
    by_split: dict[str, list] = {}
    for row in rows:
        png = folder / row["file_name"]
        try:
            st = png.stat()
        except OSError as exc:
            raise ShardWriteError(f"{png}: listed in {METADATA_NAME} but cannot be read "
                                  f"({exc.strerror or exc}); run the pipeline again") from None
        stem = png.name[:-4]
        extra, stamp = {}, []
        for name, p in sorted(_caption_files(png.parent, txt_cache).items()):
            if name.startswith(stem + ".") and name != stem + ".txt":
                ext = name[len(stem) + 1:].lower()
                extra[ext] = p.relative_to(folder).as_posix()
                s = p.stat()
                stamp.append((ext, s.st_size, s.st_mtime_ns))
        text = str(row.get("text", ""))
        size = (_tar_bytes(st.st_size) + _tar_bytes(len(json.dumps(row)) + _META_GUESS)
                + _tar_bytes(len(text.encode("utf-8")))
                + sum(_tar_bytes(n) for _, n, _ in stamp))
        entry = {"key": sample_key(row["song"], row["tile_index"]), "row": row, "extra": extra,
                 "size": size, "stamp": [st.st_size, st.st_mtime_ns, stamp]}
        by_split.setdefault(str(row.get("split") or "train"), []).append(entry)
    order = [n for n, _ in SPLITS if n in by_split] + sorted(set(by_split) - {n for n, _ in SPLITS})
    plan = []
    for split in order:
        if not re.fullmatch(r"[A-Za-z0-9_]+", split):
            raise BadParameterError(f"split name {split!r} in {METADATA_NAME} cannot name a shard "
                                    f"(letters, digits and _ only)")
        shard: list = []
        size = 0
        for e in by_split[split] + [None]:
            full = e is None or (shard and ((max_samples and len(shard) >= max_samples)
                                            or (max_bytes and size + e["size"] > max_bytes)))
            if full and shard:
                fp = hashlib.sha256(json.dumps([FORMAT, 1, [(x["row"], x["stamp"]) for x in shard]],
                                               sort_keys=True).encode()).hexdigest()[:32]
                plan.append({"name": f"{split}-{sum(p['split'] == split for p in plan):06d}.tar",
                             "split": split, "entries": shard, "fingerprint": fp})
                shard, size = [], 0
            if e is not None:
                shard.append(e)
                size += e["size"]
    return plan


def write_shard(folder, target, entries, on_sample=None) -> dict:
    """Write one shard atomically (here, or in a Ray task): the listed tiles of ``folder``
    with their metadata and captions.  Returns ``{"samples", "bytes", "codecs"}``."""
    import webdataset as wds

    from .tile_io import _metadata_from_bytes

    from .ray_engine import _on_node

    folder, target = Path(folder), Path(target)
    problem = _on_node(folder, target.parent)
    if problem:
        raise MissingInputError(problem)
    codecs: list = []
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh, wds.TarWriter(fh, encoder=False, mtime=_MTIME, mode=0o444,
                                                 user="wavdiff", group="wavdiff") as tar:
            for e in entries:
                png = (folder / e["row"]["file_name"]).read_bytes()
                tile = _metadata_from_bytes(png) or {}
                if tile.get("codec") is not None and tile["codec"] not in codecs:
                    codecs.append(tile["codec"])
                meta = {**tile, **{k: v for k, v in e["row"].items() if k != "text"}}
                sample = {"__key__": e["key"], "png": png,
                          "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode(),
                          "txt": str(e["row"].get("text", "")).encode("utf-8")}
                for ext, rel in e["extra"].items():
                    sample[ext] = (folder / rel).read_text(encoding="utf-8").strip().encode("utf-8")
                tar.write(sample)
                if on_sample is not None:
                    on_sample(1)
    return {"samples": len(entries), "bytes": target.stat().st_size, "codecs": codecs}


def write_shards(folder, dest=None, *, shard_size=DEFAULT_SHARD_SIZE, engine: str = "local",
                 progress: bool = True, on_samples=None) -> ShardIndex:
    """Write WebDataset shards of a dataset folder (see the module notes).

    Parameters
    ----------
    folder : path-like
        A dataset folder with ``metadata.jsonl`` (the pipeline's output).
    dest : path-like, optional
        Shard folder (created); default ``<folder>/shards``.
    shard_size : str or int
        Limit of one shard: a size with a unit (``"1GB"``, the default; ``"500MB"``) or a
        number of samples (``2000``).  A shard holds at least one sample.
    engine : {"local", "ray"}
        Write the shards here, one after the other, or as Ray tasks (one per shard; the
        Ray already running in this process, else an embedded one).
    progress : bool
        A progress bar over samples (unless ``on_samples`` is given).
    on_samples : callable, optional
        Called with the number of samples done, as they are done.

    Returns
    -------
    ShardIndex

    Raises
    ------
    MissingInputError
        No ``metadata.jsonl`` in ``folder``.
    BadShardError
        ``metadata.jsonl`` has no rows.
    ShardWriteError
        A shard could not be written (the message names it); the index is then left
        out, and a re-run writes what is missing.
    OutputLockedError
        Another run is writing to ``folder`` (or ``dest``).
    """
    import contextlib

    from .locking import output_lock
    from .ray_engine import check_engine

    folder = Path(folder)
    dest = Path(dest) if dest is not None else folder / "shards"
    max_bytes, max_samples = parse_shard_size(shard_size)
    engine = check_engine(engine)
    try:
        rows = read_metadata(folder)
    except FileNotFoundError as exc:
        raise (exc if isinstance(exc, WavdiffError) else MissingInputError(one_line(exc))) from None
    if not rows:
        raise BadShardError(f"{folder / METADATA_NAME} has no rows: nothing to shard")
    inside = dest.resolve().is_relative_to(folder.resolve())
    with output_lock(folder), (contextlib.nullcontext() if inside else output_lock(dest)):
        dest.mkdir(parents=True, exist_ok=True)
        for f in dest.glob(".*.tar"):               # temporaries of a killed writer
            f.unlink(missing_ok=True)
        bar = None
        if on_samples is None:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(rows), unit="sample", desc="shards", disable=not progress)
            on_samples = bar.update
        try:
            return _write_all(folder, dest, rows, max_bytes, max_samples, str(shard_size),
                              engine, on_samples)
        finally:
            if bar is not None:
                bar.close()


def _write_all(folder, dest, rows, max_bytes, max_samples, size_text, engine, on_samples):
    plan = _plan(folder, rows, max_bytes, max_samples)
    try:
        index = read_shard_index(dest)
        old = {s["name"]: {**s, "codecs": [index["codecs"][i] for i in s.get("codecs", [])]}
               for s in index["shards"]}
    except (FileNotFoundError, ValueError, IndexError, KeyError, TypeError):
        old = {}

    def current(s) -> bool:
        o = old.get(s["name"])
        p = dest / s["name"]
        return bool(o) and o.get("fingerprint") == s["fingerprint"] and p.is_file() \
            and p.stat().st_size == o.get("bytes")

    todo = [s for s in plan if not current(s)]
    names = {s["name"] for s in todo}
    done = {s["name"]: old[s["name"]] for s in plan if s["name"] not in names}
    for s in plan:
        if s["name"] not in names:
            on_samples(len(s["entries"]))
    if not todo and set(old) == set(done):
        return ShardIndex(dest, read_shard_index(dest), written=0, kept=len(plan))
    (dest / SHARD_INDEX).unlink(missing_ok=True)    # no index while shards change
    errors = []

    def record(s, value):
        done[s["name"]] = {"name": s["name"], "split": s["split"], "samples": value["samples"],
                           "bytes": value["bytes"], "first_key": s["entries"][0]["key"],
                           "last_key": s["entries"][-1]["key"],
                           "songs": len({e["row"]["song"] for e in s["entries"]}),
                           "fingerprint": s["fingerprint"], "codecs": value["codecs"]}

    if engine == "ray":
        from .ray_engine import ray_session, run_shard_tasks

        def finished(job, value, error):
            s = by_name[Path(job[1]).name]
            if error:
                errors.append(f"{job[1]}: {error}")
            else:
                record(s, value)
                on_samples(value["samples"])

        by_name = {s["name"]: s for s in todo}
        with ray_session(None):
            run_shard_tasks(write_shard, [(str(folder.resolve()), str((dest / s["name"]).resolve()),
                                           s["entries"]) for s in todo], on_done=finished)
    else:
        for s in todo:
            try:
                record(s, write_shard(folder, dest / s["name"], s["entries"], on_samples))
            except OSError as exc:
                errors.append(f"{dest / s['name']}: {exc}")
    if errors:
        raise ShardWriteError(f"{len(errors)} shard(s) could not be written, first: {errors[0]}; "
                              f"run again to write them")
    shards = [done[s["name"]] for s in plan]
    data = _index(shards, max_bytes, max_samples, size_text)
    with atomic_path(dest / SHARD_INDEX) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    names = {s["name"] for s in shards}
    for f in dest.glob("*.tar"):                    # shards of an earlier, larger plan
        if f.name not in names and _SHARD_NAME.match(f.name):
            f.unlink(missing_ok=True)
    return ShardIndex(dest, data, written=len(todo), kept=len(plan) - len(todo))


def _index(shards, max_bytes, max_samples, size_text) -> dict:
    codecs = []
    for s in shards:
        for c in s.get("codecs", []):
            if c not in codecs:
                codecs.append(c)
    splits: dict = {}
    for s in shards:
        sp = splits.setdefault(s["split"], {"shards": 0, "samples": 0})
        sp["shards"] += 1
        sp["samples"] += s["samples"]
    return {"format": FORMAT, "version": 1,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "shard_size": size_text, "max_bytes": max_bytes, "max_samples": max_samples,
            "total_samples": sum(s["samples"] for s in shards),
            "total_bytes": sum(s["bytes"] for s in shards), "splits": splits,
            "codec": codecs[0] if len(codecs) == 1 else None, "codecs": codecs,
            "fields": {"png": "the tile's 16-bit RGB PNG file, bytes as written",
                       "json": "tile metadata (codec, span, source) and its metadata.jsonl row",
                       "txt": "caption (the dataset's text column)",
                       "<name>.txt": "other captioners' captions (tags.txt, prose.txt, meta.txt)"},
            "shards": [{**s, "codecs": [codecs.index(c) for c in s.get("codecs", [])]}
                       for s in shards]}


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
        :func:`~wavdiff_utils.dataset.decode_png16` returns the tile file), ``meta`` (the
        tile metadata), ``caption`` (str) and ``split`` (str).
    """
    for raw in iter_shard_raw(shard_paths(folder, split=split)):
        yield decode_sample(raw)


class _ShardDatasetBase:
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


def __getattr__(name):
    # ShardDataset subclasses torch's IterableDataset, built on first use (no torch import
    # for the pipeline's shard writing)
    if name == "ShardDataset":
        return torch_dataset_class(_ShardDatasetBase, "IterableDataset", name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
