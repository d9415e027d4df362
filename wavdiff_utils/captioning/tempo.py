"""Tempo of music: the song's and each tile's (onset autocorrelation), or one clip's (librosa).

Music analysis the captioners use: :func:`estimate_bpm` gives MuQ captions the
song's tempo and a tile's own where it differs; :func:`clip_bpm` gives the
metadata captioner each tile's ``librosa.feature.tempo``; :func:`bpm_text`
writes either into a caption.
"""
from __future__ import annotations

import numpy as np

__all__ = ["estimate_bpm", "clip_bpm", "bpm_text"]


def bpm_text(bpm: float | None) -> str:
    """``"120 BPM."`` (whole BPM), or ``""`` when ``bpm`` is ``None``, not finite or not positive."""
    return f"{int(round(bpm))} BPM." if bpm is not None and np.isfinite(bpm) and bpm > 0 else ""


def clip_bpm(y: np.ndarray, sample_rate: int, *, min_seconds: float = 2.0) -> float | None:
    """``librosa.feature.tempo`` of one clip in whole BPM; ``None`` when it is silent or shorter
    than ``min_seconds`` (too few beats to count)."""
    import librosa

    if len(y) < min_seconds * sample_rate or not np.any(y):
        return None
    return float(round(float(librosa.feature.tempo(y=y, sr=sample_rate)[0])))


def _tempo(env: np.ndarray, fps: float, *, prior_bpm: float = 120.0, std_octaves: float = 1.0,
           min_bpm: float = 30.0, max_bpm: float = 320.0) -> float | None:
    """Tempo of an onset envelope: the autocorrelation peak under a log-normal tempo prior
    (as librosa's estimator), refined between lags by a parabola.  ``None`` without a peak."""
    import librosa

    env = np.asarray(env, dtype=np.float64)
    env = env - env.mean()
    max_lag = int(np.ceil(fps * 60.0 / min_bpm)) + 2
    if len(env) < 4 or not np.any(env):
        return None
    ac = librosa.autocorrelate(env, max_size=min(max_lag, len(env)))
    lags = np.arange(len(ac), dtype=np.float64)
    with np.errstate(divide="ignore"):
        bpms = np.where(lags > 0, 60.0 * fps / np.maximum(lags, 1e-9), np.inf)
    ok = (bpms >= min_bpm) & (bpms <= max_bpm)
    ok[:1] = ok[-1:] = False                     # a peak needs both neighbours
    if not np.any(ok & (ac > 0)):
        return None
    # peaks between integer lags are smeared over two lags, exact ones are not: smooth a
    # little and compare peak heights at their interpolated tops, so octaves compete fairly
    ac = np.convolve(ac, [0.25, 0.5, 0.25], mode="same")
    weight = np.exp(-0.5 * (np.log2(np.where(ok, bpms, prior_bpm) / prior_bpm) / std_octaves) ** 2)
    best, best_lag = -np.inf, None
    for k in np.flatnonzero(ok):
        a, b, c = ac[k - 1], ac[k], ac[k + 1]
        if not (b >= a and b >= c and b > 0):
            continue
        den = a - 2 * b + c
        shift = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0
        top = b - 0.25 * (a - c) * shift
        if top * weight[k] > best:
            best, best_lag = top * weight[k], k + shift
    if best_lag is None:
        return None
    return float(60.0 * fps / best_lag)


def estimate_bpm(y: np.ndarray, sample_rate: int, spans=(), *, tolerance: float = 0.08,
                 min_seconds: float = 5.0, hop_length: int = 512) -> tuple[float | None, list]:
    """Tempo of the whole song, and the tempo to report for each tile (``None`` when none is found).

    The tempo is the strongest periodicity (autocorrelation) of the
    ``librosa.onset.onset_strength`` envelope under librosa's log-normal prior
    around 120 BPM, over the whole song.  A tile of at least ``min_seconds``
    reports its own estimate only when it differs from the song's by more than
    ``tolerance`` (relative), half and double tempo not counting.  Whole BPM.

    Returns
    -------
    song_bpm : float or None
    tile_bpm : list of float or None
        One per span.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if len(y) < 4 * hop_length or not np.any(y):
        return None, [None] * len(spans)
    env = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=hop_length)
    fps = sample_rate / hop_length
    song = _tempo(env, fps)
    if song is None:
        return None, [None] * len(spans)
    song = float(round(song))
    out = []
    for s in spans:
        bpm = song
        if (s.end - s.start) >= min_seconds * sample_rate:
            local = _tempo(env[s.start // hop_length: -(-s.end // hop_length)], fps)
            if local is not None:
                ratio = local / song
                if all(abs(ratio / k - 1) > tolerance for k in (0.5, 1.0, 2.0)):
                    bpm = float(round(local))
        out.append(bpm)
    return song, out
