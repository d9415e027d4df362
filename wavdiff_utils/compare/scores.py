"""Scores of one tile pair and of one song's audio, for :func:`wavdiff_utils.compare.compare_tiles`.

Per tile pair (:class:`TileScore`): 16-bit PSNR overall, of the magnitude
channel, of the phase channels (all bins and non-silent bins), the STFT-domain
SNR, the largest pixel difference and the magnitude error in dB, and which
channel of a stereo set the pair is (``"mid"`` or ``"side"``).  Per song
(:class:`AudioScore`): waveform SNR and log-spectral distance of the mono mix and,
when both files are stereo, of the left and right channels with the stereo width
of each file (:class:`ChannelScores`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadParameterError, MissingInputError
from ..io.audio import AudioError, AudioStream, find_audio_files
from ..codec.transform import FULL_SCALE, pixels_to_stft
from .preview import magnitude
from ..codec.metrics import lsd_db, psnr16, snr_db, stereo_width
from ..codec.params import CodecParams
from ..paths import song_id
from ..io.tiles import is_side_tile, read_tile

__all__ = ["TileScore", "AudioScore", "ChannelScores", "WIDTH_FIGURES"]

#: The stereo width figures of :func:`wavdiff_utils.codec.metrics.stereo_width` (with units).
WIDTH_FIGURES = {"level_difference_db": "dB", "correlation": "", "side_to_mid_db": "dB"}


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
    channel : {"mid", "side"}
        ``"side"`` for the side tiles ``<song>_<index:04d>.side.png`` of a stereo set, ``"mid"``
        for every other tile (the mono tile).
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
    channel: str = "mid"

    def row(self) -> dict:
        """The pair's row of ``scores.csv`` (``channel`` is written for stereo sets only)."""
        return {"key": self.key, "channel": self.channel, "original": str(self.original),
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
    alignment; the scores use the first ``min`` of the two.  ``snr_db`` and ``lsd_db``
    are those of the mono mixes (the channels' mean, what the mono tiles hold), whatever
    the files' channels; ``stereo`` adds the left and right channels and the width when
    both files are stereo, and ``note`` says when the two files' channels differ.
    """

    song: str
    original: Path
    reconstructed: Path
    sample_rate: int
    samples_original: int
    samples_reconstructed: int
    snr_db: float
    lsd_db: float
    channels_original: int = 1
    channels_reconstructed: int = 1
    stereo: "ChannelScores | None" = None
    note: str = ""

    @property
    def seconds(self) -> float:
        return min(self.samples_original, self.samples_reconstructed) / self.sample_rate

    @property
    def mono(self) -> bool:
        """Both files have one channel (the ``audio_scores.csv`` row is as it always was)."""
        return self.channels_original == self.channels_reconstructed == 1

    def row(self) -> dict:
        """The song's row of ``audio_scores.csv`` (stereo columns filled when both are stereo)."""
        row = {"song": self.song, "original": str(self.original),
               "reconstructed": str(self.reconstructed), "sample_rate": self.sample_rate,
               "seconds": round(self.seconds, 3), "samples_original": self.samples_original,
               "samples_reconstructed": self.samples_reconstructed, "snr_db": self.snr_db,
               "lsd_db": self.lsd_db,
               "channels": f"{self.channels_original}/{self.channels_reconstructed}",
               "note": self.note}
        if self.stereo is not None:
            row.update(self.stereo.row())
        return row

    def lines(self) -> list[str]:
        """The song's lines of the summary."""
        kind = "" if self.mono else " (mono mix)"
        lines = [f"audio {self.song}: SNR {fmt_db(self.snr_db)}, LSD {self.lsd_db:.3f} dB{kind} "
                 f"over {self.seconds:.2f} s at {self.sample_rate} Hz"
                 + ("" if self.samples_original == self.samples_reconstructed else
                    f" (lengths {self.samples_original} vs {self.samples_reconstructed} "
                    f"samples, compared over the shorter)")]
        if self.stereo is not None:
            lines += self.stereo.lines()
        if self.note:
            lines.append(f"  {self.note}")
        return lines


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
    """Score one pair; returns ``(TileScore, pixels_a, pixels_b, metadata_a)``.

    The pair's channel is ``"side"`` when the original is named as a side tile.
    """
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
                      phase_ns, stft_snr, max_diff, mae_db, None, "; ".join(notes),
                      "side" if is_side_tile(pa) else "mid")
    return score, a, b, ta.metadata


# --------------------------------------------------------------------------- audio


@dataclass
class SongChannels:
    """One song loaded for scoring: its mono mix (exactly what the encoder reads), its side
    ``(L-R)/2`` when the file has two channels, and the file's channel count."""

    mid: np.ndarray
    side: np.ndarray | None
    channels: int

    @property
    def stereo(self) -> bool:
        return self.side is not None

    def left_right(self) -> np.ndarray:
        """``(n, 2)`` float64 left and right: ``M + S`` and ``M - S``."""
        m = self.mid.astype(np.float64)
        s = self.side.astype(np.float64)
        return np.stack([m + s, m - s], axis=1)


def load_channels(path, *, sample_rate: int) -> SongChannels:
    """Load ``path`` at ``sample_rate`` in one read: the mono mix, bit for bit as
    :func:`wavdiff_utils.io.audio.load_audio` gives it, and the side of a two-channel file.

    Raises
    ------
    AudioError
        If the file is missing, unreadable or holds no samples.
    """
    with AudioStream(path, sample_rate=sample_rate, mid_side=True) as stream:
        blocks = list(stream)
        channels = int(stream.channels)
    if not blocks:
        raise AudioError(path, "contains no audio samples (empty file)")
    mid = np.concatenate([m for m, _ in blocks])
    side = np.concatenate([s for _, s in blocks]) if channels == 2 else None
    return SongChannels(mid, side, channels)


def _channel_db(fn, ref: np.ndarray, est: np.ndarray) -> float:
    """``fn(ref, est)``, or ``nan`` when the reference channel is silent (a hard-panned mix)."""
    try:
        return fn(ref, est)
    except BadParameterError:
        return float("nan")


@dataclass
class ChannelScores:
    """Left, right and width scores of a stereo song against its stereo reconstruction.

    Attributes
    ----------
    snr_left_db, snr_right_db : float
        Waveform SNR of each channel (``nan`` where the original channel is silent).
    lsd_left_db, lsd_right_db : float
        Log-spectral distance of each channel.
    width_original, width_reconstructed : dict
        :func:`wavdiff_utils.codec.metrics.stereo_width` of each file (compared over the shorter).
    """

    snr_left_db: float
    snr_right_db: float
    lsd_left_db: float
    lsd_right_db: float
    width_original: dict = field(default_factory=dict)
    width_reconstructed: dict = field(default_factory=dict)

    @property
    def width_change(self) -> dict:
        """Reconstructed minus original, per width figure."""
        return {k: self.width_reconstructed[k] - self.width_original[k] for k in WIDTH_FIGURES}

    def row(self) -> dict:
        """The stereo columns of ``audio_scores.csv``."""
        row = {"snr_left_db": self.snr_left_db, "snr_right_db": self.snr_right_db,
               "lsd_left_db": self.lsd_left_db, "lsd_right_db": self.lsd_right_db}
        change = self.width_change
        for k in WIDTH_FIGURES:
            row[f"{k}_original"] = self.width_original[k]
            row[f"{k}_reconstructed"] = self.width_reconstructed[k]
            row[f"{k}_change"] = change[k]
        return row

    def lines(self) -> list[str]:
        """Summary lines: each channel, then the width of both files and its change."""
        def width(w):
            return (f"level difference {w['level_difference_db']:+.2f} dB, correlation "
                    f"{w['correlation']:.4f}, side-to-mid {w['side_to_mid_db']:.2f} dB")
        c = self.width_change
        return [f"  left SNR {fmt_db(self.snr_left_db)}, LSD {self.lsd_left_db:.3f} dB; right SNR "
                f"{fmt_db(self.snr_right_db)}, LSD {self.lsd_right_db:.3f} dB",
                f"  width original: {width(self.width_original)}",
                f"  width reconstructed: {width(self.width_reconstructed)}",
                f"  width change: level difference {c['level_difference_db']:+.3f} dB, "
                f"correlation {c['correlation']:+.5f}, side-to-mid {c['side_to_mid_db']:+.3f} dB"]


#: Columns ``audio_scores.csv`` adds when a song is stereo on either side.
STEREO_AUDIO_COLUMNS = (["channels", "snr_left_db", "snr_right_db", "lsd_left_db", "lsd_right_db"]
                        + [f"{k}_{s}" for k in WIDTH_FIGURES
                           for s in ("original", "reconstructed", "change")] + ["note"])


def score_channels(a: SongChannels, b: SongChannels) -> ChannelScores:
    """Left and right SNR and LSD and the width of two stereo songs (over the shorter length)."""
    n = min(len(a.mid), len(b.mid))
    la, lb = a.left_right()[:n], b.left_right()[:n]
    return ChannelScores(_channel_db(snr_db, la[:, 0], lb[:, 0]),
                         _channel_db(snr_db, la[:, 1], lb[:, 1]),
                         lsd_db(la[:, 0], lb[:, 0]), lsd_db(la[:, 1], lb[:, 1]),
                         stereo_width(la), stereo_width(lb))


def channels_note(a: SongChannels, b: SongChannels) -> str:
    """One line when the two files do not both have two channels and are not both mono."""
    if a.channels == b.channels and a.channels in (1, 2):
        return ""

    def words(s: SongChannels) -> str:
        return {1: "mono", 2: "stereo"}.get(s.channels, f"{s.channels}-channel")
    if a.channels == b.channels:
        return f"both files are {words(a)}: their mono mixes are compared"
    return (f"the reconstruction is {words(b)} and the original {words(a)}: their mono mixes are "
            f"compared")


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
    """Score one song: the mono mixes always; left, right and width when both files are stereo."""
    a = load_channels(pa, sample_rate=sample_rate)
    b = load_channels(pb, sample_rate=sample_rate)
    return AudioScore(song, pa, pb, sample_rate, len(a.mid), len(b.mid), snr_db(a.mid, b.mid),
                      lsd_db(a.mid, b.mid), a.channels, b.channels,
                      score_channels(a, b) if a.stereo and b.stereo else None,
                      channels_note(a, b))
