"""Per-song manifest: the codec parameters and the exact sample span of every tile.

Written last, after every tile of a song, by the encoder; its presence marks a
song as finished (a re-run skips it).  Captioners read the spans from it so
their captions cover exactly the samples of each image.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..codec.params import CodecParams
from ..codec.tiling import TileSpan
from ..errors import BadParameterError, BadTileError, MissingInputError
from ..paths import atomic_path
from .tiles import parse_tile_name, read_tile_metadata

__all__ = ["MANIFEST_NAME", "write_manifest", "read_manifest", "require_manifest", "manifest_spans",
           "manifest_params", "manifest_from_tiles", "same_codec"]

MANIFEST_NAME = "manifest.json"
FORMAT = "wavdiff-manifest"


def write_manifest(folder, data: dict) -> Path:
    """Write ``folder/manifest.json`` atomically."""
    data = {"format": FORMAT, "version": 1, **data}
    path = Path(folder) / MANIFEST_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False), encoding="utf-8")
    return path


def read_manifest(folder) -> dict | None:
    """The manifest in ``folder`` (a song's tile folder), or ``None`` when there is none.

    Raises
    ------
    ValueError
        If the file exists but is not a wavdiff manifest.
    BadTileError
        If a field has the wrong type (the message names the file and the field).
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadParameterError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise BadParameterError(f"{path}: not a wavdiff manifest (format={got!r})")
    _check_fields(data, path)
    return data


def require_manifest(folder) -> dict:
    """:func:`read_manifest`, refusing a folder without one in one line naming it."""
    man = read_manifest(folder)
    if man is None:
        raise MissingInputError(f"{folder}: no manifest.json; not a song folder made by "
                                f"01_encode (or an encode that finished)")
    return man


def _check_fields(data: dict, path: Path) -> None:
    """Raise :class:`BadTileError` naming the first field of the wrong type."""
    def bad(name, want, got):
        raise BadTileError(f"{path}: manifest field {name!r} must be {want}, got {got!r}; delete "
                           f"the song's folder and run again to redo it")
    if not isinstance(data.get("codec"), dict):
        bad("codec", "an object", data.get("codec"))
    tiles = data.get("tiles")
    if not isinstance(tiles, list):
        bad("tiles", "a list", tiles)
    for i, t in enumerate(tiles):
        if not isinstance(t, dict) or not isinstance(t.get("file"), str):
            bad(f"tiles[{i}]", "an object with a 'file' name", t)
    for name in ("n_tiles", "n_samples"):
        if name in data and (isinstance(data[name], bool) or not isinstance(data[name], int)):
            bad(name, "an integer", data[name])


def manifest_params(manifest: dict) -> CodecParams:
    """Codec parameters recorded in a manifest."""
    return CodecParams.from_dict(manifest["codec"])


def same_codec(manifest: dict, params: CodecParams) -> bool:
    """Whether ``manifest`` records the codec ``params`` (False when it records none readable)."""
    try:
        return manifest_params(manifest) == params
    except (KeyError, TypeError, ValueError):
        return False


def manifest_spans(manifest: dict) -> list[TileSpan]:
    """Tile spans recorded in a manifest, in order."""
    return [TileSpan(t["index"], t["start"], t["end"], t["stop"], t["pad"])
            for t in manifest["tiles"]]


def manifest_from_tiles(folder, song: str) -> dict | None:
    """A minimal manifest (codec, tile spans, length) rebuilt from the PNG metadata of a
    complete set of ``song``'s tiles in ``folder``; ``None`` unless every tile's metadata is there and agrees."""

    found = {}
    for p in Path(folder).glob(f"{song}_*.png"):
        parsed = parse_tile_name(p.name)
        if parsed and parsed[0] == song:
            found[parsed[1]] = p
    if not found or sorted(found) != list(range(len(found))):
        return None
    tiles, codec, meta = [], None, {}
    for i in range(len(found)):
        try:
            meta = read_tile_metadata(found[i]) or {}
        except Exception:
            return None
        if "codec" not in meta or (codec is not None and meta["codec"] != codec):
            return None
        codec = meta["codec"]
        tiles.append({k: meta[k] for k in ("start", "end", "stop", "pad")} | {"index": i})
    if not meta.get("is_last"):
        return None
    return {"codec": codec, "tiles": tiles, "n_samples": tiles[-1]["end"]}
