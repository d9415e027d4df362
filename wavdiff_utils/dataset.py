"""Training-ready export of a tile folder, and a loader that keeps all 16 bits.

Export
------
:func:`export_dataset` turns the pipeline's output folder (one sub-folder per
song, ``<song>/<song>_<index:04d>.png`` beside ``<song>_<index:04d>.txt``
captions and ``manifest.json``) into a dataset in place:

- ``metadata.jsonl``: one row per tile with ``file_name`` (relative path),
  ``text`` (the ``.txt`` caption with the tile's stem, ``""`` when there is
  none), ``song``, ``tile_index``, ``start_seconds``, ``end_seconds``,
  ``start_sample``, ``end_sample``, ``sample_rate`` and ``caption_source``
  (the captioner whose record holds that caption, ``"unknown"`` for one no
  record claims, ``""`` without a caption).  Hugging Face
  ``datasets.load_dataset("imagefolder", data_dir=folder)`` reads it as
  image + text + those columns; kohya-style trainers read the ``.txt`` sidecars.
- ``README.md``: a dataset card with the codec parameters, counts and
  durations, so the set can be rebuilt and its tiles decoded later.

16-bit loading
--------------
Pillow, and so ``datasets``' ``Image`` feature and most diffusion training
scripts, opens a 16-bit RGB PNG as 8-bit RGB without a warning (it keeps the
high byte: pixel 46527 reads as 181), which throws away the fidelity of the
tiles.  :class:`TileDataset` (a torch ``Dataset``), :class:`TileTransform` (for
``datasets``) and :func:`load_tile_dataset` decode with OpenCV
(``IMREAD_UNCHANGED``) instead and return float tensors in ``[-1, 1]``:

=========  ========  ===============================================================
channel    plane     value ``x`` in ``[-1, 1]``
=========  ========  ===============================================================
0          red       magnitude, linear in dB: ``dB = db_min + (x + 1) / 2 * (db_max - db_min)``;
                     ``x = -1`` is silence (at or below ``db_min``), ``+1`` is ``db_max``
1          green     ``cos(phase)`` (exactly: ``x = 2 * pixel / 65535 - 1``)
2          blue      ``sin(phase)``
=========  ========  ===============================================================

Tensors are ``(3, H, W)``: row 0 is the highest frequency bin, columns are STFT
frames in time order.  ``x = pixel / 32767.5 - 1``; :func:`tensor_to_pixels`
inverts it bit-exactly, and :func:`write_tensor_tiles` writes generated tensors
back as 16-bit tiles (with codec metadata) that ``03_decode`` turns into audio.
"""
from __future__ import annotations

import json
import re
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadParameterError
from .manifest import MANIFEST_NAME, manifest_params, read_manifest
from .params import CodecParams
from .paths import atomic_path
from .dataset_card import hms as _hms, write_card
from .tile_io import TileImageError, decode_image, tile_name, write_tile

__all__ = ["METADATA_NAME", "CARD_NAME", "CHANNELS", "DatasetExport", "export_dataset", "song_split",
           "read_metadata", "decode_png16", "pixels_to_tensor", "tensor_to_pixels",
           "TileDataset", "TileTransform", "load_tile_dataset", "write_tensor_tiles",
           "magnitude_db", "eight_bit_cost", "read_png_like_pillow"]

#: The rows file ``datasets``' imagefolder loader reads.
METADATA_NAME = "metadata.jsonl"
#: The dataset card.
CARD_NAME = "README.md"
#: What each tensor channel holds (see the module notes).
CHANNELS = ("magnitude: x=-1 is db_min (silence), +1 is db_max, linear in dB",
            "cos(phase)", "sin(phase)")

_FULL = 65535
_HALF = np.float32(_FULL / 2.0)        # 32767.5


# =========================================================================== export

@dataclass
class DatasetExport:
    """What :func:`export_dataset` wrote.

    Attributes
    ----------
    folder : Path
        The dataset folder (the pipeline's output).
    metadata : Path
        ``metadata.jsonl``.
    card : Path
        ``README.md``.
    n_songs, n_tiles, n_captioned : int
        Songs, tiles, and tiles with a non-empty caption.
    seconds : float
        Seconds of audio covered by the tiles (real samples, padding excluded).
    codecs : list of dict
        Distinct codec parameters among the songs (one in a consistent set).
    songs : list of dict
        One summary row per song.
    warnings : list of str
    """

    folder: Path
    metadata: Path
    card: Path
    n_songs: int = 0
    n_tiles: int = 0
    n_captioned: int = 0
    seconds: float = 0.0
    codecs: list = field(default_factory=list)
    songs: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def summary(self) -> str:
        """One line: songs, tiles, captions, duration, where."""
        return (f"dataset {self.folder}: {self.n_songs} song(s), {self.n_tiles} tiles "
                f"({self.n_captioned} captioned), {_hms(self.seconds)} of audio")


def _song_folders(folder: Path) -> list[Path]:
    """Finished song folders (holding ``manifest.json``) under ``folder``, hidden ones excluded."""
    out = []
    for m in sorted(folder.rglob(MANIFEST_NAME)):
        rel = m.parent.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue                     # .<song>.partial of an interrupted encode
        out.append(m.parent)
    return out


def _caption(png: Path) -> str:
    txt = png.with_suffix(".txt")
    try:
        return txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return ""


#: Default shares of the train / validation / test splits.
SPLITS = (("train", 0.9), ("validation", 0.05), ("test", 0.05))


def song_split(song: str, splits=SPLITS) -> str:
    """The split a song belongs to, from a hash of its name: stable across runs and machines,
    and the same for every tile of the song (no song's audio leaks across splits)."""
    import hashlib

    total = sum(share for _, share in splits)
    if total <= 0 or any(share < 0 for _, share in splits):
        raise BadParameterError(f"split shares must be >= 0 with a positive sum, got {splits!r}")
    x = int.from_bytes(hashlib.sha256(song.encode("utf-8")).digest()[:8], "big") / 2 ** 64 * total
    for name, share in splits:
        if x < share:
            return name
        x -= share
    return splits[-1][0]


def _readable(folder: Path) -> str:
    """A dataset name from the folder's own name: ``my_songs-v2`` -> ``My songs v2``."""
    words = re.sub(r"[_\-.]+", " ", folder.resolve().name).strip()
    return (words[:1].upper() + words[1:]) if words else "wavdiff spectrogram tiles"


def export_dataset(folder, *, name: str | None = None, card: bool = True,
                   max_padding: float = 1.0, splits=SPLITS) -> DatasetExport:
    """Write ``metadata.jsonl`` and a dataset card for every finished song under ``folder``.

    Parameters
    ----------
    folder : path-like
        The pipeline's (or ``01_encode``'s) output folder: one sub-folder per song
        with ``manifest.json``, tiles and optional ``<song>_<index:04d>.txt`` captions.
    name : str, optional
        Dataset name in the card (default: made readable from the folder's own
        name, e.g. ``my_songs`` -> "My songs"; never a path).
    card : bool
        Write ``README.md`` (default).  An existing ``README.md`` that this
        function did not write is never replaced; a warning says so.
    max_padding : float
        Leave out tiles whose share of padding (silence after the song's end,
        in the last tile) is above this, 0-1.  Default 1.0 keeps every tile;
        every row says its ``padding`` share either way.
    splits : sequence of (name, share)
        Shares of the ``split`` column, assigned per song by a hash of its name
        (default 0.9 train, 0.05 validation, 0.05 test).

    Returns
    -------
    DatasetExport

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist.
    ValueError
        ``folder`` holds no finished song (no ``manifest.json`` below it).

    Notes
    -----
    Songs are listed in folder order; a re-run rewrites both files from what is
    on disk (atomically), so it is cheap and always matches the folder.  Songs
    made with different codec parameters are exported together, with a warning:
    a trainer needs one tile size, and the card lists each parameter set.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder {str(folder)!r} does not exist")
    if not 0.0 <= float(max_padding) <= 1.0:
        raise BadParameterError(f"max_padding must be a share between 0 and 1, got {max_padding!r}")
    splits = tuple((str(n), float(v)) for n, v in splits)
    song_split("", splits)                       # checks the shares
    songs = _song_folders(folder)
    if not songs:
        raise ValueError(f"{folder}: holds no finished song (no <song>/{MANIFEST_NAME}); "
                         f"encode some audio into it first")
    from .captioning import recorded_captions

    rows, song_rows, codecs, notes = [], [], [], []
    for sf in songs:
        man = read_manifest(sf)
        params = manifest_params(man)
        if params.to_dict() not in codecs:
            codecs.append(params.to_dict())
        sr = params.sample_rate
        captioned = 0
        missing = []
        recorded = recorded_captions(sf)
        split = song_split(man["song"], splits)
        dropped = 0
        for t in man["tiles"]:
            png = sf / t["file"]
            if not png.is_file():
                missing.append(t["file"])
                continue
            padding = t["pad"] / max(t["stop"] - t["start"], 1)
            if padding > max_padding:
                dropped += 1
                continue
            text = _caption(png)
            captioned += bool(text)
            rec = recorded.get(png.with_suffix(".txt").name, {})
            source = (rec["caption_source"] if rec.get("caption") == text else "unknown") if text else ""
            rows.append({"file_name": png.relative_to(folder).as_posix(), "text": text,
                         "caption_source": source,
                         "song": man["song"], "tile_index": int(t["index"]),
                         "start_seconds": round(t["start"] / sr, 6),
                         "end_seconds": round(t["end"] / sr, 6),
                         "start_sample": int(t["start"]), "end_sample": int(t["end"]),
                         "sample_rate": sr, "padding": round(padding, 4), "split": split})
        if missing:
            notes.append(f"{sf}: {len(missing)} tile(s) listed in {MANIFEST_NAME} are missing "
                         f"(e.g. {missing[0]}); left out, re-run the pipeline to remake them")
        song_rows.append({"song": man["song"], "source": man.get("source_name", ""),
                          "tiles": len(man["tiles"]) - len(missing) - dropped,
                          "captioned": captioned, "split": split,
                          "seconds": float(man["n_samples"]) / sr,
                          "codec": codecs.index(params.to_dict())})
    if len(codecs) > 1:
        notes.append(f"{folder}: songs were made with {len(codecs)} different codec parameter "
                     f"sets; a trainer needs one tile size, see the card")
    meta_path = folder / METADATA_NAME
    with atomic_path(meta_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    result = DatasetExport(folder, meta_path, folder / CARD_NAME, len(song_rows), len(rows),
                           sum(bool(r["text"]) for r in rows),
                           sum(s["seconds"] for s in song_rows), codecs, song_rows, notes)
    if card:
        write_card(result, name or _readable(folder))
    for n in notes:
        warnings.warn(n, stacklevel=2)
    return result


def read_metadata(folder) -> list[dict]:
    """Rows of ``folder/metadata.jsonl`` (written by :func:`export_dataset`)."""
    path = Path(folder) / METADATA_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run export_dataset({str(folder)!r}) "
                                f"or the pipeline first")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# =========================================================================== 16-bit pixels

def decode_png16(source, *, name: str | None = None) -> np.ndarray:
    """Decode a PNG (path or bytes) to ``(H, W, 3)`` uint16 RGB with OpenCV, keeping 16 bits.

    Parameters
    ----------
    source : path-like or bytes
    name : str, optional
        Used in messages for ``bytes`` input.

    Raises
    ------
    TileImageError
        Unreadable data, not 3 (or 4) channels, or not 8/16-bit.

    Warns
    -----
    UserWarning
        For an 8-bit image (scaled by 257; its lost bits do not come back).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, label = source, name or "<bytes>"
    else:
        label = str(source)
        if not Path(source).is_file():
            raise TileImageError(label, "file does not exist")
        data = np.fromfile(label, dtype=np.uint8)
    img, depth = decode_image(data, label, warn=False)
    if img.ndim != 3:
        raise TileImageError(label, "has 1 channel(s) (grey, magnitude only); a tile has 3 (RGB)")
    if depth == 8:
        warnings.warn(f"{label}: 8-bit image, scaled to 16 bits; the lost low bits do not come "
                      f"back", stacklevel=2)
    return np.ascontiguousarray(img)


def pixels_to_tensor(pixels: np.ndarray):
    """``(H, W, 3)`` uint16 RGB -> float32 torch tensor ``(3, H, W)`` in ``[-1, 1]``.

    ``x = pixel / 32767.5 - 1``, inverted bit-exactly by :func:`tensor_to_pixels`.
    """
    import torch

    px = np.asarray(pixels)
    if px.dtype != np.uint16 or px.ndim != 3 or px.shape[2] != 3:
        raise ValueError(f"pixels must be a (H, W, 3) uint16 array, got {px.shape} {px.dtype}")
    x = px.astype(np.float32)
    x /= _HALF
    x -= np.float32(1.0)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def tensor_to_pixels(x) -> np.ndarray:
    """Float tensor or array ``(3, H, W)`` in ``[-1, 1]`` -> ``(H, W, 3)`` uint16 RGB pixels.

    Values outside ``[-1, 1]`` (a model's overshoot) are clipped; NaN becomes -1.
    Accepts torch tensors on any device, with or without gradients.
    """
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").float().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"a tile tensor must have shape (3, H, W), got {tuple(x.shape)}")
    x = np.nan_to_num(x, nan=-1.0, posinf=1.0, neginf=-1.0)
    v = (np.clip(x, -1.0, 1.0) + np.float32(1.0)) * _HALF
    return np.ascontiguousarray(np.rint(v).astype(np.uint16).transpose(1, 2, 0))


def magnitude_db(x, params: CodecParams | None = None) -> np.ndarray:
    """dB (re a full-scale sine's peak bin) of a tensor's channel 0, as the codec defines it."""
    params = params or CodecParams()
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").float().numpy()
    r = np.asarray(x, dtype=np.float64)[0]
    return params.db_min + (r + 1.0) / 2.0 * (params.db_max - params.db_min)


class _TileDatasetBase:
    """A torch ``Dataset`` of 16-bit tiles as float tensors in ``[-1, 1]`` (see the module notes).

    Parameters
    ----------
    root : path-like
        A dataset folder with ``metadata.jsonl`` (rows in its order), or any
        folder of tiles (found recursively, captions from same-stem ``.txt``).
    image_key : str
        Key of the tensor in each item (default ``"pixel_values"``, as diffusers scripts use).
    transform : callable, optional
        Applied to the tensor (e.g. a random crop or flip); must keep it a tensor.

    Items are dicts: ``pixel_values`` (float32 ``(3, H, W)``), ``text``,
    ``file_name``, and the metadata columns (``song``, ``tile_index``,
    ``start_seconds``, ``end_seconds``, ...) when present.
    """

    def __init__(self, root, *, image_key: str = "pixel_values", transform=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"tile folder {str(self.root)!r} does not exist")
        self.image_key = image_key
        self.transform = transform
        if (self.root / METADATA_NAME).is_file():
            self.rows = read_metadata(self.root)
        else:
            from .tile_io import find_tiles
            self.rows = [{"file_name": p.relative_to(self.root).as_posix(), "text": _caption(p)}
                         for tiles in find_tiles(self.root).values() for p in tiles]
        if not self.rows:
            raise ValueError(f"{self.root}: holds no tiles (<song>_<index:04d>.png)")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        x = pixels_to_tensor(decode_png16(self.root / row["file_name"]))
        if self.transform is not None:
            x = self.transform(x)
        return {self.image_key: x, **row}


_TORCH_CLASSES: dict = {}


def torch_dataset_class(base: type, torch_base: str, name: str, module: str) -> type:
    """``base`` joined with ``torch.utils.data.<torch_base>`` as class ``name`` of ``module``,
    built once on first use, so that importing a module defining ``base`` imports no torch."""
    key = (module, name)
    if key not in _TORCH_CLASSES:
        import torch.utils.data
        _TORCH_CLASSES[key] = type(name, (base, getattr(torch.utils.data, torch_base)),
                                   {"__doc__": base.__doc__, "__module__": module,
                                    "__qualname__": name})
    return _TORCH_CLASSES[key]


def __getattr__(name):
    # TileDataset subclasses torch's Dataset; it is built on first use so that importing this
    # module (the pipeline's export step) does not import torch (2-3 s)
    if name == "TileDataset":
        return torch_dataset_class(_TileDatasetBase, "Dataset", name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TileTransform:
    """``datasets`` transform decoding the image column with all 16 bits.

    Use on a dataset whose image column is *not* decoded by Pillow
    (``cast_column(image_column, datasets.Image(decode=False))``, as
    :func:`load_tile_dataset` does) with ``ds.set_transform(TileTransform())`` or
    ``ds.with_transform(...)``.  Each row gets ``output_column``: a float32
    tensor ``(3, H, W)`` in ``[-1, 1]``; the raw image column is dropped unless
    ``keep_image``.

    Parameters
    ----------
    image_column : str
    output_column : str
    keep_image : bool
    """

    def __init__(self, image_column: str = "image", output_column: str = "pixel_values", *,
                 keep_image: bool = False):
        self.image_column = image_column
        self.output_column = output_column
        self.keep_image = keep_image

    def _one(self, value):
        if isinstance(value, dict):
            if value.get("bytes"):
                return decode_png16(value["bytes"], name=value.get("path") or None)
            if value.get("path"):
                return decode_png16(value["path"])
            raise TileImageError("<row>", "image entry has neither bytes nor a path")
        if isinstance(value, (bytes, bytearray, str, os.PathLike)):
            return decode_png16(value)
        if type(value).__module__.startswith("PIL."):
            raise TypeError(
                f"the {self.image_column!r} column was already decoded by Pillow, which keeps "
                f"only 8 of the 16 bits; cast it first: ds = ds.cast_column("
                f"{self.image_column!r}, datasets.Image(decode=False)), or use load_tile_dataset()")
        raise TypeError(f"cannot read a tile from a {type(value).__name__} in column "
                        f"{self.image_column!r}")

    def __call__(self, batch: dict) -> dict:
        if self.image_column not in batch:
            raise KeyError(f"no column {self.image_column!r}; columns are {sorted(batch)}")
        values = batch[self.image_column]
        single = not isinstance(values, list)
        tensors = [pixels_to_tensor(self._one(v)) for v in ([values] if single else values)]
        out = dict(batch)
        if not self.keep_image:
            out.pop(self.image_column)
        out[self.output_column] = tensors[0] if single else tensors
        return out


def load_tile_dataset(data_dir, *, split: str = "train", image_column: str = "image",
                      output_column: str = "pixel_values", **kwargs):
    """``datasets.load_dataset("imagefolder", data_dir=...)`` with 16-bit tensors instead of 8-bit images.

    Parameters
    ----------
    data_dir : path-like
        A folder written by :func:`export_dataset`.
    split : str or None
        ``"train"`` (the only split); ``None`` returns the ``DatasetDict``.
    image_column, output_column : str
        See :class:`TileTransform`.
    **kwargs
        Passed to ``datasets.load_dataset`` (e.g. ``cache_dir``).

    Returns
    -------
    datasets.Dataset or datasets.DatasetDict
        Rows hold ``output_column`` (float32 ``(3, H, W)`` in ``[-1, 1]``),
        ``text`` and the metadata columns.
    """
    import datasets

    data_dir = Path(data_dir)
    if not (data_dir / METADATA_NAME).is_file():
        raise FileNotFoundError(f"{data_dir / METADATA_NAME} does not exist; run the pipeline "
                                f"or export_dataset({str(data_dir)!r}) first")
    ds = datasets.load_dataset("imagefolder", data_dir=str(data_dir), **kwargs)
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    ds = ds.with_transform(TileTransform(image_column, output_column))
    return ds[split] if split is not None else ds


# =========================================================================== back to tiles

def write_tensor_tiles(tensors, folder, *, song: str = "generated",
                       params: CodecParams | None = None, start_index: int = 0,
                       compression: int = 0) -> list[Path]:
    """Write generated tensors as 16-bit tiles ``folder/<song>_<index:04d>.png`` for ``03_decode``.

    Parameters
    ----------
    tensors : tensor or array, shape (3, H, W) or (N, 3, H, W), or a sequence of (3, H, W)
        Values in ``[-1, 1]`` with the channel meaning of the module notes
        (overshoot is clipped).
    folder : path-like
        Created.  Consecutive tiles of one piece of audio share ``song`` and
        take consecutive indices; ``03_decode`` joins them.
    song : str
        File-name prefix.
    params : CodecParams, optional
        The codec the model was trained on (default ``CodecParams()``); written
        into every tile so each decodes alone.  ``H`` and ``W`` must equal ``params.size``.
    start_index : int
        Index of the first tile.
    compression : int
        zlib level 0-9.

    Returns
    -------
    list of Path
    """
    from .encoding import TILE_FORMAT
    from . import __version__

    params = params or CodecParams()
    if hasattr(tensors, "detach") or isinstance(tensors, np.ndarray):
        arr = tensors
        batch = [arr] if len(arr.shape) == 3 else [arr[i] for i in range(arr.shape[0])]
    else:
        batch = list(tensors)
    if int(start_index) < 0:
        raise ValueError(f"start_index must be >= 0, got {start_index!r}")
    if not str(song).strip() or "/" in str(song) or "\\" in str(song):
        raise ValueError(f"song must be a plain file-name prefix, got {song!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    n = params.tile_samples
    for k, t in enumerate(batch):
        px = tensor_to_pixels(t)
        if px.shape[:2] != (params.size, params.size):
            raise ValueError(f"tensor {k} is {px.shape[1]}x{px.shape[0]} but the codec's tiles are "
                             f"{params.size}x{params.size}; pass the params the model was trained on")
        i = int(start_index) + k
        meta = {"format": TILE_FORMAT, "version": 1, "wavdiff_version": __version__,
                "codec": params.to_dict(), "song": song, "source": "generated",
                "tile_index": i, "start": i * n, "end": (i + 1) * n, "stop": (i + 1) * n, "pad": 0,
                "is_last": False, "start_seconds": i * n / params.sample_rate,
                "end_seconds": (i + 1) * n / params.sample_rate, "generated": True}
        paths.append(write_tile(folder / tile_name(song, i), px, meta, compression=compression))
    return paths


from .eight_bit import eight_bit_cost, read_png_like_pillow  # noqa: E402,F401  (their old home)
