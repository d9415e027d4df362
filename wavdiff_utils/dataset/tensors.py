"""Tiles as tensors and back: 16-bit pixels <-> float tensors in ``[-1, 1]``, bit-exactly, and
generated tensors written as 16-bit tiles with codec metadata (``03_decode`` turns them into
audio).

Generated stereo is one 6-plane tensor per span: the mid tile's 3 planes, then the side
tile's 3 (the encoder's ``channels="stereo"`` tiles stacked); :func:`write_tensor_tiles`
writes them as ``<song>_<index:04d>.png`` and ``<song>_<index:04d>.side.png``, which decode
to a stereo file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadParameterError
from ..codec.transform import FULL_SCALE
from ..codec.params import CodecParams
from ..io.tiles import side_tile_name, tile_metadata, tile_name, write_tile
from ..codec.tiling import TileSpan
from ..paths import writing

__all__ = ["pixels_to_tensor", "tensor_to_pixels", "magnitude_db", "write_tensor_tiles", "PLANES"]

_HALF = np.float32(FULL_SCALE / 2.0)        # 32767.5


def pixels_to_tensor(pixels: np.ndarray):
    """``(H, W, 3)`` uint16 RGB -> float32 torch tensor ``(3, H, W)`` in ``[-1, 1]``.

    ``x = pixel / 32767.5 - 1``, inverted bit-exactly by :func:`tensor_to_pixels`.
    """
    import torch

    px = np.asarray(pixels)
    if px.dtype != np.uint16 or px.ndim != 3 or px.shape[2] != 3:
        raise BadParameterError(f"pixels must be a (H, W, 3) uint16 array, got {px.shape} {px.dtype}")
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
        raise BadParameterError(f"a tile tensor must have shape (3, H, W), got {tuple(x.shape)}")
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


#: Planes of one generated tile: mono (a tile's RGB) or stereo (the mid's, then the side's).
PLANES = {3: "mono", 6: "stereo"}


def _planes(batch: list) -> int:
    """The planes every tensor of ``batch`` has (3 or 6, the same for all), checked."""
    shapes = [tuple(t.shape) for t in batch]
    for k, shape in enumerate(shapes):
        if len(shape) != 3 or shape[0] not in PLANES:
            raise BadParameterError(f"tensor {k} has shape {shape}; a tile tensor must have shape "
                                    f"(3, H, W) (mono) or (6, H, W) (stereo: the mid's planes, "
                                    f"then the side's)")
    kinds = {s[0] for s in shapes}
    if len(kinds) > 1:
        raise BadParameterError(f"tensors of {sorted(kinds)} planes in one call: a song is mono "
                                f"(3 planes) or stereo (6) throughout; write them apart")
    return kinds.pop() if kinds else 3


def write_tensor_tiles(tensors, folder, *, song: str = "generated",
                       params: CodecParams | None = None, start_index: int = 0,
                       compression: int = 0) -> list[Path]:
    """Write generated tensors as 16-bit tiles ``folder/<song>_<index:04d>.png`` for ``03_decode``.

    Parameters
    ----------
    tensors : tensor or array, shape (3 or 6, H, W) or (N, 3 or 6, H, W), or a sequence
        Values in ``[-1, 1]`` with the channel meaning of the module notes
        (overshoot is clipped).  6 planes are a stereo span: the mid tile's 3
        planes, then the side tile's 3; each is written as a tile, the side as
        ``<song>_<index:04d>.side.png`` with ``"channel": "side"`` in its metadata.
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
        One per tensor: its tile (for stereo the mid tile; the side tile is beside it,
        :func:`wavdiff_utils.io.tiles.side_tile_of`).

    Raises
    ------
    BadParameterError
        A tensor of another shape or size, or 3- and 6-plane tensors mixed.
    UnwritableOutputError
        ``folder`` or a tile cannot be written (read-only, full disk, a file in the way);
        the message names it.  Each tile is written atomically.
    """
    params = params or CodecParams()
    if hasattr(tensors, "detach") or isinstance(tensors, np.ndarray):
        arr = tensors
        batch = [arr] if len(arr.shape) == 3 else [arr[i] for i in range(arr.shape[0])]
    else:
        batch = list(tensors)
    if int(start_index) < 0:
        raise BadParameterError(f"start_index must be >= 0, got {start_index!r}")
    if not str(song).strip() or "/" in str(song) or "\\" in str(song):
        raise BadParameterError(f"song must be a plain file-name prefix, got {song!r}")
    batch = [t if hasattr(t, "shape") else np.asarray(t, dtype=np.float32) for t in batch]
    stereo = _planes(batch) == 6
    folder = Path(folder)
    with writing(folder):                     # a read-only place or a file there: one line
        folder.mkdir(parents=True, exist_ok=True)
    paths = []
    n = params.tile_samples
    for k, t in enumerate(batch):
        planes = [tensor_to_pixels(t[:3]), tensor_to_pixels(t[3:])] if stereo \
            else [tensor_to_pixels(t)]
        if planes[0].shape[:2] != (params.size, params.size):
            raise BadParameterError(f"tensor {k} is {planes[0].shape[1]}x{planes[0].shape[0]} but "
                                    f"the codec's tiles are {params.size}x{params.size}; pass the "
                                    f"params the model was trained on")
        i = int(start_index) + k
        span = TileSpan(i, i * n, (i + 1) * n, (i + 1) * n, 0)
        for px, channel, name in zip(planes, ("mid", "side"),
                                     (tile_name(song, i), side_tile_name(song, i))):
            meta = tile_metadata(params, song, span, source="generated", is_last=False,
                                 generated=True, channel=channel)
            with writing(folder / name):
                written = write_tile(folder / name, px, meta, compression=compression)
            if channel == "mid":
                paths.append(written)
    return paths
