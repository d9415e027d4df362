"""The levels of a song as the encoder reads it: sample count, peak, a stereo song's louder
channel, and the checks that refuse empty, too short or silent audio."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..io.audio import AudioError

__all__ = ["Levels", "check_levels"]


class Levels:
    """Peak and number of the samples of the blocks that pass through :meth:`counted`."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.n_samples = 0
        self.channel_peak = 0.0

    def counted_pairs(self, pairs):
        """Yield ``(mid, side)`` blocks unchanged, keeping the louder channel's peak:
        max(|mid + side|, |mid - side|) = |mid| + |side|, sample by sample."""
        for mid, side in pairs:
            if len(mid):
                louder = float(np.max(np.abs(mid) + np.abs(side)))
                self.channel_peak = max(self.channel_peak, louder)
            yield mid, side

    def counted(self, blocks):
        """Yield ``blocks`` unchanged, counting their samples and peak on the way."""
        for b in blocks:
            if len(b):
                self.peak = max(self.peak, float(np.max(np.abs(b))))
                self.n_samples += len(b)
            yield b


def check_levels(path: Path, params: CodecParams, levels: Levels, side: Levels) -> None:
    """Raise :class:`AudioError` for audio that is empty, shorter than ``n_fft`` or silent."""
    n_samples = levels.n_samples
    if n_samples == 0:
        raise AudioError(path, "contains no audio samples (empty file)")
    if n_samples < params.n_fft:
        raise AudioError(path, f"is too short: {n_samples} samples "
                               f"({1000 * n_samples / params.sample_rate:.1f} ms) at "
                               f"{params.sample_rate} Hz; at least n_fft={params.n_fft} "
                               f"needed")
    if levels.peak == 0.0 and side.peak == 0.0:
        raise AudioError(path, "is silent (every sample is zero)")
