"""Writing WebDataset shards of a dataset folder, here or as Ray tasks (see
:mod:`wavdiff_utils.dataset.shards` for the format and the reader).

:func:`write_shards` turns the pipeline's output (after
:func:`~wavdiff_utils.dataset.export_dataset`) into per-split tars of up to ``shard_size``
(``"1GB"``, or a number of samples) and a ``shards.json`` index.  Writing is atomic per shard
(a temporary name, then a rename); the index is removed while shards change and written last.
The index records each sample's checksum, computed from the bytes written (see
:func:`~wavdiff_utils.dataset.shards.sample_checksum`).

A re-run rewrites only the shards that are not up to date: whose tiles, captions or rows
changed, or whose file no longer reads back with the index's size and checksums (a shard
damaged or replaced, even at the same size).  Without an index to go by (a run that failed
or was killed, or an index of a version without checksums) an existing shard is kept when it
reads back with the checksums of the samples its tiles make now.  A shard or the index that
cannot be written (full disk, read-only, no permission) is an
:class:`~wavdiff_utils.errors.UnwritableOutputError` naming the final path; the index is then
left out.
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
from ..errors import (BadParameterError, BadShardError, MissingInputError, UnwritableOutputError,
                      WavdiffError, one_line)
from ..io.locking import output_lock
from ..paths import atomic_path
from .ray_engine import check_engine, on_node, ray_session, run_shard_tasks
from ..dataset.shards import (DEFAULT_SHARD_SIZE, FORMAT, SHARD_INDEX, SIDE_EXT, parse_shard_size,
                              read_shard_index, sample_checksum, sample_key, verify_shard)
from ..io.tiles import metadata_from_bytes

__all__ = ["ShardIndex", "ShardWriteError", "UnwritableShardError", "write_shards", "write_shard"]


_BLOCK = 512


_MTIME = 0                     # fixed member times: the same tiles give the same shard bytes


_META_GUESS = 700              # bytes of a tile's JSON before it is read (planning only)


class ShardWriteError(WavdiffError, OSError):
    """Shards that could not be written; names the first shard and why."""


class UnwritableShardError(UnwritableOutputError, ShardWriteError):
    """A shard or the index that cannot be written (full disk, read-only, no permission): one
    line naming the final ``.tar`` (or ``shards.json``), never a temporary name."""


@contextlib.contextmanager
def _writing(path):
    """As :func:`wavdiff_utils.paths.writing`: an OSError inside becomes
    :class:`UnwritableShardError` naming ``path``, the final path."""
    try:
        yield
    except WavdiffError:
        raise
    except OSError as exc:
        raise UnwritableShardError(path, exc) from None


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


def _stat(path: Path):
    """``path.stat()``, or :class:`ShardWriteError` naming a listed file that cannot be read."""
    try:
        return path.stat()
    except OSError as exc:
        raise ShardWriteError(f"{path}: listed in {METADATA_NAME} but cannot be read "
                              f"({exc.strerror or exc}); run the pipeline again") from None


def _plan(folder: Path, rows, max_bytes, max_samples) -> list[dict]:
    """Shards to write: name, split, entries (one per row) and a fingerprint of their inputs."""
    txt_cache: dict = {}
    by_split: dict[str, list] = {}
    keys: dict = {}
    for row in rows:
        png = folder / row["file_name"]
        st = _stat(png)
        stem = png.name[:-4]
        extra, stamp = {}, []
        for name, p in sorted(_caption_files(png.parent, txt_cache).items()):
            if name.startswith(stem + ".") and name != stem + ".txt":
                ext = name[len(stem) + 1:].lower()
                extra[ext] = p.relative_to(folder).as_posix()
                s = p.stat()
                stamp.append((ext, s.st_size, s.st_mtime_ns))
        if row.get("side_file_name"):                    # a stereo song's side tile
            side = _stat(folder / row["side_file_name"])
            extra[SIDE_EXT] = row["side_file_name"]
            stamp.append((SIDE_EXT, side.st_size, side.st_mtime_ns))
        text = str(row.get("text", ""))
        size = (_tar_bytes(st.st_size) + _tar_bytes(len(json.dumps(row)) + _META_GUESS)
                + _tar_bytes(len(text.encode("utf-8")))
                + sum(_tar_bytes(n) for _, n, _ in stamp))
        entry = {"key": sample_key(row["song"], row["tile_index"]), "row": row, "extra": extra,
                 "size": size, "stamp": [st.st_size, st.st_mtime_ns, stamp]}
        if entry["key"] in keys:
            raise BadShardError(f"{folder / METADATA_NAME}: rows {keys[entry['key']]} and "
                                f"{row['file_name']} give one sample key {entry['key']} (the "
                                f"same song and tile index twice); export the dataset again")
        keys[entry["key"]] = row["file_name"]
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
    with their metadata and captions.  Returns ``{"samples", "bytes", "codecs",
    "checksums"}`` (each sample's :func:`~wavdiff_utils.dataset.shards.sample_checksum`,
    computed from the bytes written).

    Raises
    ------
    UnwritableShardError
        The shard cannot be written (full disk, read-only, no permission): naming ``target``.
    ShardWriteError
        A tile or caption of ``folder`` cannot be read: naming it.
    """
    import webdataset as wds

    folder, target = Path(folder), Path(target)
    problem = on_node(folder, target.parent)
    if problem:
        raise MissingInputError(problem)
    codecs: list = []
    sums: list = []
    with _writing(target), atomic_path(target) as tmp:
        with open(tmp, "wb") as fh, wds.TarWriter(fh, encoder=False, mtime=_MTIME, mode=0o444,
                                                 user="wavdiff", group="wavdiff") as tar:
            for e in entries:
                sample, codec = _sample(folder, e)
                if codec is not None and codec not in codecs:
                    codecs.append(codec)
                sums.append(sample_checksum(sample))
                tar.write(sample)
                if on_sample is not None:
                    on_sample(1)
    return {"samples": len(entries), "bytes": target.stat().st_size, "codecs": codecs,
            "checksums": sums}


def _sample(folder: Path, e: dict) -> tuple[dict, dict | None]:
    """The tar sample of one planned entry, and its tile's codec parameters."""
    files = {"png": folder / e["row"]["file_name"], **{ext: folder / rel
                                                        for ext, rel in e["extra"].items()}}
    data = {}
    for ext, path in files.items():
        try:
            data[ext] = (path.read_bytes() if ext.endswith("png") else
                         path.read_text(encoding="utf-8").strip().encode("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or one_line(exc)
            raise ShardWriteError(f"{path}: listed in {METADATA_NAME} but cannot be read "
                                  f"({why}); run the pipeline again") from None
    tile = metadata_from_bytes(data["png"]) or {}
    meta = {**tile, **{k: v for k, v in e["row"].items() if k != "text"}}
    sample = {"__key__": e["key"], "png": data.pop("png"),
              "json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode(),
              "txt": str(e["row"].get("text", "")).encode("utf-8"), **data}
    return sample, tile.get("codec")


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
    UnwritableShardError
        A shard or the index cannot be written (full disk, read-only, no permission): an
        :class:`~wavdiff_utils.errors.UnwritableOutputError` (and a :class:`ShardWriteError`)
        naming the final ``.tar`` or ``shards.json``; the index is then left out, and a re-run
        writes what is missing.
    ShardWriteError
        A shard could not be written because an input cannot be read (the message names the
        shard and the input); as above, a re-run writes what is missing.
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
        with _writing(dest):
            dest.mkdir(parents=True, exist_ok=True)
            for f in dest.glob(".*.tar"):           # temporaries of a killed writer
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


def _old_shards(dest: Path) -> dict:
    """The shards of ``dest``'s index (their codecs spelled out), or nothing."""
    try:
        index = read_shard_index(dest)
        return {s["name"]: {**s, "codecs": [index["codecs"][i] for i in s.get("codecs", [])]}
                for s in index["shards"]}
    except (FileNotFoundError, ValueError, IndexError, KeyError, TypeError):
        return {}


def _entry(s: dict, value: dict) -> dict:
    """The index entry of planned shard ``s`` from what :func:`write_shard` returned."""
    return {"name": s["name"], "split": s["split"], "samples": value["samples"],
            "bytes": value["bytes"], "first_key": s["entries"][0]["key"],
            "last_key": s["entries"][-1]["key"],
            "songs": len({e["row"]["song"] for e in s["entries"]}),
            "fingerprint": s["fingerprint"], "codecs": value["codecs"],
            "checksums": value["checksums"]}


def _reusable(folder: Path, dest: Path, s: dict, o: dict | None) -> dict | None:
    """The index entry of planned shard ``s`` when the file there is up to date, else None.

    Up to date: the same inputs (fingerprint) as the indexed ``o`` and the file reads back
    with ``o``'s size, keys and checksums; or, with no checksums to go by (no index: a run that
    failed or was killed, or an index of an older version), the file reads back with the
    checksums of the samples its tiles make now."""
    p = dest / s["name"]
    if not p.is_file():
        return None
    try:
        if o and o.get("checksums"):
            if o.get("fingerprint") != s["fingerprint"] or p.stat().st_size != o.get("bytes"):
                return None
            verify_shard(p, o)
            return o
        expected = {"samples": len(s["entries"]), "codecs": [], "checksums": []}
        for sample, codec in (_sample(folder, e) for e in s["entries"]):
            if codec is not None and codec not in expected["codecs"]:
                expected["codecs"].append(codec)
            expected["checksums"].append(sample_checksum(sample))
        entry = _entry(s, {**expected, "bytes": None})
        verify_shard(p, entry)
        return {**entry, "bytes": p.stat().st_size}
    except (WavdiffError, OSError):
        return None


def _write_all(folder, dest, rows, max_bytes, max_samples, size_text, engine, on_samples):
    plan = _plan(folder, rows, max_bytes, max_samples)
    old = _old_shards(dest)
    notes = []
    if old and not all(o.get("checksums") for o in old.values()):
        notes.append(f"{dest / SHARD_INDEX} had no sample checksums (an older version wrote "
                     f"it): every shard checked against its tiles and given them")
    done = {}
    for s in plan:
        entry = _reusable(folder, dest, s, old.get(s["name"]))
        if entry is not None:
            done[s["name"]] = entry
            on_samples(len(s["entries"]))
    todo = [s for s in plan if s["name"] not in done]
    if not todo and set(old) == set(done) and all(done[n] is old[n] for n in done):
        return ShardIndex(dest, read_shard_index(dest), written=0, kept=len(plan))
    if (dest / SHARD_INDEX).exists():               # no index while shards change
        with _writing(dest / SHARD_INDEX):
            (dest / SHARD_INDEX).unlink(missing_ok=True)
    errors = _write_todo(folder, dest, todo, engine, done, on_samples)
    if errors:
        raise ShardWriteError(f"{len(errors)} shard(s) could not be written, first: {errors[0]}; "
                              f"run again to write them")
    shards = [done[s["name"]] for s in plan]
    data = _index(shards, max_bytes, max_samples, size_text)
    with _writing(dest / SHARD_INDEX), atomic_path(dest / SHARD_INDEX) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    names = {s["name"] for s in shards}
    for f in dest.glob("*.tar"):                    # shards of an earlier, larger plan
        if f.name not in names and _SHARD_NAME.match(f.name):
            with _writing(f):
                f.unlink(missing_ok=True)
    return ShardIndex(dest, data, written=len(todo), kept=len(plan) - len(todo), notes=notes)


def _write_todo(folder, dest, todo, engine, done, on_samples) -> list[str]:
    """Write the shards of ``todo`` (recorded in ``done`` as each is written); the lines of
    those that failed.  A shard that cannot be written (full disk, read-only) stops the run
    at once with its :class:`UnwritableShardError`."""
    errors: list = []

    def record(s, value):
        done[s["name"]] = _entry(s, value)

    if engine == "ray":
        by_name = {s["name"]: s for s in todo}

        def finished(job, value, error):
            if error:                        # "Kind: message"; the message names the shard
                why = error.split(": ", 1)[-1] if error.split(": ", 1)[0].isidentifier() \
                    else error
                errors.append(why if why.startswith(job[1]) else f"{job[1]}: {why}")
            else:
                record(by_name[Path(job[1]).name], value)
                on_samples(value["samples"])

        with ray_session(None):
            run_shard_tasks(write_shard, [(str(folder.resolve()), str((dest / s["name"]).resolve()),
                                           s["entries"]) for s in todo], on_done=finished)
        return errors
    for s in todo:
        try:
            record(s, write_shard(folder, dest / s["name"], s["entries"], on_samples))
        except UnwritableShardError:
            raise
        except OSError as exc:
            errors.append(f"{dest / s['name']}: {one_line(exc)}")
    return errors


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
    return {"format": FORMAT, "version": 2,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "shard_size": size_text, "max_bytes": max_bytes, "max_samples": max_samples,
            "total_samples": sum(s["samples"] for s in shards),
            "total_bytes": sum(s["bytes"] for s in shards), "splits": splits,
            "codec": codecs[0] if len(codecs) == 1 else None, "codecs": codecs,
            "fields": {"png": "the tile's 16-bit RGB PNG file, bytes as written",
                       "json": "tile metadata (codec, span, source) and its metadata.jsonl row",
                       "txt": "caption (the dataset's text column)",
                       "<name>.txt": "other captioners' captions (tags.txt, prose.txt, meta.txt)"},
            "checksum": "each shard's checksums: per sample, BLAKE2b (8 bytes, hex) of its key, "
                        "then each member's name, length and bytes in name order",
            "shards": [{**s, "codecs": [codecs.index(c) for c in s.get("codecs", [])]}
                       for s in shards]}


_SHARD_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{6}\.tar$")
