"""The 16-bit loaders: torch datasets over a tile folder (:class:`TileDataset`) and over
WebDataset shards (:class:`ShardDataset`), and the ``datasets`` way (:class:`TileTransform`,
:func:`load_tile_dataset`).  Importing this module imports torch.

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
frames in time order.  ``x = pixel / 32767.5 - 1``; :func:`~wavdiff_utils.dataset.tensor_to_pixels`
inverts it bit-exactly, and :func:`~wavdiff_utils.dataset.write_tensor_tiles` writes
generated tensors back as 16-bit tiles (with codec metadata) that ``03_decode`` turns into
audio.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch.utils.data

from ..errors import BadParameterError, MissingInputError
from .export import METADATA_NAME, caption_of, read_metadata, rows_without_side
from ..io.png16 import decode_png16
from .shards import ShardReader
from .tensors import pixels_to_tensor
from ..io.tiles import TileImageError, find_tiles, side_tile_of

__all__ = ["TileDataset", "ShardDataset", "TileTransform", "load_tile_dataset", "LOADER_CHANNELS"]


class TileDataset(torch.utils.data.Dataset):
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
    channels : {"mid", "stereo"}
        ``"mid"`` (default): the tile of ``file_name``, ``(3, H, W)`` (a mono dataset's tile,
        a stereo dataset's mid).  ``"stereo"``: ``(6, H, W)``, the mid planes then the side
        tile's (``side_file_name``); a dataset without side tiles refuses it.

    Items are dicts: ``pixel_values`` (float32 ``(3, H, W)``), ``text``,
    ``file_name``, and the metadata columns (``song``, ``tile_index``,
    ``start_seconds``, ``end_seconds``, ...) when present.
    """

    def __init__(self, root, *, image_key: str = "pixel_values", transform=None,
                 channels: str = "mid"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingInputError(f"tile folder {str(self.root)!r} does not exist")
        self.image_key = image_key
        self.transform = transform
        self.channels = _check_channels(channels)
        if (self.root / METADATA_NAME).is_file():
            self.rows = read_metadata(self.root)
        else:
            self.rows = [_folder_row(self.root, p) for tiles in find_tiles(self.root).values()
                         for p in tiles]
        if not self.rows:
            raise BadParameterError(f"{self.root}: holds no tiles (<song>_<index:04d>.png)")
        if self.channels == "stereo":
            _check_stereo_rows(self.root, self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        x = pixels_to_tensor(decode_png16(self.root / row["file_name"]))
        if self.channels == "stereo":
            x = torch.cat([x, pixels_to_tensor(decode_png16(self.root / row["side_file_name"]))])
        if self.transform is not None:
            x = self.transform(x)
        return {self.image_key: x, **row}


#: What :class:`TileDataset` and :func:`load_tile_dataset` may return per tile.
LOADER_CHANNELS = ("mid", "stereo")


def _check_channels(channels) -> str:
    if channels not in LOADER_CHANNELS:
        raise BadParameterError(f"channels must be one of {LOADER_CHANNELS}, got {channels!r}")
    return channels


def _folder_row(root: Path, png: Path) -> dict:
    """A row for a tile found in a folder without ``metadata.jsonl`` (its side tile if any)."""
    row = {"file_name": png.relative_to(root).as_posix(), "text": caption_of(png)}
    if side_tile_of(png).is_file():
        row["side_file_name"] = side_tile_of(png).relative_to(root).as_posix()
    return row


def _check_stereo_rows(root: Path, rows: list) -> None:
    """Refuse ``channels="stereo"`` for a dataset whose rows lack side tiles, in one line."""
    lacking = rows_without_side(rows)
    if len(lacking) == len(rows):
        raise BadParameterError(f"{root}: a mono dataset (no side tiles): channels='stereo' needs "
                                f"one encoded with channels: stereo; use channels='mid'")
    if lacking:
        raise BadParameterError(f"{root}: {len(lacking)} of {len(rows)} tiles have no side tile "
                                f"(first {lacking[0]}); encode every song with channels: stereo, "
                                f"or use channels='mid'")


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
    side_column : str, optional
        A stereo dataset's side-tile column (``"side"``, from ``side_file_name``): the output
        is then ``(6, H, W)``, mid planes then side planes.
    """

    def __init__(self, image_column: str = "image", output_column: str = "pixel_values", *,
                 keep_image: bool = False, side_column: str | None = None):
        self.image_column = image_column
        self.output_column = output_column
        self.keep_image = keep_image
        self.side_column = side_column

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
        if self.side_column is not None:
            if self.side_column not in batch:
                raise KeyError(f"no side column {self.side_column!r}; columns are {sorted(batch)}")
            sides = batch[self.side_column]
            tensors = [torch.cat([x, pixels_to_tensor(self._one(v))])
                       for x, v in zip(tensors, [sides] if single else sides)]
            if not self.keep_image:
                out.pop(self.side_column)
        if not self.keep_image:
            out.pop(self.image_column)
        out[self.output_column] = tensors[0] if single else tensors
        return out


def _listed_files(data_dir: Path) -> dict:
    """The metadata and exactly the images it lists, as the ``train`` split: nothing else in
    the folder (Parquet or WebDataset exports named by split, side tiles) is taken for data."""
    rows = read_metadata(data_dir)
    if not rows:
        raise MissingInputError(f"{data_dir / METADATA_NAME} lists no tiles; run the pipeline "
                                f"or export_dataset({str(data_dir)!r}) first")
    return {"train": [str(data_dir / METADATA_NAME)] + [str(data_dir / r["file_name"]) for r in rows]}


def load_tile_dataset(data_dir, *, split: str = "train", image_column: str = "image",
                      output_column: str = "pixel_values", channels: str = "mid", **kwargs):
    """``datasets.load_dataset("imagefolder", data_dir=...)`` with 16-bit tensors instead of 8-bit images.

    Parameters
    ----------
    data_dir : path-like
        A folder written by :func:`export_dataset`.
    split : str or None
        ``"train"`` (the only split); ``None`` returns the ``DatasetDict``.
    image_column, output_column : str
        See :class:`TileTransform`.
    channels : {"mid", "stereo"}
        ``"stereo"``: ``output_column`` holds ``(6, H, W)`` (mid, then the ``side`` column's
        planes); a mono dataset refuses it in one line.  ``"mid"`` (default): ``(3, H, W)``.
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
        raise MissingInputError(f"{data_dir / METADATA_NAME} does not exist; run the pipeline "
                                f"or export_dataset({str(data_dir)!r}) first")
    _check_channels(channels)
    if channels == "stereo":
        _check_stereo_rows(data_dir, read_metadata(data_dir))
    ds = datasets.load_dataset("imagefolder", data_files=_listed_files(data_dir), **kwargs)
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    side = None
    if "side" in next(iter(ds.values())).column_names:      # from side_file_name
        ds = ds.cast_column("side", datasets.Image(decode=False))
        side = "side" if channels == "stereo" else None
    ds = ds.with_transform(TileTransform(image_column, output_column, side_column=side,
                                         keep_image=False))
    return ds[split] if split is not None else ds




class ShardDataset(ShardReader, torch.utils.data.IterableDataset):
    __doc__ = ShardReader.__doc__
