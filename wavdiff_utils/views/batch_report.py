"""The per-batch report (``notebooks/06_batch_report.ipynb``): what a pipeline batch made, song by song.

:func:`show_batch_report` is the whole notebook: a summary of the batch, a
table of its songs, then per song a strip of its tiles, the caption of every
tile, the round trip of one tile decoded alone and players of the first tiles.
The figures and players come from :func:`song_strip`, :func:`tile_round_trip`,
:func:`~wavdiff_utils.views.encoded.tile_audio` (a stereo song's players play left and right)
and :func:`audio_player`.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from ..errors import BadParameterError, MissingInputError
from ..codec.metrics import lsd_db, snr_db
from ..codec.transform import decode_array, tile_magnitude_db
from ..dataset.eight_bit import eight_bit_cost
from ..dataset.export import METADATA_NAME, read_metadata
from ..io.audio import load_audio
from ..io.manifest import manifest_params, read_manifest, require_manifest
from ..io.tiles import read_tile, side_tile_of
from ..paths import display_path, resolve
from ..results import SUMMARY_NAME
from .encoded import tile_audio
from .plots import audio_player

__all__ = ["show_batch_report", "batch_overview", "song_strip", "tile_round_trip"]


def batch_overview(folder) -> tuple[str, list[dict], dict]:
    """Markdown lines about a batch folder, its ``metadata.jsonl`` rows, and its run record.

    Raises
    ------
    FileNotFoundError
        ``folder`` holds no ``metadata.jsonl``.
    """

    folder = Path(folder)
    rows = read_metadata(folder)
    record = folder / SUMMARY_NAME
    batch = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}
    first = folder / rows[0]["file_name"]
    params = manifest_params(read_manifest(first.parent))
    seconds = sum(r["end_seconds"] - r["start_seconds"] for r in rows)
    sources = sorted({r.get("caption_source") for r in rows if r.get("caption_source")})
    lines = [f"- **{len({r['song'] for r in rows})}** song(s), **{len(rows)}** tiles, "
             f"**{sum(bool(r['text']) for r in rows)}** with a caption"
             f"{' (' + ', '.join(sources) + ')' if sources else ''}, "
             f"**{seconds / 60:.1f} min** of audio, in `{display_path(folder)}`",
             f"- codec: {params.describe()}"]
    if batch:
        lines.append(f"- last run: input `{display_path(batch.get('input', ''))}`, captioner **{batch.get('captioner')}**, "
                     f"finished {batch.get('finished')}, steps " + ", ".join(
                         f"{k} {v:.1f} s" for k, v in batch.get("seconds", {}).items()))
        if batch.get("caption_notice"):
            lines.append(f"- {batch['caption_notice']}")
        lines += [f"- **FAILED** `{f['path']}`: {f['message']}" for f in batch.get("failures", [])]
        lines += _warning_lines(batch)
    cost = eight_bit_cost(first)
    lines.append(f"- an 8-bit reader (Pillow, as most trainers use) would cost on `{first.name}`: "
                 f"pixel PSNR {cost['psnr_db']:.1f} dB, magnitude error up to "
                 f"{cost['magnitude_error_max_db']:.2f} dB, audio SNR {cost['audio_snr_db']:.1f} dB "
                 f"against the 16-bit read; load with `wavdiff_utils.dataset.load_tile_dataset` "
                 f"to keep all 16 bits")
    return "\n".join(lines), rows, batch


def _warning_lines(batch: dict) -> list[str]:
    """The run's warnings in the words the terminal printed: each song's (truncated stream,
    input at full scale, resampled, ...), then the run's own."""
    songs = [f"- **warning** `{s['song']}` ({Path(s.get('source', '')).name}): {w}"
             for s in batch.get("songs", []) for w in s.get("warnings", [])]
    return songs + [f"- **warning** {w}" for w in batch.get("warnings", [])]


def _caption_table(tiles: list[dict]) -> str:
    body = "".join(f"<tr><td>{r['tile_index']:04d}</td><td>{r['start_seconds']:.2f}-"
                   f"{r['end_seconds']:.2f}</td><td>{html.escape(r.get('caption_source') or '')}</td>"
                   f"<td style='text-align:left'>{html.escape(r['text']) or '<i>no caption</i>'}"
                   f"</td></tr>" for r in tiles)
    return ("<table><tr><th>tile</th><th>seconds</th><th>source</th>"
            f"<th style='text-align:left'>caption</th></tr>{body}</table>")


def show_batch_report(output, *, max_songs: int = 20, max_tiles: int = 16,
                      max_players: int = 2, snr_tile: int = -1) -> None:
    """Display the report of one pipeline batch in a notebook (what ``06_batch_report`` shows).

    Parameters
    ----------
    output : path-like
        The batch's output folder (the dataset ``python -m wavdiff_utils`` made).
    max_songs : int
        Songs shown in detail (the table lists every song).
    max_tiles : int
        Tiles per song strip.
    max_players : int
        Audio players per song (tiles decoded alone, embedded as MP3).
    snr_tile : int
        Tile whose round trip is measured; -1 picks the middle tile.

    Raises
    ------
    FileNotFoundError
        ``output`` holds no dataset (:func:`wavdiff_utils.jobs.ensure_dataset` builds one).
    """
    import pandas as pd
    from IPython.display import Markdown, display

    folder = resolve(output)
    if not (folder / METADATA_NAME).is_file():
        raise MissingInputError(f"{folder} holds no {METADATA_NAME}; run python -m wavdiff_utils first")
    text, rows, batch = batch_overview(folder)
    display(Markdown(text))
    songs: dict[str, list] = {}
    for r in rows:
        songs.setdefault(r["song"], []).append(r)
    status = {s["song"]: s["status"] for s in batch.get("songs", [])}
    display(pd.DataFrame([{"song": s, "status": status.get(s, ""), "tiles": len(t),
                           "captioned": sum(bool(r["text"]) for r in t),
                           "seconds": round(t[-1]["end_seconds"], 2)} for s, t in songs.items()]))
    display(Markdown("## Songs\nTile strip (magnitude in dB, tile borders in white; a stereo "
                     "song's side tiles in a second strip), the caption of every tile, the round "
                     "trip of one tile decoded alone against the source audio, and players of the "
                     "first tiles, each decoded from its tile alone (stereo: mid and side)."))
    for song, tiles in list(songs.items())[:max_songs]:
        display(Markdown(f"### {song}"))
        _show_song(folder / Path(tiles[0]["file_name"]).parent, tiles, max_tiles=max_tiles,
                   max_players=max_players, snr_tile=snr_tile)
    if len(songs) > max_songs:
        display(Markdown(f"*{len(songs) - max_songs} more song(s) in the table above, not drawn "
                         f"(max_songs={max_songs}).*"))


def _show_song(d: Path, tiles: list[dict], *, max_tiles: int, max_players: int,
               snr_tile: int) -> None:
    """One song of the batch report: its strip (and side strip), captions, round trip, players."""
    import matplotlib.pyplot as plt
    from IPython.display import HTML, Markdown, display

    man = require_manifest(d)
    p = manifest_params(man)
    for channel in ("mid", "side") if p.channels == "stereo" else ("mid",):
        song_strip(d, max_tiles=max_tiles, channel=channel)    # the side on its own, lower, scale
        plt.show()
    display(HTML(_caption_table(tiles)))
    rt = tile_round_trip(d, snr_tile)
    span = (f"tile {rt['tile']:04d} ({rt['start_seconds']:.2f}-{rt['end_seconds']:.2f} s) "
            f"decoded alone{' (the mid, against the mono mix)' if rt['stereo'] else ''}")
    display(Markdown(f"{span}: **SNR {rt['snr_db']:.1f} dB**, LSD {rt['lsd_db']:.3f} dB against "
                     f"the source" if rt["snr_db"] is not None else f"{span}: {rt['error']}"))
    for t in man["tiles"][:max_players]:
        y = tile_audio(d, t, p)
        display(audio_player(y, p.sample_rate,
                             label=t["file"] + (" + side (stereo)" if y.ndim == 2 else "")))


def song_strip(folder, *, max_tiles: int = 16, height: int = 160, cmap: str = "magma",
               channel: str = "mid"):
    """A song's tiles side by side as one spectrogram strip (magnitude in dB), tile borders marked.

    Parameters
    ----------
    folder : path-like
        A song folder with ``manifest.json``.
    max_tiles : int
        Tiles drawn (the first ones).
    height : int
        Pixels per tile edge in the strip (tiles are shrunk with area averaging).
    cmap : str
        Matplotlib colour map.
    channel : {"mid", "side"}
        A stereo song's side tiles (``<song>_<index>.side.png``) draw on their own scale, the
        side codec's (a floor 20 dB lower); the mid, a mono song's only tiles, is the default.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import cv2
    import matplotlib.pyplot as plt

    folder = Path(folder)
    man = require_manifest(folder)
    if channel not in ("mid", "side"):
        raise BadParameterError(f"channel must be 'mid' or 'side', got {channel!r}")
    params = manifest_params(man)
    if channel == "side" and params.channels != "stereo":
        raise BadParameterError(f"{folder}: a mono song has no side tiles; channel must be 'mid'")
    label = f" {channel}" if params.channels == "stereo" else ""
    params = params.side_codec() if channel == "side" else params.tile_codec()
    tiles = man["tiles"][:max(1, int(max_tiles))]
    parts = []
    for t in tiles:
        path = folder / t["file"]
        path = side_tile_of(path) if channel == "side" else path
        db = tile_magnitude_db(read_tile(path, warn=False).pixels, params)
        parts.append(cv2.resize(db.astype(np.float32), (height, height), interpolation=cv2.INTER_AREA))
    strip = np.concatenate(parts, axis=1)
    sr = params.sample_rate
    t_end = tiles[-1]["stop"] / sr
    top = params.sample_rate / 2 * (params.bins - 1) / (params.n_fft / 2) / 1000
    fig, ax = plt.subplots(figsize=(min(16, 1.0 + 1.6 * len(tiles)), 2.4))
    im = ax.imshow(strip, origin="lower", aspect="auto", cmap=cmap, vmin=params.db_min,
                   vmax=params.db_max,
                   extent=[tiles[0]["start"] / sr, t_end, 0, top], interpolation="antialiased")
    for t in tiles[1:]:
        ax.axvline(t["start"] / sr, color="w", lw=0.8)
    for t in tiles:
        ax.text(t["start"] / sr, top, f" {t['index']:04d}", color="w", va="top", fontsize=7)
        if t["pad"]:
            ax.axvspan(t["end"] / sr, t["stop"] / sr, color="0.75", alpha=0.6, lw=0)
            ax.text(t["stop"] / sr, 0, "padding ", color="k", ha="right", va="bottom", fontsize=7)
    ax.set_xlabel("seconds")
    ax.set_ylabel("kHz")
    more = len(man["tiles"]) - len(tiles)
    ax.set_title(f"{man['song']}{label}: {man['n_tiles']} tiles"
                 + (f" (first {len(tiles)})" if more else ""), fontsize=9)
    fig.colorbar(im, ax=ax, label="dB", pad=0.01)
    fig.tight_layout()
    return fig


def tile_round_trip(folder, index: int | None = None) -> dict:
    """Decode one tile alone and compare it with the source audio it was made from.

    Parameters
    ----------
    folder : path-like
        A song folder with ``manifest.json``.
    index : int, optional
        Tile index; default the middle tile.

    Returns
    -------
    dict
        ``tile``, ``start_seconds``, ``end_seconds``, ``snr_db`` and ``lsd_db``
        (``None`` with ``error`` set when the source file is gone), ``decoded``
        (the samples) and ``sample_rate``.
    """

    folder = Path(folder)
    man = require_manifest(folder)
    params = manifest_params(man)
    tiles = man["tiles"]
    i = len(tiles) // 2 if index is None or index < 0 else int(index)
    if not 0 <= i < len(tiles):
        raise BadParameterError(f"tile index {index} is out of range: {folder.name} has {len(tiles)} tiles")
    t = tiles[i]
    sr = params.sample_rate
    y = decode_array([read_tile(folder / t["file"], warn=False).pixels], params.tile_codec(),
                     n_samples=t["end"] - t["start"])
    out = {"tile": i, "file": t["file"], "start_seconds": t["start"] / sr,
           "end_seconds": t["end"] / sr, "snr_db": None, "lsd_db": None, "error": "",
           "decoded": y, "sample_rate": sr, "stereo": params.channels == "stereo"}
    src = Path(man.get("source", ""))
    if not src.is_file():
        out["error"] = f"source {str(src)!r} is not there any more; nothing to compare with"
        return out
    ref = load_audio(src, sample_rate=sr)[t["start"]:t["end"]]
    out["snr_db"] = snr_db(ref, y)
    out["lsd_db"] = lsd_db(ref, y)
    return out
