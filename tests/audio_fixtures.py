"""Tiny, deterministic test signals (made by the tests, nothing downloaded)."""
from __future__ import annotations

import numpy as np
import scipy.signal as ss
import soundfile as sf


def music_like(seconds: float, sr: int = 44100, *, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Plucked harmonic notes over low-passed noise, band-limited like real (MP3) music."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    y = np.zeros(n)
    step = int(0.25 * sr)
    for k, start in enumerate(range(0, n, step)):
        f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
        seg = t[: min(step * 2, n - start)]
        env = np.exp(-seg * 6)
        note = sum(np.sin(2 * np.pi * f0 * h * seg + rng.uniform(0, 6.28)) / h for h in range(1, 8)
                   if f0 * h < sr * 0.35)
        y[start:start + len(seg)] += 0.15 * env * note
    y += 0.02 * rng.standard_normal(n)
    sos = ss.butter(10, min(16000, 0.36 * sr) / (sr / 2), output="sos")
    y = ss.sosfiltfilt(sos, y)                     # band-limit the whole mix, as MP3 does
    fade = min(int(0.01 * sr), n // 4)              # no step at either end (real songs fade)
    if fade:
        ramp = np.sin(np.linspace(0, np.pi / 2, fade)) ** 2
        y[:fade] *= ramp
        y[n - fade:] *= ramp[::-1]
    y = y / np.max(np.abs(y)) * 0.8
    if channels > 1:
        y = np.stack([y * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return y.astype(np.float32)


def write(path, y, sr, **kw):
    sf.write(str(path), y, sr, **kw)
    return path
