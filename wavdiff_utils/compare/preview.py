"""Preview rendering for tile comparisons: original | reconstructed | ``|diff| x50``, as 8-bit PNG.

:func:`render_preview` draws two 16-bit tiles side by side with a colormap on
their magnitude channel and a grey diff panel; :func:`wavdiff_utils.compare.compare_tiles`
writes one per tile pair.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import BadParameterError
from ..paths import atomic_path

__all__ = ["render_preview", "DIFF_MODES", "DIFF_GAIN", "SEPARATOR_PX", "HEADER_PX"]

#: What the diff panel shows: the magnitude (red) channel, or the largest difference of any channel.
DIFF_MODES = ("magnitude", "all")
#: Gain applied to ``|original - reconstructed|`` in the diff panel.
DIFF_GAIN = 50
#: Width in pixels of the separator between preview panels.
SEPARATOR_PX = 4
#: Height in pixels of the label strip above the preview panels.
HEADER_PX = 22


def colormap_lut(colormap: str) -> np.ndarray:
    """256 x 3 uint8 BGR lookup table of a matplotlib colormap."""
    import matplotlib
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise BadParameterError(f"colormap {colormap!r} is not a matplotlib colormap "
                         f"(e.g. 'magma', 'viridis', 'gray')") from None
    rgb = (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(rgb[:, ::-1])


def _to8(plane16: np.ndarray) -> np.ndarray:
    return ((plane16.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def magnitude(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.ndim == 2 else pixels[..., 0]


def _fit(img: np.ndarray, max_edge: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = max_edge / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def render_preview(original: np.ndarray, reconstructed: np.ndarray, *, colormap: str = "magma",
                   diff: str = "magnitude", max_edge: int = 512,
                   labels: tuple[str, str, str] = ("Original", "Reconstructed",
                                                   f"|Diff| x{DIFF_GAIN}")) -> np.ndarray:
    """Side-by-side 8-bit BGR image: original | reconstructed | ``|diff| x50``.

    Parameters
    ----------
    original, reconstructed : ndarray, uint16, shape (H, W, 3) or (H, W)
        Tile pixels of the same height and width.
    colormap : str
        matplotlib colormap for the magnitude (red) channel of the two tiles.
    diff : {"magnitude", "all"}
        Diff panel of the magnitude channel, or of the largest difference of any channel.
        It is drawn in grey: black = equal, white = a difference of 65535/50 or more.
    max_edge : int
        Panels larger than this are shrunk (area averaging) to fit; smaller ones are kept.
    labels : tuple of 3 str
        Drawn in a strip above the panels when they fit.

    Returns
    -------
    ndarray, uint8, shape (HEADER_PX + h, 3*w + 2*SEPARATOR_PX, 3)
        ``h, w`` are the panel height and width after fitting.
    """
    if diff not in DIFF_MODES:
        raise BadParameterError(f"diff must be one of {DIFF_MODES}, got {diff!r}")
    if int(max_edge) < 8:
        raise BadParameterError(f"max_edge must be at least 8 pixels, got {max_edge!r}")
    if original.shape[:2] != reconstructed.shape[:2]:
        raise BadParameterError(f"cannot draw tiles of size {original.shape[1]}x{original.shape[0]} "
                         f"and {reconstructed.shape[1]}x{reconstructed.shape[0]} side by side")
    lut = colormap_lut(colormap)
    a = original.astype(np.int32)
    b = reconstructed.astype(np.int32)
    if diff == "magnitude" or a.ndim != b.ndim:
        d = np.abs(magnitude(a) - magnitude(b))
    else:
        d = np.abs(a - b)
        d = d.max(axis=-1) if d.ndim == 3 else d
    d16 = np.minimum(d * DIFF_GAIN, 65535).astype(np.uint16)
    panels = [lut[_to8(magnitude(original))], lut[_to8(magnitude(reconstructed))],
              cv2.cvtColor(_to8(d16), cv2.COLOR_GRAY2BGR)]
    panels = [_fit(p, int(max_edge)) for p in panels]
    h, w = panels[0].shape[:2]
    sep = np.full((h, SEPARATOR_PX, 3), 255, np.uint8)
    body = np.concatenate([panels[0], sep, panels[1], sep, panels[2]], axis=1)
    header = np.full((HEADER_PX, body.shape[1], 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, text in enumerate(labels):
        (tw, th), _ = cv2.getTextSize(text, font, 0.5, 1)
        scale = 0.5 * min(1.0, (w - 4) / max(tw, 1))
        if scale < 0.25:
            continue                    # panel too narrow for readable text
        (tw, th), _ = cv2.getTextSize(text, font, scale, 1)
        x = i * (w + SEPARATOR_PX) + max(2, (w - tw) // 2)
        cv2.putText(header, text, (x, (HEADER_PX + th) // 2), font, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([header, body], axis=0)


def write_png8(path: Path, img: np.ndarray) -> Path:
    ok, enc = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"OpenCV could not encode the preview {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(enc.tobytes())
    return path
