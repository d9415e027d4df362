"""Batch jobs: encode songs to tiles, with resume and failure reports (decoding: :mod:`.decoding`).

Every output is written atomically; a song counts as finished only once its
``manifest.json`` is in place, so an interrupted batch resumes where it
stopped and a re-run skips finished songs.  One bad file never stops a batch:
its error is collected and reported at the end.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..codec.params import CodecParams
from ..codec.threads import prefetched, split_pairs, tile_threads, usable_cores
from ..codec.transform import encode_stream
from ..errors import BadParameterError, OutputConflictError, WavdiffError
from ..io.audio import AudioStream, AudioUnreadableError, find_audio_files
from ..io.locking import output_lock
from ..io.manifest import MANIFEST_NAME, manifest_params, read_manifest, same_codec, write_manifest
from ..io.tiles import read_tile_metadata, side_tile_name, tile_metadata, tile_name, write_tile
from ..paths import atomic_path, remove_temporaries, song_id, song_ids, writing
from ..results import BatchResult, SongResult
from .levels import Levels, check_levels
from .workers import make_pool, native_stderr_silenced, stop_pool

__all__ = ["encode_song", "encode_one", "encode_batch", "OutputExistsError", "capped_workers",
           "check_complete", "source_state", "verify"]


class OutputExistsError(OutputConflictError):
    """A song's output already exists and was made differently; the message says what to do."""


def capped_workers(workers: int, n_jobs: int | None = None) -> tuple[int, str]:
    """``workers`` capped at the usable cores (and at ``n_jobs``), with a note when capped."""
    cores = usable_cores()
    if workers > cores:
        return min(cores, n_jobs or cores), (f"--workers {workers} capped at {cores}, the number "
                                             f"of CPU cores this run may use")
    return min(workers, n_jobs) if n_jobs else workers, ""


def check_complete(result: SongResult) -> str:
    """``""`` when the song's folder holds its manifest and every tile it lists, else what is missing."""
    folder = Path(result.output)
    try:
        man = read_manifest(folder)
    except ValueError as exc:
        return str(exc)
    if man is None:
        return f"{folder}: incomplete output: manifest.json is missing; run again to redo the song"
    missing = [f for t in man["tiles"] for f in _tile_files(t) if not (folder / f).is_file()]
    if missing:
        return (f"{folder}: incomplete output: {len(missing)} of {len(man['tiles'])} tile(s) "
                f"missing (first {missing[0]}); run again to redo the song")
    return ""


def _tile_files(entry: dict) -> list[str]:
    """The files of one manifest tile entry: its tile, and its side tile for stereo songs."""
    return [entry["file"]] + ([entry["side_file"]] if entry.get("side_file") else [])


def source_state(path) -> dict:
    """Size and modification time of a source file (what a re-run compares first)."""
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise AudioUnreadableError(path, f"cannot be read ({exc.strerror or exc})") from None
    return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _hash_source(path: Path, params: CodecParams) -> str:
    """SHA-256 of the decoded samples (the hash an encode records), by a decode-only pass."""
    with AudioStream(path, sample_rate=params.sample_rate, mono=True) as stream:
        for _ in stream._checked_blocks():
            pass
        return stream.content_hash


def _source_changed(manifest: dict, path: Path, params: CodecParams) -> bool:
    """Has the source changed since ``manifest`` was written?  Size first, then mtime and hash."""
    if "source_size" not in manifest:       # a manifest from before source tracking: trusted
        return False
    now = source_state(path)
    if now["source_size"] != manifest["source_size"]:
        return True
    if now["source_mtime_ns"] == manifest.get("source_mtime_ns"):
        return False
    old = manifest.get("source_hash")
    return not old or _hash_source(path, params) != old


def _invalidate_derived(folder: Path, output: Path, song: str) -> None:
    """Remove a song's captions, caption records and dataset rows (its source changed)."""
    for f in folder.glob("*.txt"):
        f.unlink(missing_ok=True)
    for f in folder.glob("captions_*.json"):
        f.unlink(missing_ok=True)
    meta = output / "metadata.jsonl"

    def of_song(line: str) -> bool:
        try:
            return str(json.loads(line).get("file_name", "")).startswith(f"{song}/")
        except (ValueError, AttributeError):
            return False                  # not a row of ours: the export rewrites it anyway

    if meta.is_file():
        lines = meta.read_text(encoding="utf-8").splitlines()
        keep = [ln for ln in lines if not of_song(ln)]
        if len(keep) != len(lines):
            with atomic_path(meta) as tmp:
                tmp.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")


@dataclass(frozen=True)
class _SongJob:
    """One song to encode: its source, output root, song id and codec settings."""

    path: Path
    output: Path
    song: str
    params: CodecParams

    @property
    def folder(self) -> Path:
        """The song's finished folder, ``output/<song>``."""
        return self.output / self.song

    @property
    def partial(self) -> Path:
        """The folder the tiles are written to before the song is published."""
        return self.output / f".{self.song}.partial"


@dataclass(frozen=True)
class _StreamedTiles:
    """What streaming a song gave: its tile list, sample count, peak and clipping counts."""

    tiles: list
    n_samples: int
    peak: float
    clipped: int
    below: int
    side_peak: float | None = None       # stereo songs: the side's peak and clipped values
    side_clipped: int = 0
    channel_peak: float | None = None    # stereo songs: the louder of left's and right's peaks


def _skip_finished(job: _SongJob, manifest: dict) -> SongResult:
    """Record the source's state in a finished song's manifest, tidy up, and report it skipped."""
    folder, params = job.folder, job.params
    state = source_state(job.path)
    if any(manifest.get(k) != v for k, v in state.items()):
        # an older manifest (or a touched file with the same samples): record the
        # source's state without re-encoding
        with writing(folder / MANIFEST_NAME):
            write_manifest(folder, {**{k: v for k, v in manifest.items()
                                       if k not in ("format", "version")}, **state})
    # left by a run killed just after it published the song
    shutil.rmtree(job.partial, ignore_errors=True)
    remove_temporaries(folder, [MANIFEST_NAME])
    return SongResult(job.song, str(job.path), str(folder), "skipped", manifest["n_tiles"],
                      manifest["n_samples"], params.sample_rate, 0.0,
                      manifest.get("clipped_high", 0), manifest.get("below_floor", 0),
                      list(manifest.get("warnings", [])))


def _check_existing(job: _SongJob, manifest: dict) -> tuple[SongResult | None, bool]:
    """Skip a finished song or refuse a folder made differently; else say if the source changed."""
    folder, path, params = job.folder, job.path, job.params
    files_ok = all((folder / f).is_file() for t in manifest["tiles"] for f in _tile_files(t))
    finished = (same_codec(manifest, params) and files_ok
                and manifest.get("source_name") == path.name)
    changed = _source_changed(manifest, path, params) if finished else False
    if finished and not changed:
        return _skip_finished(job, manifest), False
    if not same_codec(manifest, params):
        raise OutputExistsError(
            f"{folder}: already holds tiles of {manifest.get('source_name')!r} made with other "
            f"codec parameters ({manifest_params(manifest).differences(params)}: there vs asked); "
            f"pass overwrite=True (--overwrite on the command line) to replace them, or choose "
            f"another output folder")
    if manifest.get("source_name") != path.name:
        raise OutputExistsError(
            f"{folder}: already holds tiles of another file ({manifest.get('source_name')!r}); "
            f"rename {path.name!r} or choose another output folder")
    return None, changed


def _prepare_partial(job: _SongJob) -> dict:
    """Make the partial folder, emptied if it holds tiles of another version of the source."""
    state = source_state(job.path)
    partial = job.partial
    stamp = partial / "source.json"
    with writing(partial):
        try:
            same = json.loads(stamp.read_text(encoding="utf-8")) == state
        except (OSError, ValueError):
            same = False
        if partial.is_dir() and not same:      # tiles of another version of the source
            shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True, exist_ok=True)
        with atomic_path(stamp) as tmp:
            tmp.write_text(json.dumps(state), encoding="utf-8")
    return state


def _write_one_tile(target: Path, pixels, meta: dict, compression, *, final: Path) -> None:
    """Write one tile PNG into the song's partial folder; an OSError becomes
    :class:`UnwritableOutputError` naming ``final``, where the tile is published."""
    with writing(final):
        write_tile(target, pixels, meta, compression=compression)


def _submit_tile(job: _SongJob, writer: ThreadPoolExecutor, pending: deque, tile, name: str,
                 meta: dict, png_compression) -> None:
    """Hand one tile to ``writer`` unless an interrupted run already wrote it identically."""
    target = job.partial / name
    if target.is_file() and read_tile_metadata(target) == meta:
        return
    if len(pending) >= 2:                      # at most two tiles waiting to be written
        pending.popleft().result()
    pending.append(writer.submit(_write_one_tile, target, tile.pixels, meta, png_compression,
                                 final=job.folder / name))


def _write_tiles(job: _SongJob, tiles, writer: ThreadPoolExecutor, *, png_compression,
                 progress) -> tuple[list, list]:
    """Hand each tile (a ``(mid, side)`` pair for stereo) to ``writer``, keeping those already
    written; return the manifest's tile list and the clip counts (mid, then side)."""
    tiles_meta, counts, pending = [], [0, 0, 0], deque()     # clipped, below, side clipped
    for item in tiles:
        tile, side = item if job.params.stereo else (item, None)
        name = tile_name(job.song, tile.span.index)
        meta = tile_metadata(job.params, job.song, tile.span, source=job.path.name,
                             is_last=tile.is_last)
        _submit_tile(job, writer, pending, tile, name, meta, png_compression)
        entry = {"file": name, **tile.span.to_dict()}
        if side is not None:
            entry["side_file"] = side_tile_name(job.song, side.span.index)
            side_meta = tile_metadata(job.params, job.song, side.span, source=job.path.name,
                                      is_last=side.is_last, channel="side")
            _submit_tile(job, writer, pending, side, entry["side_file"], side_meta, png_compression)
            counts[2] += side.stats.clipped_high
        counts[0] += tile.stats.clipped_high
        counts[1] += tile.stats.below_floor
        tiles_meta.append(entry)
        if progress:
            progress(1)
    while pending:
        pending.popleft().result()
    return tiles_meta, counts


def _encoded(job: _SongJob, blocks, levels: Levels, side_levels: Levels, threads: int):
    """The song's tiles in order: EncodedTile for mono, ``(mid, side)`` pairs for stereo (two
    encoders fed in step from one read of the file)."""
    codec = job.params.tile_codec()
    if not job.params.stereo:
        return encode_stream(levels.counted(blocks), codec, threads=threads)
    mids, sides = split_pairs(levels.counted_pairs(blocks))
    return zip(encode_stream(levels.counted(mids), codec, threads=threads),
               encode_stream(side_levels.counted(sides), job.params.side_codec(),
                             threads=threads),
               strict=True)


def _stream_tiles(job: _SongJob, stream: AudioStream, *, png_compression, progress,
                  threads) -> _StreamedTiles:
    """Encode the stream into tiles in the partial folder; an unusable file leaves nothing."""
    levels, side_levels = Levels(), Levels()
    # three stages overlap: audio decoding (libsndfile, soxr) in one thread, the STFT and pixel
    # maths here, PNG encoding and writing (OpenCV) in another; all three release the GIL
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wavdiff-png")
    try:
        with stream, prefetched(stream) as blocks:
            tiles = _encoded(job, blocks, levels, side_levels, threads or tile_threads(spare=1))
            tiles_meta, counts = _write_tiles(job, tiles, writer, png_compression=png_compression,
                                              progress=progress)
        check_levels(job.path, job.params, levels, side_levels)
    except Exception:
        # an unusable file leaves nothing behind; an interruption (KeyboardInterrupt) keeps
        # the finished tiles of the partial folder for the next run to reuse
        writer.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(job.partial, ignore_errors=True)
        raise
    finally:                 # an interruption still finishes the tiles already handed over
        writer.shutdown(wait=True)
    return _StreamedTiles(tiles_meta, levels.n_samples, levels.peak, counts[0], counts[1],
                          side_levels.peak if job.params.stereo else None, counts[2],
                          levels.channel_peak if job.params.stereo else None)


def _song_warnings(stream: AudioStream, done: _StreamedTiles, params: CodecParams) -> list:
    """The warnings of an encoded song: truncation, full scale, clipping, resampling."""
    warn = []
    if stream.truncated:
        warn.append(stream.truncated)
    peak, which = ((done.peak, "") if done.channel_peak is None else
                   (done.channel_peak, ", the louder of left and right"))
    if peak >= 1.0:
        warn.append(f"input reaches full scale (peak {peak:.3f}{which}): it may be clipped")
    if done.clipped:
        warn.append(f"{done.clipped} magnitude values above db_max={params.db_max:g} dB "
                    f"were clipped")
    if stream.source_rate != params.sample_rate:
        warn.append(f"resampled from {stream.source_rate} Hz to {params.sample_rate} Hz")
    if params.stereo and stream.channels == 1:
        warn.append("the source is mono: its side tiles are silent (channels: stereo)")
    if params.stereo and done.side_clipped:
        warn.append(f"{done.side_clipped} side magnitude values above db_max={params.db_max:g} dB "
                    f"were clipped")
    return warn


def _song_manifest(job: _SongJob, stream: AudioStream, done: _StreamedTiles,
                   state: dict) -> dict:
    """The manifest of an encoded song, its warnings included."""
    path, params, n_samples = job.path, job.params, done.n_samples
    return {
        "song": job.song, "source": str(path.resolve()), "source_name": path.name,
        "source_sample_rate": stream.source_rate, "source_channels": stream.channels,
        "codec": params.to_dict(), "codec_description": params.describe(),
        "n_samples": n_samples, "duration": n_samples / params.sample_rate,
        "n_tiles": len(done.tiles), "peak": done.peak, "clipped_high": done.clipped,
        "below_floor": done.below, "tiles": done.tiles, "wavdiff_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **state, "source_hash": stream.content_hash,
        "warnings": _song_warnings(stream, done, params),
        **({"side_peak": done.side_peak, "side_clipped_high": done.side_clipped,
            "channel_peak": done.channel_peak} if params.stereo else {}),
    }


def _publish_song(job: _SongJob, manifest: dict, *, changed: bool) -> None:
    """Replace any old output by the partial folder's tiles, writing the manifest last."""
    folder = job.folder
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        old = read_manifest(folder)
        if old is not None:                   # overwrite or changed source: old tiles go first
            (folder / MANIFEST_NAME).unlink()
            for t in old["tiles"]:
                for f in _tile_files(t):
                    (folder / f).unlink(missing_ok=True)
        if old is not None or changed:        # captions and dataset rows of the old audio
            _invalidate_derived(folder, job.output, job.song)
        for t in manifest["tiles"]:
            for f in _tile_files(t):
                os.replace(job.partial / f, folder / f)
        write_manifest(folder, manifest)      # last: marks the song finished
    shutil.rmtree(job.partial, ignore_errors=True)
    remove_temporaries(folder, [MANIFEST_NAME])


def encode_song(path, output, *, params: CodecParams | None = None, song: str | None = None,
                overwrite: bool = False, png_compression: int = 0, progress=None,
                threads: int | None = None) -> SongResult:
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
    png_compression : int or "small"
        zlib level 0-9 of the PNGs, or "small"; 0 (default) is fastest (630 kB per second of
        audio), "small" writes 21% less at about 4.6x the PNG time (measured: see
        :func:`~wavdiff_utils.io.tiles.write_tile`).
    progress : callable, optional
        Called with the number of tiles written after each tile.
    threads : int, optional
        Tiles of this song computed at once (default
        :func:`~wavdiff_utils.jobs.workers.tile_threads` with one core spare: the usable cores less
        one, at least 1; 1 inside a worker pool).  Audio decoding and PNG writing run in two
        more threads beside them.

    Returns
    -------
    SongResult
        ``status="skipped"`` when the song was already finished with the same parameters.

    A finished song is skipped while its source keeps its size and modification
    time, or, when only the time changed, the same samples (their SHA-256, recorded
    while encoding).  A changed source is encoded again and its captions, caption
    records and ``metadata.jsonl`` rows are removed.  Manifests from before source
    tracking are upgraded in place, without encoding again.

    Raises
    ------
    AudioError
        Empty, silent, too-short or undecodable audio (the message names the file);
        :class:`~wavdiff_utils.io.audio.AudioUnreadableError` for a file that cannot be
        opened (permission, FIFO, symlink loop), :class:`~wavdiff_utils.io.audio.AudioNotFiniteError`
        for NaN or infinite samples.
    OutputExistsError
        The song's folder holds tiles made with other parameters and ``overwrite`` is False.
    UnwritableOutputError
        A tile or the manifest cannot be written (no permission, read-only disk, disk full).
    """
    params = params or CodecParams()
    path = Path(path)
    job = _SongJob(path, Path(output), song or song_id(path), params)
    t0 = time.perf_counter()
    manifest = read_manifest(job.folder) if job.folder.is_dir() else None
    changed = False
    if manifest is not None and not overwrite:
        skipped, changed = _check_existing(job, manifest)
        if skipped is not None:
            return skipped
    stream = AudioStream(path, sample_rate=params.sample_rate, mono=True, mid_side=params.stereo)
    state = _prepare_partial(job)
    done = _stream_tiles(job, stream, png_compression=png_compression, progress=progress,
                         threads=threads)
    manifest = _song_manifest(job, stream, done, state)
    _publish_song(job, manifest, changed=changed)
    return SongResult(job.song, str(path), str(job.folder), "encoded", len(done.tiles),
                      done.n_samples, params.sample_rate, time.perf_counter() - t0, done.clipped,
                      done.below, manifest["warnings"])


def _encode_worker(args):
    path, output, params, song, overwrite, png_compression = args
    try:
        return encode_song(path, output, params=params, song=song, overwrite=overwrite,
                           png_compression=png_compression), None
    except (WavdiffError, ValueError, OSError) as exc:
        msg = str(exc)
        return None, (str(path), msg if str(path) in msg or str(output) in msg
                      else f"{path}: {type(exc).__name__}: {msg}")


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

    Raises
    ------
    OutputLockedError
        Another run is writing to ``output`` (the message names its pid and host).
    """
    params = params or CodecParams()
    if int(workers) < 1:
        raise BadParameterError(f"workers must be >= 1, got {workers!r}")
    files = find_audio_files(input)
    ids = song_ids(files)
    output = Path(output)

    with output_lock(output), native_stderr_silenced():     # no mpg123/libpng lines
        remove_temporaries(output, ["metadata.jsonl"])
        return _encode_batch_locked(files, ids, output, params=params, overwrite=overwrite,
                                    workers=int(workers), png_compression=png_compression,
                                    progress=progress)


def _no_progress(queue) -> None:
    """Workers of :func:`encode_batch` report no per-tile progress."""


def _encode_batch_locked(files, ids, output, *, params, overwrite, workers, png_compression,
                         progress) -> BatchResult:
    from tqdm.auto import tqdm

    batch = BatchResult()
    batch.root = output
    workers, note = capped_workers(workers)
    if note:
        batch.notes.append(note)
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
            pool = make_pool(min(workers, len(jobs)), None, _no_progress)
            try:
                futures = {pool.submit(_encode_worker, job): job for job in jobs}
                for fut in as_completed(futures):
                    try:
                        res, fail = fut.result()
                    except Exception as exc:          # a worker died (killed, out of memory)
                        path = futures[fut][0]
                        res, fail = None, (str(path), f"{path}: worker failed: "
                                                      f"{type(exc).__name__}: {exc}")
                    batch.results.append(res) if res else batch.failures.append(fail)
                    bar.update(1)
            except BaseException:
                stop_pool(pool)
                raise
            pool.shutdown(wait=True)
            order = {str(f): i for i, f in enumerate(files)}
            batch.results.sort(key=lambda r: order[r.source])
    finally:
        bar.close()
    verify(batch)
    return batch


def verify(batch: BatchResult) -> BatchResult:
    """Move every result whose folder is not complete on disk to the failures (in place)."""
    kept = []
    for r in batch.results:
        problem = check_complete(r)
        if problem:
            batch.failures.append((r.source, problem))
        else:
            kept.append(r)
    batch.results[:] = kept
    return batch


def encode_one(path, output, *, params: CodecParams, song: str, overwrite: bool = False,
               png_compression=0, progress=None):
    """Encode one song (a local worker process, a Ray task or here) with
    :func:`~wavdiff_utils.jobs.encode.encode_song`; returns ``(result, None)``, or ``(None,
    (path, message))`` when it failed.  ``progress(n)`` is called as tiles are written."""
    try:
        return encode_song(path, output, params=params, song=song, overwrite=overwrite,
                           png_compression=png_compression, progress=progress), None
    except Exception as exc:          # one bad file never stops the batch
        msg = str(exc)
        return None, (str(path), msg if str(path) in msg
                      else f"{path}: {type(exc).__name__}: {msg}")
