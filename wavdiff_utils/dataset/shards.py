"""WebDataset shards of a dataset folder: their format, their index, and reading them with
all 16 bits.

A folder of millions of PNG files is slow to train from (one open per sample) and does
not spread over machines; sharded tars (`WebDataset <https://github.com/webdataset>`_)
are read sequentially, a shard per worker.  :func:`wavdiff_utils.jobs.write_shards` turns
the pipeline's output (after :func:`~wavdiff_utils.dataset.export_dataset`) into::

    <shards>/train-000000.tar, train-000001.tar, ..., validation-000000.tar, test-000000.tar
    <shards>/shards.json          the index: every shard with its sample count, size, first
                                  and last key and each sample's checksum, the totals, the
                                  codec parameters

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

Reading checks every shard against the index as it goes (no extra pass): the size of each
shard before it is read, the checksum of each sample read (:func:`sample_checksum`; a reader
that skips other workers' samples checks its own), the keys (none twice, the first and last
as indexed) and the sample count.  Whatever is wrong (a tar cut short, emptied, garbage,
replaced by a copy of another shard, a changed member) is one :class:`BadShardError` line
naming the ``.tar`` file and the member.  An index written before checksums existed gets the
size, key and count checks, and one warning saying so.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import warnings
from pathlib import Path


from .export import SPLITS
from ..io.png16 import decode_png16
from .tensors import pixels_to_tensor
from ..errors import BadParameterError, BadShardError, MissingInputError, WavdiffError, one_line
from ..paths import stable_hash

__all__ = ["SHARD_INDEX", "DEFAULT_SHARD_SIZE", "parse_shard_size", "read_shard_index",
           "shard_paths", "iter_shard_raw", "decode_sample", "iter_shard_samples", "sample_key",
           "sample_checksum", "verify_shard", "SIDE_EXT"]

#: The index file in a shard folder.
SHARD_INDEX = "shards.json"
#: Default shard limit: about 1 GB (some 160 tiles of 1024x1024 at PNG level 0).
DEFAULT_SHARD_SIZE = "1GB"
FORMAT = "wavdiff-shards"
#: The member holding a stereo sample's side tile (beside ``png``, the mid).
SIDE_EXT = "side.png"
#: A tar member's sample key and field, as WebDataset splits them (at the name's first dot).
_KEY_EXT = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
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


# =========================================================================== checking


def sample_checksum(sample: dict) -> str:
    """The checksum of a sample that ``shards.json`` records (16 hex digits): BLAKE2b over its
    key, then each member's name, length and bytes in name order (fields starting with ``_``,
    such as ``__url__``, left out).  The writer computes it from what it writes, the reader from
    what it reads."""
    h = hashlib.blake2b(digest_size=8)
    h.update(str(sample["__key__"]).encode("utf-8") + b"\0")
    for ext in sorted(k for k in sample if not k.startswith("_")):
        data = sample[ext]
        h.update(ext.encode("utf-8") + b"\0" + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


_INDEXES: dict = {}          # index path -> (its stat stamp, {shard name: entry})
_NOTED: set = set()          # indexes already warned about (no checksums)


def _entries(folder: Path) -> dict | None:
    """``{shard name: index entry}`` of ``folder``'s index (cached while it is unchanged), or
    None without one; an index with no checksums is warned about once."""
    path = folder / SHARD_INDEX
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    cached = _INDEXES.get(str(path))
    if cached is None or cached[0] != stamp:
        shards = read_shard_index(folder).get("shards")
        if not isinstance(shards, list) or not all(isinstance(s, dict) and "name" in s
                                                   for s in shards):
            raise BadShardError(f"{path}: not a wavdiff shard index (its shard list is damaged)")
        cached = (stamp, {s["name"]: s for s in shards})
        _INDEXES.clear()
        _INDEXES[str(path)] = cached
    if any("checksums" not in s for s in cached[1].values()) and str(path) not in _NOTED:
        _NOTED.add(str(path))
        warnings.warn(f"{path} was written before shards had sample checksums: only each "
                      f"shard's size and sample count are checked; write the shards again to "
                      f"check every sample", stacklevel=3)
    return cached[1]


def _bad(path, member, problem: str) -> BadShardError:
    """One line naming the shard, the member (when known: a name, or a list of names) and the
    problem."""
    if isinstance(member, list):
        where = f" (members {', '.join(member)})"
    else:
        where = f" (member {member})" if member else ""
    return BadShardError(f"{path}: damaged shard{where}: {problem}; write the shards again")


class _ShardCheck:
    """What one shard is checked against while it is read: its size (at once), then each
    sample's key (no duplicates; first and last as indexed), checksum and the count."""

    def __init__(self, path: Path, entry: dict | None, seen: set):
        self.path, self.entry, self.seen = path, entry or {}, seen
        sums = self.entry.get("checksums")
        self.sums = sums if isinstance(sums, list) else None
        self.n, self.key = 0, None

    def size(self, fh) -> None:
        _check_size(self.path, self.entry, os.fstat(fh.fileno()).st_size)

    def start(self, key: str, member: str) -> None:
        if key in self.seen:
            raise _bad(self.path, member, f"sample key {key} appears twice (a duplicated or "
                                          f"copied shard?)")
        self.seen.add(key)
        first = self.entry.get("first_key")
        if self.n == 0 and first is not None and key != first:
            raise _bad(self.path, member, f"its first sample is {key}, {SHARD_INDEX} says "
                                          f"{first} (replaced by another shard?)")
        self.n += 1
        self.key = key

    def sample(self, sample: dict) -> None:
        if self.sums is None:
            return
        j = self.n - 1
        members = [f"{sample['__key__']}.{e}" for e in sorted(sample) if e[0] != "_"]
        if j >= len(self.sums):
            raise _bad(self.path, members, f"more samples than the {len(self.sums)} in "
                                           f"{SHARD_INDEX}")
        if sample_checksum(sample) != self.sums[j]:
            raise _bad(self.path, members, f"sample {sample['__key__']} differs from its "
                                           f"checksum in {SHARD_INDEX}")

    def end(self) -> None:
        want, last = self.entry.get("samples"), self.entry.get("last_key")
        if want is not None and self.n != want:
            raise _bad(self.path, None, f"it holds {self.n} samples, {SHARD_INDEX} says {want}")
        if last is not None and self.key is not None and self.key != last:
            raise _bad(self.path, None, f"its last sample is {self.key}, {SHARD_INDEX} says "
                                        f"{last} (replaced by another shard?)")


def _check_size(path: Path, entry: dict, have: int | None = None) -> None:
    """A shard's size against its index entry (``have``: its size, else looked up)."""
    want = entry.get("bytes")
    if want is None:
        return
    if have is None:
        try:
            have = path.stat().st_size
        except OSError:
            raise MissingInputError(f"{path}: shard listed in {SHARD_INDEX} is missing; write "
                                    f"the shards again") from None
    if have != want:
        raise _bad(path, None, f"it is {have} bytes, {SHARD_INDEX} says {want} (cut short, "
                               f"grown or replaced)")


def _members(path: Path, fh):
    """``(key, ext, member)`` of each file in the tar ``fh``, tar errors as :class:`BadShardError`."""
    last = None
    try:
        with tarfile.open(fileobj=fh, mode="r:") as tar:
            while True:
                m = tar.next()
                if m is None:
                    return
                last = m.name
                match = _KEY_EXT.match(m.name) if m.isfile() else None
                if match:
                    yield match.group(1), match.group(2).lower(), m
    except (tarfile.TarError, EOFError, UnicodeError, OSError) as exc:
        problem = "not readable as a tar file" if last is None else "unreadable after this member"
        why = (exc.strerror if isinstance(exc, OSError) else None) or one_line(exc)
        raise _bad(path, last, f"{problem} ({why})") from None


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

    Each shard listed in its folder's ``shards.json`` is checked as it is read, with no extra
    pass: its size before anything is read, each kept sample against its checksum, every
    sample's key (no key twice; first and last as indexed) and the number of samples at its
    end.  An index written before checksums existed gets the size and count checks (and a
    warning, once).

    Raises
    ------
    MissingInputError
        A shard file is missing.
    BadShardError
        A shard is damaged, cut short, replaced, holds a duplicate key or differs from the
        index: one line naming the ``.tar`` file and the member.
    """
    i = [-1]
    seen: set = set()
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise MissingInputError(f"{p}: shard listed in {SHARD_INDEX} is missing; write the "
                                    f"shards again")
        entries = _entries(p.parent)
        entry = entries.get(p.name) if entries is not None else None
        yield from _read_shard(p, entry, keep, i, seen)


def verify_shard(path, entry: dict) -> None:
    """Read the whole shard ``path`` and check it against its index ``entry`` (size, keys,
    every sample's checksum, count); raises :class:`BadShardError` naming what differs."""
    for _ in _read_shard(Path(path), entry, None, [-1], set()):
        pass


def _read_shard(path: Path, entry, keep, i: list, seen: set):
    """The samples of one shard (see :func:`iter_shard_raw`); ``i[0]`` counts samples over
    every shard read, ``seen`` holds their keys."""
    check = _ShardCheck(path, entry, seen)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise BadShardError(f"{path}: shard cannot be read ({exc.strerror or exc})") from None
    with fh:
        check.size(fh)
        sample, wanted = None, False
        for key, ext, m in _members(path, fh):
            if sample is None or key != sample["__key__"]:
                if wanted:
                    check.sample(sample)
                    yield sample
                check.start(key, m.name)
                i[0] += 1
                wanted = keep is None or keep(i[0])
                sample, exts = {"__key__": key, "__url__": str(path)}, set()
            if ext in exts:
                raise _bad(path, m.name, "the member appears twice")
            exts.add(ext)
            if wanted:                       # one read, where the member's data lies
                try:
                    data = os.pread(fh.fileno(), m.size, m.offset_data)
                except OSError as exc:
                    raise _bad(path, m.name, f"cannot be read ({exc.strerror or exc})") from None
                if len(data) != m.size:
                    raise _bad(path, m.name, f"cut short: {len(data)} of {m.size} bytes")
                sample[ext] = data
        if wanted:
            check.sample(sample)
            yield sample
        check.end()


def decode_sample(raw: dict) -> dict:
    """A raw sample as :func:`iter_shard_samples` yields it (pixels decoded at 16 bits).

    Raises
    ------
    BadShardError
        A member is missing or cannot be decoded: naming the shard and the member.
    """
    key, url = raw.get("__key__", "?"), raw.get("__url__", "shard")
    for ext in ("png", "json"):
        if ext not in raw:
            raise _member_error(url, f"{key}.{ext}", "missing from its sample")
    try:
        meta = json.loads(raw["json"])
    except ValueError as exc:
        raise _member_error(url, f"{key}.json", f"not valid JSON ({one_line(exc)})") from None
    if not isinstance(meta, dict):
        raise _member_error(url, f"{key}.json", f"holds a {type(meta).__name__}, not an object")
    try:
        caption = raw.get("txt", b"").decode("utf-8")
    except UnicodeDecodeError:
        raise _member_error(url, f"{key}.txt", "not UTF-8 text") from None
    try:
        pixels = decode_png16(raw["png"], name=f"{url}:{key}.png")
    except WavdiffError as exc:
        raise _member_error(url, f"{key}.png", getattr(exc, "problem", None) or one_line(exc)) \
            from None
    out = {"key": key, "pixels": pixels, "meta": meta, "caption": caption,
           "split": str(meta.get("split", ""))}
    if SIDE_EXT in raw:                               # a stereo song's side tile
        try:
            out["side_pixels"] = decode_png16(raw[SIDE_EXT], name=f"{url}:{key}.{SIDE_EXT}")
        except WavdiffError as exc:
            raise _member_error(url, f"{key}.{SIDE_EXT}",
                                getattr(exc, "problem", None) or one_line(exc)) from None
    return out


def _member_error(url, member: str, problem: str) -> BadShardError:
    return BadShardError(f"{url}: member {member}: {problem}; write the shards again")


def iter_shard_samples(folder, *, split: str | None = None):
    """Every sample of the shards in ``folder`` (or of one ``split``), decoded.

    Yields
    ------
    dict
        ``key`` (str), ``pixels`` (``(H, W, 3)`` uint16 RGB, exactly as
        :func:`~wavdiff_utils.io.decode_png16` returns the tile file), ``meta`` (the
        tile metadata), ``caption`` (str) and ``split`` (str); for a stereo song also
        ``side_pixels``, its side tile's.
    """
    for raw in iter_shard_raw(shard_paths(folder, split=split)):
        yield decode_sample(raw)


def _first_sample_has_side(path: Path) -> bool:
    """Whether the first sample of shard ``path`` has a side tile (tar headers read only)."""
    with open(path, "rb") as fh:
        first = None
        for key, ext, _ in _members(path, fh):
            if first is not None and key != first:
                return False
            first = key
            if ext == SIDE_EXT:
                return True
    return False


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
    channels : {"mid", "stereo"}
        ``"stereo"``: ``(6, H, W)`` tensors, the mid planes then the side tile's (member
        ``side.png``); shards of a mono dataset refuse it at their first sample, in one line.

    Items are dicts like :class:`~wavdiff_utils.dataset.TileDataset`'s: ``pixel_values``
    (float32 ``(3, H, W)``, see :func:`~wavdiff_utils.dataset.pixels_to_tensor`), ``text``,
    ``key``, and the scalar metadata (``song``, ``tile_index``, ``start_seconds``, ``split``,
    ``file_name``, ...).  With several ``DataLoader`` workers (and distributed ranks, when
    ``torch.distributed`` is initialised) each reads its own shards, or, when whole shards
    cannot be shared out evenly (fewer or unequal shards), every reader reads them all and
    keeps its own share of the samples: every sample is given once per epoch.

    ``len()`` is the index's count, and what is read: every shard's size is checked here,
    and each shard's samples as they are read (see :func:`iter_shard_raw`).

    Raises
    ------
    MissingInputError
        No index, or a shard it lists is missing.
    BadShardError
        A shard's size differs from the index (cut short, replaced): naming the ``.tar`` file.
    """

    def __init__(self, folder, *, split: str | None = "train", image_key: str = "pixel_values",
                 transform=None, shuffle: bool = False, seed: int = 0, channels: str = "mid"):
        if channels not in ("mid", "stereo"):
            raise BadParameterError(f"channels must be one of ('mid', 'stereo'), got {channels!r}")
        self.channels = channels
        self.folder = Path(folder)
        self.paths = shard_paths(self.folder, split=split)
        entries = _entries(self.folder) or {}
        self.counts = {name: s["samples"] for name, s in entries.items()}
        for p in self.paths:                 # len() is what will be read: sizes checked now
            _check_size(p, entries[p.name])
        self.n = sum(self.counts[p.name] for p in self.paths)
        if channels == "stereo" and self.paths and not _first_sample_has_side(self.paths[0]):
            raise BadParameterError(f"{self.paths[0]}: mono shards (its first sample has no side "
                                    f"tile, {SIDE_EXT}): channels='stereo' needs a dataset encoded "
                                    f"with channels: stereo, or use channels='mid'")
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
        if self.channels == "stereo":
            if "side_pixels" not in s:
                raise BadParameterError(f"{s['key']} in {raw.get('__url__', self.folder)}: has no "
                                        f"side tile ({SIDE_EXT}): mono shards; channels='stereo' "
                                        f"needs a dataset encoded with channels: stereo, or use "
                                        f"channels='mid'")
            import torch
            x = torch.cat([x, pixels_to_tensor(s["side_pixels"])])
        if self.transform is not None:
            x = self.transform(x)
        scalars = {k: v for k, v in s["meta"].items()
                   if isinstance(v, (str, int, float, bool)) and k not in ("text", "key")}
        return {self.image_key: x, "key": s["key"], "text": s["caption"], **scalars}
