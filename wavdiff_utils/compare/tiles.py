"""Tile-by-tile comparison of two sets of spectrogram tiles, with optional audio scores.

:func:`compare_tiles` pairs the tiles of an "original" and a "reconstructed"
folder, scores every pair (16-bit PSNR overall, for the magnitude channel and
for the two phase channels), writes an 8-bit side-by-side preview per pair
(Original | Reconstructed | ``|Diff| x50``) and a ``scores.csv``.  Given the
songs' audio as well, it adds waveform SNR and log-spectral distance per song.

Stereo sets are compared per channel: the side tiles ``<song>_<index:04d>.side.png`` are
paired like the mid tiles, ``scores.csv`` gains a ``channel`` column (``mid``/``side``, only
when either set holds a side tile, so a mono report is as it always was) and an average row
per channel, and the summary gives each channel's means.  Two stereo songs are scored per
channel (left, right, the mono mix) with the stereo width of each.

Problems never stop the run: unmatched tiles, unreadable files and size
mismatches are collected in the :class:`ComparisonResult` and shown by its
:meth:`~ComparisonResult.summary`.

This module pairs the tiles and writes the report; the scores of one pair are
in :mod:`wavdiff_utils.compare.scores` and the previews are drawn by
:mod:`wavdiff_utils.compare.preview` (their public names are importable from here).

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

import numpy as np

from ..errors import BadParameterError, MissingInputError
from ..codec.params import CodecParams
from ..codec.transform import FULL_SCALE
from ..io.audio import AudioError
from ..io.tiles import TileImageError, find_tiles, is_side_tile
from ..paths import atomic_path, display_path
from .preview import DIFF_GAIN, DIFF_MODES, colormap_lut, write_png8, render_preview
from .scores import (STEREO_AUDIO_COLUMNS, pair_audio, codec, finite_mean, fmt_db, score_audio,
                     score_pair)
from .stereo import (TILE_CHANNELS, channel_figures, channel_lines, find_side_tiles,
                     mono_side_hint, width_table)

__all__ = ["compare_tiles", "ComparisonResult", "MATCH_MODES", "SCORES_CSV", "AUDIO_CSV",
           "SUMMARY_TXT", "PREVIEW_DIR", "AVERAGE_KEY", "UNPAIRED_HINT"]

#: How tiles are paired: by file name anywhere below each root, or by path relative to the root.
MATCH_MODES = ("name", "path")
#: File names written into the output folder.
SCORES_CSV = "scores.csv"
AUDIO_CSV = "audio_scores.csv"
SUMMARY_TXT = "summary.txt"
PREVIEW_DIR = "previews"
#: ``key`` of the average row of ``scores.csv``.
AVERAGE_KEY = "AVERAGE"

#: What a comparison of two sets whose names never pair says.
UNPAIRED_HINT = ("no tile of one folder has a namesake in the other, so there is nothing to "
                 "compare tile by tile; generated tiles have no original to be paired with: "
                 "measure such a set as a whole against real music with 08_evaluate "
                 "(python -m wavdiff_utils.evaluate GENERATED REFERENCE)")

_TILE_COLUMNS = ["key", "original", "reconstructed", "width", "height", "psnr_db",
                 "psnr_magnitude_db", "psnr_phase_db", "psnr_phase_nonsilent_db", "stft_snr_db",
                 "max_abs_diff", "magnitude_mae_db", "preview", "note"]
_AUDIO_COLUMNS = ["song", "original", "reconstructed", "sample_rate", "seconds",
                  "samples_original", "samples_reconstructed", "snr_db", "lsd_db"]


def _tile_columns(stereo: bool) -> list[str]:
    """Columns of ``scores.csv``: a ``channel`` column after ``key`` for stereo sets only."""
    return _TILE_COLUMNS[:1] + ["channel"] + _TILE_COLUMNS[1:] if stereo else _TILE_COLUMNS


def _audio_columns(audio) -> list[str]:
    """Columns of ``audio_scores.csv``: the stereo ones when any file has more than one channel."""
    return _AUDIO_COLUMNS + (STEREO_AUDIO_COLUMNS if any(not a.mono for a in audio) else [])


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
    side_counts : (int, int)
        Side tiles found in the original and the reconstructed set (see :attr:`stereo`).
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
    side_counts: tuple = (0, 0)

    # ------------------------------------------------------------------ figures
    @property
    def mean_psnr(self) -> float:
        """Average per-tile PSNR in dB over the tiles that differ.

        Identical tiles (PSNR ``inf``) are left out of the mean so that one of
        them does not hide the others; ``inf`` when every tile is identical,
        ``nan`` when no pair was scored.  See :attr:`identical` and :attr:`pooled_psnr`.
        """
        return finite_mean(t.psnr for t in self.tiles)

    @property
    def mean_psnr_magnitude(self) -> float:
        """Average magnitude-channel PSNR (same rules as :attr:`mean_psnr`)."""
        return finite_mean(t.psnr_magnitude for t in self.tiles)

    @property
    def mean_psnr_phase(self) -> float:
        """Average phase-channel PSNR (same rules as :attr:`mean_psnr`; grey tiles left out)."""
        return finite_mean(t.psnr_phase for t in self.tiles)

    @property
    def mean_stft_snr(self) -> float:
        """Average per-tile STFT-domain SNR (same rules as :attr:`mean_psnr`)."""
        return finite_mean(t.stft_snr for t in self.tiles)

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
            mse.append(0.0 if math.isinf(t.psnr) else FULL_SCALE ** 2 / 10 ** (t.psnr / 10))
            weights.append(t.width * t.height)
        m = float(np.average(mse, weights=weights))
        return float("inf") if m == 0 else float(10 * np.log10(FULL_SCALE ** 2 / m))

    @property
    def stereo(self) -> bool:
        """True when either set holds a side tile: the report is per channel (``mid``/``side``)."""
        return any(self.side_counts)

    def channel_figures(self) -> dict[str, dict]:
        """Means per channel (``{"mid": {...}, "side": {...}}``, the channels scored):
        ``pairs``, ``identical``, ``psnr``, ``psnr_magnitude``, ``psnr_phase_nonsilent``,
        ``stft_snr``; see :func:`wavdiff_utils.compare.stereo.channel_figures`."""
        return channel_figures(self.tiles)

    @property
    def ok(self) -> bool:
        """True when every tile found a partner and every pair and song was scored."""
        return not (self.errors or self.only_original or self.only_reconstructed)

    # ------------------------------------------------------------------ tables
    def average_row(self, *, channel: str | None = None) -> dict:
        """The ``AVERAGE`` row of ``scores.csv`` (means over the scored pairs).

        Parameters
        ----------
        channel : {"mid", "side"}, optional
            Means over that channel's pairs only (the per-channel rows of a stereo report);
            default: every pair (its ``channel`` reads ``all``).
        """
        if channel is not None:
            _check_choice("channel", channel, TILE_CHANNELS)
        t = [x for x in self.tiles if channel is None or x.channel == channel]
        return {"key": AVERAGE_KEY, "channel": channel or "all", "original": f"{len(t)} pairs",
                "reconstructed": f"{sum(1 for x in t if math.isinf(x.psnr))} identical",
                "width": "", "height": "", "psnr_db": finite_mean(x.psnr for x in t),
                "psnr_magnitude_db": finite_mean(x.psnr_magnitude for x in t),
                "psnr_phase_db": finite_mean(x.psnr_phase for x in t),
                "psnr_phase_nonsilent_db": finite_mean(x.psnr_phase_nonsilent for x in t),
                "stft_snr_db": finite_mean(x.stft_snr for x in t),
                "max_abs_diff": max((x.max_abs_diff for x in t), default=""),
                "magnitude_mae_db": finite_mean(x.magnitude_mae_db for x in t),
                "preview": "", "note": "means leave out identical (inf) and missing (nan) values"}

    def _rows(self, *, average: bool) -> list[dict]:
        """Rows of ``scores.csv``: one per pair, then the average rows (one per channel too
        when stereo)."""
        rows = [t.row() for t in self.tiles]
        if average and rows:
            rows.append(self.average_row())
            if self.stereo:
                rows += [self.average_row(channel=c) for c in TILE_CHANNELS
                         if any(t.channel == c for t in self.tiles)]
        return rows

    def table(self, *, average: bool = False):
        """Per-tile scores as a pandas DataFrame (one row per pair).

        Parameters
        ----------
        average : bool
            Append the ``AVERAGE`` row(s), as in ``scores.csv`` (a stereo set has a ``channel``
            column and an average row per channel after the overall one).
        """
        import pandas as pd
        rows = self._rows(average=average)
        df = pd.DataFrame(rows, columns=_tile_columns(self.stereo))
        if average and rows:
            for c in ("width", "height", "max_abs_diff"):
                df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        return df

    def audio_table(self):
        """Per-song audio scores as a pandas DataFrame (empty when no audio was given); with
        stereo files, the left and right channels' scores, the width and a note as well."""
        import pandas as pd
        return pd.DataFrame([a.row() for a in self.audio], columns=_audio_columns(self.audio))

    def width_table(self):
        """Stereo width of each song stereo on both sides, original against reconstructed
        (a pandas DataFrame; empty without such songs); see
        :func:`wavdiff_utils.compare.stereo.width_table`."""
        return width_table(self.audio)

    @property
    def unpaired(self) -> bool:
        """True when both sides hold tiles but no name pairs up (e.g. a model's samples against
        a dataset): a tile-by-tile comparison has nothing to say; see :data:`UNPAIRED_HINT`."""
        return not self.tiles and bool(self.only_original) and bool(self.only_reconstructed)

    def summary(self, *, max_listed: int = 10) -> str:
        """Human-readable report: averages, audio scores, then every problem.

        Parameters
        ----------
        max_listed : int
            Unmatched tiles listed per side before "... and N more".
        """
        lines = [f"compared {display_path(self.original)} (original) with "
                 f"{display_path(self.reconstructed)} (reconstructed)",
                 f"{len(self.tiles)} tile pair(s) scored, {self.identical} identical, "
                 f"{len(self.only_original)} only in original, "
                 f"{len(self.only_reconstructed)} only in reconstructed, "
                 f"{len(self.errors)} error(s), {self.seconds:.1f} s"]
        if self.unpaired:
            lines.append(UNPAIRED_HINT)
        if self.tiles:
            lines.append(f"mean PSNR {fmt_db(self.mean_psnr)} (magnitude "
                         f"{fmt_db(self.mean_psnr_magnitude)}, phase "
                         f"{fmt_db(self.mean_psnr_phase)}), pooled {fmt_db(self.pooled_psnr)}")
            nonsilent = finite_mean(t.psnr_phase_nonsilent for t in self.tiles)
            if not math.isnan(nonsilent):
                lines.append(f"phase PSNR over non-silent bins {fmt_db(nonsilent)} (the phase of "
                             f"bins stored as silence is arbitrary)")
            if not math.isnan(self.mean_stft_snr):
                lines.append(f"mean STFT-domain SNR {fmt_db(self.mean_stft_snr)}")
            if 0 < self.identical < len(self.tiles):
                lines.append(f"  ({self.identical} identical tile(s), PSNR inf, are left out "
                             f"of the means)")
            if self.stereo:
                lines.append("per channel:")
                lines += channel_lines(self.tiles)
            worst = min(self.tiles, key=lambda t: t.psnr)
            lines.append(f"worst tile {worst.key}: {fmt_db(worst.psnr)}")
        if mono_side_hint(self.side_counts):
            lines.append(mono_side_hint(self.side_counts))
        for a in self.audio:
            lines += a.lines()
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
            lines.append(f"scores: {display_path(self.scores_csv)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"ComparisonResult({len(self.tiles)} pairs, mean_psnr={self.mean_psnr:.2f} dB, "
                f"{len(self.audio)} songs, {len(self.errors)} errors, "
                f"unmatched {len(self.only_original)}/{len(self.only_reconstructed)})")

# --------------------------------------------------------------------------- pairing


def _index_tiles(root: Path, match: str, exclude: Path | None, side: str):
    """``{key: path}`` of the tiles under ``root``, plus errors for keys that repeat."""
    if not root.exists():
        raise MissingInputError(f"{side} tiles {str(root)!r} do not exist")
    if root.is_file():
        return {root.name: root}, []          # a single file is compared whatever its name
    groups = find_tiles(root)
    paths = [p for tiles in groups.values() for p in tiles] + find_side_tiles(root)
    if exclude is not None and not root.resolve().is_relative_to(exclude):
        # the report folder (previews) inside the tiles' folder is not tiles
        paths = [p for p in paths if not p.resolve().is_relative_to(exclude)]
    if not paths:
        raise TileImageError(root, f"{side}: holds no tiles named <song>_<index:04d>.png "
                                   f"(or <song>_<index:04d>.side.png)")
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

# --------------------------------------------------------------------------- files


def _cell(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4f}"
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
        raise BadParameterError(f"{name} must be one of {choices}, got {value!r}")

# --------------------------------------------------------------------------- main


@dataclass(frozen=True)
class _Previews:
    """How previews are drawn: how many (None for all), panel size, colormap and diff mode."""

    count: int | None
    size: int
    colormap: str
    diff: str


def _preview_count(previews, preview_size, colormap: str) -> int | None:
    """Check the preview options; the number of previews to write (None for every pair)."""
    if isinstance(previews, bool):
        n_previews = None if previews else 0
    elif isinstance(previews, int) and previews >= 0:
        n_previews = previews
    else:
        raise BadParameterError(f"previews must be True, False or a count >= 0, "
                                f"got {previews!r}")
    if isinstance(preview_size, bool) or not isinstance(preview_size, int) or preview_size < 8:
        raise BadParameterError(f"preview_size must be an integer >= 8 pixels, "
                                f"got {preview_size!r}")
    if n_previews != 0:
        colormap_lut(colormap)                        # fail now on an unknown colormap
    return n_previews


def _check_audio_options(audio_original, audio_reconstructed, sample_rate):
    """Check that audio is given for both sides or neither, and the sample rate."""
    if (audio_original is None) != (audio_reconstructed is None):
        given, missing = (("audio_original", "audio_reconstructed") if audio_reconstructed is None
                          else ("audio_reconstructed", "audio_original"))
        raise BadParameterError(f"{given} was given but {missing} was not; pass both to score "
                                f"the audio, or neither")
    if sample_rate is not None and (isinstance(sample_rate, bool)
                                    or int(sample_rate) != sample_rate or sample_rate <= 0):
        raise BadParameterError(f"sample_rate must be a positive integer in Hz, "
                                f"got {sample_rate!r}")


def _pair_tiles(original: Path, reconstructed: Path, output: Path,
                match: str) -> tuple[ComparisonResult, list]:
    """Index both sides and pair their tiles: a new result (unmatched tiles, errors), the pairs."""
    out_abs = output.resolve()
    a, err_a = _index_tiles(original, match, out_abs, "original")
    b, err_b = _index_tiles(reconstructed, match, out_abs, "reconstructed")
    result = ComparisonResult(original, reconstructed, output, errors=err_a + err_b,
                              side_counts=(sum(map(is_side_tile, a.values())),
                                           sum(map(is_side_tile, b.values()))))
    if original.is_file() and reconstructed.is_file():
        keys = [next(iter(a))] if a and b else []
        pairs = [(keys[0], a[keys[0]], next(iter(b.values())))] if keys else []
    else:
        pairs = [(k, a[k], b[k]) for k in sorted(a) if k in b]
        result.only_original = [a[k] for k in sorted(a) if k not in b]
        result.only_reconstructed = [b[k] for k in sorted(b) if k not in a]
    return result, pairs


def _write_preview(result: ComparisonResult, key: str, score, pixels: tuple, look: _Previews):
    """Draw and write the preview of one scored pair; a write error goes to ``result.errors``."""
    px_a, px_b = pixels
    label = ("Reconstructed (identical)" if math.isinf(score.psnr) else
             f"Reconstructed, magnitude PSNR {fmt_db(score.psnr_magnitude)}")
    what = "magnitude" if look.diff == "magnitude" else "largest of R, G, B"
    stem = key[:-4] if key.lower().endswith(".png") else key
    try:
        img = render_preview(px_a, px_b, colormap=look.colormap, diff=look.diff,
                             max_edge=look.size,
                             labels=(f"Original: {key}", label,
                                     f"|Diff| x{DIFF_GAIN} ({what})"))
        score.preview = write_png8(result.output / PREVIEW_DIR / f"{stem}_compare.png", img)
    except OSError as exc:               # the scores still count without a preview
        result.errors.append((key, f"preview not written: {exc}"))


def _score_pairs(result: ComparisonResult, pairs, look: _Previews):
    """Score every pair into ``result`` (with previews); the metadata of the first scored tile."""
    first_meta = None
    for i, (key, pa, pb) in enumerate(pairs):
        try:
            score, px_a, px_b, meta = score_pair(key, pa, pb)
        except (TileImageError, ValueError, OSError) as exc:
            result.errors.append((key, str(exc)))
            continue
        if look.count is None or i < look.count:
            _write_preview(result, key, score, (px_a, px_b), look)
        if first_meta is None:
            first_meta = meta or {}
        result.tiles.append(score)
    return first_meta


def _score_songs(result: ComparisonResult, audio_original, audio_reconstructed, sr: int):
    """Pair the songs' audio, score each pair at ``sr`` into ``result`` and write its CSV."""
    audio_pairs, audio_errors = pair_audio(audio_original, audio_reconstructed)
    result.errors += audio_errors
    for song, pa, pb in audio_pairs:
        try:
            result.audio.append(score_audio(song, pa, pb, sr))
        except (AudioError, ValueError, OSError) as exc:
            result.errors.append((f"audio {song}", str(exc)))
    result.audio_csv = _write_csv(result.output / AUDIO_CSV, _audio_columns(result.audio),
                                  [x.row() for x in result.audio])


def _write_report(result: ComparisonResult, t0: float):
    """Write ``scores.csv`` (with its average row) and ``summary.txt``; set the wall time."""
    output = result.output
    result.scores_csv = _write_csv(output / SCORES_CSV, _tile_columns(result.stereo),
                                   result._rows(average=True))
    result.seconds = time.perf_counter() - t0
    with atomic_path(output / SUMMARY_TXT) as tmp:
        result.summary_txt = output / SUMMARY_TXT
        tmp.write_text(result.summary() + "\n", encoding="utf-8")


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
        and the side tiles of stereo sets, ``<song>_<index:04d>.side.png`` (or two
        single tile files, compared with each other).  A side tile without a partner
        is listed as unmatched like any tile.
    output : path-like
        Report folder (created): ``scores.csv`` (one row per pair plus an
        ``AVERAGE`` row; for a set with side tiles a ``channel`` column and an
        ``AVERAGE`` row per channel too), ``previews/<key>_compare.png``,
        ``summary.txt`` and, with audio, ``audio_scores.csv``.  Tiles below it are
        never compared, so it may lie inside either input folder.
    audio_original, audio_reconstructed : path-like, optional
        The songs as audio, both or neither: two files, or two folders whose
        files are paired by song name (file stem, as the encoder names songs).
        Adds waveform SNR and log-spectral distance per song (of the mono mixes);
        when both files of a song are stereo, of the left and right channels too,
        with the stereo width of each file and its change.
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
    look = _Previews(count=_preview_count(previews, preview_size, colormap), size=preview_size,
                     colormap=colormap, diff=diff)
    _check_audio_options(audio_original, audio_reconstructed, sample_rate)

    t0 = time.perf_counter()
    original, reconstructed, output = Path(original), Path(reconstructed), Path(output)
    result, pairs = _pair_tiles(original, reconstructed, output, match)
    output.mkdir(parents=True, exist_ok=True)
    first_meta = _score_pairs(result, tqdm(pairs, desc="compare", unit="tile",
                                           disable=not progress), look)
    if audio_original is not None:
        sr = sample_rate
        if sr is None:
            sr = (codec(first_meta) or CodecParams()).sample_rate
        _score_songs(result, audio_original, audio_reconstructed, int(sr))
    _write_report(result, t0)
    return result

