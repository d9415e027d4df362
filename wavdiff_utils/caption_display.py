"""Captions shown in a notebook: each tile beside its caption, MuQ's scores, one call per notebook.

:func:`show_captions` is what ``02_caption_muq`` and ``02b_caption_qwen`` show
after captioning; the figures come from :func:`plot_captions` (any captioner)
and :func:`plot_scores` / :func:`score_table` (MuQ-MuLan's label scores).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .caption_results import CaptionBatch, CaptionResult

__all__ = ["show_captions", "plot_captions", "plot_scores", "score_table"]


def _tile_pixels(result: CaptionResult, n: int) -> list[np.ndarray]:
    """The first ``n`` tiles' pixels: the PNGs when encoded, else encoded here from the spans."""
    from .tile_io import read_tile, tile_name

    pngs = [Path(result.output) / tile_name(result.song, t.index) for t in result.tiles[:n]]
    if all(p.is_file() for p in pngs):
        return [read_tile(p, warn=False).pixels for p in pngs]
    from .captioning import song_tiles
    from .codec import encode_array
    tiles = song_tiles(result.source, Path(result.output).parent, params=result.params, song=result.song)
    return [t.pixels for t in encode_array(tiles.audio, tiles.params)[:n]]


def plot_captions(result: CaptionResult, *, max_tiles: int = 4, width: int = 90,
                  max_lines: int = 16, cmap: str = "magma"):
    """Figure: the first ``max_tiles`` tiles' magnitude (the PNG when ``01_encode`` made it, else
    computed) beside their captions, wrapped at ``width`` characters, cut after ``max_lines``."""
    import matplotlib.pyplot as plt

    from .plots import plot_tile

    n = min(len(result.tiles), int(max_tiles))
    if n == 0:
        raise ValueError(f"song {result.song!r} has no captions to show")
    pixels = _tile_pixels(result, n)
    wrapped = []
    for t in result.tiles[:n]:
        lines = textwrap.wrap(t.caption, width) or ["(empty)"]
        wrapped.append("\n".join(lines[:max_lines]) + (" ..." if len(lines) > max_lines else ""))
    heights = [max(2.4, 0.17 * (w.count("\n") + 1) + 0.7) for w in wrapped]
    fig, axes = plt.subplots(n, 2, figsize=(13, sum(heights)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.6], "height_ratios": heights})
    for row, t, px, text, (a, b) in zip(axes, result.tiles, pixels, wrapped, result.spans):
        plot_tile(px, result.params, ax=row[0], title=f"tile {t.index}: {a:.1f}-{b:.1f} s", cmap=cmap)
        row[1].axis("off")
        row[1].set_title(Path(t.path).name, loc="left", fontsize=9)
        row[1].text(0, 1, text, va="top", ha="left", fontsize=8.5, family="serif",
                    transform=row[1].transAxes)
    fig.tight_layout()
    return fig


def score_table(result: CaptionResult, *, tile: int | None = None):
    """MuQ's best scores per category as a DataFrame (tile, category, rank, label, score, chosen)."""
    import pandas as pd
    return pd.DataFrame([{"tile": t.index, "category": c, "rank": rank, "label": lab, "score": sc,
                          "chosen": lab in t.tags.get(c, [])}
                         for t in result.tiles if tile is None or t.index == tile
                         for c, items in t.top.items() for rank, (lab, sc) in enumerate(items, 1)])


def plot_scores(result: CaptionResult, *, tile: int = 0, top: int = 5):
    """Bar charts of MuQ's best scores per category for one tile; chosen labels in orange."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    t = next((x for x in result.tiles if x.index == tile), None)
    if t is None or not t.top:
        raise ValueError(f"song {result.song!r} has no scores for tile {tile}")
    fig, axes = plt.subplots(1, len(t.top), figsize=(16, 2.8), squeeze=False)
    for ax, (c, items) in zip(axes[0], t.top.items()):
        items = items[:top][::-1]
        labs, vals = [lab for lab, _ in items], np.array([v for _, v in items])
        span = float(vals.max() - vals.min()) or 1e-3
        base = float(vals.min()) - 0.25 * span     # bars grow with the score, negative or not
        ax.barh(labs, vals - base, left=base,
                color=["tab:orange" if lab in t.tags.get(c, []) else "tab:blue" for lab in labs])
        ax.set_xlim(base, float(vals.max()) + 0.05 * span)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.set_title(c, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"{result.song} tile {tile}: cosine similarity, chosen in orange", fontsize=10)
    fig.tight_layout()
    return fig


def show_captions(batch: CaptionBatch, *, max_songs: int = 2, max_tiles: int = 4,
                  raise_on_failure: bool = False) -> None:
    """Show a captioning run in a notebook: for the first ``max_songs`` songs, ``max_tiles`` tiles
    beside their captions (and MuQ's scores of the first scored tile), then counts, speed and
    failures; ``raise_on_failure`` raises ``RuntimeError`` at the end when a song failed."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    for r in batch.results[:max_songs]:
        display(Markdown(f"**{r.song}**: {r.n_tiles} tiles, spans "
                         f"{'from 01_encode' if r.from_manifest else 'computed (no tiles yet)'}, {r.status}"))
        plot_captions(r, max_tiles=max_tiles)
        plt.show()
        scored = next((t for t in r.tiles if t.top), None)
        if scored is not None:
            plot_scores(r, tile=scored.index)
            plt.show()
            display(score_table(r, tile=scored.index).pivot(index="rank", columns="category",
                                                            values="label"))
    made = [r for r in batch.results if r.status == "captioned"]
    tiles = sum(r.n_tiles for r in made)
    words = sum(len(t.split()) for r in made for t in r.texts) / max(tiles, 1)
    lines = [f"- **{batch.n_files}** caption(s) for **{len(batch.results)}** song(s) "
             f"({len(made)} captioned now, {len(batch.results) - len(made)} already up to date)",
             f"- captioner: **{batch.captioner}**, model `{batch.model}`"]
    if made:
        lines.append(f"- speed: {sum(r.seconds for r in made) / max(tiles, 1):.2f} s per tile; "
                     f"{words:.0f} words per caption on average")
    display(Markdown("\n".join(lines + [f"- FAILED: {msg}" for _, msg in batch.failures])))
    if raise_on_failure:
        batch.raise_if_failed()
