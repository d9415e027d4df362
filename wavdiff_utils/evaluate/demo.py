"""The demo sets ``08_evaluate`` runs on by default: made from the bundled sample in seconds.

- ``reference/``: the sample encoded by this project's encoder and exported as a dataset
  (``metadata.jsonl``), small tiles (256 x 256 at 22.05 kHz: 1.5 s each, 20 tiles);
- ``generated/``: eight images as a generator writes them (``sample_<k>.png``, no metadata,
  a prompt in ``sample_<k>.txt``): four are reference tiles given phase noise (near copies,
  which the memorization check should flag) and four are tiles of noise shaped like the
  sample's average spectrum (far from music, which the outlier list should name).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..codec.transform import pixels_to_stft, stft_to_pixels
from ..io.tiles import read_tile, write_tile
from ..paths import SAMPLE_AUDIO

__all__ = ["build_demo", "DEMO_ROOT", "DEMO_PROMPT"]

#: Where the notebook's default parameters point.
DEMO_ROOT = "outputs/evaluate_demo"
#: The prompt written beside each demo sample.
DEMO_PROMPT = "a calm electronic track with soft pads"


def _phase_noise(S: np.ndarray, level: float, rng) -> np.ndarray:
    """``S`` with Gaussian noise of std ``level`` on its unit phase vector (cos, sin)."""
    mag = np.abs(S)
    unit = np.where(mag > 0, S / np.where(mag > 0, mag, 1), 1)
    z = unit + level * (rng.standard_normal(S.shape) + 1j * rng.standard_normal(S.shape))
    return (mag * z / np.maximum(np.abs(z), 1e-12)).astype(np.complex64)


def _shaped_noise(pixels: list[np.ndarray], params: CodecParams, rng) -> np.ndarray:
    """A tile of noise with the tiles' average magnitude per frequency (random phase)."""
    mags = [np.abs(pixels_to_stft(p, params)) for p in pixels]
    mean = np.mean([m.mean(axis=1) for m in mags], axis=0)[:, None]
    S = mean * rng.rayleigh(1.0, size=mags[0].shape) * np.exp(2j * np.pi * rng.random(mags[0].shape))
    return stft_to_pixels(S.astype(np.complex64), params)[0]


def build_demo(folder=DEMO_ROOT, *, size: int = 256, sample_rate: int = 22050,
               seed: int = 0) -> tuple[Path, Path]:
    """Make (or reuse) the demo's ``generated`` and ``reference`` folders under ``folder``."""
    from ..dataset.export import export_dataset
    from ..jobs.encode import encode_batch
    from ..paths import output_dir

    root = output_dir(folder)
    ref, gen = root / "reference", root / "generated"
    params = CodecParams(size=size, sample_rate=sample_rate)
    if not (ref / "metadata.jsonl").is_file():
        encode_batch(SAMPLE_AUDIO, ref, params=params, progress=False).raise_if_failed()
        export_dataset(ref, card=False, splits=(("validation", 1.0),))
    if len(list(gen.glob("sample_*.png"))) < 8:
        gen.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        tiles = sorted(ref.rglob("*.png"))
        full = [read_tile(t, warn=False).pixels for t in tiles[:-1]]      # the last one is padded
        for k in range(8):
            if k < 4:
                S = pixels_to_stft(full[(4 * k + 3) % len(full)], params)
                px = stft_to_pixels(_phase_noise(S, 0.5, rng), params)[0]
            else:
                px = _shaped_noise(full, params, rng)
            write_tile(gen / f"sample_{k}.png", px)
            (gen / f"sample_{k}.txt").write_text(DEMO_PROMPT, encoding="utf-8")
    return gen, ref
