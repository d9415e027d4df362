"""Tile image files: 16-bit RGB PNGs that carry their own codec metadata.

OpenCV writes and reads the 16-bit pixels; the metadata travels in a PNG
``iTXt`` chunk with the keyword ``wavdiff`` holding JSON.  OpenCV neither
writes nor keeps text chunks, so the chunk is spliced into the encoded bytes
here (the PNG chunk layout is four fields: length, type, data, CRC-32).
"""
from __future__ import annotations

import json
import math
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import __version__
from ..codec.params import CodecParams
from ..errors import BadParameterError, BadTileError
from ..paths import atomic_path

__all__ = ["TILE_FORMAT", "tile_metadata", "TileImageError", "CorruptMetadataError", "write_tile",
           "read_tile", "read_tile_metadata", "TILE_NAME", "tile_name", "parse_tile_name",
           "find_tiles", "LoadedTile", "png_header", "decode_image", "check_tile_metadata",
           "natural_key", "BAD_METADATA_MODES", "SIDE_SUFFIX", "side_tile_name", "side_tile_of",
           "SIDE_TILE_NAME", "parse_side_tile_name", "is_side_tile"]

#: The ``format`` field of every tile's metadata.
TILE_FORMAT = "wavdiff-tile"

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_KEYWORD = b"wavdiff"
#: Tile file names: ``<song>_<index:04d>.png``.
TILE_NAME = re.compile(r"^(?P<song>.+)_(?P<index>\d{4,})\.png$", re.IGNORECASE)
#: Side tiles of a stereo song: ``<song>_<index:04d>.side.png`` beside the mid tile.
SIDE_SUFFIX = ".side.png"
SIDE_TILE_NAME = re.compile(r"^(?P<song>.+)_(?P<index>\d{4,})\.side\.png$", re.IGNORECASE)
#: What :func:`read_tile` does with corrupt metadata: raise, or read the pixels without it.
BAD_METADATA_MODES = ("error", "ignore")


class TileImageError(BadTileError):
    """An image that cannot be used as a tile; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class CorruptMetadataError(TileImageError):
    """A tile whose ``wavdiff`` metadata is unreadable or makes no sense.

    The message names the file and the JSON error or the bad field; ``reason`` holds
    that part alone.
    """

    def __init__(self, path, reason: str):
        self.reason = reason
        super().__init__(path, f"wavdiff metadata is corrupt: {reason}")


def tile_name(song: str, index: int, ext: str = ".png") -> str:
    """File name of tile ``index`` of ``song``: ``<song>_<index:04d>.png``."""
    return f"{song}_{int(index):04d}{ext}"


def side_tile_name(song: str, index: int) -> str:
    """File name of the side tile of span ``index`` of a stereo ``song``."""
    return tile_name(song, index, SIDE_SUFFIX)


def side_tile_of(path) -> Path:
    """The side tile beside the mid tile ``path`` (which need not exist)."""
    p = Path(path)
    return p.with_name(p.name[:-len(p.suffix)] + SIDE_SUFFIX)


def parse_side_tile_name(name: str) -> tuple[str, int] | None:
    """``("song", 3)`` for ``"song_0003.side.png"``, ``None`` for other names."""
    m = SIDE_TILE_NAME.match(Path(name).name)
    return (m["song"], int(m["index"])) if m else None


def is_side_tile(path) -> bool:
    """Whether ``path`` is named as the side tile of a stereo song."""
    return Path(path).name.lower().endswith(SIDE_SUFFIX)


def parse_tile_name(name: str) -> tuple[str, int] | None:
    """``("song", 3)`` for ``"song_0003.png"``, ``None`` for other names."""
    m = TILE_NAME.match(Path(name).name)
    return (m["song"], int(m["index"])) if m else None


def natural_key(path) -> tuple:
    """Sort key that orders ``x_2.png`` before ``x_10.png`` (numbers compared as numbers)."""
    parts = re.split(r"(\d+)", str(path))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts)


def find_tiles(folder) -> dict[str, list[Path]]:
    """Tiles under ``folder`` (recursive), grouped by song and sorted by index."""
    folder = Path(folder)
    groups: dict[str, list[tuple[int, Path]]] = {}
    paths = [folder] if folder.is_file() else sorted(folder.rglob("*.png"))
    for p in paths:
        if p.name.startswith("."):
            continue
        parsed = parse_tile_name(p.name)
        if parsed is None:
            continue
        song, idx = parsed
        groups.setdefault(song, []).append((idx, p))
    return {s: [p for _, p in sorted(v)] for s, v in sorted(groups.items())}


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def _iter_chunks(buf: bytes):
    pos = len(_PNG_SIG)
    while pos + 8 <= len(buf):
        (length,) = struct.unpack(">I", buf[pos:pos + 4])
        ctype = buf[pos + 4:pos + 8]
        yield ctype, buf[pos + 8:pos + 8 + length], pos
        pos += 12 + length
        if ctype == b"IEND":
            break


def metadata_from_bytes(buf: bytes) -> dict | None:
    for ctype, data, _ in _iter_chunks(buf):
        if ctype in (b"IDAT", b"IEND"):      # text chunks written here come before the pixels
            return None
        if ctype == b"iTXt" and data.startswith(_KEYWORD + b"\x00"):
            # keyword \0 compression-flag compression-method language \0 translated \0 text
            rest = data[len(_KEYWORD) + 1:]
            flag = rest[0]
            rest = rest[2:]
            _lang, _, rest = rest.partition(b"\x00")
            _trans, _, text = rest.partition(b"\x00")
            if flag:
                text = zlib.decompress(text)
            return json.loads(text.decode("utf-8"))
    return None


#: :func:`_metadata_in`'s answer when the bytes read so far end before the metadata does.
_SHORT = object()


def _json_kind(value) -> str:
    """What a JSON value is, in words: ``"a string"``, ``"a list"``, ``"a number"``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), "a number")


def _chunk_json(data: bytes, path):
    """Parse the data of the ``wavdiff`` iTXt chunk; :class:`CorruptMetadataError` if it cannot."""
    rest = data[len(_KEYWORD) + 1:]
    if len(rest) < 2:
        raise CorruptMetadataError(path, "it is cut short")
    flag, rest = rest[0], rest[2:]
    _lang, _, rest = rest.partition(b"\x00")
    _trans, _, text = rest.partition(b"\x00")
    try:
        if flag:
            text = zlib.decompress(text)
        return json.loads(text.decode("utf-8"))
    except zlib.error:
        raise CorruptMetadataError(path, "its compressed text cannot be unpacked") from None
    except UnicodeDecodeError as exc:
        raise CorruptMetadataError(path, f"it is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CorruptMetadataError(path, f"it is not valid JSON ({exc.msg} at line {exc.lineno} "
                                         f"column {exc.colno})") from None
    except RecursionError:
        raise CorruptMetadataError(path, "it is not valid JSON (nested too deeply)") from None


def _metadata_in(buf: bytes, path, *, at_end: bool):
    """The parsed ``wavdiff`` chunk in ``buf`` (a PNG's start), None when the pixels (or the file)
    come first, or ``_SHORT`` when ``buf`` ends before saying; ``at_end``: nothing follows ``buf``.

    Raises :class:`CorruptMetadataError` for a chunk that is there but unreadable.
    """
    pos = len(_PNG_SIG)
    while pos + 8 <= len(buf):
        (length,) = struct.unpack(">I", buf[pos:pos + 4])
        ctype = buf[pos + 4:pos + 8]
        if ctype in (b"IDAT", b"IEND"):      # text chunks written here come before the pixels
            return None
        if ctype == b"iTXt" and buf[pos + 8:pos + 9 + len(_KEYWORD)] == _KEYWORD + b"\x00":
            end = pos + 8 + length
            if end <= len(buf):
                return _chunk_json(buf[pos + 8:end], path)
            if at_end:
                raise CorruptMetadataError(path, "it is cut short (the file ends "
                                                 "inside it)")
            return _SHORT
        pos += 12 + length
    return None if at_end else _SHORT


def write_tile(path, rgb16: np.ndarray, metadata: dict | None = None, *, compression: int = 0) -> Path:
    """Write a 16-bit RGB tile atomically, with ``metadata`` as JSON in an ``iTXt`` chunk.

    Parameters
    ----------
    path : path-like
        Destination ``.png``.
    rgb16 : ndarray, shape (H, W, 3), dtype uint16
        Red, green, blue planes (RGB order; converted to OpenCV's BGR here).
    metadata : dict, optional
        JSON-serialisable codec and tile facts.
    compression : int or "small"
        zlib level 0-9, or ``"small"``.  Default 0 (stored, no filter): fastest.
        Measured on 60 s of real music (1024x1024 tiles, 2-core CPU): level 0
        630 kB per second of audio at 16 ms per tile; ``"small"`` (zlib level 1,
        run-length strategy, "up" filter) 495 kB/s (-21%) at 74 ms per tile;
        levels 1-9 with the default strategy 496-498 kB/s at 129-378 ms per tile.
    """
    rgb16 = np.asarray(rgb16)
    if rgb16.dtype != np.uint16 or rgb16.ndim != 3 or rgb16.shape[2] != 3:
        raise BadParameterError(f"a tile must be a (H, W, 3) uint16 array, got {rgb16.shape} {rgb16.dtype}")
    if compression == "small":
        flags = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                 cv2.IMWRITE_PNG_STRATEGY_RLE, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    elif isinstance(compression, (int, np.integer)) and 0 <= compression <= 9:
        flags = [cv2.IMWRITE_PNG_COMPRESSION, int(compression)]
        if int(compression) == 0 and hasattr(cv2, "IMWRITE_PNG_FILTER"):
            flags += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    else:
        raise BadParameterError(f"compression must be a zlib level 0-9 or 'small', got "
                                f"{compression!r}")
    bgr = rgb16[..., ::-1]
    if not bgr.flags.c_contiguous:            # the encoder's tiles are BGR in memory already
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb16), cv2.COLOR_RGB2BGR)
    ok, enc = cv2.imencode(".png", bgr, flags)
    if not ok:
        raise OSError(f"{path}: the pixels could not be encoded as PNG")
    data = memoryview(enc).cast("B")
    ihdr_end = len(_PNG_SIG) + 25                 # signature 8 bytes + IHDR chunk 25 bytes
    chunk = b""
    if metadata is not None:
        text = json.dumps(metadata, sort_keys=True).encode("utf-8")
        chunk = _chunk(b"iTXt", _KEYWORD + b"\x00\x00\x00" + b"\x00" + b"\x00" + text)
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:               # the text chunk right after IHDR, no copies
            fh.write(data[:ihdr_end])
            fh.write(chunk)
            fh.write(data[ihdr_end:])
    return path


def png_header(path) -> dict | None:
    """Width, height, bit depth and channel count from a PNG's IHDR chunk, without decoding it.

    Returns ``None`` for files that are not PNGs.
    """
    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[:8] != _PNG_SIG or head[12:16] != b"IHDR":
        return None
    width, height, depth, color = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 0)
    return {"width": width, "height": height, "bit_depth": depth, "channels": channels}


def tile_metadata(params, song: str, span, *, source: str, is_last: bool,
                  generated: bool = False, channel: str = "mid") -> dict:
    """The metadata written into a tile: the codec, the song, the samples it stands for.

    Parameters
    ----------
    params : CodecParams
        The codec the tile was made with.
    song : str
        Song id (the tile's file-name prefix).
    span : TileSpan
        The samples the tile describes.
    source : str
        The source file's name (``"generated"`` for a model's output).
    is_last : bool
        Whether this is the song's last tile.
    generated : bool
        Whether a model made the tile (recorded as ``"generated": true``).
    channel : {"mid", "side"}
        ``"side"`` marks the side tile of a stereo song (``"channel": "side"``,
        ``"channels": "stereo"``, and the codec of :meth:`CodecParams.side_codec`, whose floor
        is lower); a mid tile's metadata is a mono tile's, unchanged.
    """
    if channel not in ("mid", "side"):
        raise BadParameterError(f"channel must be 'mid' or 'side', got {channel!r}")
    codec = params.side_codec() if channel == "side" else params.tile_codec()
    meta = {"format": TILE_FORMAT, "version": 1, "wavdiff_version": __version__,
            "codec": codec.to_dict(), "song": song, "source": source,
            "tile_index": span.index, "start": span.start, "end": span.end, "stop": span.stop,
            "pad": span.pad, "is_last": bool(is_last),
            "start_seconds": span.start / params.sample_rate,
            "end_seconds": span.end / params.sample_rate}
    if generated:
        meta["generated"] = True
    if channel == "side":
        meta.update(channel="side", channels="stereo")
    return meta


def read_tile_metadata(path, *, strict: bool = False) -> dict | None:
    """The ``wavdiff`` metadata of a tile, or ``None`` for images without it.

    Parameters
    ----------
    path : path-like
        The image.
    strict : bool
        Raise :class:`CorruptMetadataError` for a ``wavdiff`` chunk that cannot be read
        (not JSON, not UTF-8, cut short) instead of returning ``None``.  The fields are
        not checked here (:func:`check_tile_metadata` does that), and a file that
        cannot be opened is a :class:`TileImageError` rather than an ``OSError``.
    """
    path = Path(path)
    try:
        return _read_metadata(path, strict)
    except OSError as exc:
        if not strict:
            raise
        raise TileImageError(path, f"cannot be read ({exc.strerror or exc})") from None


def _read_metadata(path: Path, strict: bool):
    """The body of :func:`read_tile_metadata`."""
    with open(path, "rb") as fh:
        buf = fh.read(1 << 16)                 # IHDR + iTXt sit in the first few KB
        if buf[:8] != _PNG_SIG:
            return None
        at_end = len(buf) < (1 << 16)
        while True:                            # read on until the chunk (or the pixels) is in buf
            try:
                meta = _metadata_in(buf, path, at_end=at_end)
            except CorruptMetadataError:
                if strict:
                    raise
                return None
            if meta is not _SHORT:
                return meta
            more = fh.read(1 << 20)
            at_end = len(more) < (1 << 20)
            buf += more


@dataclass
class LoadedTile:
    """A tile read from disk.

    Attributes
    ----------
    pixels : ndarray (H, W, 3) uint16, or (H, W) uint16 for magnitude-only images
    metadata : dict or None
    bit_depth : int
        Bit depth of the file (8 or 16); 8-bit pixels are scaled to 16 bits.
    path : Path
    metadata_problem : str or None
        Why the metadata was set aside (read with ``bad_metadata="ignore"``), or None.
    """

    pixels: np.ndarray
    metadata: dict | None
    bit_depth: int
    path: Path
    metadata_problem: str | None = None

    @property
    def has_phase(self) -> bool:
        return self.pixels.ndim == 3


def image_warnings(label, *, depth: int, grey: bool) -> list[str]:
    """What a decode says about an image that is 8-bit or grey (it loses fidelity)."""
    out = []
    if depth == 8:
        out.append(f"{label}: 8-bit image, scaled to 16 bits; magnitude steps are 257x coarser, "
                   f"so expect a noisier reconstruction")
    if grey:
        out.append(f"{label}: single-channel image, read as magnitude only; its phase is rebuilt "
                   f"from the magnitude (phase 'auto')")
    return out


def decode_image(data, label, *, warn: bool = True) -> tuple[np.ndarray, int]:
    """Decode PNG bytes to 16-bit pixels: ``(H, W, 3)`` RGB, or ``(H, W)`` for grey images.

    8-bit images are scaled by 257 and an alpha channel is dropped; 8-bit and
    grey images warn (they lose fidelity) when ``warn`` is true.

    Parameters
    ----------
    data : bytes or ndarray of uint8
        The encoded file.
    label : str or path-like
        Names the file in messages.

    Returns
    -------
    (pixels, bit depth of the file)

    Raises
    ------
    TileImageError
        Undecodable data, an unsupported pixel type or channel count.
    """
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise TileImageError(label, "is not a readable image (its pixel data cannot be decoded)")
    if img.dtype == np.uint8:
        depth = 8
        if warn:
            warnings.warn(image_warnings(label, depth=8, grey=False)[0], stacklevel=3)
        img = img.astype(np.uint16) * 257
    elif img.dtype == np.uint16:
        depth = 16
    else:
        raise TileImageError(label, f"unsupported pixel type {img.dtype}; expected 8- or 16-bit PNG")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]                  # OpenCV's BGR -> RGB (a view, no copy)
    elif img.ndim == 2:
        if warn:
            warnings.warn(image_warnings(label, depth=16, grey=True)[0], stacklevel=3)
    else:
        raise TileImageError(label, f"has {img.shape[2]} channels; expected 3 (RGB) or 1 (grey)")
    return img, depth

#: Signatures of image formats that are not PNG, for a clear message when one is renamed ``.png``.
_OTHER_FORMATS = ((b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"), (b"BM", "a BMP image"),
                  (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
                  (b"\x00\x00\x00\x0cjP", "a JPEG 2000 image"))

#: Integer fields of the tile metadata, each at least 0.
_INT_FIELDS = ("tile_index", "start", "end", "stop", "pad")


def _not_png(data: np.ndarray) -> str | None:
    """Why ``data`` cannot be a (whole) PNG file, or None."""
    head = data[:16].tobytes()
    if head[:8] == _PNG_SIG:
        tail = data[-12:].tobytes()
        return None if tail[4:8] == b"IEND" else "is a truncated PNG (it ends before its IEND chunk)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "a WebP image"
    else:
        kind = next((name for sig, name in _OTHER_FORMATS if head.startswith(sig)), None)
    if kind is None:
        kind = "empty" if not len(data) else "not an image file wavdiff can read"
        return f"is {kind}; tiles must be PNG files"
    return f"is {kind}, not a PNG; tiles must be lossless PNG files (16-bit RGB)"


def check_tile_metadata(meta, path) -> dict:
    """Check the ``wavdiff`` metadata of a tile; the error names the file and the field.

    Parameters
    ----------
    meta : object
        What the tile's text chunk held (parsed JSON).
    path : path-like
        The tile, for messages.

    Returns
    -------
    dict
        ``meta`` itself.

    Raises
    ------
    CorruptMetadataError
        Not an object, or (for tile metadata, ``format: wavdiff-tile``) a field
        of the wrong type or value.
    """

    if not isinstance(meta, dict):
        raise CorruptMetadataError(path, f"it must be a JSON object, got {_json_kind(meta)}")
    if meta.get("format") != "wavdiff-tile":
        return meta                          # free-form metadata of the caller's own, not a tile's
    codec = meta.get("codec")
    if not isinstance(codec, dict):
        raise CorruptMetadataError(path, f"field 'codec' must be an object, got {codec!r}")
    try:
        CodecParams.from_dict(codec)
    except (TypeError, ValueError) as exc:
        raise CorruptMetadataError(path, f"field 'codec' is invalid: {exc}") from None
    for name in ("db_min", "db_max"):            # JSON allows NaN and Infinity; audio does not
        v = codec.get(name, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CorruptMetadataError(path, f"field 'codec' is invalid: {name} must be a "
                                             f"finite number, got {v!r}")
    for name in _INT_FIELDS:
        v = meta.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CorruptMetadataError(path, f"field {name!r} must be an integer >= 0, got {v!r}")
    if not meta["start"] <= meta["end"] <= meta["stop"] or meta["pad"] != meta["stop"] - meta["end"]:
        raise CorruptMetadataError(path, f"fields 'start', 'end', 'stop', 'pad' disagree "
                                         f"({meta['start']}, {meta['end']}, {meta['stop']}, "
                                         f"{meta['pad']}): need start <= end <= stop and "
                                         f"pad = stop - end")
    for name in ("is_last", "generated"):
        if name in meta and not isinstance(meta[name], bool):
            raise CorruptMetadataError(path, f"field {name!r} must be true or false, "
                                             f"got {meta[name]!r}")
    if not isinstance(meta.get("song", ""), str):
        raise CorruptMetadataError(path, f"field 'song' must be a string, got {meta['song']!r}")
    return meta


def read_tile(path, *, expected_size: int | None = None, warn: bool = True,
              bad_metadata: str = "error") -> LoadedTile:
    """Read a tile, checking it can be decoded.

    16-bit RGB is the native form.  8-bit images are scaled to 16 bits and
    grey (one channel) images are returned as magnitude only; both with a
    warning, because they lose fidelity.  An alpha channel is dropped.

    Parameters
    ----------
    path : path-like
        The image.
    expected_size : int, optional
        Width and height the image must have.
    warn : bool
        Warn about 8-bit and grey images.
    bad_metadata : {"error", "ignore"}
        Corrupt ``wavdiff`` metadata (not JSON, a field of the wrong type) raises
        :class:`CorruptMetadataError`, or is set aside: ``metadata`` is None and
        ``metadata_problem`` says why.

    Raises
    ------
    TileImageError
        Missing, unreadable, truncated or non-PNG file, unsupported channel
        count or depth, a size that differs from ``expected_size``, or
        (:class:`CorruptMetadataError`) metadata that cannot be read or makes no
        sense (:func:`check_tile_metadata`).
    """
    if bad_metadata not in BAD_METADATA_MODES:
        raise BadParameterError(f"bad_metadata must be one of {BAD_METADATA_MODES}, "
                                f"got {bad_metadata!r}")
    path = Path(path)
    if not path.is_file():
        raise TileImageError(path, "file does not exist")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise TileImageError(path, f"cannot be read ({exc.strerror or exc})") from None
    problem = _not_png(data)
    if problem:
        raise TileImageError(path, problem)
    img, depth = decode_image(data, path, warn=warn)
    if expected_size is not None and img.shape[:2] != (expected_size, expected_size):
        raise TileImageError(path, f"is {img.shape[1]}x{img.shape[0]} pixels; expected "
                                   f"{expected_size}x{expected_size} (the codec 'size' parameter)")
    try:
        meta = _metadata_in(data[: 1 << 16].tobytes(), path, at_end=data.size <= (1 << 16))
        if meta is _SHORT:                     # a big chunk before the pixels: look further
            meta = _metadata_in(data.tobytes(), path, at_end=True)
        if meta is not None:
            check_tile_metadata(meta, path)
    except CorruptMetadataError as exc:
        if bad_metadata == "error":
            raise
        return LoadedTile(img, None, depth, path, metadata_problem=str(exc))
    return LoadedTile(img, meta, depth, path)
