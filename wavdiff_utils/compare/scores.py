"""Scores of one tile pair and of one song's audio, for :func:`wavdiff_utils.compare.compare_tiles`.

Per tile pair (:class:`TileScore`): 16-bit PSNR overall, of the magnitude
channel, of the phase channels (all bins and non-silent bins), the STFT-domain
SNR, the largest pixel difference and the magnitude error in dB.  Per song
(:class:`AudioScore`): waveform SNR and log-spectral distance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadParameterError, MissingInputError
from ..io.audio import find_audio_files, load_audio
from ..codec.transform import FULL_SCALE, pixels_to_stft
from .preview import magnitude
from ..codec.metrics import lsd_db, psnr16, snr_db
from ..codec.params import CodecParams
from ..paths import song_id
from ..io.tiles import read_tile

__all__ = ["TileScore", "AudioScore"]




@dataclass
class TileScore:
    """Scores of one tile pair.

    Attributes
    ----------
    key : str
        What paired the two files: the file name (``match="name"``) or the
        path relative to each root (``match="path"``).
    original, reconstructed : Path
    width, height : int
    psnr : float
        PSNR in dB of all channels on the 16-bit scale (peak 65535); ``inf`` if identical.
    psnr_magnitude : float
        PSNR of the red (magnitude) channel.
    psnr_phase : float
        PSNR of the green and blue (cos/sin phase) channels together; ``nan``
        when either tile is magnitude-only (grey).
    psnr_phase_nonsilent : float
        The same over the bins the original stores as sound (red > 0).  The
        phase of a bin at or below ``db_min`` decodes to nothing, so it may
        differ arbitrarily; it usually dominates ``psnr_phase`` after a round trip.
    stft_snr : float
        SNR in dB of the complex STFT the reconstructed tile decodes to,
        against the original's (energy-weighted magnitude and phase error: what
        the tile's audio loses).  Needs the original's codec metadata; ``nan`` without.
    max_abs_diff : int
        Largest absolute pixel difference, any channel, in 16-bit steps.
    magnitude_mae_db : float
        Mean absolute magnitude error in dB, using the original tile's codec
        dB range from its metadata; ``nan`` for tiles without metadata.
    preview : Path or None
        The side-by-side PNG, if one was written.
    note : str
        Anything unusual about the pair (8-bit or grey file, other codec settings).
    """

    key: str
    original: Path
    reconstructed: Path
    width: int
    height: int
    psnr: float
    psnr_magnitude: float
    psnr_phase: float
    psnr_phase_nonsilent: float
    stft_snr: float
    max_abs_diff: int
    magnitude_mae_db: float = float("nan")
    preview: Path | None = None
    note: str = ""

    def row(self) -> dict:
        return {"key": self.key, "original": str(self.original),
                "reconstructed": str(self.reconstructed), "width": self.width,
                "height": self.height, "psnr_db": self.psnr,
                "psnr_magnitude_db": self.psnr_magnitude, "psnr_phase_db": self.psnr_phase,
                "psnr_phase_nonsilent_db": self.psnr_phase_nonsilent,
                "stft_snr_db": self.stft_snr, "max_abs_diff": self.max_abs_diff, "magnitude_mae_db": self.magnitude_mae_db,
                "preview": str(self.preview) if self.preview else "", "note": self.note}


@dataclass
class AudioScore:
    """Waveform SNR and log-spectral distance of one song (both loaded at ``sample_rate``).

    ``samples_original`` and ``samples_reconstructed`` are the lengths before
    alignment; the scores use the first ``min`` of the two.
    """

    song: str
    original: Path
    reconstructed: Path
    sample_rate: int
    samples_original: int
    samples_reconstructed: int
    snr_db: float
    lsd_db: float

    @property
    def seconds(self) -> float:
        return min(self.samples_original, self.samples_reconstructed) / self.sample_rate

    def row(self) -> dict:
        return {"song": self.song, "original": str(self.original),
                "reconstructed": str(self.reconstructed), "sample_rate": self.sample_rate,
                "seconds": round(self.seconds, 3), "samples_original": self.samples_original,
                "samples_reconstructed": self.samples_reconstructed, "snr_db": self.snr_db,
                "lsd_db": self.lsd_db}


def finite_mean(values) -> float:
    """Mean of the finite values; ``inf`` if every value is ``inf``; ``nan`` if there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    finite = [v for v in vals if math.isfinite(v)]
    if finite:
        return float(np.mean(finite))
    return float("inf") if vals else float("nan")


def fmt_db(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return "inf dB (identical)" if math.isinf(v) else f"{v:.2f} dB"


def codec(meta) -> CodecParams | None:
    """The codec parameters a tile's metadata names, or ``None``."""
    try:
        return CodecParams.from_dict(meta["codec"])
    except (KeyError, TypeError, ValueError):
        return None


def score_pair(key: str, pa: Path, pb: Path):
    """Score one pair; returns ``(TileScore, pixels_a, pixels_b, metadata_a)``."""
    ta = read_tile(pa, warn=False)
    tb = read_tile(pb, warn=False)
    a, b = ta.pixels, tb.pixels
    if a.shape[:2] != b.shape[:2]:
        raise BadParameterError(f"size mismatch: original {pa} is {a.shape[1]}x{a.shape[0]} pixels "
                         f"but reconstructed {pb} is {b.shape[1]}x{b.shape[0]}")
    notes = []
    for side, t in (("original", ta), ("reconstructed", tb)):
        if t.bit_depth != 16:
            notes.append(f"{side} is {t.bit_depth}-bit (scaled to 16)")
        if not t.has_phase:
            notes.append(f"{side} is grey (magnitude only)")
    if ta.metadata and tb.metadata and ta.metadata.get("codec") != tb.metadata.get("codec"):
        notes.append("codec parameters differ")
    mag = psnr16(magnitude(a), magnitude(b))
    nan = float("nan")
    phase = phase_ns = stft_snr = nan
    params = codec(ta.metadata)
    if ta.has_phase and tb.has_phase:
        overall = psnr16(a, b)
        phase = psnr16(a[..., 1:], b[..., 1:])
        sound = a[..., 0] > 0
        if sound.any():
            phase_ns = psnr16(a[..., 1:][sound], b[..., 1:][sound])
        if params is not None and a.shape[:2] == (params.size, params.size):
            sa = pixels_to_stft(a, params)
            sb = pixels_to_stft(b, params)
            energy = float(np.sum(np.abs(sa) ** 2))
            err = float(np.sum(np.abs(sa - sb) ** 2))
            if energy > 0:
                stft_snr = float("inf") if err == 0 else float(10 * np.log10(energy / err))
    else:
        overall = mag
        notes.append("scores are for magnitude only")
    max_diff = int(np.max(np.abs(a.astype(np.int32) - b.astype(np.int32)))) if a.ndim == b.ndim \
        else int(np.max(np.abs(magnitude(a).astype(np.int32) - magnitude(b).astype(np.int32))))
    mae_db = nan
    if params is not None:
        diff = np.abs(magnitude(a).astype(np.float64) - magnitude(b).astype(np.float64))
        mae_db = float(np.mean(diff) / FULL_SCALE * (params.db_max - params.db_min))
    score = TileScore(key, pa, pb, int(a.shape[1]), int(a.shape[0]), overall, mag, phase,
                      phase_ns, stft_snr, max_diff, mae_db, None, "; ".join(notes))
    return score, a, b, ta.metadata


# --------------------------------------------------------------------------- audio


def pair_audio(orig, recon) -> tuple[list[tuple[str, Path, Path]], list[tuple[str, str]]]:
    """Pair audio files: two files directly, otherwise by song name (file stem made safe)."""
    orig, recon = Path(orig), Path(recon)
    for side, p in (("audio_original", orig), ("audio_reconstructed", recon)):
        if not p.exists():
            raise MissingInputError(f"{side} {str(p)!r} does not exist")
    if orig.is_file() and recon.is_file():
        return [(song_id(orig), orig, recon)], []
    a = {song_id(f): f for f in find_audio_files(orig)}
    b = {song_id(f): f for f in find_audio_files(recon)}
    pairs = [(s, a[s], b[s]) for s in sorted(a) if s in b]
    errors = []
    if orig.is_file() or recon.is_file():
        # one file against a folder: only the file's song is wanted
        wanted = song_id(orig if orig.is_file() else recon)
        pairs = [p for p in pairs if p[0] == wanted]
        if not pairs:
            folder = recon if orig.is_file() else orig
            errors.append((f"audio {wanted}", f"no audio file named {wanted!r} under {folder}"))
        return pairs, errors
    for s in sorted(set(a) - set(b)):
        errors.append((f"audio {s}", f"{a[s]} has no reconstructed audio of the same name "
                                     f"under {recon}"))
    for s in sorted(set(b) - set(a)):
        errors.append((f"audio {s}", f"{b[s]} has no original audio of the same name "
                                     f"under {orig}"))
    return pairs, errors


def score_audio(song: str, pa: Path, pb: Path, sample_rate: int) -> AudioScore:
    ya = load_audio(pa, sample_rate=sample_rate)
    yb = load_audio(pb, sample_rate=sample_rate)
    return AudioScore(song, pa, pb, sample_rate, len(ya), len(yb), snr_db(ya, yb), lsd_db(ya, yb))
