"""A Parquet export of a dataset folder that the Hugging Face Hub and ``datasets`` read with all
16 bits and no code of ours (Pillow, and so ``datasets``' ``Image`` feature, reads a 16-bit PNG
as 8-bit); :mod:`wavdiff_utils.dataset.parquet_read` reads it back.  :func:`write_parquet` writes, into ``<folder>/parquet``:
``data/<split>-000000.parquet``, ... (one row per tile, columns :data:`COLUMNS`: ``tile`` is a
``datasets.Array3D`` (3, H, W) of uint16), ``parquet.json`` (the index: shards, rows, bytes,
checksums, inputs) and ``README.md`` (the card, with the YAML header the Hub reads).

Shards are per split, in dataset order, of at most ``shard_size`` of pixels; a row group holds
about :data:`ROW_GROUP_BYTES` of pixels (one 1024x1024 tile), so a row reads alone; pages carry
CRC checksums, which our reader checks.  Each shard is written under a temporary name and
renamed; the index is removed while shards change and written last.  A re-run rewrites only the
shards whose inputs changed (``metadata.jsonl`` rows, tile sizes and times, caption files: a
source re-encoded by the pipeline changes its tiles) or whose file no longer matches the index.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import (BadParameterError, BadShardError, MissingInputError, WavdiffError,
                      one_line)
from ..io.locking import output_lock
from ..io.manifest import manifest_params, read_manifest
from ..io.png16 import decode_png16
from ..io.tiles import metadata_from_bytes
from ..paths import atomic_path, writing
from .card import (PARQUET_COLUMNS as COLUMNS, SIDE_COLUMN, dataset_name, parquet_features,
                   write_parquet_card)
from .parquet_read import DATA_DIR, FORMAT, PARQUET_DIR, PARQUET_INDEX, open_shard, read_parquet_index

__all__ = ["DEFAULT_PARQUET_SHARD_SIZE", "COMPRESSIONS", "ROW_GROUP_BYTES", "ParquetExport",
           "write_parquet"]

#: Default shard limit (pixels before compression), a size the Hub handles well.
DEFAULT_PARQUET_SHARD_SIZE = "500MB"
#: ``compression`` choices: zstd (the default: 4% smaller on real music) or none.
COMPRESSIONS = ("zstd", "none")
#: Pixels per row group: one 1024x1024 tile (6.3 MB) per group, 21 of 128x128.
ROW_GROUP_BYTES = 2_000_000
VERSION = 1
#: The column of a stereo export's side tiles.
SIDE = "side"
#: Other captioners' captions (``<stem>.<word>.txt``) and their columns.
EXTRA_CAPTIONS = ("tags", "prose", "meta")
# export.py's names, not imported: export.py calls this module (no import cycle)
METADATA_NAME, SPLITS = "metadata.jsonl", ("train", "validation", "test")
_UNITS = {"": 1, **{u + i: (1024 if i else 1000) ** (k + 1) for k, u in enumerate("kmgt")
                   for i in ("i", "")}}
_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{6}\.parquet$")


@dataclass
class ParquetExport:
    """What :func:`write_parquet` made: ``data`` is ``parquet.json``'s content."""

    folder: Path
    data: dict
    written: int = 0
    kept: int = 0
    notes: list = field(default_factory=list)

    def summary(self) -> str:
        """One line: shards per split, rows, size, what was rewritten."""
        splits = ", ".join(f"{k} {v['shards']}" for k, v in self.data["splits"].items())
        return (f"{len(self.data['shards'])} Parquet shard(s) in {self.folder} ({splits}): "
                f"{self.data['total_rows']} rows, {self.data['total_bytes'] / 1e9:.2f} GB; "
                f"{self.written} written, {self.kept} up to date")

    def record(self) -> dict:
        """JSON-ready: folder, totals, counts of written and kept shards."""
        d = self.data
        return {"folder": str(self.folder), "shards": len(d["shards"]), "rows": d["total_rows"],
                "bytes": d["total_bytes"], "splits": d["splits"], "written": self.written,
                "kept": self.kept}


def _shard_limit(value) -> tuple[int | None, int | None]:
    """``(max_bytes, max_rows)`` of ``"500MB"``, ``"2GiB"`` or a number of rows (``2000``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt]i?)b|(b?))\s*", str(value).lower())
    bare = m is not None and m.group(2) is None and not m.group(3)
    size = int(float(m.group(1)) * _UNITS[m.group(2) or ""]) if m else 0
    if isinstance(value, bool) or size < 1 or (bare and "." in m.group(1)):
        raise BadParameterError(f"shard_size must be a size with a unit (500MB, 1GB, 2GiB) or a "
                                f"number of rows (2000), got {value!r}")
    return (None, size) if bare else (size, None)


def _rows(folder: Path) -> list[dict]:
    """The rows of ``folder/metadata.jsonl``."""
    path = folder / METADATA_NAME
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist; run export_dataset({str(folder)!r}) or "
                                f"the pipeline first")
    try:
        return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.strip()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadShardError(f"{path}: cannot be read ({one_line(exc)}); export the dataset "
                            f"again") from None


def _png_shape(png: Path) -> tuple[int, int]:
    """``(height, width)`` from a PNG's header (its first 24 bytes)."""
    with open(png, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise BadShardError(f"{png}: listed in {METADATA_NAME} but not a PNG tile; run the "
                            f"pipeline again")
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")


def _entry_of(folder: Path, row: dict) -> dict:
    """One planned row: its key, the caption files beside its tile, shape and inputs' stamp."""
    png = folder / row["file_name"]
    try:
        st = png.stat()
        shape = _png_shape(png)
        extra = {w: p for w in EXTRA_CAPTIONS
                 if (p := png.with_name(f"{png.name[:-4]}.{w}.txt")).is_file()}
        stamp = [(w, p.stat().st_size, p.stat().st_mtime_ns) for w, p in extra.items()]
        side = folder / row["side_file_name"] if row.get("side_file_name") else None
        if side is not None:                          # a stereo song's side tile
            png = side
            stamp.append(("side", side.stat().st_size, side.stat().st_mtime_ns))
            if _png_shape(side) != shape:
                raise BadShardError(f"{side}: {_png_shape(side)} where its mid tile is {shape}; "
                                    f"run the pipeline again")
    except OSError as exc:
        raise BadShardError(f"{png}: listed in {METADATA_NAME} but cannot be read "
                            f"({exc.strerror or exc}); run the pipeline again") from None
    return {"key": f"{row['song']}_{int(row['tile_index']):04d}", "row": row, "extra": extra,
            "shape": shape, "stamp": [st.st_size, st.st_mtime_ns, stamp], "side": side}


def _plan(folder: Path, rows, max_bytes, max_rows, compression) -> list[dict]:
    """Shards to write: name, split, entries, a fingerprint of their inputs and options, and
    whether the export is stereo (a ``side`` column: some row names a side tile)."""
    stereo = any(r.get("side_file_name") for r in rows)
    by_split: dict[str, list] = {}
    keys: dict = {}
    for row in rows:
        e = _entry_of(folder, row)
        if e["key"] in keys:
            raise BadShardError(f"{folder / METADATA_NAME}: rows {keys[e['key']]} and "
                                f"{row['file_name']} are the same song and tile index; export "
                                f"the dataset again")
        keys[e["key"]] = row["file_name"]
        by_split.setdefault(str(row.get("split") or "train"), []).append(e)
    shapes = {e["shape"]: e["row"]["file_name"] for es in by_split.values() for e in es}
    if len(shapes) > 1:
        (a, fa), (b, fb) = list(shapes.items())[:2]
        raise BadParameterError(f"{folder}: tiles of {a[0]}x{a[1]} ({fa}) and {b[0]}x{b[1]} "
                                f"({fb}); a Parquet export holds one tile size: export each "
                                f"size from its own folder")
    order = [n for n in SPLITS if n in by_split] + sorted(set(by_split) - set(SPLITS))
    plan = []
    for split in order:
        if not re.fullmatch(r"[A-Za-z0-9_]+", split):
            raise BadParameterError(f"split name {split!r} in {METADATA_NAME} cannot name a shard "
                                    f"(letters, digits and _ only)")
        for chunk in _chunks(by_split[split], max_bytes, max_rows, 2 if stereo else 1):
            fp = hashlib.sha256(json.dumps([FORMAT, VERSION, compression, ROW_GROUP_BYTES,
                                            [(e["row"], e["stamp"]) for e in chunk]],
                                           sort_keys=True).encode()).hexdigest()[:32]
            plan.append({"name": f"{split}-{sum(p['split'] == split for p in plan):06d}.parquet",
                         "split": split, "entries": chunk, "fingerprint": fp, "stereo": stereo})
    return plan


def _chunks(entries: list, max_bytes, max_rows, tiles: int = 1) -> list[list]:
    """``entries`` cut into shards of at most ``max_rows`` rows or ``max_bytes`` of pixels
    (``tiles`` a row: 2 in a stereo export)."""
    out, cur, size = [], [], 0
    for e in entries:
        n = 6 * tiles * e["shape"][0] * e["shape"][1]
        if cur and ((max_rows and len(cur) >= max_rows) or (max_bytes and size + n > max_bytes)):
            out.append(cur)
            cur, size = [], 0
        cur.append(e)
        size += n
    return out + ([cur] if cur else [])


def _read_tile(e: dict, folder: Path, manifests: dict) -> tuple[np.ndarray, dict]:
    """A planned row's pixels ``(3, H, W)`` uint16 and its codec parameters (the tile's own
    metadata chunk, else its song's manifest)."""
    png = folder / e["row"]["file_name"]
    try:
        data = png.read_bytes()
        codec = (metadata_from_bytes(data) or {}).get("codec")
        if codec is None:
            if png.parent not in manifests:
                manifests[png.parent] = manifest_params(read_manifest(png.parent)).to_dict()
            codec = manifests[png.parent]
        extra = {w: p.read_text(encoding="utf-8").strip() for w, p in e["extra"].items()}
    except (OSError, UnicodeDecodeError, TypeError, KeyError) as exc:
        why = getattr(exc, "strerror", None) or one_line(exc)
        raise BadShardError(f"{png}: listed in {METADATA_NAME} but cannot be read ({why}); run "
                            f"the pipeline again") from None
    px = decode_png16(data, name=str(png))
    return np.ascontiguousarray(px.transpose(2, 0, 1)), {"codec": codec, **extra}


def _table(folder: Path, entries: list, schema, manifests: dict):
    """The Arrow table of ``entries`` (one row group); ``side`` too when ``schema`` has it."""
    import pyarrow as pa

    tiles, cols = [], {k: [] for k in COLUMNS if k != "tile"}
    for e in entries:
        px, got = _read_tile(e, folder, manifests)
        tiles.append(px)
        r = e["row"]
        vals = {**{k: r.get(k) for k in cols}, "text": str(r.get("text", "")),
                "caption_source": str(r.get("caption_source", "")),
                "codec": json.dumps(got["codec"], sort_keys=True),
                **{f"caption_{w}": got.get(w, "") for w in EXTRA_CAPTIONS}}
        for k in cols:
            cols[k].append(vals[k])
    arrays = [_tile_array(tiles, schema.field("tile").type)]
    arrays += [pa.array(cols[k], schema.field(k).type) for k in cols]
    if SIDE in schema.names:                      # a stereo export: null for mono songs' rows
        sides = [_read_side(e) for e in entries]
        arrays.append(_tile_array([x if x is not None else np.zeros_like(tiles[0]) for x in sides],
                                  schema.field(SIDE).type, [x is not None for x in sides]))
    return pa.Table.from_arrays(arrays, schema=schema)


def _read_side(e: dict) -> np.ndarray | None:
    """A planned row's side tile ``(3, H, W)`` uint16, or None for a mono song's row."""
    if e.get("side") is None:
        return None
    try:
        data = e["side"].read_bytes()
    except OSError as exc:
        raise BadShardError(f"{e['side']}: listed in {METADATA_NAME} but cannot be read "
                            f"({exc.strerror or exc}); run the pipeline again") from None
    return np.ascontiguousarray(decode_png16(data, name=str(e["side"])).transpose(2, 0, 1))


def _tile_array(tiles: list, ext, valid: list | None = None):
    """``(3, H, W)`` uint16 tiles as the nested list array of an ``Array3D`` column (rows where
    ``valid`` is False null)."""
    import pyarrow as pa

    n, (c, h, w) = len(tiles), tiles[0].shape
    arr = pa.array(np.stack(tiles).reshape(-1), pa.uint16())
    for level, (step, count) in enumerate(((w, n * c * h), (h, n * c), (c, n))):
        offsets = pa.array(np.arange(0, count + 1, dtype=np.int32) * step)
        mask = pa.array([not v for v in valid]) if level == 2 and valid is not None else None
        arr = pa.ListArray.from_arrays(offsets, arr, mask=mask)
    return pa.ExtensionArray.from_storage(ext, arr) if isinstance(ext, pa.ExtensionType) else arr


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _group_rows(h: int, w: int, stereo: bool) -> int:
    """Rows of one row group: about :data:`ROW_GROUP_BYTES` of pixels."""
    return max(1, ROW_GROUP_BYTES // (6 * h * w * (2 if stereo else 1)))


def _write_shard(folder: Path, target: Path, s: dict, compression: str, on_rows) -> dict:
    """Write planned shard ``s`` to ``target`` atomically; its index entry."""
    import pyarrow.parquet as pq

    h, w = s["entries"][0]["shape"]
    schema = parquet_features(h, w, stereo=s.get("stereo", False)).arrow_schema
    schema = schema.with_metadata({**schema.metadata, b"wavdiff": json.dumps(
        {"format": FORMAT, "version": VERSION, "fingerprint": s["fingerprint"]}).encode()})
    per_group = _group_rows(h, w, s.get("stereo", False))
    manifests, codecs = {}, []
    with writing(target), atomic_path(target) as tmp:
        with pq.ParquetWriter(tmp, schema, compression=compression,
                              write_page_checksum=True) as writer:
            for i in range(0, len(s["entries"]), per_group):
                chunk = s["entries"][i:i + per_group]
                table = _table(folder, chunk, schema, manifests)
                _add_codecs(codecs, table)
                writer.write_table(table, row_group_size=per_group)
                on_rows(len(chunk))
    return _entry(s, target, codecs)


def _add_codecs(codecs: list, table) -> list:
    """``codecs`` with the distinct codec parameters of ``table``'s rows added."""
    new = map(json.loads, dict.fromkeys(table.column("codec").to_pylist()))
    codecs += [c for c in new if c not in codecs]
    return codecs


def _entry(s: dict, path: Path, codecs: list) -> dict:
    """The index entry of planned shard ``s`` written at ``path``."""
    es = s["entries"]
    sec = sum((e["row"]["end_sample"] - e["row"]["start_sample"]) / e["row"]["sample_rate"]
              for e in es)
    return {"name": s["name"], "split": s["split"], "rows": len(es),
            "bytes": path.stat().st_size, "blake2b": _file_hash(path),
            "fingerprint": s["fingerprint"], "first_key": es[0]["key"],
            "last_key": es[-1]["key"], "songs": len({e["row"]["song"] for e in es}),
            "seconds": round(sec, 6),              # the PNGs, a stereo row's side tile too
            "png_bytes": sum(e["stamp"][0] + sum(x[1] for x in e["stamp"][2] if x[0] == "side")
                             for e in es),
            "codecs": codecs}


def _reusable(path: Path, s: dict, old: dict | None) -> dict | None:
    """The index entry of planned shard ``s`` when its file is up to date, else None: the
    footer names the same inputs, and the file matches the old index's size and checksum (no
    index: every page reads back with its checksum)."""
    import pyarrow as pa

    if not path.is_file():
        return None
    try:
        f = open_shard(path)
        mark = json.loads((f.metadata.metadata or {}).get(b"wavdiff", b"{}"))
        if mark.get("fingerprint") != s["fingerprint"] or f.metadata.num_rows != len(s["entries"]):
            return None
        if old is not None and old.get("fingerprint") == s["fingerprint"]:
            ok = old.get("bytes") == path.stat().st_size and old.get("blake2b") == _file_hash(path)
            return old if ok else None
        return _entry(s, path, _add_codecs([], f.read(columns=["tile", "codec"])))
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException, WavdiffError):
        return None


def write_parquet(folder, dest=None, *, shard_size=DEFAULT_PARQUET_SHARD_SIZE,
                  compression: str = "zstd", name: str | None = None, card: bool = True,
                  progress: bool = True, on_rows=None) -> ParquetExport:
    """Write the Parquet export of dataset ``folder`` (with ``metadata.jsonl``) into ``dest``
    (default ``<folder>/parquet``; upload it as a Hub repo); see the module notes.
    ``shard_size``: pixels of one shard before compression (``"500MB"``, ``"1GB"``) or a number
    of rows (``2000``); ``compression``: ``"zstd"`` or ``"none"``; ``name``: the dataset's
    name in the card (default from the folder's); ``card``: write ``README.md`` (never over one
    wavdiff did not write); ``progress``: a bar over rows, unless ``on_rows`` (called with the
    rows done) is given.  Raises :class:`MissingInputError` (no ``folder`` or ``metadata.jsonl``),
    :class:`BadShardError` (a listed tile missing or unreadable, one tile twice),
    :class:`BadParameterError` (a bad option, tiles of two sizes),
    :class:`UnwritableOutputError` (a shard, the index or the card cannot be written: one line
    naming the final file; a re-run writes what is missing), :class:`OutputLockedError`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"dataset folder {str(folder)!r} does not exist")
    dest = Path(dest) if dest is not None else folder / PARQUET_DIR
    max_bytes, max_rows = _shard_limit(shard_size)
    if compression not in COMPRESSIONS:
        raise BadParameterError(f"compression must be one of {', '.join(COMPRESSIONS)}, "
                                f"got {compression!r}")
    rows = _rows(folder)
    if not rows:
        raise BadShardError(f"{folder / METADATA_NAME} has no rows: nothing to export")
    inside = dest.resolve().is_relative_to(folder.resolve())
    with output_lock(folder), (output_lock(dest) if not inside else contextlib.nullcontext()):
        with writing(dest / DATA_DIR):
            (dest / DATA_DIR).mkdir(parents=True, exist_ok=True)
            for f in (dest / DATA_DIR).glob(".*.parquet"):     # temporaries of a killed writer
                f.unlink(missing_ok=True)
        bar = None
        if on_rows is None:
            bar = tqdm(total=len(rows), unit="row", desc="parquet", disable=not progress)
            on_rows = bar.update
        try:
            plan = _plan(folder, rows, max_bytes, max_rows, compression)
            out = _write_all(folder, dest, plan, (compression, str(shard_size)), on_rows)
        finally:
            if bar is not None:
                bar.close()
        if card:
            note = write_parquet_card(dest, out.data, name or dataset_name(folder))
            out.notes += [note] if note else []
        return out


def _old_index(dest: Path) -> tuple[dict, dict]:
    """``dest``'s index and its shards by name, or nothing."""
    try:
        data = read_parquet_index(dest)
        return data, {s["name"]: s for s in data["shards"]}
    except (WavdiffError, KeyError, TypeError):
        return {}, {}


def _write_all(folder: Path, dest: Path, plan: list, options: tuple, on_rows) -> ParquetExport:
    """Keep the up-to-date shards of ``plan``, write the others, then the index."""
    old_data, old = _old_index(dest)
    done = {}
    for s in plan:
        entry = _reusable(dest / DATA_DIR / s["name"], s, old.get(s["name"]))
        if entry is not None:
            done[s["name"]] = entry
            on_rows(len(s["entries"]))
    todo = [s for s in plan if s["name"] not in done]
    index = dest / PARQUET_INDEX
    if not todo and list(old) == list(done) and all(done[n] is old[n] for n in done) \
            and [old_data.get("compression"), old_data.get("shard_size")] == list(options):
        return ParquetExport(dest, old_data, written=0, kept=len(plan))    # all up to date
    if index.is_file():
        with writing(index):
            index.unlink(missing_ok=True)            # no index while shards change
    for s in todo:
        done[s["name"]] = _write_shard(folder, dest / DATA_DIR / s["name"], s, options[0],
                                       on_rows)
    shards = [done[s["name"]] for s in plan]
    names = {s["name"] for s in shards}
    for f in (dest / DATA_DIR).glob("*.parquet"):      # shards of an earlier, larger plan
        if f.name not in names and _NAME.match(f.name):
            with writing(f):
                f.unlink(missing_ok=True)
    h, w = plan[0]["entries"][0]["shape"]
    data = _index(shards, options, (3, h, w), _group_rows(h, w, plan[0].get("stereo", False)))
    if plan[0].get("stereo"):                     # a side column (mono indexes as before)
        data.update(stereo=True, columns={**COLUMNS, **SIDE_COLUMN})
    with writing(index), atomic_path(index) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return ParquetExport(dest, data, written=len(todo), kept=len(plan) - len(todo))


def _index(shards: list, options: tuple, shape: tuple, per_group: int) -> dict:
    """``parquet.json``'s content."""
    codecs, splits = [], {}
    for s in shards:
        codecs += [c for c in s.get("codecs", []) if c not in codecs]
        sp = splits.setdefault(s["split"], {"shards": 0, "rows": 0})
        sp["shards"] += 1
        sp["rows"] += s["rows"]
    return {"format": FORMAT, "version": VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "compression": options[0], "shard_size": options[1], "row_group_rows": per_group,
            "tile_shape": list(shape), **{f"total_{k}": sum(s[k] for s in shards)
                                          for k in ("rows", "bytes")},
            "png_bytes": sum(s["png_bytes"] for s in shards),
            "seconds": round(sum(s["seconds"] for s in shards), 6), "splits": splits,
            "codec": codecs[0] if len(codecs) == 1 else None, "codecs": codecs,
            "columns": COLUMNS, "shards": shards}
