"""Fidelity measures: 16-bit PSNR for tiles, SNR and log-spectral distance for audio."""
from __future__ import annotations

import numpy as np

from ..errors import BadParameterError

__all__ = ["psnr16", "snr_db", "lsd_db", "align", "stereo_width"]


def psnr16(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio on the 16-bit scale (peak 65535), in dB; ``inf`` if identical.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise BadParameterError(f"cannot compare images of shape {a.shape} and {b.shape}")
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(65535.0 ** 2 / mse))


def align(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut both signals to the shorter length (decoders may pad or trim by a few samples)."""
    n = min(len(reference), len(estimate))
    return np.asarray(reference[:n], np.float64), np.asarray(estimate[:n], np.float64)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Waveform signal-to-noise ratio ``10 log10(sum ref^2 / sum (ref - est)^2)`` in dB."""
    r, e = align(reference, estimate)
    noise = np.sum((r - e) ** 2)
    sig = np.sum(r ** 2)
    if sig == 0:
        raise BadParameterError("reference signal is silent; SNR is undefined")
    return float("inf") if noise == 0 else float(10 * np.log10(sig / noise))


def lsd_db(reference: np.ndarray, estimate: np.ndarray, *, n_fft: int = 2048, hop_length: int = 512,
           floor_db: float = -100.0) -> float:
    """Log-spectral distance in dB: frame-wise RMS of the power-spectrum difference, averaged.

    Power below ``floor_db`` (relative to the reference's peak) is raised to the
    floor so that near-silent bins do not dominate.  0 means identical spectra.
    """
    import librosa

    r, e = align(reference, estimate)
    R = np.abs(librosa.stft(r, n_fft=n_fft, hop_length=hop_length)) ** 2
    E = np.abs(librosa.stft(e, n_fft=n_fft, hop_length=hop_length)) ** 2
    floor = max(R.max(), 1e-30) * 10 ** (floor_db / 10)
    d = 10 * np.log10(np.maximum(R, floor)) - 10 * np.log10(np.maximum(E, floor))
    return float(np.mean(np.sqrt(np.mean(d ** 2, axis=0))))


def stereo_width(audio: np.ndarray) -> dict:
    """How wide a stereo signal is: level difference, correlation and side-to-mid ratio.

    Parameters
    ----------
    audio : ndarray (n, 2)
        Left and right channels.

    Returns
    -------
    dict
        ``level_difference_db``: 20 log10(RMS left / RMS right) (0 for a centred mix);
        ``correlation``: Pearson correlation of left and right (1: mono, 0: unrelated,
        -1: out of phase; ``nan`` when a channel is silent);
        ``side_to_mid_db``: 20 log10(RMS (L-R)/2 / RMS (L+R)/2) (``-inf`` for mono).
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or not len(x):
        raise BadParameterError(f"stereo_width needs (n, 2) audio, got shape {x.shape}")
    left, right = x[:, 0], x[:, 1]

    def rms(v):
        return float(np.sqrt(np.mean(v * v)))

    def ratio_db(a, b):
        if b == 0:
            return float("inf") if a > 0 else float("nan")
        return float(20 * np.log10(a / b)) if a > 0 else float("-inf")

    sl, sr = left.std(), right.std()
    corr = float("nan")
    if sl > 0 and sr > 0:
        corr = float(np.clip(np.mean((left - left.mean()) * (right - right.mean())) / (sl * sr), -1, 1))
    return {"level_difference_db": ratio_db(rms(left), rms(right)), "correlation": corr,
            "side_to_mid_db": ratio_db(rms((left - right) / 2), rms((left + right) / 2))}
