"""Stereo in a comparison: side tiles found beside the mid tiles, figures per channel, and the
stereo width of the songs laid out as a table.

A stereo tile set holds per span the mid tile ``<song>_<index:04d>.png`` (the mono tile) and the
side tile ``<song>_<index:04d>.side.png``.  :func:`wavdiff_utils.compare.compare_tiles` pairs both
kinds (each :class:`~wavdiff_utils.compare.TileScore` says its ``channel``) and gives the means of
each channel apart (:func:`channel_figures`).  The left, right and width scores of two stereo
songs are made in :mod:`wavdiff_utils.compare.scores` (:class:`~wavdiff_utils.compare.ChannelScores`);
:func:`width_table` lays out the width of every stereo song.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..io.tiles import parse_side_tile_name
from .scores import WIDTH_FIGURES, finite_mean, fmt_db

__all__ = ["TILE_CHANNELS", "channel_figures", "width_table"]

#: The channels a tile comparison tells apart: the mid (mono) tile and the side tile.
TILE_CHANNELS = ("mid", "side")


def find_side_tiles(root) -> list[Path]:
    """Side tiles ``<song>_<index:04d>.side.png`` below ``root`` (recursive), sorted.

    :func:`wavdiff_utils.io.tiles.find_tiles` leaves them out on purpose (mono readers skip them).
    """
    root = Path(root)
    if root.is_file():
        return [root] if parse_side_tile_name(root.name) else []
    return [p for p in sorted(root.rglob("*.png"))
            if not p.name.startswith(".") and parse_side_tile_name(p.name)]


def channel_figures(tiles) -> dict[str, dict]:
    """Means per channel of scored tile pairs (each with a ``channel``), for the channels present.

    Returns
    -------
    dict
        ``{"mid": {...}, "side": {...}}``, each with ``pairs``, ``identical``, ``psnr``,
        ``psnr_magnitude``, ``psnr_phase_nonsilent`` and ``stft_snr`` (means as in
        :attr:`~wavdiff_utils.compare.ComparisonResult.mean_psnr`: identical pairs left out).
    """
    out = {}
    for ch in TILE_CHANNELS:
        ts = [t for t in tiles if t.channel == ch]
        if not ts:
            continue
        out[ch] = {"pairs": len(ts), "identical": sum(1 for t in ts if math.isinf(t.psnr)),
                   "psnr": finite_mean(t.psnr for t in ts),
                   "psnr_magnitude": finite_mean(t.psnr_magnitude for t in ts),
                   "psnr_phase_nonsilent": finite_mean(t.psnr_phase_nonsilent for t in ts),
                   "stft_snr": finite_mean(t.stft_snr for t in ts)}
    return out


def channel_lines(tiles) -> list[str]:
    """One summary line per channel: pairs, mean PSNR (magnitude) and STFT SNR."""
    lines = []
    for ch, f in channel_figures(tiles).items():
        name = "mid (the mono tile)" if ch == "mid" else "side (L-R)/2"
        lines.append(f"  {name}: {f['pairs']} pair(s), {f['identical']} identical, mean PSNR "
                     f"{fmt_db(f['psnr'])} (magnitude {fmt_db(f['psnr_magnitude'])}), "
                     f"STFT SNR {fmt_db(f['stft_snr'])}")
    return lines


def mono_side_hint(side_counts: tuple[int, int]) -> str:
    """What to say when one set holds side tiles and the other none ("" otherwise)."""
    n_orig, n_rec = side_counts
    if bool(n_orig) == bool(n_rec):
        return ""
    stereo, mono = ("original", "reconstructed") if n_orig else ("reconstructed", "original")
    return (f"the {mono} tiles are mono (no side tiles) and the {stereo} ones stereo: the mid "
            f"tiles are compared, the {max(side_counts)} side tile(s) are listed as only in "
            f"{stereo}")

def width_table(audio_scores):
    """Stereo width of each stereo song, original against reconstructed, as a pandas DataFrame.

    One row per song and width figure (``level_difference_db``, ``correlation``,
    ``side_to_mid_db``), columns ``original``, ``reconstructed`` and ``change``; empty when no
    song is stereo on both sides.
    """
    import pandas as pd

    rows = []
    for a in audio_scores:
        if a.stereo is None:
            continue
        change = a.stereo.width_change
        rows += [{"song": a.song, "figure": k, "original": a.stereo.width_original[k],
                  "reconstructed": a.stereo.width_reconstructed[k], "change": change[k]}
                 for k in WIDTH_FIGURES]
    return pd.DataFrame(rows, columns=["song", "figure", "original", "reconstructed", "change"])
