"""Reading the Parquet export (:mod:`wavdiff_utils.dataset.parquet` writes it): the index, the
shards with their page checksums checked, rows with their tiles at 16 bits, and
:class:`ParquetTiles`, a torch dataset of them.  A stereo export (a dataset encoded with
``channels: stereo``) has a ``side`` column beside ``tile``: the side tile's pixels (null for a
mono song's rows); it decodes with the row's codec's :meth:`~CodecParams.side_codec`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..codec.transform import FULL_SCALE, decode_array
from ..errors import BadParameterError, BadShardError, MissingInputError, WavdiffError, one_line

__all__ = ["PARQUET_DIR", "PARQUET_INDEX", "DATA_DIR", "FORMAT", "parquet_folder",
           "read_parquet_index", "parquet_paths", "open_shard", "read_checked", "checked_shard",
           "column_tiles", "iter_parquet_rows", "row_pixels", "row_audio", "ParquetTiles"]

#: The export's folder inside a dataset folder, its index, and where the shards go in it.
PARQUET_DIR = "parquet"
PARQUET_INDEX = "parquet.json"
DATA_DIR = "data"
FORMAT = "wavdiff-parquet"
#: A stereo export's column of side tiles.
SIDE = "side"
_HALF = np.float32(FULL_SCALE / 2.0)


def parquet_folder(path) -> Path:
    """The export folder ``path`` names: itself when it holds ``parquet.json``, else its
    ``parquet`` sub-folder when that does (a dataset folder)."""
    path = Path(path)
    if not path.is_dir():
        raise MissingInputError(f"Parquet folder {str(path)!r} does not exist")
    for p in (path, path / PARQUET_DIR):
        if (p / PARQUET_INDEX).is_file():
            return p
    raise MissingInputError(f"{path / PARQUET_INDEX} does not exist; write the export with "
                            f"write_parquet({str(path)!r}) or the pipeline's --format parquet")


def read_parquet_index(path) -> dict:
    """``parquet.json`` of an export (``path``: the export folder or its dataset folder)."""
    file = parquet_folder(path) / PARQUET_INDEX
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or not isinstance(data.get("shards"), list):
            raise KeyError("format")
        return data
    except (OSError, UnicodeDecodeError, ValueError, KeyError, AttributeError) as exc:
        raise BadShardError(f"{file}: not a wavdiff Parquet index ({one_line(exc)}); write the "
                            f"export again") from None


def parquet_paths(path, split: str | None = None) -> list[Path]:
    """The shard files of an export (of one ``split``), in index order."""
    folder = parquet_folder(path)
    return [folder / DATA_DIR / s["name"] for s in read_parquet_index(folder)["shards"]
            if split is None or s["split"] == split]



def open_shard(path: Path):
    """A ``pyarrow.parquet.ParquetFile`` that checks page checksums; a damaged or missing file
    is one :class:`BadShardError` line naming it."""
    import pyarrow.parquet as pq

    return read_checked(path, "its footer", lambda: pq.ParquetFile(path, page_checksum_verification=True))


def column_tiles(table, column: str = "tile") -> np.ndarray | list:
    """A tile column of ``table`` as ``(n, 3, H, W)`` uint16; a column with nulls (``side``
    of a mono row in a mixed export) as a list of arrays and ``None``."""
    import pyarrow as pa

    col = table.column(column).combine_chunks()
    arr = col.storage if isinstance(col, pa.ExtensionArray) else col
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool)
    if len(valid) and not valid.any():
        return [None] * len(valid)
    whole = _stacked(arr.filter(pa.array(valid)) if not valid.all() else arr)
    if valid.all():
        return whole
    found = iter(whole)
    return [next(found) if v else None for v in valid]


def _stacked(arr) -> np.ndarray:
    """A nested list array of equal-shaped tiles as one ``(n, 3, H, W)`` uint16 array."""
    dims = []
    for _ in range(3):
        sizes = arr.value_lengths().to_numpy(zero_copy_only=False)
        dims.append(int(sizes[0]) if len(sizes) else 0)
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).astype(np.uint16, copy=False).reshape(-1, *dims)


def read_checked(path: Path, what: str, fn):
    """``fn()`` reading ``path``; a damaged page or file is one :class:`BadShardError` line."""
    import pyarrow as pa

    try:
        return fn()
    except WavdiffError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise BadShardError(f"{path}: {what} cannot be read ({one_line(exc)}); the file is "
                            f"damaged: write the export again") from None


def checked_shard(folder: Path, s: dict) -> Path:
    """The path of indexed shard ``s``, after checking it is there at its indexed size."""
    path = folder / DATA_DIR / s["name"]
    if not path.is_file():
        raise MissingInputError(f"{path}: listed in {PARQUET_INDEX} but missing; write the "
                                f"export again")
    if path.stat().st_size != s.get("bytes"):
        raise BadShardError(f"{path}: {path.stat().st_size} bytes where {PARQUET_INDEX} says "
                            f"{s.get('bytes')}; the file is damaged or replaced: write the "
                            f"export again")
    return path


def iter_parquet_rows(path, split: str | None = None):
    """Rows of an export (of one ``split``) in index order, read with pyarrow: dicts of the
    columns, ``tile`` (and a stereo export's ``side``, ``None`` on a mono song's row) as
    ``(3, H, W)`` uint16 (page checksums checked)."""
    folder = parquet_folder(path)
    for s in read_parquet_index(folder)["shards"]:
        if split is not None and s["split"] != split:
            continue
        p = checked_shard(folder, s)
        f = open_shard(p)
        for g in range(f.num_row_groups):
            table = read_checked(p, f"row group {g}", lambda: f.read_row_group(g))
            tiles = {c: column_tiles(table, c) for c in ("tile", SIDE) if c in table.column_names}
            rest = table.drop_columns(list(tiles)).to_pylist()
            for i, row in enumerate(rest):
                yield {**{c: v[i] for c, v in tiles.items()}, **row}


def row_pixels(row, *, column: str = "tile") -> np.ndarray:
    """A row's tile (``column="side"``: its side tile) as ``(H, W, 3)`` uint16 pixels (what
    :func:`~wavdiff_utils.io.decode_png16` gives for its PNG), whatever form ``datasets`` gave it
    in: nested lists, a numpy array of any integer dtype, a torch tensor."""
    tile = row[column] if isinstance(row, dict) else row
    if tile is None:
        raise BadParameterError(f"this row has no {column!r} tile (a mono song's row)")
    if hasattr(tile, "detach"):
        tile = tile.detach().cpu().numpy()
    a = np.asarray(tile)
    if a.ndim != 3 or a.shape[0] != 3 or a.dtype.kind not in "ui":
        raise BadParameterError(f"a row's tile must be (3, H, W) integers, got {a.shape} {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise BadParameterError("a row's tile holds values outside 0-65535: not 16-bit pixels")
    return np.ascontiguousarray(a.astype(np.uint16, copy=False).transpose(1, 2, 0))


def row_audio(row, *, channels: str = "mid") -> np.ndarray:
    """The audio of one row alone (float32, its real samples: padding trimmed), decoded with the
    codec parameters the row holds (``json.loads(row["codec"])``).

    ``channels="stereo"``: ``(n, 2)``, left = mid + side, right = mid - side, the side tile
    decoded with that codec's :meth:`~CodecParams.side_codec` (its floor 20 dB lower; decoding
    it with the row's codec itself would be wrong); a row without a side tile refuses it.
    ``"mid"`` (default): the mono mix, ``(n,)``.
    """
    if channels not in ("mid", "stereo"):
        raise BadParameterError(f"channels must be one of ('mid', 'stereo'), got {channels!r}")
    codec = row["codec"]
    params = CodecParams.from_dict(json.loads(codec) if isinstance(codec, (str, bytes)) else codec)
    n = int(row["end_sample"]) - int(row["start_sample"])
    mid = decode_array([row_pixels(row)], params, n_samples=n)
    if channels == "mid":
        return mid
    side = decode_array([row_pixels(row, column=SIDE)], params.side_codec(), n_samples=n)
    return np.stack([mid + side, mid - side], axis=1)


class ParquetTiles:
    """A map-style torch dataset over a Parquet export (``root``: its folder, or the dataset
    folder holding it): the items of :class:`~wavdiff_utils.dataset.TileDataset`
    (``image_key``: float32 ``(3, H, W)`` in ``[-1, 1]``, bit-exact with the PNG tiles, then
    ``transform``; and the row's columns) for the rows of ``split`` (``None``: all), read with
    pyarrow, ``cache_groups`` row groups kept decoded per process.

    ``channels="stereo"`` gives ``(6, H, W)``, the tile's planes then the ``side`` column's, from
    a stereo export (a mono one refuses it in one line); ``"mid"`` (default) the tile alone.

    Shards are checked against the index when it is made (present, at their size), pages
    against their checksums as they are read; a ``DataLoader``'s workers open the files each.
    Importing this module does not import torch; items do.
    """

    def __init__(self, root, *, split: str | None = "train", image_key: str = "pixel_values",
                 transform=None, cache_groups: int = 2, channels: str = "mid"):
        self.folder = parquet_folder(root)
        self.index = read_parquet_index(self.folder)
        if channels not in ("mid", "stereo"):
            raise BadParameterError(f"channels must be one of ('mid', 'stereo'), got {channels!r}")
        if channels == "stereo" and not self.index.get("stereo"):
            raise BadParameterError(f"{self.folder}: a mono export (no side column): "
                                    f"channels='stereo' needs a dataset encoded with channels: "
                                    f"stereo; use channels='mid'")
        self.tile_columns = ["tile", SIDE] if channels == "stereo" else ["tile"]
        self.image_key, self.transform, self.cache_groups = image_key, transform, cache_groups
        self.rows, self.where, self.paths = [], [], []
        for s in self.index["shards"]:
            if split is not None and s["split"] != split:
                continue
            path = checked_shard(self.folder, s)
            f = open_shard(path)
            cols = [c for c in f.schema_arrow.names if c not in ("tile", SIDE)]
            self.rows += read_checked(path, "its columns", lambda: f.read(columns=cols)).to_pylist()
            for g in range(f.num_row_groups):
                self.where += [(len(self.paths), g, i)
                               for i in range(f.metadata.row_group(g).num_rows)]
            self.paths.append(path)
        if not self.rows:
            raise BadParameterError(f"{self.folder}: no rows in split {split!r}")
        self._files, self._groups = {}, {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self):
        return {**self.__dict__, "_files": {}, "_groups": {}}   # open files stay in their process

    def _group(self, k: int, g: int) -> list:
        if (k, g) not in self._groups:
            if k not in self._files:
                self._files[k] = open_shard(self.paths[k])
            f = self._files[k]
            table = read_checked(self.paths[k], f"row group {g}",
                          lambda: f.read_row_group(g, columns=self.tile_columns, use_threads=False))
            while len(self._groups) >= max(1, self.cache_groups):
                self._groups.pop(next(iter(self._groups)))
            self._groups[(k, g)] = [column_tiles(table, c) for c in self.tile_columns]
        return self._groups[(k, g)]

    def __getitem__(self, index: int) -> dict:
        import torch

        k, g, i = self.where[index]
        planes = [cols[i] for cols in self._group(k, g)]
        if any(p is None for p in planes):
            raise BadParameterError(f"{self.paths[k]}: row {self.rows[index].get('file_name')} "
                                    f"has no side tile (a mono song in a stereo export); use "
                                    f"channels='mid'")
        x = np.concatenate(planes).astype(np.float32)        # as pixels_to_tensor, bit-exact
        x /= _HALF
        x = torch.from_numpy(x - np.float32(1.0))
        if self.transform is not None:
            x = self.transform(x)
        return {self.image_key: x, **self.rows[index]}
