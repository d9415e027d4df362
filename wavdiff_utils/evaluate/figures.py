"""Figures and players for ``08_evaluate``: per-sample distances, the worst and best samples, the
nearest-neighbour pairs.  matplotlib and IPython are imported inside the functions.
"""
from __future__ import annotations

import numpy as np

from ..codec.params import CodecParams
from ..errors import BadParameterError
from .report import Evaluation
from .scores import OUTLIER_PERCENTILE

__all__ = ["plot_distances", "sample_audio", "sample_pixels", "show_samples", "show_neighbours"]


def plot_distances(result: Evaluation):
    """Histograms of each sample's kernel distance to the reference: the generated samples and,
    as the yardstick, the reference's own (each against the rest); the outlier line."""
    import matplotlib.pyplot as plt

    sc = result.scores
    edges = np.histogram_bin_edges(np.concatenate([sc.distances, sc.reference_distances]), bins=30)
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.hist(sc.reference_distances, edges, alpha=0.6, color="#3b6ea8", density=True,
            label=f"reference ({result.ref.n}, each vs the rest)")
    ax.hist(sc.distances, edges, alpha=0.6, color="#d1495b", density=True,
            label=f"generated ({result.gen.n})")
    ax.axvline(sc.outlier_threshold, color="0.2", ls="--", lw=1,
               label=f"outlier line: reference {OUTLIER_PERCENTILE:g}th percentile")
    ax.set_xlabel("kernel distance to the reference (x100)")
    ax.set_ylabel("density")
    ax.set_title(f"per-sample distance, {result.embedding_label}", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _side(result: Evaluation, side: str):
    if side not in ("generated", "reference"):
        raise BadParameterError(f"side must be 'generated' or 'reference', got {side!r}")
    return result.gen if side == "generated" else result.ref


def sample_audio(result: Evaluation, side: str, index: int) -> tuple[np.ndarray, int]:
    """A sample's audio: the decoded clip (generated images), the tile decoded exactly (reference
    tiles), or the clip of its audio file."""
    from .sets import iter_audio, read_decoded

    emb = _side(result, side)
    s = emb.samples[index]
    if s.name in emb.decoded:
        return read_decoded(emb.decoded[s.name])
    if s.kind == "audio":
        return next(iter_audio([s]))[1], s.sample_rate
    from ..codec.transform import decode_array
    from ..io.tiles import read_tile

    tile = read_tile(s.path, warn=False)
    params = _params(tile.metadata, emb.params)
    y = decode_array([tile.pixels], params)
    return (y[:s.length] if s.length else y), params.sample_rate


def _params(meta, assumed) -> CodecParams:
    codec = meta.get("codec") if isinstance(meta, dict) else None
    return CodecParams.from_dict(codec) if isinstance(codec, dict) else (assumed or CodecParams())


def sample_pixels(result: Evaluation, side: str, index: int) -> tuple[np.ndarray, CodecParams]:
    """A sample's tile (its image, or its audio encoded) and the codec to draw it with."""
    emb = _side(result, side)
    s = emb.samples[index]
    if s.kind == "image":
        from ..io.tiles import read_tile

        tile = read_tile(s.path, warn=False)
        px = tile.pixels if tile.pixels.ndim == 3 else np.repeat(tile.pixels[..., None], 3, axis=2)
        return px, _params(tile.metadata, emb.params)
    from ..codec.transform import encode_array

    y, sr = sample_audio(result, side, index)
    params = CodecParams(sample_rate=sr)
    return encode_array(y, params)[0].pixels, params


def _tile_with_player(result, side: str, index: int, title: str, ax) -> object:
    from ..views.plots import audio_player, plot_tile

    px, params = sample_pixels(result, side, index)
    plot_tile(px, params, ax=ax, title=title)
    y, sr = sample_audio(result, side, index)
    return audio_player(y, sr, label=f"{side}: {_side(result, side).samples[index].name}")


def show_samples(result: Evaluation, which: str = "worst", *, n: int = 3) -> list[dict]:
    """Draw and play the ``n`` generated samples farthest from (``"worst"``) or nearest to
    (``"best"``) the reference; returns their rows."""
    import matplotlib.pyplot as plt

    order = result.ranked() if which == "worst" else result.ranked()[::-1]
    picks = order[:max(0, int(n))]
    if not picks:
        return []
    fig, axes = plt.subplots(1, len(picks), figsize=(4 * len(picks), 3.6), squeeze=False)
    players = [_tile_with_player(result, "generated", i,
                                 f"{result.gen.samples[i].name}\ndistance "
                                 f"{result.scores.distances[i]:.3g}", ax)
               for i, ax in zip(picks, axes[0])]
    fig.suptitle(f"{which} {len(picks)} generated sample(s)", fontsize=10)
    return _show_with_players(result, fig, players, picks)


def show_neighbours(result: Evaluation, *, n: int = 3) -> list[dict]:
    """The ``n`` generated samples most similar to a reference sample (embedding cosine), each
    beside that nearest reference sample, with players: what memorization would look like."""
    import matplotlib.pyplot as plt

    sc = result.scores
    picks = [int(i) for i in np.argsort(-sc.cosine.value, kind="stable")[:max(0, int(n))]]
    if not picks:
        return []
    fig, axes = plt.subplots(len(picks), 2, figsize=(8, 3.4 * len(picks)), squeeze=False)
    players = []
    for row, i in zip(axes, picks):
        j = int(sc.cosine.index[i])
        mag = (f", magnitude corr {sc.magnitude.value[i]:.3f}" if sc.magnitude is not None
               and int(sc.magnitude.index[i]) == j else "")
        players.append(_tile_with_player(result, "generated", i, f"generated {result.gen.samples[i].name}",
                                         row[0]))
        players.append(_tile_with_player(result, "reference", j, f"nearest reference "
                                         f"{result.ref.samples[j].name}\ncosine "
                                         f"{sc.cosine.value[i]:.3f}{mag}", row[1]))
    return _show_with_players(result, fig, players, picks)


def _show_with_players(result: Evaluation, fig, players: list, picks: list[int]) -> list[dict]:
    """Show ``fig``, then its audio players; return the sample rows of ``picks``."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    fig.tight_layout()
    plt.show()
    for p in players:
        display(p)
    rows = result.sample_rows()
    return [rows[i] for i in picks]
