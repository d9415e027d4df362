"""Codec parameters: one frozen object that every step agrees on.

The same :class:`CodecParams` is written into every PNG, every manifest and
every dataset card, so a tile can always be decoded alone.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import yaml

from ..errors import BadParameterError, MissingInputError
from ..paths import resolve
from . import resources

__all__ = ["CodecParams", "LAYOUTS", "CHANNELS", "SIDE_FLOOR_DROP_DB", "load_yaml_params", "tile_memory", "MAX_SIZE", "MAX_N_FFT"]

#: Supported tile layouts.
LAYOUTS = ("exact", "seed")
#: What ``channels`` may be.
CHANNELS = ("mono", "stereo")
#: How much lower a side tile's floor lies than ``db_min`` (its top stays ``db_max``): measured
#: on real music, the side's error with the mid's floor (-110 dB) cost left and right 2.7-3.3 dB
#: of SNR against the mono round trip (its quiet bins fell below the floor); 20 dB lower puts
#: them within 0.4 dB of it or above, with the side's loudest bin 21-27 dB below the top.
SIDE_FLOOR_DROP_DB = 20.0

#: dB reference: a full-scale sine wave's peak STFT bin reads 0 dB.
DB_REFERENCE = "full-scale sine peak bin"

#: Largest tile edge: a 16384 x 16384 tile is 1.6 GB of 16-bit pixels (diffusion models train on
#: 64 to 2048); beyond it no estimate is trusted.
MAX_SIZE = 16384
#: Largest FFT: the exact layout's at :data:`MAX_SIZE` (``2 * size``).
MAX_N_FFT = 2 * MAX_SIZE
#: Peak bytes per pixel of one tile being encoded (the STFT block, its complex spectrum, float
#: planes, 16-bit pixels and the PNG buffer), measured on the 2-core development machine with
#: ``encode_song(..., threads=1)``, peak RSS less the RSS before, a 2.5-tile clip, layout exact:
#: size 1024: 83 MB (79 B/px), 2048: 306 MB (73 B/px), 4096: 1058 MB (63 B/px); layout seed,
#: n_fft 4096 at size 256: 191 MB (46 B/px of the 2049 x 2049 spectrum).  The decoder holds
#: about twice as much per tile (133-206 B/px measured at 2048: two tiles and their overlap).
TILE_BYTES_PER_PIXEL = 80
#: Estimates below this are not checked against the machine (any machine has that much).
_UNCHECKED_BYTES = 256 << 20


def tile_memory(size: int, n_fft: int) -> int:
    """Estimated peak bytes of one tile being encoded (one tile thread): the larger of the tile
    (``size`` x ``size``) and the spectrum before any resize (``n_fft/2+1`` squared), times
    :data:`TILE_BYTES_PER_PIXEL`.

    >>> round(tile_memory(1024, 2048) / 1e6)
    84
    """
    edge = max(int(size), int(n_fft) // 2 + 1)
    return TILE_BYTES_PER_PIXEL * edge * edge


def _check_edge(name: str, value: int, need_for, maximum: int) -> None:
    """``value`` of ``name`` fits the machine's memory (one tile) and the hard ``maximum``: the
    message gives whichever limit is lower."""
    if need_for(value) < _UNCHECKED_BYTES:
        return
    why = "the largest tile wavdiff makes"
    budget = resources.MEMORY_SHARE * resources.available_memory()
    if value > maximum and need_for(maximum) <= budget:
        resources.check_at_most(name, value, maximum, why)      # memory would allow more
    resources.check_memory(name, value, need_for)
    resources.check_at_most(name, value, maximum, why)


@dataclass(frozen=True)
class CodecParams:
    """Everything needed to turn audio into tiles and back.

    Parameters
    ----------
    sample_rate : int
        Codec sample rate in Hz; audio is resampled to it (default 44100).
    layout : {"exact", "seed"}
        ``"exact"`` (default): ``size`` frequency bins x ``size`` frames, no
        interpolation (STFT ``n_fft = 2*size``; the Nyquist bin is dropped).
        ``"seed"``: the original recipe, ``n_fft//2+1`` bins x ``n_fft//2+1``
        frames resized to ``size x size`` with Lanczos4 (lossy, kept for
        comparison and compatibility).
    size : int
        Tile edge in pixels (default 1024).
    n_fft : int or None
        FFT size.  ``None`` derives it: ``2*size`` for "exact", 2048 for "seed".
        For "exact" it must equal ``2*size``.
    hop_length : int or None
        Hop in samples. ``None`` means ``n_fft // 4`` (512 by default).
    db_min, db_max : float
        Fixed magnitude range of the red channel, in dB relative to a full-scale
        sine's peak bin.  Pixel 0 means "at or below db_min" and decodes as
        silence; 65535 means db_max.  The same for every tile of every song.
    channels : {"mono", "stereo"}
        ``"mono"`` (default): one tile per span, the channels' mean.  ``"stereo"``: per span
        the same mono tile (the mid, (L+R)/2, byte for byte the mono run's file) plus a side
        tile, (L-R)/2, named ``<song>_<index:04d>.side.png``, whose floor is
        :data:`SIDE_FLOOR_DROP_DB` below ``db_min`` (chosen by measurement: see the README;
        :meth:`side_codec`).  Tiles record the codec they were made with as mono (``"mono":
        true``, so a mid tile is the mono tile); side tiles and stereo manifests record
        ``"channels"``.
    """

    sample_rate: int = 44100
    layout: str = "exact"
    size: int = 1024
    n_fft: int | None = None
    hop_length: int | None = None
    db_min: float = -110.0
    db_max: float = 10.0
    channels: str = "mono"

    def __post_init__(self):
        def setf(name, value):
            object.__setattr__(self, name, value)

        if self.channels not in CHANNELS:
            raise BadParameterError(f"channels must be one of {CHANNELS}, got {self.channels!r}")
        if self.layout not in LAYOUTS:
            raise BadParameterError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        for name in ("sample_rate", "size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v <= 0:
                raise BadParameterError(f"{name} must be a positive integer, got {v!r}")
            setf(name, int(v))
        if self.sample_rate < 8000 or self.sample_rate > 384000:
            raise BadParameterError(f"sample_rate {self.sample_rate} Hz is outside 8000..384000 Hz")
        if self.size < 16:
            raise BadParameterError(f"size must be at least 16 pixels, got {self.size}")
        _check_edge("size", self.size, lambda v: tile_memory(v, 2 * v), MAX_SIZE)
        n_fft = self.n_fft
        if n_fft is None:
            n_fft = 2 * self.size if self.layout == "exact" else 2048
        n_fft = int(n_fft)
        if n_fft < 16 or n_fft % 2:
            raise BadParameterError(f"n_fft must be an even number >= 16, got {n_fft}")
        if self.layout == "exact" and n_fft != 2 * self.size:
            raise BadParameterError(
                f"layout 'exact' stores n_fft/2 bins in a size x size tile, so it needs "
                f"n_fft == 2*size; got n_fft={n_fft}, size={self.size}. Leave n_fft unset "
                f"to derive it, or use layout='seed' to resize.")
        if self.layout == "seed":
            _check_edge("n_fft", n_fft, lambda v: tile_memory(self.size, v), MAX_N_FFT)
        setf("n_fft", n_fft)
        hop = self.hop_length if self.hop_length is not None else n_fft // 4
        hop = int(hop)
        if hop <= 0 or hop > n_fft // 2:
            raise BadParameterError(f"hop_length must be in 1..n_fft/2 ({n_fft // 2}) for a lossless "
                             f"inverse, got {hop}")
        setf("hop_length", hop)
        if not float(self.db_max) > float(self.db_min):
            raise BadParameterError(f"db_max ({self.db_max}) must be greater than db_min ({self.db_min})")
        setf("db_min", float(self.db_min))
        setf("db_max", float(self.db_max))

    # ------------------------------------------------------------------ geometry
    @property
    def bins(self) -> int:
        """STFT bins stored per tile before any resize."""
        return self.n_fft // 2 if self.layout == "exact" else self.n_fft // 2 + 1

    @property
    def frames_per_tile(self) -> int:
        """STFT frames per tile before any resize."""
        return self.size if self.layout == "exact" else self.n_fft // 2 + 1

    @property
    def tile_samples(self) -> int:
        """Samples owned by one tile."""
        return self.frames_per_tile * self.hop_length

    @property
    def tile_seconds(self) -> float:
        """Seconds of audio per tile."""
        return self.tile_samples / self.sample_rate

    @property
    def tile_memory(self) -> int:
        """Estimated peak bytes of one tile being encoded (see :func:`tile_memory`)."""
        return tile_memory(self.size, self.n_fft)

    @property
    def db_scale(self) -> float:
        """Amplitude of a full-scale sine's peak bin for this STFT (Hann window sum / 2)."""
        return self.n_fft / 4.0

    def describe(self) -> str:
        """One sentence saying how audio maps onto a tile."""
        top = self.sample_rate / 2 * (self.bins - 1) / (self.n_fft / 2)
        if self.layout == "exact":
            how = (f"{self.bins} bins (0-{top / 1000:.1f} kHz, Nyquist dropped) x "
                   f"{self.frames_per_tile} frames, no interpolation")
        else:
            how = (f"{self.bins} bins x {self.frames_per_tile} frames resized to "
                   f"{self.size}x{self.size} with Lanczos4 (lossy)")
        return (f"layout {self.layout!r}: STFT n_fft={self.n_fft}, hop={self.hop_length} at "
                f"{self.sample_rate} Hz; each {self.size}x{self.size} tile = {how} = "
                f"{self.tile_seconds:.2f} s of audio; red = dB in [{self.db_min:g}, {self.db_max:g}] "
                f"re {DB_REFERENCE}, green/blue = cos/sin of phase, 16-bit"
                + ("; stereo: a mid tile (L+R)/2 and a side tile (L-R)/2 per span" if self.stereo else ""))

    @property
    def stereo(self) -> bool:
        """Whether songs are encoded as mid and side tiles."""
        return self.channels == "stereo"

    def tile_codec(self) -> "CodecParams":
        """The codec one tile is made with: these settings as mono (a mid or side tile is a
        mono spectrogram; its metadata says so, as every tile's has)."""
        return dataclasses.replace(self, channels="mono")

    def side_codec(self) -> "CodecParams":
        """The codec a side tile is made with: mono, its floor :data:`SIDE_FLOOR_DROP_DB` lower
        (the side is quiet; the same top, which it can never exceed: |L-R|/2 <= max(|L|, |R|))."""
        return dataclasses.replace(self, channels="mono", db_min=self.db_min - SIDE_FLOOR_DROP_DB)

    def differences(self, other: "CodecParams", *, skip=()) -> str:
        """The settings in which ``other`` differs, ``"hop_length 32 vs 64"`` (these first),
        in field order; ``skip`` names fields left out.  Empty when they are the same."""
        a, b = dataclasses.asdict(self), dataclasses.asdict(other)
        return ", ".join(f"{k} {a[k]!r} vs {b[k]!r}" for k in a if k not in skip and a[k] != b[k])

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict:
        """The settings as a dict: mono ones exactly as before ``channels`` existed (with the
        legacy ``"mono": true``), stereo ones with ``"channels": "stereo"`` in its place."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "channels"}
        if self.stereo:
            d["channels"] = "stereo"
        else:
            d["mono"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CodecParams":
        """Build from a dict, ignoring keys that are not codec parameters."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})      # "mono" is implied

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def load_yaml_params(path) -> dict:
    """Read a ``params/*.yaml`` file into a dict (the same file papermill takes with ``-f``)."""

    p = resolve(path)
    if not p.is_file():
        raise MissingInputError(f"parameter file {str(p)!r} does not exist")
    try:
        with open(p, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or "unreadable"
        raise BadParameterError(f"parameter file {str(p)!r} is not valid YAML{where}: "
                                f"{what}") from None
    if not isinstance(data, dict):
        raise BadParameterError(f"parameter file {str(p)!r} must hold a mapping of names to values")
    return data
