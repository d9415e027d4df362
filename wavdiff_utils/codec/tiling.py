"""Where each tile sits in time.

This is the single source of truth for tile sample spans.  The encoder, the
decoder and both captioners call :func:`tile_spans`, so a caption describes
exactly the samples inside its image.

Convention
----------
STFT frames are centred: frame ``j`` is centred on sample ``j * hop_length``
(the signal is zero-padded by ``n_fft // 2`` at the start, as librosa does with
``center=True``).  Tile ``i`` holds frames ``i*F ... (i+1)*F - 1`` where ``F`` is
the number of frames per tile, and it *owns* the samples
``[i*F*hop, (i+1)*F*hop)``.  Tiles partition the song without overlap; the last
one is zero-padded to full width and its ``pad`` says by how many samples.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import BadParameterError

__all__ = ["TileSpan", "tile_spans", "n_tiles_for"]


@dataclass(frozen=True)
class TileSpan:
    """The samples one tile describes, at the codec sample rate.

    Attributes
    ----------
    index : int
        Tile number, from 0.
    start : int
        First sample owned by the tile.
    end : int
        One past the last *real* sample (clipped to the song length).
    stop : int
        One past the last sample the tile's frames stand for, padding included
        (``start + frames_per_tile * hop_length``).
    pad : int
        Padding samples at the end of the tile (``stop - end``); non-zero only
        for the last tile.
    """

    index: int
    start: int
    end: int
    stop: int
    pad: int

    @property
    def n_samples(self) -> int:
        """Number of real samples in the tile."""
        return self.end - self.start

    def seconds(self, sample_rate: int) -> tuple[float, float]:
        """Start and end of the real audio in seconds."""
        return self.start / sample_rate, self.end / sample_rate

    def to_dict(self) -> dict:
        return asdict(self)


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not float(value).is_integer():
        raise BadParameterError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value <= 0:
        raise BadParameterError(f"{name} must be positive, got {value}")
    return value


def n_tiles_for(n_samples: int, *, frames_per_tile: int, hop_length: int) -> int:
    """Number of tiles needed for ``n_samples`` samples (at least 1 for non-empty audio)."""
    frames_per_tile = _check_positive("frames_per_tile", frames_per_tile)
    hop_length = _check_positive("hop_length", hop_length)
    if n_samples < 0:
        raise BadParameterError(f"n_samples must be >= 0, got {n_samples}")
    width = frames_per_tile * hop_length
    return -(-int(n_samples) // width)


def tile_spans(n_samples: int, *, frames_per_tile: int, hop_length: int) -> list[TileSpan]:
    """Sample spans of every tile of a song.

    Parameters
    ----------
    n_samples : int
        Song length in samples, at the codec sample rate.
    frames_per_tile : int
        STFT frames per tile (1024 for the default "exact" layout).
    hop_length : int
        STFT hop in samples.

    Returns
    -------
    list of TileSpan
        In order; empty for ``n_samples == 0``.

    Examples
    --------
    >>> [(s.start, s.end, s.pad) for s in tile_spans(1000, frames_per_tile=4, hop_length=100)]
    [(0, 400, 0), (400, 800, 0), (800, 1000, 200)]
    """
    n = n_tiles_for(n_samples, frames_per_tile=frames_per_tile, hop_length=hop_length)
    width = int(frames_per_tile) * int(hop_length)
    spans = []
    for i in range(n):
        start = i * width
        stop = start + width
        end = min(stop, int(n_samples))
        spans.append(TileSpan(i, start, end, stop, stop - end))
    return spans
