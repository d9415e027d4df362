"""Figures, audio players and widgets for the notebooks (matplotlib, IPython, ipywidgets).

Tiles and waveforms (``01_encode``), decoded audio (``03_decode``), comparison
scores (``04_compare``), benchmark figures (``05_benchmark``) and captions
beside their tiles (:func:`show_captions`, for ``02_caption_muq`` and ``02b_caption_qwen``).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BadParameterError
from ..captioning.interface import song_tiles
from ..codec.metrics import lsd_db, snr_db, stereo_width
from ..codec.params import CodecParams
from ..codec.transform import decode_array, encode_array, tile_magnitude_db
from ..io.audio import load_audio
from ..io.manifest import manifest_params, read_manifest, require_manifest
from ..io.tiles import read_tile, tile_name
from ..paths import resolve

if TYPE_CHECKING:
    from ..captioning.results import CaptionBatch, CaptionResult

__all__ = ["plot_waveform", "plot_tile_grid", "plot_tile", "tile_explorer",
           "plot_spectrogram_pair", "audio_player", "plot_decode_report", "show_decoded",
           "show_captions", "plot_captions", "plot_scores", "score_table", "plot_compare_scores",
           "plot_benchmark", "plot_memory", "source_scores"]


def _plt():
    import matplotlib.pyplot as plt
    return plt

#: Longest audio a notebook player embeds (a shared report stays small); the files keep it all.
PLAYER_SECONDS = 30.0


def audio_player(y: np.ndarray, sample_rate: int, *, label: str = "",
                 max_seconds: float | None = PLAYER_SECONDS):
    """A notebook audio player (mono, or stereo ``(n, 2)``) at any level, small in a report.

    The clip is embedded as MP3 (about 16 kB per second; a WAV player would
    take 176 kB per second at 44.1 kHz), cut to ``max_seconds``.
    ``IPython.display.Audio(..., normalize=False)`` refuses samples beyond full
    scale, which real MP3s and rebuilt audio often have (peaks of 1.15 are
    common): louder audio is scaled down for listening only, and the label
    says by how much.  Files on disk keep their true values and length.

    Returns
    -------
    IPython.display.HTML
    """
    import base64
    import html
    import io

    import soundfile as sf
    from IPython.display import HTML, Audio

    y = np.nan_to_num(np.asarray(y, dtype=np.float32))
    notes = []
    if max_seconds and len(y) > max_seconds * sample_rate:
        y = y[: int(max_seconds * sample_rate)]
        notes.append(f"first {max_seconds:g} s")
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 1.0:
        y = y / peak
        notes.append(f"peaks at {20 * np.log10(peak):+.1f} dBFS: played "
                     f"{20 * np.log10(peak):.1f} dB quieter")
    try:
        buf = io.BytesIO()
        sf.write(buf, y, int(sample_rate), format="MP3")
        tag = (f'<audio controls preload="none" src="data:audio/mpeg;base64,'
               f'{base64.b64encode(buf.getvalue()).decode("ascii")}"></audio>')
    except (sf.LibsndfileError, ValueError, TypeError):    # libsndfile built without MP3
        tag = Audio(y.T, rate=int(sample_rate), normalize=False)._repr_html_()
    cap = f"<code>{html.escape(label)}</code> " if label else ""
    note = f" <small>({html.escape('; '.join(notes))})</small>" if notes else ""
    return HTML(f"<div>{cap}{note}</div>{tag}")


def plot_waveform(y: np.ndarray, sample_rate: int, *, spans=None, title: str = "", ax=None,
                  max_points: int = 20000):
    """Waveform (min/max envelope) with tile borders marked.

    Parameters
    ----------
    y : ndarray
        Mono samples.
    sample_rate : int
    spans : list of TileSpan, optional
        Tile spans; each tile is labelled and its border drawn.
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 2.6))
    n = len(y)
    step = max(1, n // max_points)
    m = n // step * step
    if m and step > 1:          # a min/max envelope of blocks of samples
        blk = y[:m].reshape(-1, step)
        t = np.arange(blk.shape[0]) * step / sample_rate
        ax.fill_between(t, blk.min(axis=1), blk.max(axis=1), color="#3b6ea8", lw=0)
    elif m:                     # a short clip: the samples themselves (an envelope of one is empty)
        ax.plot(np.arange(n) / sample_rate, y, color="#3b6ea8", lw=0.6)
    for s in spans or []:
        x0 = s.start / sample_rate
        ax.axvline(x0, color="#d1495b", lw=1)
        ax.text(x0, 1.0, f" {s.index:04d}", color="#d1495b", va="top", fontsize=8,
                transform=ax.get_xaxis_transform())
        if s.pad:
            ax.axvspan(s.end / sample_rate, s.stop / sample_rate, color="0.85", label="padding")
    ax.set_xlim(0, max(n, max((s.stop for s in spans or []), default=0)) / sample_rate)
    ax.set_xlabel("seconds")
    ax.set_ylabel("amplitude")
    ax.set_title(title or "waveform and tiles")
    return ax


def plot_tile(pixels: np.ndarray, params: CodecParams, *, ax=None, title: str = "",
              colorbar: bool = False, cmap: str = "magma"):
    """One tile's magnitude channel in dB through a colormap, frequency axis in kHz."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    db = tile_magnitude_db(pixels, params)
    top = params.sample_rate / 2 * (params.bins - 1) / (params.n_fft / 2) / 1000
    im = ax.imshow(db, origin="lower", aspect="auto", cmap=cmap, vmin=params.db_min,
                   vmax=params.db_max, extent=[0, params.tile_seconds, 0, top],
                   interpolation="antialiased")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("s", fontsize=8)
    ax.set_ylabel("kHz", fontsize=8)
    ax.tick_params(labelsize=7)
    if colorbar:
        plt.colorbar(im, ax=ax, label="dB re full-scale sine")
    return ax


def plot_tile_grid(folder, *, max_tiles: int = 12, cols: int = 4, cmap: str = "magma"):
    """Thumbnails of a song's tiles (magnitude through a colormap), titled with their time span.

    Parameters
    ----------
    folder : path-like
        A song's tile folder (with ``manifest.json``).
    """
    plt = _plt()
    folder = Path(folder)
    man = require_manifest(folder)
    params = manifest_params(man)
    tiles = man["tiles"][:max_tiles]
    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    sr = params.sample_rate
    for ax, t in zip(axes.flat, tiles):
        ax.axis("on")
        px = read_tile(folder / t["file"], warn=False).pixels
        plot_tile(px, params, ax=ax, cmap=cmap,
                  title=f"{t['file']}\n{t['start'] / sr:.2f}-{t['end'] / sr:.2f} s"
                        + (f" (+{t['pad'] / sr:.2f} s pad)" if t["pad"] else ""))
    more = len(man["tiles"]) - len(tiles)
    fig.suptitle(f"{man['song']}: {man['n_tiles']} tiles" + (f" (first {len(tiles)} shown)" if more else ""))
    fig.tight_layout()
    return fig


def tile_explorer(folder):
    """Slider over a song's tiles: magnitude, phase (cos) and a player of the tile decoded alone.

    Live in JupyterLab the slider moves through the tiles.  The view is filled
    with ``Output.append_display_data`` rather than by capturing output, so a
    headless run (papermill, nbval) never waits on widget messages.
    """
    import io

    import ipywidgets as widgets
    from IPython.display import Image, display

    folder = Path(folder)
    man = require_manifest(folder)
    params = manifest_params(man)
    plt = _plt()
    slider = widgets.IntSlider(0, 0, len(man["tiles"]) - 1, description="tile")
    view = widgets.Output()

    def render(index):
        t = man["tiles"][index]
        px = read_tile(folder / t["file"], warn=False).pixels
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        plot_tile(px, params, ax=a, title=f"{t['file']} magnitude", colorbar=True)
        b.imshow(px[..., 1], cmap="twilight", aspect="auto")
        b.set_title("green channel: cos(phase)", fontsize=9)
        b.axis("off")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        y = decode_array([px], params, n_samples=t["end"] - t["start"])
        view.clear_output()
        view.append_display_data(Image(buf.getvalue()))
        view.append_display_data(audio_player(y, params.sample_rate))

    slider.observe(lambda change: render(change["new"]), names="value")
    render(0)
    display(widgets.VBox([slider, view]))
    display(_static_slices(folder, man, params, plt))
    return slider


def _static_slices(folder: Path, man: dict, params: CodecParams, plt, *, n: int = 4):
    """The explorer's fallback for HTML reports (widgets do not run there): a few tiles, evenly
    spaced, magnitude over cos(phase), as one small downscaled image."""
    import io

    from IPython.display import Image

    tiles = man["tiles"]
    pick = sorted({round(k * (len(tiles) - 1) / max(n - 1, 1)) for k in range(min(n, len(tiles)))})
    fig, axes = plt.subplots(2, len(pick), figsize=(2.6 * len(pick), 4.4), squeeze=False)
    for col, k in enumerate(pick):
        px = read_tile(folder / tiles[k]["file"], warn=False).pixels[::4, ::4]   # 1/16 the pixels
        axes[0, col].imshow(px[..., 0], cmap="magma", aspect="auto")
        axes[0, col].set_title(f"{tiles[k]['file']}", fontsize=8)
        axes[1, col].imshow(px[..., 1], cmap="twilight", aspect="auto")
        for ax in axes[:, col]:
            ax.axis("off")
    for ax, text in zip(axes[:, 0], ("magnitude", "cos(phase)")):
        ax.text(-0.05, 0.5, text, rotation=90, va="center", ha="right", transform=ax.transAxes,
                fontsize=8)
    fig.suptitle("static view of the explorer's tiles (the slider runs live in JupyterLab)",
                 fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    return Image(buf.getvalue())


def plot_spectrogram_pair(a: np.ndarray, b: np.ndarray, sample_rate: int, *, labels=("original", "decoded"),
                          n_fft: int = 2048, hop_length: int = 512, seconds: float | None = 12.0,
                          floor_db: float = 60.0, name: str = ""):
    """Two log spectrograms one above the other, and their difference in dB.

    The span shown (the first ``seconds``) is named in the titles. The difference is drawn only
    where the original is within ``floor_db`` of its loudest bin (elsewhere it is white: dB
    differences of near-silence say nothing about what is heard), on a scale set by what it
    shows (its 99th percentile, at least 0.1 dB), said in its title.
    """
    import librosa
    import librosa.display
    plt = _plt()
    n = min(len(a), len(b))
    if seconds:
        n = min(n, int(seconds * sample_rate))
    A, B = (librosa.amplitude_to_db(np.abs(librosa.stft(x[:n], n_fft=n_fft, hop_length=hop_length)),
                                    ref=1.0, top_db=None) for x in (a, b))
    span = f"{name + ': ' if name else ''}0-{n / sample_rate:.1f} s"
    fig, axes = plt.subplots(3, 1, figsize=(12, 8.5), sharex=True, layout="constrained")
    vmax = max(A.max(), B.max())
    for ax, S, lab in zip(axes, (A, B), labels):
        img = librosa.display.specshow(S, sr=sample_rate, hop_length=hop_length, x_axis="time",
                                       y_axis="hz", ax=ax, vmin=vmax - 110, vmax=vmax, cmap="magma")
        ax.set_title(f"{lab} ({span})")
        ax.set_xlabel("")
    fig.colorbar(img, ax=axes[:2], label="dB")
    diff = np.ma.masked_where(A < A.max() - floor_db, B - A)
    scale = max(0.1, float(np.percentile(np.abs(diff.compressed()), 99))) if diff.count() else 1.0
    cmap = plt.get_cmap("coolwarm").with_extremes(bad="white")
    d = librosa.display.specshow(diff.filled(np.nan), sr=sample_rate, hop_length=hop_length, x_axis="time",
                                 y_axis="hz", ax=axes[2], cmap=cmap, vmin=-scale, vmax=scale)
    top = float(np.abs(diff).max()) if diff.count() else 0.0
    axes[2].set_title(f"{labels[1]} - {labels[0]} in dB where the original is within {floor_db:g} "
                      f"dB of its peak (white: quieter); scale +-{scale:.2g} dB (99% of the "
                      f"values), largest {top:.2g} dB", fontsize=10)
    axes[2].set_xlabel("seconds")
    fig.colorbar(d, ax=axes[2], label="dB")
    return fig


def plot_compare_scores(result, *, max_bars: int = 12):
    """PSNR per channel and STFT SNR per tile of a :class:`wavdiff_utils.compare.ComparisonResult`.

    Up to ``max_bars`` tiles as grouped bars (identical tiles, PSNR = inf, hatched at the top of
    the axis); more as lines over the tile number, on a figure of fixed width.
    """
    plt = _plt()
    df = result.table()
    series = {"all channels": "psnr_db", "magnitude": "psnr_magnitude_db",
              "phase": "psnr_phase_db", "phase, non-silent bins": "psnr_phase_nonsilent_db",
              "STFT SNR": "stft_snr_db"}
    finite = df[list(series.values())].replace([np.inf, -np.inf], np.nan)
    top = float(np.nanmax(finite.to_numpy())) * 1.1 if finite.notna().any().any() else 100.0
    names = [Path(str(k)).stem for k in df["key"]]
    x = np.arange(len(df))
    many = len(df) > max_bars
    fig, ax = plt.subplots(figsize=(12, 4.5), layout="constrained")
    for i, (label, col) in enumerate(series.items()):
        v = np.where(np.isinf(df[col].to_numpy(dtype=float)), top, df[col].to_numpy(dtype=float))
        if many:
            ax.plot(x, v, marker=".", lw=1, label=label)
            continue
        width = 0.8 / len(series)
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, v, width, label=label)
        for b, is_inf in zip(bars, np.isinf(df[col].to_numpy(dtype=float))):
            if is_inf:
                b.set_hatch("//")
    ax.axhline(result.mean_psnr, color="k", lw=1, ls="--", label=f"mean PSNR {result.mean_psnr:.1f} dB")
    step = max(1, len(df) // max_bars)
    ax.set_xticks(x[::step], names[::step], rotation=30 if len(x[::step]) > 4 else 0,
                  ha="right" if len(x[::step]) > 4 else "center")
    ax.set_ylabel("dB")
    ax.set_ylim(0, top * 1.05)
    ax.set_title("PSNR (16-bit scale) and STFT SNR per tile" + (" (inf drawn at the top)" if not many else ""))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_benchmark(table):
    """Throughput (x realtime) per input and method, and round-trip SNR / LSD, from ``run_benchmark``'s table."""
    plt = _plt()
    inputs = list(dict.fromkeys(table["input"]))
    methods = list(dict.fromkeys(table["method"]))
    width = 0.8 / len(methods)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, d in zip(axes[0], ["encode", "decode"]):
        for k, m in enumerate(methods):
            v = [table[(table.input == i) & (table.method == m)][f"{d}_x"].iloc[0] for i in inputs]
            bars = ax.bar(np.arange(len(inputs)) + (k - (len(methods) - 1) / 2) * width, v, width, label=m)
            ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.set_xticks(np.arange(len(inputs)), inputs)
        ax.set_title(f"{d} throughput")
        ax.set_ylabel("seconds of audio per wall second")
    axes[0, 0].legend()
    for k, m in enumerate(methods):
        sub = table[table.method == m].set_index("input").reindex(inputs)
        x = np.arange(len(inputs)) + (k - (len(methods) - 1) / 2) * width
        axes[1, 0].bar_label(axes[1, 0].bar(x, sub["snr_db"], width, label=m), fmt="%.1f", fontsize=8)
        axes[1, 1].bar_label(axes[1, 1].bar(x, sub["lsd_db"], width, label=m), fmt="%.3f", fontsize=8)
    axes[1, 0].axhline(85, color="k", ls="--", lw=1, label="target 85 dB")
    axes[1, 0].set_ylabel("round-trip SNR (dB, higher is better)")
    axes[1, 1].set_ylabel("LSD (dB, lower is better)")
    for ax in axes[1]:
        ax.set_xticks(np.arange(len(inputs)), inputs)
    axes[1, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_memory(memory_rows, *, bound_bytes: int = 1 << 30):
    """Horizontal bars of peak resident memory per job, with the after-imports baseline and the bound."""
    plt = _plt()
    jobs = [f"{m['job']} ({m['input_minutes']:g} min)" for m in memory_rows]
    peak = [m["peak_mib"] for m in memory_rows]
    base = [m["baseline_mib"] for m in memory_rows]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(jobs)))
    bars = ax.barh(jobs, peak, color="tab:blue")
    ax.barh(jobs, base, color="tab:gray", label="after imports")
    ax.bar_label(bars, fmt="%.0f MiB", fontsize=8)
    ax.axvline(bound_bytes / 2**20, color="r", ls="--", label=f"{bound_bytes / 2**30:g} GiB bound")
    ax.set_xlabel("peak resident memory (MiB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_decode_report(batch, *, max_tiles: int = 60):
    """Per tile of a decode: how coherent the image phase was and how well the audio fits the image.

    Points are the spectral convergence (dB, lower is better) of the image phase as it is, and
    of the phase kept; colours say which method ran, hollow points a stereo file's side tiles
    (``song:index S``).  Returns the figure, or None when no tile went through the phase step.
    """
    plt = _plt()
    rows = [(r.song + (":{} S" if side else ":{}"), t) for r in batch.results
            for side, tiles in enumerate((r.tiles, getattr(r.stereo, "side_tiles", [])))
            for t in tiles if t.sc_db == t.sc_db][:max_tiles]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(min(12, max(7, 2 + 0.35 * len(rows))), 3.6))
    colours, palette = {}, ["#3b6ea8", "#d1495b", "#edae49", "#00798c", "#66a182"]
    for i, (label, t) in enumerate(rows):
        c = colours.setdefault(t.method, palette[len(colours) % len(palette)])
        if t.coherence_db is not None:
            ax.plot([i, i], [t.coherence_db, t.sc_db], color="0.8", lw=1, zorder=1)
            ax.scatter(i, t.coherence_db, marker="x", color="0.45", zorder=2)
        kind = {"facecolors": "none", "edgecolors": c} if label.endswith(" S") else {"color": c}
        ax.scatter(i, t.sc_db, zorder=3, **kind)
    for m, c in colours.items():
        ax.scatter([], [], color=c, label=m)
    ax.scatter([], [], marker="x", color="0.45", label="image phase as it is")
    ax.set_xticks(np.arange(len(rows)), [s.format(t.index) for s, t in rows], rotation=60,
                  ha="right", fontsize=7)
    ax.set_ylabel("spectral convergence, dB")
    ax.set_title("phase per tile: x = image phase as it was, dot = phase kept (lower fits better;"
                 " hollow: a stereo file's side tiles)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def show_decoded(batch, *, max_files: int = 3):
    """For the first decoded files: waveform, players, and next to the source when it is known.

    Returns the table of round-trip scores (SNR, LSD; for stereo also per channel, and the
    source's width) where a source exists.  Stereo: a waveform per channel, stereo players.
    """
    import pandas as pd
    import soundfile as sf
    from IPython.display import display

    plt = _plt()
    rows = []
    for r in [r for r in batch.results if r.status == "decoded"][:max_files]:
        y, sr = sf.read(r.output, dtype="float32")
        score, ref = source_scores(r, y, sr)
        if ref is not None:                    # stereo: the spectrograms of the mid
            plot_spectrogram_pair(*(x.mean(axis=1) if x.ndim == 2 else x for x in (ref, y)), sr,
                                  name=r.song + (" (mid)" if y.ndim == 2 else ""))
            plt.show()
            display(audio_player(ref, sr, label=f"{r.song} original"))
        chans = {"": y} if y.ndim == 1 else {" left": y[:, 0], " right": y[:, 1]}
        _, axes = plt.subplots(len(chans), 1, figsize=(12, 2.8 * len(chans)), layout="constrained")
        for ax, (lab, c) in zip(np.atleast_1d(axes), chans.items()):
            plot_waveform(c, sr, ax=ax, title=f"{r.song} decoded{lab} ({r.methods() or r.phase})")
        plt.show()
        display(audio_player(y, sr, label=f"{r.song} decoded"))
        rows.append({"file": r.song, "seconds": round(len(y) / sr, 2), **score})
    return pd.DataFrame(rows)

# =========================================================================== captions


def _tile_pixels(result: CaptionResult, n: int) -> list[np.ndarray]:
    """The first ``n`` tiles' pixels: the PNGs when encoded, else encoded here from the spans."""
    pngs = [Path(result.output) / tile_name(result.song, t.index) for t in result.tiles[:n]]
    if all(p.is_file() for p in pngs):
        return [read_tile(p, warn=False).pixels for p in pngs]
    tiles = song_tiles(result.source, Path(result.output).parent, params=result.params, song=result.song)
    return [t.pixels for t in encode_array(tiles.audio, tiles.params)[:n]]


def plot_captions(result: CaptionResult, *, max_tiles: int = 4, width: int = 90,
                  max_lines: int = 16, cmap: str = "magma"):
    """Figure: the first ``max_tiles`` tiles' magnitude (the PNG when ``01_encode`` made it, else
    computed) beside their captions, wrapped at ``width`` characters, cut after ``max_lines``."""
    plt = _plt()
    n = min(len(result.tiles), int(max_tiles))
    if n == 0:
        raise BadParameterError(f"song {result.song!r} has no captions to show")
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
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    t = next((x for x in result.tiles if x.index == tile), None)
    if t is None or not t.top:
        raise BadParameterError(f"song {result.song!r} has no scores for tile {tile}")
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
    from IPython.display import Markdown, display

    plt = _plt()
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


def source_scores(result, y: np.ndarray, sample_rate: int):
    """Round-trip SNR and LSD of a decoded song against its source file, when the manifest names one.

    Returns
    -------
    (dict, ndarray or None)
        Scores (empty when there is no source to compare with) and the source audio.
    """
    man = read_manifest(result.source) if Path(result.source).is_dir() else None
    if man is None or not resolve(man["source"]).exists():
        return {}, None
    ref = load_audio(man["source"], sample_rate=sample_rate, mono=np.ndim(y) == 1)
    chans = [] if np.ndim(y) == 1 else [0, 1]            # stereo: per channel too, and the width
    ref = ref if not chans else ref[:, :2] if ref.shape[1] > 1 else np.repeat(ref, 2, axis=1)
    w = {f"original {k.replace('_db', ' dB').replace('_', ' ')}": round(v, 3)
         for k, v in (stereo_width(ref) if chans else {}).items()}
    lsd = [lsd_db(ref[:, k], y[:, k]) for k in chans] if chans else [lsd_db(ref, y)]
    return {"SNR dB": round(snr_db(ref[:len(y)].ravel(), y[:len(ref)].ravel()), 2),
            **{f"SNR {'LR'[k]} dB": round(snr_db(ref[:, k], y[:, k]), 2) for k in chans},
            "LSD dB": round(float(np.mean(lsd)), 3), "length matches": len(ref) == len(y), **w}, ref
