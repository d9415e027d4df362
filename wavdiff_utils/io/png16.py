"""Decoding 16-bit PNG tiles with all their bits (OpenCV), where Pillow and the libraries built
on it (``datasets``, most training scripts) silently keep only the high byte."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .tiles import TileImageError, decode_image

__all__ = ["decode_png16"]


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
