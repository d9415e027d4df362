"""Batch jobs: encode songs to tiles, with resume and failure reports (decoding: :mod:`.decoding`).

Every output is written atomically; a song counts as finished only once its
``manifest.json`` is in place, so an interrupted batch resumes where it
stopped and a re-run skips finished songs.  One bad file never stops a batch:
its error is collected and reported at the end.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .audio_io import AudioError, AudioStream, find_audio_files
from .codec import encode_stream
from .errors import OutputConflictError
from .manifest import MANIFEST_NAME, manifest_params, read_manifest, write_manifest
from .params import CodecParams
from .paths import song_id
from .tile_io import TileImageError, read_tile_metadata, tile_name, write_tile

__all__ = ["SongResult", "BatchResult", "failure_lines", "encode_song", "encode_batch",
           "OutputExistsError", "song_ids"]

TILE_FORMAT = "wavdiff-tile"


class OutputExistsError(OutputConflictError):
    """A song's output already exists and was made differently; the message says what to do."""


def failure_lines(failures) -> list[str]:
    """``FAILED ...`` lines for ``(path, message)`` pairs; the path is left out when the message names it."""
    return [f"  FAILED {msg}" if str(path) in msg else f"  FAILED {path}: {msg}" for path, msg in failures]


@dataclass
class SongResult:
    """What happened to one song."""

    song: str
    source: str
    output: str
    status: str                      # "encoded", "skipped", "decoded"
    n_tiles: int = 0
    n_samples: int = 0
    sample_rate: int = 0
    seconds: float = 0.0             # wall time
    clipped_high: int = 0
    below_floor: int = 0
    warnings: list = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate if self.sample_rate else 0.0


@dataclass
class BatchResult:
    """Results of a batch: finished songs, and failures with their reasons."""

    results: list = field(default_factory=list)
    failures: list = field(default_factory=list)   # (path, message)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """Human-readable summary, failures last."""
        made = [r for r in self.results if r.status != "skipped"]
        skipped = [r for r in self.results if r.status == "skipped"]
        lines = [f"{len(made)} song(s) processed, {len(skipped)} already done (skipped), "
                 f"{len(self.failures)} failed"]
        return "\n".join(lines + failure_lines(self.failures))

    def raise_if_failed(self):
        """Raise ``RuntimeError`` listing every failure, if any."""
        if self.failures:
            raise RuntimeError(self.summary())

    def table(self):
        """Results as a pandas DataFrame (one row per song)."""
        import pandas as pd
        rows = [{"song": r.song, "status": r.status, "tiles": r.n_tiles,
                 "seconds of audio": round(r.duration, 2), "wall s": round(r.seconds, 2),
                 "clipped high": r.clipped_high, "below floor": r.below_floor, "output": r.output}
                for r in self.results]
        rows += [{"song": Path(p).name, "status": "FAILED", "output": m} for p, m in self.failures]
        return pd.DataFrame(rows)


def song_ids(files) -> dict[Path, str]:
    """Song id for each file; files whose stems collide get their parent folder name prefixed."""
    files = [Path(f) for f in files]
    base = {f: song_id(f) for f in files}
    counts: dict[str, int] = {}
    for s in base.values():
        counts[s] = counts.get(s, 0) + 1
    out = {}
    for f, s in base.items():
        out[f] = s if counts[s] == 1 else song_id(f.parent.name + "__" + f.stem)
    if len(set(out.values())) != len(out):
        dup = sorted(s for s in out.values() if list(out.values()).count(s) > 1)
        raise ValueError(f"several input files map to the same song name(s) {dup}; rename them")
    return out


def _tile_metadata(params: CodecParams, song: str, source: Path, tile) -> dict:
    s = tile.span
    return {"format": TILE_FORMAT, "version": 1, "wavdiff_version": __version__,
            "codec": params.to_dict(), "song": song, "source": source.name,
            "tile_index": s.index, "start": s.start, "end": s.end, "stop": s.stop, "pad": s.pad,
            "is_last": tile.is_last, "start_seconds": s.start / params.sample_rate,
            "end_seconds": s.end / params.sample_rate}


def _same_codec(manifest: dict, params: CodecParams) -> bool:
    try:
        return manifest_params(manifest) == params
    except (KeyError, TypeError, ValueError):
        return False


def encode_song(path, output, *, params: CodecParams | None = None, song: str | None = None,
                overwrite: bool = False, png_compression: int = 0, progress=None) -> SongResult:
    """Encode one audio file into ``output/<song>/<song>_<index:04d>.png`` plus ``manifest.json``.

    Parameters
    ----------
    path : path-like
        Audio file.
    output : path-like
        Root folder; the song gets its own sub-folder.
    params : CodecParams, optional
        Codec settings (default ``CodecParams()``).
    song : str, optional
        Song id; default :func:`wavdiff_utils.paths.song_id` of the file name.
    overwrite : bool
        Re-encode a finished song even if it was made with other parameters.
    png_compression : int
        zlib level 0-9 of the PNGs; 0 (default) is fastest, 9 saves ~7-10% of disk.
    progress : callable, optional
        Called with the number of tiles written after each tile.

    Returns
    -------
    SongResult
        ``status="skipped"`` when the song was already finished with the same parameters.

    Raises
    ------
    AudioError
        Unreadable, empty, silent or too-short audio (the message names the file).
    OutputExistsError
        The song's folder holds tiles made with other parameters and ``overwrite`` is False.
    """
    params = params or CodecParams()
    path = Path(path)
    song = song or song_id(path)
    folder = Path(output) / song
    t0 = time.perf_counter()
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is not None and not overwrite:
        files_ok = all((folder / t["file"]).is_file() for t in manifest["tiles"])
        if _same_codec(manifest, params) and files_ok and manifest.get("source_name") == path.name:
            return SongResult(song, str(path), str(folder), "skipped", manifest["n_tiles"],
                              manifest["n_samples"], params.sample_rate, 0.0,
                              manifest.get("clipped_high", 0), manifest.get("below_floor", 0))
        if not _same_codec(manifest, params):
            raise OutputExistsError(
                f"{folder}: already holds tiles of {manifest.get('source_name')!r} made with other "
                f"codec parameters ({manifest_params(manifest).describe()}); pass overwrite=True to "
                f"replace them, or choose another output folder")
        if manifest.get("source_name") != path.name:
            raise OutputExistsError(
                f"{folder}: already holds tiles of another file ({manifest.get('source_name')!r}); "
                f"rename {path.name!r} or choose another output folder")

    stream = AudioStream(path, sample_rate=params.sample_rate, mono=True)
    partial = Path(output) / f".{song}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    tiles_meta = []
    peak = 0.0
    clipped = below = 0
    n_samples = 0

    def counted(blocks):
        nonlocal peak, n_samples
        for b in blocks:
            if len(b):
                peak = max(peak, float(np.max(np.abs(b))))
                n_samples += len(b)
            yield b

    try:
        with stream:
            for tile in encode_stream(counted(stream), params):
                name = tile_name(song, tile.span.index)
                meta = _tile_metadata(params, song, path, tile)
                target = partial / name
                # resume: a tile already written by an interrupted run is kept if identical
                if not (target.is_file() and read_tile_metadata(target) == meta):
                    write_tile(target, tile.pixels, meta, compression=png_compression)
                clipped += tile.stats.clipped_high
                below += tile.stats.below_floor
                tiles_meta.append({"file": name, **tile.span.to_dict()})
                if progress:
                    progress(1)
        if n_samples == 0:
            raise AudioError(path, "contains no audio samples (empty file)")
        if n_samples < params.n_fft:
            raise AudioError(path, f"is too short: {n_samples} samples "
                                   f"({1000 * n_samples / params.sample_rate:.1f} ms) at "
                                   f"{params.sample_rate} Hz; at least n_fft={params.n_fft} needed")
        if peak == 0.0:
            raise AudioError(path, "is silent (every sample is zero)")
    except Exception:
        # an unusable file leaves nothing behind; an interruption (KeyboardInterrupt) keeps
        # the finished tiles of the partial folder for the next run to reuse
        shutil.rmtree(partial, ignore_errors=True)
        raise
    warn = []
    if clipped:
        warn.append(f"{clipped} magnitude values above db_max={params.db_max:g} dB were clipped")
    if stream.source_rate != params.sample_rate:
        warn.append(f"resampled from {stream.source_rate} Hz to {params.sample_rate} Hz")
    manifest = {
        "song": song, "source": str(path.resolve()), "source_name": path.name,
        "source_sample_rate": stream.source_rate, "source_channels": stream.channels,
        "codec": params.to_dict(), "codec_description": params.describe(),
        "n_samples": n_samples, "duration": n_samples / params.sample_rate,
        "n_tiles": len(tiles_meta), "peak": peak, "clipped_high": clipped, "below_floor": below,
        "tiles": tiles_meta, "wavdiff_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    old = read_manifest(folder)
    if old is not None:                       # overwrite: remove the old song's tiles first
        (folder / MANIFEST_NAME).unlink()
        for t in old["tiles"]:
            (folder / t["file"]).unlink(missing_ok=True)
    for t in tiles_meta:
        os.replace(partial / t["file"], folder / t["file"])
    write_manifest(folder, manifest)          # last: marks the song finished
    shutil.rmtree(partial, ignore_errors=True)
    return SongResult(song, str(path), str(folder), "encoded", len(tiles_meta), n_samples,
                      params.sample_rate, time.perf_counter() - t0, clipped, below, warn)


def _encode_worker(args):
    path, output, params, song, overwrite, png_compression = args
    try:
        return encode_song(path, output, params=params, song=song, overwrite=overwrite,
                           png_compression=png_compression), None
    except (AudioError, OutputExistsError, TileImageError, ValueError, OSError) as exc:
        return None, (str(path), str(exc))


def encode_batch(input, output, *, params: CodecParams | None = None, overwrite: bool = False,
                 workers: int = 1, png_compression: int = 0, progress: bool = True) -> BatchResult:
    """Encode a file or every audio file under a folder (recursive).

    Parameters
    ----------
    input : path-like
        Audio file or folder.
    output : path-like
        Root folder of the tiles (created).
    params : CodecParams, optional
    overwrite : bool
        Replace songs already encoded with other parameters.
    workers : int
        Worker processes (songs are encoded in parallel; 1 = in this process).
    png_compression : int
        zlib level 0-9 of the PNGs (0 = fastest, the default).
    progress : bool
        Show a progress bar over songs.

    Returns
    -------
    BatchResult
        Failures are collected, not raised; call ``raise_if_failed()`` to stop on them.
    """
    from tqdm.auto import tqdm

    params = params or CodecParams()
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    files = find_audio_files(input)
    ids = song_ids(files)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    batch = BatchResult()
    jobs = [(f, output, params, ids[f], overwrite, png_compression) for f in files]
    bar = tqdm(total=len(jobs), desc="encode", unit="song", disable=not progress)
    try:
        if int(workers) == 1 or len(jobs) == 1:
            for job in jobs:
                bar.set_postfix_str(job[0].name[:40])
                res, fail = _encode_worker(job)
                batch.results.append(res) if res else batch.failures.append(fail)
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=int(workers)) as pool:
                futures = [pool.submit(_encode_worker, job) for job in jobs]
                for fut in as_completed(futures):
                    res, fail = fut.result()
                    batch.results.append(res) if res else batch.failures.append(fail)
                    bar.update(1)
                order = {str(f): i for i, f in enumerate(files)}
                batch.results.sort(key=lambda r: order[r.source])
    finally:
        bar.close()
    return batch
