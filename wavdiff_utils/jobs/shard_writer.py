"""Writing WebDataset shards of a dataset folder, here or as Ray tasks (see
:mod:`wavdiff_utils.dataset.shards` for the format and the reader).

:func:`write_shards` turns the pipeline's output (after
:func:`~wavdiff_utils.dataset.export_dataset`) into per-split tars of up to ``shard_size``
(``"1GB"``, or a number of samples) and a ``shards.json`` index.  Writing is atomic per shard
(a temporary name, then a rename); the index is removed while shards change and written last.
A re-run rewrites only the shards whose tiles, captions or rows changed.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..dataset.export import METADATA_NAME, SPLITS, read_metadata
from ..errors import BadParameterError, BadShardError, MissingInputError, WavdiffError, one_line
from ..io.locking import output_lock
from ..paths import atomic_path
from .ray_engine import check_engine, on_node, ray_session, run_shard_tasks
from ..dataset.shards import (DEFAULT_SHARD_SIZE, FORMAT, SHARD_INDEX, parse_shard_size,
                              read_shard_index, sample_key)
from ..io.tiles import metadata_from_bytes

__all__ = ["ShardIndex", "ShardWriteError", "write_shards", "write_shard"]


_BLOCK = 512


_MTIME = 0                     # fixed member times: the same tiles give the same shard bytes


_META_GUESS = 700              # bytes of a tile's JSON before it is read (planning only)


class ShardWriteError(WavdiffError, OSError):
    """Shards that could not be written; names the first shard and why."""


def _tar_bytes(n: int) -> int:
    return _BLOCK + -(-n // _BLOCK) * _BLOCK


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



    folder, target = Path(folder), Path(target)
    problem = on_node(folder, target.parent)
    if problem:
        raise MissingInputError(problem)
    codecs: list = []
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh, wds.TarWriter(fh, encoder=False, mtime=_MTIME, mode=0o444,
                                                 user="wavdiff", group="wavdiff") as tar:
            for e in entries:
                png = (folder / e["row"]["file_name"]).read_bytes()
                tile = metadata_from_bytes(png) or {}
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


_SHARD_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{6}\.tar$")
