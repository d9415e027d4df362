"""Tile-by-tile comparison of two sets of spectrogram tiles, with optional audio scores.

:func:`compare_tiles` pairs the tiles of an "original" and a "reconstructed"
folder, scores every pair (16-bit PSNR overall, for the magnitude channel and
for the two phase channels), writes an 8-bit side-by-side preview per pair
(Original | Reconstructed | ``|Diff| x50``) and a ``scores.csv``.  Given the
songs' audio as well, it adds waveform SNR and log-spectral distance per song.

Problems never stop the run: unmatched tiles, unreadable files and size
mismatches are collected in the :class:`ComparisonResult` and shown by its
:meth:`~ComparisonResult.summary`.

Example
-------
>>> res = compare_tiles("tiles/", "regenerated/", "report/")      # doctest: +SKIP
>>> print(res.summary())                                            # doctest: +SKIP
>>> res.table()                                                     # doctest: +SKIP
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .audio_io import AudioError, find_audio_files, load_audio
from .codec import pixels_to_stft
from .metrics import lsd_db, psnr16, snr_db
from .params import CodecParams
from .paths import atomic_path, song_id
from .tile_io import TileImageError, find_tiles, read_tile

__all__ = ["compare_tiles", "ComparisonResult", "TileScore", "AudioScore", "render_preview",
           "MATCH_MODES", "DIFF_MODES", "DIFF_GAIN", "SEPARATOR_PX", "HEADER_PX",
           "SCORES_CSV", "AUDIO_CSV", "SUMMARY_TXT", "PREVIEW_DIR", "AVERAGE_KEY"]

#: How tiles are paired: by file name anywhere below each root, or by path relative to the root.
MATCH_MODES = ("name", "path")
#: What the diff panel shows: the magnitude (red) channel, or the largest difference of any channel.
DIFF_MODES = ("magnitude", "all")
#: Gain applied to ``|original - reconstructed|`` in the diff panel.
DIFF_GAIN = 50
#: Width in pixels of the separator between preview panels.
SEPARATOR_PX = 4
#: Height in pixels of the label strip above the preview panels.
HEADER_PX = 22
#: File names written into the output folder.
SCORES_CSV = "scores.csv"
AUDIO_CSV = "audio_scores.csv"
SUMMARY_TXT = "summary.txt"
PREVIEW_DIR = "previews"
#: ``key`` of the average row of ``scores.csv``.
AVERAGE_KEY = "AVERAGE"

_FULL = 65535.0
_TILE_COLUMNS = ["key", "original", "reconstructed", "width", "height", "psnr_db",
                 "psnr_magnitude_db", "psnr_phase_db", "psnr_phase_nonsilent_db", "stft_snr_db",
                 "max_abs_diff", "magnitude_mae_db", "preview", "note"]
_AUDIO_COLUMNS = ["song", "original", "reconstructed", "sample_rate", "seconds",
                  "samples_original", "samples_reconstructed", "snr_db", "lsd_db"]


# --------------------------------------------------------------------------- results

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


def _finite_mean(values) -> float:
    """Mean of the finite values; ``inf`` if every value is ``inf``; ``nan`` if there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    finite = [v for v in vals if math.isfinite(v)]
    if finite:
        return float(np.mean(finite))
    return float("inf") if vals else float("nan")


@dataclass
class ComparisonResult:
    """Everything :func:`compare_tiles` found.

    Attributes
    ----------
    original, reconstructed, output : Path
        The two roots compared and the report folder.
    tiles : list of TileScore
        One per scored pair, in key order.
    audio : list of AudioScore
        One per song, when audio was given.
    only_original, only_reconstructed : list of Path
        Tiles without a partner on the other side.
    errors : list of (str, str)
        ``(what, message)`` for every pair or song that could not be scored.
    scores_csv, audio_csv, summary_txt : Path or None
        Files written into ``output``.
    seconds : float
        Wall time of the comparison.
    """

    original: Path
    reconstructed: Path
    output: Path
    tiles: list = field(default_factory=list)
    audio: list = field(default_factory=list)
    only_original: list = field(default_factory=list)
    only_reconstructed: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    scores_csv: Path | None = None
    audio_csv: Path | None = None
    summary_txt: Path | None = None
    seconds: float = 0.0

    # ------------------------------------------------------------------ figures
    @property
    def mean_psnr(self) -> float:
        """Average per-tile PSNR in dB over the tiles that differ.

        Identical tiles (PSNR ``inf``) are left out of the mean so that one of
        them does not hide the others; ``inf`` when every tile is identical,
        ``nan`` when no pair was scored.  See :attr:`identical` and :attr:`pooled_psnr`.
        """
        return _finite_mean(t.psnr for t in self.tiles)

    @property
    def mean_psnr_magnitude(self) -> float:
        """Average magnitude-channel PSNR (same rules as :attr:`mean_psnr`)."""
        return _finite_mean(t.psnr_magnitude for t in self.tiles)

    @property
    def mean_psnr_phase(self) -> float:
        """Average phase-channel PSNR (same rules as :attr:`mean_psnr`; grey tiles left out)."""
        return _finite_mean(t.psnr_phase for t in self.tiles)

    @property
    def mean_stft_snr(self) -> float:
        """Average per-tile STFT-domain SNR (same rules as :attr:`mean_psnr`)."""
        return _finite_mean(t.stft_snr for t in self.tiles)

    @property
    def identical(self) -> int:
        """Number of tile pairs that are pixel-identical."""
        return sum(1 for t in self.tiles if math.isinf(t.psnr))

    @property
    def pooled_psnr(self) -> float:
        """PSNR of the mean squared error over every pixel of every pair (``inf`` only if all identical)."""
        if not self.tiles:
            return float("nan")
        mse = []
        weights = []
        for t in self.tiles:
            mse.append(0.0 if math.isinf(t.psnr) else _FULL ** 2 / 10 ** (t.psnr / 10))
            weights.append(t.width * t.height)
        m = float(np.average(mse, weights=weights))
        return float("inf") if m == 0 else float(10 * np.log10(_FULL ** 2 / m))

    @property
    def ok(self) -> bool:
        """True when every tile found a partner and every pair and song was scored."""
        return not (self.errors or self.only_original or self.only_reconstructed)

    # ------------------------------------------------------------------ tables
    def average_row(self) -> dict:
        """The ``AVERAGE`` row of ``scores.csv`` (means over the scored pairs)."""
        t = self.tiles
        return {"key": AVERAGE_KEY, "original": f"{len(t)} pairs",
                "reconstructed": f"{self.identical} identical", "width": "", "height": "",
                "psnr_db": self.mean_psnr, "psnr_magnitude_db": self.mean_psnr_magnitude,
                "psnr_phase_db": self.mean_psnr_phase,
                "psnr_phase_nonsilent_db": _finite_mean(x.psnr_phase_nonsilent for x in t),
                "stft_snr_db": self.mean_stft_snr,
                "max_abs_diff": max((x.max_abs_diff for x in t), default=""),
                "magnitude_mae_db": _finite_mean(x.magnitude_mae_db for x in t),
                "preview": "", "note": "means leave out identical (inf) and missing (nan) values"}

    def table(self, *, average: bool = False):
        """Per-tile scores as a pandas DataFrame (one row per pair).

        Parameters
        ----------
        average : bool
            Append the ``AVERAGE`` row, as in ``scores.csv``.
        """
        import pandas as pd
        rows = [t.row() for t in self.tiles]
        if average and rows:
            rows.append(self.average_row())
        df = pd.DataFrame(rows, columns=_TILE_COLUMNS)
        if average and rows:
            for c in ("width", "height", "max_abs_diff"):
                df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        return df

    def audio_table(self):
        """Per-song audio scores as a pandas DataFrame (empty when no audio was given)."""
        import pandas as pd
        return pd.DataFrame([a.row() for a in self.audio], columns=_AUDIO_COLUMNS)

    def summary(self, *, max_listed: int = 10) -> str:
        """Human-readable report: averages, audio scores, then every problem.

        Parameters
        ----------
        max_listed : int
            Unmatched tiles listed per side before "... and N more".
        """
        lines = [f"compared {self.original} (original) with {self.reconstructed} (reconstructed)",
                 f"{len(self.tiles)} tile pair(s) scored, {self.identical} identical, "
                 f"{len(self.only_original)} only in original, "
                 f"{len(self.only_reconstructed)} only in reconstructed, "
                 f"{len(self.errors)} error(s), {self.seconds:.1f} s"]
        if self.tiles:
            lines.append(f"mean PSNR {_fmt_db(self.mean_psnr)} (magnitude "
                         f"{_fmt_db(self.mean_psnr_magnitude)}, phase "
                         f"{_fmt_db(self.mean_psnr_phase)}), pooled {_fmt_db(self.pooled_psnr)}")
            nonsilent = _finite_mean(t.psnr_phase_nonsilent for t in self.tiles)
            if not math.isnan(nonsilent):
                lines.append(f"phase PSNR over non-silent bins {_fmt_db(nonsilent)} (the phase of "
                             f"bins stored as silence is arbitrary)")
            if not math.isnan(self.mean_stft_snr):
                lines.append(f"mean STFT-domain SNR {_fmt_db(self.mean_stft_snr)}")
            if 0 < self.identical < len(self.tiles):
                lines.append(f"  ({self.identical} identical tile(s), PSNR inf, are left out "
                             f"of the means)")
            worst = min(self.tiles, key=lambda t: t.psnr)
            lines.append(f"worst tile {worst.key}: {_fmt_db(worst.psnr)}")
        for a in self.audio:
            lines.append(f"audio {a.song}: SNR {_fmt_db(a.snr_db)}, LSD {a.lsd_db:.3f} dB over "
                         f"{a.seconds:.2f} s at {a.sample_rate} Hz"
                         + ("" if a.samples_original == a.samples_reconstructed else
                            f" (lengths {a.samples_original} vs {a.samples_reconstructed} "
                            f"samples, compared over the shorter)"))
        for title, items in (("only in original (no reconstructed tile with the same key)",
                              self.only_original),
                             ("only in reconstructed (no original tile with the same key)",
                              self.only_reconstructed)):
            if items:
                lines.append(f"{len(items)} tile(s) {title}:")
                lines += [f"  {p}" for p in items[:max_listed]]
                if len(items) > max_listed:
                    lines.append(f"  ... and {len(items) - max_listed} more")
        for what, msg in self.errors:
            lines.append(f"ERROR {what}: {msg}")
        if self.scores_csv:
            lines.append(f"scores: {self.scores_csv}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"ComparisonResult({len(self.tiles)} pairs, mean_psnr={self.mean_psnr:.2f} dB, "
                f"{len(self.audio)} songs, {len(self.errors)} errors, "
                f"unmatched {len(self.only_original)}/{len(self.only_reconstructed)})")


def _fmt_db(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return "inf dB (identical)" if math.isinf(v) else f"{v:.2f} dB"


# --------------------------------------------------------------------------- pairing

def _index_tiles(root: Path, match: str, exclude: Path | None, side: str):
    """``{key: path}`` of the tiles under ``root``, plus errors for keys that repeat."""
    if not root.exists():
        raise FileNotFoundError(f"{side} tiles {str(root)!r} do not exist")
    if root.is_file():
        return {root.name: root}, []          # a single file is compared whatever its name
    groups = find_tiles(root)
    paths = [p for tiles in groups.values() for p in tiles]
    if exclude is not None:
        paths = [p for p in paths if not p.resolve().is_relative_to(exclude)]
    if not paths:
        raise TileImageError(root, f"{side}: holds no tiles named <song>_<index:04d>.png")
    index: dict[str, list[Path]] = {}
    for p in paths:
        key = p.name if match == "name" else p.relative_to(root).as_posix()
        index.setdefault(key, []).append(p)
    errors = []
    unique = {}
    for key, ps in sorted(index.items()):
        if len(ps) > 1:
            errors.append((f"{side} {key}",
                           f"{len(ps)} {side} tiles share the name {key!r} "
                           f"({', '.join(str(p) for p in ps[:3])}); pair by relative path "
                           f"with match='path', or rename them"))
        else:
            unique[key] = ps[0]
    return unique, errors


# --------------------------------------------------------------------------- preview

def _lut(colormap: str) -> np.ndarray:
    """256 x 3 uint8 BGR lookup table of a matplotlib colormap."""
    import matplotlib
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"colormap {colormap!r} is not a matplotlib colormap "
                         f"(e.g. 'magma', 'viridis', 'gray')") from None
    rgb = (cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(rgb[:, ::-1])


def _to8(plane16: np.ndarray) -> np.ndarray:
    return ((plane16.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _magnitude(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.ndim == 2 else pixels[..., 0]


def _fit(img: np.ndarray, max_edge: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = max_edge / max(h, w)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def render_preview(original: np.ndarray, reconstructed: np.ndarray, *, colormap: str = "magma",
                   diff: str = "magnitude", max_edge: int = 512,
                   labels: tuple[str, str, str] = ("Original", "Reconstructed",
                                                   f"|Diff| x{DIFF_GAIN}")) -> np.ndarray:
    """Side-by-side 8-bit BGR image: original | reconstructed | ``|diff| x50``.

    Parameters
    ----------
    original, reconstructed : ndarray, uint16, shape (H, W, 3) or (H, W)
        Tile pixels of the same height and width.
    colormap : str
        matplotlib colormap for the magnitude (red) channel of the two tiles.
    diff : {"magnitude", "all"}
        Diff panel of the magnitude channel, or of the largest difference of any channel.
        It is drawn in grey: black = equal, white = a difference of 65535/50 or more.
    max_edge : int
        Panels larger than this are shrunk (area averaging) to fit; smaller ones are kept.
    labels : tuple of 3 str
        Drawn in a strip above the panels when they fit.

    Returns
    -------
    ndarray, uint8, shape (HEADER_PX + h, 3*w + 2*SEPARATOR_PX, 3)
        ``h, w`` are the panel height and width after fitting.
    """
    if diff not in DIFF_MODES:
        raise ValueError(f"diff must be one of {DIFF_MODES}, got {diff!r}")
    if int(max_edge) < 8:
        raise ValueError(f"max_edge must be at least 8 pixels, got {max_edge!r}")
    if original.shape[:2] != reconstructed.shape[:2]:
        raise ValueError(f"cannot draw tiles of size {original.shape[1]}x{original.shape[0]} "
                         f"and {reconstructed.shape[1]}x{reconstructed.shape[0]} side by side")
    lut = _lut(colormap)
    a = original.astype(np.int32)
    b = reconstructed.astype(np.int32)
    if diff == "magnitude" or a.ndim != b.ndim:
        d = np.abs(_magnitude(a) - _magnitude(b))
    else:
        d = np.abs(a - b)
        d = d.max(axis=-1) if d.ndim == 3 else d
    d16 = np.minimum(d * DIFF_GAIN, 65535).astype(np.uint16)
    panels = [lut[_to8(_magnitude(original))], lut[_to8(_magnitude(reconstructed))],
              cv2.cvtColor(_to8(d16), cv2.COLOR_GRAY2BGR)]
    panels = [_fit(p, int(max_edge)) for p in panels]
    h, w = panels[0].shape[:2]
    sep = np.full((h, SEPARATOR_PX, 3), 255, np.uint8)
    body = np.concatenate([panels[0], sep, panels[1], sep, panels[2]], axis=1)
    header = np.full((HEADER_PX, body.shape[1], 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for i, text in enumerate(labels):
        (tw, th), _ = cv2.getTextSize(text, font, 0.5, 1)
        scale = 0.5 * min(1.0, (w - 4) / max(tw, 1))
        if scale < 0.25:
            continue                    # panel too narrow for readable text
        (tw, th), _ = cv2.getTextSize(text, font, scale, 1)
        x = i * (w + SEPARATOR_PX) + max(2, (w - tw) // 2)
        cv2.putText(header, text, (x, (HEADER_PX + th) // 2), font, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([header, body], axis=0)


def _write_png8(path: Path, img: np.ndarray) -> Path:
    ok, enc = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"OpenCV could not encode the preview {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(enc.tobytes())
    return path


# --------------------------------------------------------------------------- scoring

def _codec(meta) -> CodecParams | None:
    """The codec parameters a tile's metadata names, or ``None``."""
    try:
        return CodecParams.from_dict(meta["codec"])
    except (KeyError, TypeError, ValueError):
        return None


def _score_pair(key: str, pa: Path, pb: Path):
    """Score one pair; returns ``(TileScore, pixels_a, pixels_b, metadata_a)``."""
    ta = read_tile(pa, warn=False)
    tb = read_tile(pb, warn=False)
    a, b = ta.pixels, tb.pixels
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"size mismatch: original {pa} is {a.shape[1]}x{a.shape[0]} pixels "
                         f"but reconstructed {pb} is {b.shape[1]}x{b.shape[0]}")
    notes = []
    for side, t in (("original", ta), ("reconstructed", tb)):
        if t.bit_depth != 16:
            notes.append(f"{side} is {t.bit_depth}-bit (scaled to 16)")
        if not t.has_phase:
            notes.append(f"{side} is grey (magnitude only)")
    if ta.metadata and tb.metadata and ta.metadata.get("codec") != tb.metadata.get("codec"):
        notes.append("codec parameters differ")
    mag = psnr16(_magnitude(a), _magnitude(b))
    nan = float("nan")
    phase = phase_ns = stft_snr = nan
    params = _codec(ta.metadata)
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
        else int(np.max(np.abs(_magnitude(a).astype(np.int32) - _magnitude(b).astype(np.int32))))
    mae_db = nan
    if params is not None:
        diff = np.abs(_magnitude(a).astype(np.float64) - _magnitude(b).astype(np.float64))
        mae_db = float(np.mean(diff) / _FULL * (params.db_max - params.db_min))
    score = TileScore(key, pa, pb, int(a.shape[1]), int(a.shape[0]), overall, mag, phase,
                      phase_ns, stft_snr, max_diff, mae_db, None, "; ".join(notes))
    return score, a, b, ta.metadata


# --------------------------------------------------------------------------- audio

def _audio_pairs(orig, recon) -> tuple[list[tuple[str, Path, Path]], list[tuple[str, str]]]:
    """Pair audio files: two files directly, otherwise by song name (file stem made safe)."""
    orig, recon = Path(orig), Path(recon)
    for side, p in (("audio_original", orig), ("audio_reconstructed", recon)):
        if not p.exists():
            raise FileNotFoundError(f"{side} {str(p)!r} does not exist")
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


def _score_audio(song: str, pa: Path, pb: Path, sample_rate: int) -> AudioScore:
    ya = load_audio(pa, sample_rate=sample_rate)
    yb = load_audio(pb, sample_rate=sample_rate)
    return AudioScore(song, pa, pb, sample_rate, len(ya), len(yb), snr_db(ya, yb), lsd_db(ya, yb))


# --------------------------------------------------------------------------- files

def _cell(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return "inf" if math.isinf(v) else f"{v:.4f}"
    return "" if v is None else str(v)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(columns)
            for r in rows:
                w.writerow([_cell(r.get(c)) for c in columns])
    return path


def _check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


# --------------------------------------------------------------------------- main

def compare_tiles(original, reconstructed, output, *, audio_original=None,
                  audio_reconstructed=None, sample_rate: int | None = None, match: str = "name",
                  previews: bool | int = True, preview_size: int = 512,
                  colormap: str = "magma", diff: str = "magnitude",
                  progress: bool = True) -> ComparisonResult:
    """Compare original tiles with reconstructed ones, tile by tile, and write a report.

    Parameters
    ----------
    original, reconstructed : path-like
        Folders searched recursively for tiles named ``<song>_<index:04d>.png``
        (or two single tile files, compared with each other).
    output : path-like
        Report folder (created): ``scores.csv`` (one row per pair plus an
        ``AVERAGE`` row), ``previews/<key>_compare.png``, ``summary.txt`` and,
        with audio, ``audio_scores.csv``.  Tiles below it are never compared,
        so it may lie inside either input folder.
    audio_original, audio_reconstructed : path-like, optional
        The songs as audio, both or neither: two files, or two folders whose
        files are paired by song name (file stem, as the encoder names songs).
        Adds waveform SNR and log-spectral distance per song.
    sample_rate : int, optional
        Rate both audio files are loaded at.  Default: the codec rate stored in
        the first original tile, else 44100 Hz.
    match : {"name", "path"}
        Pair tiles by file name wherever they lie below each root, or by their
        path relative to the root (when several folders hold equal names).
    previews : bool or int
        Write a preview for every pair (True), none (False), or the first N pairs.
    preview_size : int
        Largest edge of each preview panel in pixels (bigger tiles are shrunk).
    colormap : str
        matplotlib colormap for the magnitude channel in the previews.
    diff : {"magnitude", "all"}
        Diff panel of the magnitude channel, or the largest difference of any channel.
    progress : bool
        Show a progress bar over the pairs.

    Returns
    -------
    ComparisonResult
        Unmatched tiles, unreadable files, size mismatches and audio problems
        are collected in it, not raised.

    Raises
    ------
    FileNotFoundError
        If ``original``, ``reconstructed`` or a given audio path does not exist.
    TileImageError
        If either side holds no tiles at all.
    ValueError
        For an invalid option, or audio given for one side only.
    """
    from tqdm.auto import tqdm

    _check_choice("match", match, MATCH_MODES)
    _check_choice("diff", diff, DIFF_MODES)
    if isinstance(previews, bool):
        n_previews = None if previews else 0
    elif isinstance(previews, int) and previews >= 0:
        n_previews = previews
    else:
        raise ValueError(f"previews must be True, False or a count >= 0, got {previews!r}")
    if isinstance(preview_size, bool) or not isinstance(preview_size, int) or preview_size < 8:
        raise ValueError(f"preview_size must be an integer >= 8 pixels, got {preview_size!r}")
    if n_previews != 0:
        _lut(colormap)                        # fail now on an unknown colormap
    if (audio_original is None) != (audio_reconstructed is None):
        given, missing = (("audio_original", "audio_reconstructed") if audio_reconstructed is None
                          else ("audio_reconstructed", "audio_original"))
        raise ValueError(f"{given} was given but {missing} was not; pass both to score the "
                         f"audio, or neither")
    if sample_rate is not None and (isinstance(sample_rate, bool) or int(sample_rate) != sample_rate
                                    or sample_rate <= 0):
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")

    t0 = time.perf_counter()
    original, reconstructed, output = Path(original), Path(reconstructed), Path(output)
    out_abs = output.resolve()
    a, err_a = _index_tiles(original, match, out_abs, "original")
    b, err_b = _index_tiles(reconstructed, match, out_abs, "reconstructed")
    result = ComparisonResult(original, reconstructed, output, errors=err_a + err_b)
    if original.is_file() and reconstructed.is_file():
        keys = [next(iter(a))] if a and b else []
        pairs = [(keys[0], a[keys[0]], next(iter(b.values())))] if keys else []
    else:
        pairs = [(k, a[k], b[k]) for k in sorted(a) if k in b]
        result.only_original = [a[k] for k in sorted(a) if k not in b]
        result.only_reconstructed = [b[k] for k in sorted(b) if k not in a]
    output.mkdir(parents=True, exist_ok=True)

    first_meta = None
    for i, (key, pa, pb) in enumerate(tqdm(pairs, desc="compare", unit="tile",
                                           disable=not progress)):
        try:
            score, px_a, px_b, meta = _score_pair(key, pa, pb)
        except (TileImageError, ValueError, OSError) as exc:
            result.errors.append((key, str(exc)))
            continue
        if n_previews is None or i < n_previews:
            label = ("Reconstructed (identical)" if math.isinf(score.psnr) else
                     f"Reconstructed, magnitude PSNR {_fmt_db(score.psnr_magnitude)}")
            what = "magnitude" if diff == "magnitude" else "largest of R, G, B"
            stem = key[:-4] if key.lower().endswith(".png") else key
            try:
                img = render_preview(px_a, px_b, colormap=colormap, diff=diff,
                                     max_edge=preview_size,
                                     labels=(f"Original: {key}", label,
                                             f"|Diff| x{DIFF_GAIN} ({what})"))
                score.preview = _write_png8(output / PREVIEW_DIR / f"{stem}_compare.png", img)
            except OSError as exc:               # the scores still count without a preview
                result.errors.append((key, f"preview not written: {exc}"))
        if first_meta is None:
            first_meta = meta or {}
        result.tiles.append(score)

    if audio_original is not None:
        sr = sample_rate
        if sr is None:
            sr = (_codec(first_meta) or CodecParams()).sample_rate
        audio_pairs, audio_errors = _audio_pairs(audio_original, audio_reconstructed)
        result.errors += audio_errors
        for song, pa, pb in audio_pairs:
            try:
                result.audio.append(_score_audio(song, pa, pb, int(sr)))
            except (AudioError, ValueError, OSError) as exc:
                result.errors.append((f"audio {song}", str(exc)))
        result.audio_csv = _write_csv(output / AUDIO_CSV, _AUDIO_COLUMNS,
                                      [x.row() for x in result.audio])

    rows = [t.row() for t in result.tiles]
    if rows:
        rows.append(result.average_row())
    result.scores_csv = _write_csv(output / SCORES_CSV, _TILE_COLUMNS, rows)
    result.seconds = time.perf_counter() - t0
    with atomic_path(output / SUMMARY_TXT) as tmp:
        result.summary_txt = output / SUMMARY_TXT
        tmp.write_text(result.summary() + "\n", encoding="utf-8")
    return result


def round_trip_tiles(audio, workdir, *, params: CodecParams | None = None,
                     original=None) -> tuple[Path, Path, Path]:
    """Make two tile sets to compare: ``audio`` encoded, then decoded to WAV and encoded again.

    Parameters
    ----------
    audio : path-like
        Audio file or folder to encode (ignored when ``original`` is given).
    workdir : path-like
        Scratch root: ``original/``, ``decoded/`` and ``reconstructed/`` are made
        below it; ``decoded/`` and ``reconstructed/`` are emptied first so no
        song of an earlier run lingers.
    params : CodecParams, optional
    original : path-like, optional
        Existing tiles to start from instead of encoding ``audio``.

    Returns
    -------
    (original tiles, decoded audio folder, reconstructed tiles)

    Raises
    ------
    RuntimeError
        If a step fails for any song (the message lists them).
    """
    import shutil

    from .decoding import decode_batch
    from .encoding import encode_batch

    work = Path(workdir)
    if original is None:
        original = work / "original"
        encode_batch(audio, original, params=params, overwrite=True, progress=False).raise_if_failed()
    decoded, reconstructed = work / "decoded", work / "reconstructed"
    for d in (decoded, reconstructed):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    dec = decode_batch(original, decoded, progress=False)
    dec.raise_if_failed()
    for r in dec.results:
        encode_batch(r.output, reconstructed, params=params, progress=False).raise_if_failed()
    return Path(original), decoded, reconstructed
