"""Figures of ``07_train``: the loss curves of a run, and the tiles a model sampled."""
from __future__ import annotations

import numpy as np

from ..io.tiles import read_tile, side_tile_of
from ..views.plots import plot_tile

__all__ = ["plot_losses", "plot_samples"]


def plot_losses(result, *, smooth: int = 0):
    """Training loss (and its running mean), probe loss at fixed timesteps, validation loss.

    Parameters
    ----------
    result : TrainResult
    smooth : int
        Window of the running mean of the training loss (0: about 5% of the steps).
    """
    import matplotlib.pyplot as plt

    st = result.state
    fig, ax = plt.subplots(figsize=(8, 3.6))
    if st.history:
        steps = np.array([h[0] for h in st.history])
        loss = np.array([h[1] for h in st.history], dtype=float)
        ax.plot(steps, loss, color="0.75", lw=0.8, label="training loss (random timesteps)")
        k = smooth or max(1, len(loss) // 20)
        if k > 1 and len(loss) > k:
            mean = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], mean, color="0.35", lw=1.2, label=f"running mean of {k}")
    if st.probes:
        ax.plot([p[0] for p in st.probes], [p[1] for p in st.probes], color="#d1495b", lw=1.4,
                label="probe: training tiles at fixed timesteps")
    if st.val:
        ax.plot([v[0] for v in st.val], [v[1] for v in st.val], "o-", color="#3b6ea8",
                label="validation (fixed timesteps)")
    if result.resumed_from and result.start_step:
        ax.axvline(result.start_step, color="0.5", ls=":", lw=1)
        ax.text(result.start_step, ax.get_ylim()[1], " resumed", va="top", fontsize=8, color="0.4")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"MSE ({result.config.prediction_type})")
    ax.set_title(f"{result.output.name}: {result.steps} steps", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_samples(samples, *, cols: int = 4):
    """The magnitude of each sampled tile (dB, frequency in kHz), titled with its prompt; a
    stereo sample's side tile (on its own, lower, dB range) beside its mid tile."""
    import matplotlib.pyplot as plt

    p = samples.params
    panels = []                                   # (path, codec, prompt)
    for path, prompt in zip(samples.paths, samples.prompts):
        panels.append((path, p.tile_codec(), prompt))
        if p.stereo:
            panels.append((side_tile_of(path), p.side_codec(), prompt))
    cols = max(1, min(cols, len(panels)))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (path, codec, prompt) in zip(axes.flat, panels):
        ax.axis("on")
        title = path.name + (f"\n{prompt[:40]}" if prompt else "")
        plot_tile(read_tile(path, warn=False).pixels, codec, ax=ax, title=title)
    fig.tight_layout()
    return fig
