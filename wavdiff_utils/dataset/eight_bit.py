"""What reading a 16-bit tile the 8-bit way (Pillow, and so most training scripts) costs.

:func:`read_png_like_pillow` shows what such a reader sees; :func:`eight_bit_cost` measures
the loss in dB, for the batch report and the README's 16-bit trap.
"""
from __future__ import annotations

import numpy as np

from ..codec.metrics import psnr16, snr_db
from ..codec.params import CodecParams
from ..codec.transform import FULL_SCALE, decode_array
from ..io.png16 import decode_png16
from ..io.tiles import read_tile_metadata

__all__ = ["read_png_like_pillow", "eight_bit_cost"]


def read_png_like_pillow(path) -> np.ndarray:
    """What a Pillow-based trainer sees: the tile through ``PIL.Image.open(...).convert("RGB")``,
    scaled back to the 16-bit range (x257) as ``(H, W, 3)`` uint16."""
    from PIL import Image

    with Image.open(path) as im:
        rgb8 = np.asarray(im.convert("RGB"))
    return rgb8.astype(np.uint16) * 257


def eight_bit_cost(path, *, params: CodecParams | None = None) -> dict:
    """How much reading a tile the 8-bit (Pillow) way costs, in dB.

    Decodes the tile alone twice, from its 16 bits (OpenCV) and from what
    Pillow returns, and compares.

    Returns
    -------
    dict
        ``psnr_db``: PSNR of the 8-bit-read pixels against the 16-bit ones
        (16-bit scale); ``magnitude_error_db``: mean and ``magnitude_error_max_db``
        largest absolute error of the red channel in dB over non-silent bins;
        ``audio_snr_db``: SNR of the audio decoded from the 8-bit read against the
        audio decoded from the 16-bit read; ``pillow_mode``: the mode Pillow reports.
    """
    from PIL import Image

    meta = read_tile_metadata(path) or {}
    if params is None:
        params = CodecParams.from_dict(meta["codec"]) if "codec" in meta else CodecParams()
    with Image.open(path) as im:
        mode = im.mode
    px16 = decode_png16(path)
    px8 = read_png_like_pillow(path)
    n = int(meta["end"] - meta["start"]) if "end" in meta and "start" in meta else None
    y16 = decode_array([px16], params, n_samples=n)
    y8 = decode_array([px8], params, n_samples=n)
    span = params.db_max - params.db_min
    loud = px16[..., 0] > 0
    err = np.abs(px16[..., 0].astype(np.float64) - px8[..., 0]) / FULL_SCALE * span
    return {"psnr_db": float(psnr16(px16, px8)),
            "magnitude_error_db": float(err[loud].mean()) if loud.any() else 0.0,
            "magnitude_error_max_db": float(err[loud].max()) if loud.any() else 0.0,
            "audio_snr_db": float(snr_db(y16, y8)), "pillow_mode": mode}
