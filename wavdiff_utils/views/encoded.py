"""What ``01_encode`` shows of the songs it encoded: waveforms with tile borders, thumbnails,
a player per tile (a stereo song's in stereo) and a stereo song's mid and side tiles side by side.

:func:`tile_audio` decodes one tile alone (a stereo song's mid and side together); the batch
report (:mod:`wavdiff_utils.views.batch_report`) plays its tiles through it too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadParameterError
from ..codec.transform import decode_array
from ..io.audio import load_audio
from ..io.manifest import manifest_params, manifest_spans, require_manifest
from ..io.tiles import read_tile, side_tile_of
from .plots import audio_player, plot_tile, plot_tile_grid, plot_waveform

__all__ = ["tile_audio", "tile_players", "show_encoded", "plot_mid_side"]


def tile_audio(folder, tile: dict, params) -> np.ndarray:
    """One tile of a song folder decoded alone (its phase as stored, else rebuilt).

    Parameters
    ----------
    folder : path-like
        The song folder.
    tile : dict
        The tile's entry in ``manifest.json`` (``file``, ``start``, ``end``).
    params : CodecParams
        The manifest's codec (:func:`~wavdiff_utils.io.manifest_params`).

    Returns
    -------
    numpy.ndarray
        ``(n,)``; for a stereo song whose side tile is there, ``(n, 2)``: left = mid + side,
        right = mid - side, the side decoded with :meth:`~CodecParams.side_codec`.
    """
    folder = Path(folder)
    n = tile["end"] - tile["start"]
    mid_path = folder / tile["file"]
    mid = decode_array([read_tile(mid_path, warn=False).pixels], params.tile_codec(), n_samples=n)
    side_path = side_tile_of(mid_path)
    if params.channels != "stereo" or not side_path.is_file():
        return mid
    side = decode_array([read_tile(side_path, warn=False).pixels], params.side_codec(), n_samples=n)
    return np.stack([mid + side, mid - side], axis=1)


def tile_players(folder, *, max_tiles: int = 4, source_audio: np.ndarray | None = None):
    """An audio player per tile: the samples that tile stands for, decoded from the tile alone
    (:func:`tile_audio`: a stereo song's players are stereo), or cut from ``source_audio``.

    Returns a list of ``(file name, player)`` (see :func:`~wavdiff_utils.views.audio_player`).
    """
    folder = Path(folder)
    man = require_manifest(folder)
    params = manifest_params(man)
    out = []
    for t in man["tiles"][:max_tiles]:
        y = (source_audio[t["start"]:t["end"]] if source_audio is not None
             else tile_audio(folder, t, params))
        out.append((t["file"], audio_player(y, params.sample_rate)))
    return out


def show_encoded(result, *, max_songs: int = 3, max_players: int = 4) -> None:
    """For the first encoded songs: waveform with tile borders (a stereo song's: left and
    right), tile thumbnails, a player per tile."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    for r in result.results[:max_songs]:
        man = require_manifest(r.output)
        params = manifest_params(man)
        stereo = params.channels == "stereo"
        y = load_audio(man["source"], sample_rate=params.sample_rate, mono=not stereo)
        head = f"{r.song}: {man['duration']:.1f} s, {man['n_tiles']} tiles"
        if not stereo or y.ndim == 1:
            plot_waveform(y, params.sample_rate, spans=manifest_spans(man),
                          title=f"{head}, peak {man['peak']:.2f}")
        else:
            fig, axes = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
            for ax, ch, name in zip(axes, (0, 1), ("left", "right")):
                plot_waveform(y[:, ch], params.sample_rate, spans=manifest_spans(man), ax=ax,
                              title=f"{head}, {name}, peak {np.abs(y[:, ch]).max():.2f}")
            axes[0].set_xlabel("")
            fig.tight_layout()
        plt.show()
        plot_tile_grid(r.output)
        plt.show()
        for name, player in tile_players(r.output, max_tiles=max_players):
            display(Markdown(f"`{name}`"), player)


def plot_mid_side(folder, index: int | None = None):
    """A stereo song's mid and side tiles of one span side by side, each on its own codec's
    scale (the side's floor is 20 dB lower), with a colorbar each.

    Parameters
    ----------
    folder : path-like
        A stereo song folder (``channels="stereo"``).
    index : int, optional
        The tile; default the middle one.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    folder = Path(folder)
    man = require_manifest(folder)
    params = manifest_params(man)
    if params.channels != "stereo":
        raise BadParameterError(f"{folder}: a mono song has no side tiles (encode with "
                                f"channels='stereo')")
    tiles = man["tiles"]
    i = len(tiles) // 2 if index is None else int(index)
    if not 0 <= i < len(tiles):
        raise BadParameterError(f"tile index {index} is out of range: {folder.name} has "
                                f"{len(tiles)} tiles")
    mid = folder / tiles[i]["file"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, path, codec, label in ((axes[0], mid, params.tile_codec(), "mid (L+R)/2"),
                                   (axes[1], side_tile_of(mid), params.side_codec(),
                                    "side (L-R)/2")):
        plot_tile(read_tile(path, warn=False).pixels, codec, ax=ax, title=f"{path.name}: {label}",
                  colorbar=True)
    fig.tight_layout()
    return fig
