"""Stereo decode: a song's mid and side tiles back to left and right, and the report's figures.

What is stereo
--------------
A job is stereo when its folder's manifest records ``"channels": "stereo"`` or a side tile
(``<song>_<index:04d>.side.png``, see :mod:`wavdiff_utils.io.tiles`) lies beside any of its
tiles.  The mid tiles and the side tiles are each decoded by the mono path (the same phase
method rules, the same join across tile borders, the same trim to the song's length), then
combined block by block: ``L = M + S``, ``R = M - S``.  Nothing holds the whole song: each
tile's block of both channels goes to the writer as soon as it is made.

Damaged stereo songs
--------------------
Decided for a user who wants the stereo they encoded, not a quiet mono file: each case is
one line naming the file, raised before any audio is written.

- a side tile missing for a span whose mid tile is there: refused (``missing="error"``),
  or those spans decoded with a silent side (``missing="silence"``, the option that also
  fills missing mid tiles), said once;
- a side tile without its mid tile: refused (restore the mid, or remove the side);
- a side tile made with another STFT layout than its mid (sample rate, layout, size,
  ``n_fft``, hop), or with another codec than the song's other side tiles, or for another
  span (its ``song``, ``tile_index``, ``start`` or ``end``), or whose metadata is a mid
  tile's: refused.

Each side tile's pixels are read with the codec its metadata records (the encoder gives the
side a lower floor than the mid: :meth:`~wavdiff_utils.codec.params.CodecParams.side_codec`);
a side image without wavdiff metadata with the side codec of its mid's (the file names pair
them, as they pair generated images).

Figures
-------
:class:`StereoFigures`: per channel (left, right) the peak and the samples beyond full
scale, before any limiting; per side tile what the phase step did (the mid's tiles are the
result's own ``tiles``); and the width of the decoded audio, the figures of
:func:`wavdiff_utils.codec.metrics.stereo_width` (level difference, correlation,
side-to-mid ratio) gathered block by block by :class:`WidthMeter`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..codec.threads import tile_threads
from ..codec.transform import istft_stream
from ..errors import WavdiffError
from ..io.manifest import read_manifest
from ..io.tiles import (SIDE_SUFFIX, TileImageError, is_side_tile, natural_key,
                        parse_side_tile_name, parse_tile_name, read_tile, side_tile_name,
                        side_tile_of)
from ..codec.params import CodecParams
from ..phase.reconstruct import TileReport, reconstruct_tiles
from .decode_audio import write_decoded_audio
from .decode_images import wavdiff_metadata

__all__ = ["UnpairedSideError", "StereoFigures", "WidthMeter", "SideChannel", "find_side_tiles",
           "pair_sides", "refuse_stray", "side_channel", "channel_audio", "write_stereo",
           "tile_rows", "SPAN_FIELDS", "SIDE_OWN_FIELDS"]

#: Metadata fields a side tile shares with its mid tile (the same span of the same song).
SPAN_FIELDS = ("song", "tile_index", "start", "end")
#: Codec fields a side tile may have of its own (its dB range); the rest is the mid's layout.
SIDE_OWN_FIELDS = ("db_min", "db_max", "mono", "channels")


class UnpairedSideError(TileImageError):
    """A side tile that does not pair with its mid tile (missing, stray, other codec or span)."""


def _mid_name(side: Path) -> str:
    """File name of the mid tile a side tile belongs to."""
    return side.name[:-len(SIDE_SUFFIX)] + ".png"

# --------------------------------------------------------------------------- planning


def find_side_tiles(folder) -> list[Path]:
    """Side tiles under ``folder`` (or ``folder`` itself), hidden files skipped, natural order."""
    folder = Path(folder)
    if folder.is_file():
        return [folder] if is_side_tile(folder) else []
    found = [p for p in folder.rglob("*") if is_side_tile(p) and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder)))


def _expected_sides(job) -> list:
    """The side tile each of ``job``'s tiles would have (a gap's from its neighbours' names)."""
    i0, t0 = next((i, t) for i, t in enumerate(job.tiles) if t is not None)
    parsed = parse_tile_name(t0.name)
    return [side_tile_of(t) if t is not None else
            (t0.parent / side_tile_name(parsed[0], parsed[1] - i0 + i) if parsed else None)
            for i, t in enumerate(job.tiles)]


def _stereo_manifest(folder) -> bool:
    """Whether ``folder``'s manifest records a stereo song (a damaged one: left to the decode)."""
    try:
        man = read_manifest(folder) if folder is not None else None
    except WavdiffError:
        return False
    if not man:
        return False
    codec = man.get("codec")
    return (isinstance(codec, dict) and codec.get("channels") == "stereo") or any(
        isinstance(t, dict) and t.get("side_file") for t in man.get("tiles") or [])


def _song_key(path: Path) -> tuple:
    parsed = parse_tile_name(path.name) or parse_side_tile_name(path.name)
    return path.parent, parsed[0] if parsed else path.name[:-len(path.suffix)]


def pair_sides(jobs: list, sides, *, make) -> list:
    """Give each stereo job its side tiles, and side tiles without a mid tile to a job.

    Parameters
    ----------
    jobs : list of DecodeJob
        Planned from the mid tiles and other images; a stereo one gets ``sides`` (its
        expected side tile per tile, in order, whether the file exists or not).
    sides : list of Path
        Every side tile found (:func:`find_side_tiles`).
    make : callable
        ``make(name, tiles, joined=...)`` builds a job (the DecodeJob class).

    Returns
    -------
    list of DecodeJob
        New jobs for side tiles whose song has no mid tile at all; side tiles without a
        mid tile go to their song's ``stray`` list, which :func:`refuse_stray` refuses.
    """
    taken: set = set()
    owners: dict = {}
    for job in jobs:
        expected = _expected_sides(job)
        if _stereo_manifest(job.folder) or any(p is not None and p.is_file() for p in expected):
            job.sides = expected
            taken.update(p for p in expected if p is not None)
        owners.setdefault(_song_key(next(t for t in job.tiles if t is not None)), job)
    new: list = []
    for p in sides:
        if p in taken:
            continue
        key = _song_key(p)
        if key not in owners:
            owners[key] = make(key[1], [], joined=parse_side_tile_name(p.name) is not None)
            new.append(owners[key])
        if any(owners[key] is j for j in new):
            owners[key].tiles.append(p)        # names the song's folder in a batch's failures
        owners[key].stray.append(p)
    return new


def refuse_stray(job) -> None:
    """Refuse a job holding side tiles without their mid tiles: one line naming the first."""
    if job.stray:
        more = f" (and {len(job.stray) - 1} more side tile(s))" if len(job.stray) > 1 else ""
        raise UnpairedSideError(job.stray[0], f"is a side tile without its mid tile "
                                              f"{_mid_name(job.stray[0])}{more}: the stereo of "
                                              f"that span cannot be rebuilt; restore the mid "
                                              f"tile or remove the side tile")

# --------------------------------------------------------------------------- the side channel


@dataclass
class SideChannel:
    """The side tiles a stereo job decodes (None: a silent span), the phase method they take
    and the codec their pixels are read with."""

    tiles: list
    method: str
    params: CodecParams


def _check_pair(side: Path, meta: dict, mid: Path | None, mid_meta: dict | None,
                params: CodecParams, first: tuple | None) -> CodecParams:
    """Refuse a side tile that is not the side of ``mid`` (its kind, layout, span) or not of a
    codec with the song's first side tile ``first`` (path, codec); return its codec."""
    mid_label = mid.name if mid is not None else _mid_name(side)
    if meta.get("channel") != "side":
        raise UnpairedSideError(side, f"is named as a side tile but its wavdiff metadata is a mid "
                                      f"(mono) tile's (no \"channel\": \"side\"); was "
                                      f"{mid_label} copied under this name?")
    own = CodecParams.from_dict(meta["codec"])
    if diff := own.differences(params, skip=SIDE_OWN_FIELDS):
        raise UnpairedSideError(side, f"was made with other codec parameters than its mid tile "
                                      f"{mid_label} ({diff}); a stereo span needs both from one "
                                      f"encode")
    if first is not None and (diff := own.differences(first[1])):
        raise UnpairedSideError(side, f"was made with other codec parameters than the song's "
                                      f"side tile {first[0].name} ({diff}); the side tiles of "
                                      f"one song come from one encode")
    if mid_meta is not None and any(meta.get(k) != mid_meta.get(k) for k in SPAN_FIELDS):
        def span(m):
            return f"song {m.get('song')!r}, tile {m.get('tile_index')}, samples " \
                   f"{m.get('start')}-{m.get('end')}"
        raise UnpairedSideError(side, f"is not the side of its mid tile {mid_label}: it holds "
                                      f"{span(meta)}, the mid {span(mid_meta)}")
    return own


def _side_method(tiles: list, metas: list, phase: str) -> str:
    """The phase method of the side channel, by the mono rules applied to the side tiles."""
    first = next((t for t in tiles if t is not None), None)
    if first is None:
        return "image"                       # every span silent: nothing to rebuild
    tile = read_tile(first, warn=False, bad_metadata="ignore")    # a damaged one: refused now
    own = all(m is not None and not m.get("generated") for t, m in zip(tiles, metas)
              if t is not None)
    method = "image" if phase == "auto" and own and tile.bit_depth == 16 and tile.has_phase \
        else phase
    return "auto" if method == "image" and not tile.has_phase else method


def side_channel(job, mid_metas: list, params: CodecParams, opts, warn: list) -> SideChannel:
    """Check a stereo job's side tiles against its mid tiles, before any audio is written.

    Parameters
    ----------
    job : DecodeJob
        With ``sides`` set (:func:`pair_sides`).
    mid_metas : list of dict or None
        The mid tiles' wavdiff metadata, per tile.
    params : CodecParams
        The codec the mid tiles decode with (its STFT layout is the side's too).
    opts : DecodeOptions
        ``missing``, ``bad_metadata`` and ``phase`` are used.
    warn : list of str
        Gets what was set aside (missing side tiles under ``missing="silence"``,
        corrupt side metadata under ``bad_metadata="defaults"``).

    Raises
    ------
    UnpairedSideError
        A missing side tile (``missing="error"``), or one of another codec or span.
    TileImageError
        A side tile that cannot be read, or corrupt metadata (``bad_metadata="error"``).
    """
    tiles, metas, absent, first = [], [], [], None
    for mid, side, mid_meta in zip(job.tiles, job.sides, mid_metas):
        if side is None or not side.is_file():
            if mid is not None:
                absent.append(side or side_tile_of(mid))
            tiles.append(None)
            metas.append(None)
            continue
        meta = wavdiff_metadata(side, opts.bad_metadata, warn)
        if meta is not None:
            own = _check_pair(side, meta, mid, mid_meta, params, first)
            first = first or (side, own)
        tiles.append(side)
        metas.append(meta)
    if absent:
        names = ", ".join(p.name for p in absent[:5]) + (" ..." if len(absent) > 5 else "")
        if opts.missing == "error":
            more = f" (missing side tiles: {names})" if len(absent) > 1 else ""
            raise UnpairedSideError(absent[0], f"does not exist: the side tile of a stereo span "
                                               f"whose mid tile {_mid_name(absent[0])} is "
                                               f"there{more}; pass missing='silence' to decode "
                                               f"those spans with a silent side (centred)")
        warn.append(f"side tile(s) {names} missing: those spans decoded with a silent side "
                    f"(centred; missing='silence')")
    return SideChannel(tiles, _side_method(tiles, metas, opts.phase),
                       first[1] if first is not None else params.side_codec())

# --------------------------------------------------------------------------- audio


def channel_audio(stfts, params: CodecParams, settings, *, n_samples, reports: list,
                  silent_end: bool = False):
    """One channel's audio blocks: phase rebuilt, inverse STFT joined and trimmed (the mono path;
    ``silent_end`` for images that are not our own tiles, see
    :func:`~wavdiff_utils.codec.transform.istft_stream`).

    Each block is one tile's; its peak and samples beyond full scale go into that tile's
    :class:`~wavdiff_utils.phase.reconstruct.TileReport`, appended to ``reports``.
    """
    def audio_blocks():
        for S, rep in reconstruct_tiles(stfts, params, settings):
            reports.append(rep)
            yield S

    blocks = istft_stream(audio_blocks(), params, n_samples=n_samples, threads=tile_threads(),
                          silent_end=silent_end)
    for k, b in enumerate(blocks):            # one block per tile: its level goes in its report
        if k < len(reports) and len(b):
            a = np.abs(b)
            reports[k].peak = float(a.max())
            reports[k].clipped = int(np.count_nonzero(a > 1.0))
        yield b


class WidthMeter:
    """The figures of :func:`~wavdiff_utils.codec.metrics.stereo_width`, gathered block by block.

    Sums of the samples, their squares and product, and of the squared difference and sum of
    the channels (exact zeros for identical or opposite channels): memory does not grow with
    the song.
    """

    def __init__(self):
        self.n = 0
        self._sums = np.zeros(7)            # L, R, LL, RR, LR, (L-R)^2, (L+R)^2

    def add(self, lr: np.ndarray) -> None:
        """Count one ``(n, 2)`` block of left and right."""
        x = np.asarray(lr, dtype=np.float64)
        if not len(x):
            return
        g = x.T @ x
        d, m = x[:, 0] - x[:, 1], x[:, 0] + x[:, 1]
        self._sums += [*x.sum(axis=0), g[0, 0], g[1, 1], g[0, 1], d @ d, m @ m]
        self.n += len(x)

    def result(self) -> dict:
        """``level_difference_db``, ``correlation``, ``side_to_mid_db`` (as ``stereo_width``)."""
        if not self.n:
            return {}
        sl, sr, ll, rr, lr, dd, mm = self._sums / self.n

        def ratio_db(a, b):
            if b == 0:
                return float("inf") if a > 0 else float("nan")
            return float(20 * np.log10(a / b)) if a > 0 else float("-inf")

        def std(square, mean):              # a constant channel: 0, not a rounding error
            var = square - mean * mean
            return float(np.sqrt(var)) if var > 1e-12 * square else 0.0

        std_l, std_r = std(ll, sl), std(rr, sr)
        corr = float("nan")
        if std_l > 0 and std_r > 0:
            corr = float(np.clip((lr - sl * sr) / (std_l * std_r), -1, 1))
        return {"level_difference_db": ratio_db(np.sqrt(ll), np.sqrt(rr)), "correlation": corr,
                "side_to_mid_db": ratio_db(np.sqrt(dd), np.sqrt(mm))}


@dataclass
class StereoFigures:
    """Per-channel figures of a stereo decode (see the module notes).

    Attributes
    ----------
    side_tiles : list of TileReport
        What the phase step did to each side tile (the mid's are the result's ``tiles``).
    side_method : str
        The phase method the side was decoded with.
    peak, clipped : tuple
        Left and right: largest absolute sample, and samples beyond full scale (before
        any limiting).
    width : dict
        ``level_difference_db`` (left over right), ``correlation`` and ``side_to_mid_db``.
    tile_clipped : list of int
        Per tile, samples of left or right beyond full scale.
    """

    side_tiles: list = field(default_factory=list)
    side_method: str = ""
    peak: tuple = (0.0, 0.0)
    clipped: tuple = (0, 0)
    width: dict = field(default_factory=dict)
    tile_clipped: list = field(default_factory=list)

    def combined(self, mid, side):
        """Left and right ``(n, 2)`` blocks from the mid and side blocks, counted as they pass."""
        meter, peak, clipped = WidthMeter(), np.zeros(2), np.zeros(2, np.int64)
        try:
            for m, s in zip(mid, side, strict=True):
                lr = np.empty((len(m), 2), np.float32)
                np.add(m, s, out=lr[:, 0])
                np.subtract(m, s, out=lr[:, 1])
                a = np.abs(lr)
                over = np.count_nonzero(a > 1.0, axis=0) if len(lr) else np.zeros(2, np.int64)
                peak = np.maximum(peak, a.max(axis=0) if len(lr) else 0.0)
                clipped += over
                self.tile_clipped.append(int(over.sum()))
                meter.add(lr)
                self.peak, self.clipped = tuple(map(float, peak)), tuple(map(int, clipped))
                self.width = meter.result()
                yield lr
        finally:
            mid.close()
            side.close()

    def level_reports(self) -> list:
        """Tiles whose left or right goes beyond full scale, as the level warnings read them."""
        return [TileReport(k, "", None, float("nan"), clipped=c)
                for k, c in enumerate(self.tile_clipped)]

    def side_methods(self) -> str:
        """The side's phase methods with tile counts: ``"image x3"``."""
        counts: dict[str, int] = {}
        for t in self.side_tiles:
            counts[t.method] = counts.get(t.method, 0) + 1
        return ", ".join(f"{m} x{n}" for m, n in counts.items()) or self.side_method

    def row(self) -> dict:
        """The columns a stereo file adds to the decode table."""
        sc = [t.sc_db for t in self.side_tiles if t.sc_db == t.sc_db]
        w = self.width

        def dbfs(p):
            return round(float(20 * np.log10(p)), 1) if p > 0 else None
        return {"L peak dBFS": dbfs(self.peak[0]), "R peak dBFS": dbfs(self.peak[1]),
                "L clipped": self.clipped[0], "R clipped": self.clipped[1],
                "side phase": self.side_methods(),
                "side consistency dB (worst)": round(max(sc), 1) if sc else None,
                "L/R level difference dB": round(w.get("level_difference_db", np.nan), 2),
                "L/R correlation": round(w.get("correlation", np.nan), 4),
                "side-to-mid dB": round(w.get("side_to_mid_db", np.nan), 1)}

    def line(self) -> str:
        """One Markdown fragment: per-channel levels and the width."""
        r, w = self.row(), self.width
        sc = r["side consistency dB (worst)"]
        fit = f", worst side tile's consistency {sc:.1f} dB SC" if sc is not None else ""
        return (f"stereo: left peak {_fmt_db(self.peak[0])} dBFS ({self.clipped[0]} samples "
                f"beyond full scale), right {_fmt_db(self.peak[1])} dBFS ({self.clipped[1]}); "
                f"width: L/R "
                f"level difference {w.get('level_difference_db', np.nan):+.2f} dB, correlation "
                f"{w.get('correlation', np.nan):.3f}, side {w.get('side_to_mid_db', np.nan):.1f} "
                f"dB re mid; side phase {self.side_methods()}{fit}")


def _fmt_db(peak: float) -> str:
    return f"{20 * np.log10(peak):+.1f}" if peak > 0 else "-inf"


def write_stereo(mid_stfts, side_stfts, params: CodecParams, settings: tuple, output: Path, *,
                 n_samples, peak: str, silent_end: bool = False):
    """Decode the mid and side tiles and stream left and right to ``output``, atomically.

    Parameters
    ----------
    mid_stfts, side_stfts : iterable of (STFT, has phase)
        Per tile, as the mono decode reads them (a silent span: zeros).
    params : CodecParams
        The codec of one tile.
    settings : (PhaseSettings, PhaseSettings)
        The phase settings of the mid and of the side.
    output : Path
        The audio file.
    n_samples : int or None
        The song's length (padding trimmed), or None for whole tiles.
    peak : {"keep", "limit", "normalize"}

    Returns
    -------
    (mid reports, peak, clipped, length, StereoFigures)
        ``peak`` is the larger of left's and right's, ``clipped`` their sum.
    """
    mid_reports: list = []
    figures = StereoFigures(side_method=settings[1].method)
    mid = channel_audio(mid_stfts, params, settings[0], n_samples=n_samples, reports=mid_reports,
                        silent_end=silent_end)
    side = channel_audio(side_stfts, params, settings[1], n_samples=n_samples,
                         reports=figures.side_tiles, silent_end=silent_end)
    top, over, n = write_decoded_audio(figures.combined(mid, side), output, params.sample_rate,
                                       peak=peak, channels=2)
    return mid_reports, top, over, n, figures

# --------------------------------------------------------------------------- reading results


def tile_rows(result) -> list[dict]:
    """One row per tile of a decoded file: the mid's and, for stereo, the side's (``channel``)."""
    stereo = getattr(result, "stereo", None)
    if stereo is None:
        return [{"file": result.song, **t.to_dict()} for t in result.tiles]
    return ([{"file": result.song, "channel": "mid", **t.to_dict()} for t in result.tiles]
            + [{"file": result.song, "channel": "side", **t.to_dict()}
               for t in stereo.side_tiles])
