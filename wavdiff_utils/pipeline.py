"""The one-step pipeline: audio in, a training-ready dataset of captioned 16-bit tiles out.

:func:`run_pipeline` (what ``python -m wavdiff_utils`` runs) does, for a file
or every audio file under a folder:

1. **encode** the songs in parallel worker processes
   (:func:`wavdiff_utils.encoding.encode_song` per song);
2. **caption** every tile in this process with one model loaded once (MuQ-MuLan
   tags, Qwen2-Audio prose or ``"metadata"``: file tags and tempo; ``"none"``
   skips it).  Without the model's weights the metadata captioner stands in,
   with one line saying how to get them;
3. **export** the folder as a dataset (``metadata.jsonl`` and a dataset card,
   :func:`wavdiff_utils.dataset.export_dataset`);
4. **report**: ``notebooks/06_batch_report.ipynb`` executed once for the batch
   and rendered to one HTML file that opens offline.

One progress bar counts tiles over both steps, with the songs done in its
label.  Every step resumes: finished songs are skipped, an interrupted song's
finished tiles are kept, up-to-date captions are not redone, and the export and
report are rebuilt from what is on disk.  Failures are collected per song and
listed at the end with their reasons; ``<output>/wavdiff_batch.json`` records
the run.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as _queue
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import numpy as np

from .audio_io import audio_info, find_audio_files
from .errors import BadParameterError, first_line
from .locking import output_lock
from .params import CodecParams
from .paths import REPO_ROOT, remove_temporaries
from .encoding import BatchResult, capped_workers, encode_song, song_ids, usable_cores, verify
from .workers import make_pool, stop_pool
from .tiling import n_tiles_for
from .batch_report import audio_player, song_strip, tile_round_trip  # noqa: F401  (their old home)
from .pipeline_result import SUMMARY_NAME, PipelineResult, _write_summary

__all__ = ["CAPTIONERS", "REPORT_NOTEBOOK", "SUMMARY_NAME", "PipelineResult", "run_pipeline",
           "encode_songs", "songs_per_minute", "default_workers",
           "song_strip", "audio_player", "tile_round_trip"]

#: Captioner choices: MuQ-MuLan tags, Qwen2-Audio prose, file tags and tempo, or no captions.
CAPTIONERS = ("muq", "qwen", "metadata", "none")
#: The per-batch report notebook.
REPORT_NOTEBOOK = REPO_ROOT / "notebooks" / "06_batch_report.ipynb"
#: Name of the report files in the report folder.
REPORT_NAME = "batch_report"


def default_workers() -> int:
    """Encode worker processes used when ``workers=0``: the usable CPU cores, at most 8."""
    return max(1, min(8, usable_cores()))


# =========================================================================== encode

_PROGRESS = None          # a worker process's queue for per-tile progress


def _init_worker(q):
    global _PROGRESS
    _PROGRESS = q


def _encode_job(path, output, params, song, overwrite, png_compression):
    """Encode one song (in a worker process or here); failures come back as ``(path, message)``."""
    def tick(n):
        if _PROGRESS is not None:
            _PROGRESS.put((song, n))
    try:
        return encode_song(path, output, params=params, song=song, overwrite=overwrite,
                           png_compression=png_compression, progress=tick), None
    except Exception as exc:          # one bad file never stops the batch
        msg = str(exc)
        return None, (str(path), msg if str(path) in msg else f"{path}: {type(exc).__name__}: {msg}")


def _estimate_tiles(path: Path, params: CodecParams) -> int:
    try:
        info = audio_info(path)
        n = int(np.ceil(info["frames"] * params.sample_rate / info["sample_rate"]))
        return max(1, n_tiles_for(n, frames_per_tile=params.frames_per_tile,
                                  hop_length=params.hop_length))
    except Exception:
        return 1


class _Bar:
    """The single progress bar: tiles over all steps, songs done in the label."""

    def __init__(self, total: int, n_songs: int, progress: bool):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=max(total, 1), unit="tile", disable=not progress, dynamic_ncols=True,
                        desc="encode")
        self.n_songs = n_songs
        self.songs = 0

    def step(self, name: str):
        self.bar.set_description(name)
        self.songs = 0
        self._label()

    def _label(self):
        self.bar.set_postfix_str(f"songs {self.songs}/{self.n_songs}", refresh=False)

    def tiles(self, n: int):
        if n:
            self.bar.update(n)

    def song_done(self, tiles: int = 0):
        self.songs += 1
        self._label()
        self.tiles(tiles)

    def retotal(self, delta: int):
        if delta:
            self.bar.total = max(self.bar.n, self.bar.total + delta)
            self.bar.refresh()

    def close(self):
        self.bar.close()


def encode_songs(input, output, *, params: CodecParams | None = None, workers: int = 1,
                 overwrite: bool = False, png_compression: int = 0, progress: bool = True,
                 _bar: _Bar | None = None) -> BatchResult:
    """Encode a file or every audio file under a folder, songs in parallel worker processes.

    The same as :func:`wavdiff_utils.encoding.encode_batch` (same parameters; ``workers=1``
    encodes here, 0 means :func:`default_workers`), with a progress bar that counts tiles
    as the workers write them.  Returns the results in input order, failures collected.
    """
    params = params or CodecParams()
    workers = _check_workers(workers)
    files = find_audio_files(input)
    output = Path(output)
    with output_lock(output):
        return _encode_songs_locked(files, output, params=params, workers=workers,
                                    overwrite=overwrite, png_compression=png_compression,
                                    progress=progress, _bar=_bar)


def _encode_songs_locked(files, output, *, params, workers, overwrite, png_compression, progress,
                         _bar) -> BatchResult:
    ids = song_ids(files)
    est = {ids[f]: _estimate_tiles(f, params) for f in files}
    own = _bar is None
    bar = _bar or _Bar(sum(est.values()), len(files), progress)
    counted = {s: 0 for s in est}
    batch = BatchResult()
    workers, note = capped_workers(workers, len(files))
    if note:
        batch.notes.append(note)

    def finish(res, fail, song):
        if res is not None:
            batch.results.append(res)
            bar.retotal(res.n_tiles - est[song])
            bar.song_done(res.n_tiles - counted[song])
        else:
            batch.failures.append(fail)
            bar.retotal(counted[song] - est[song])
            bar.song_done(0)

    jobs = [(f, output, params, ids[f], overwrite, png_compression) for f in files]
    try:
        if workers == 1 or len(jobs) == 1:
            global _PROGRESS

            class _Here:                        # in this process: move the bar at once
                @staticmethod
                def put(item):
                    counted[item[0]] += item[1]
                    bar.tiles(item[1])

            _PROGRESS, old = _Here, _PROGRESS
            try:
                for job in jobs:
                    finish(*_encode_job(*job), job[3])
            finally:
                _PROGRESS = old
        else:
            q = mp.get_context().Queue()
            pool = make_pool(min(workers, len(jobs)), q, _init_worker)
            try:
                futures = {pool.submit(_encode_job, *job): job for job in jobs}
                pending = set(futures)

                def drain():
                    while True:
                        try:
                            s, n = q.get_nowait()
                        except _queue.Empty:
                            return
                        counted[s] += n
                        bar.tiles(n)

                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    drain()
                    for fut in done:
                        job = futures[fut]
                        try:
                            res, fail = fut.result()
                        except Exception as exc:      # a worker died (killed, out of memory)
                            res, fail = None, (str(job[0]), f"{job[0]}: worker failed: "
                                                            f"{type(exc).__name__}: {exc}")
                        finish(res, fail, job[3])
                drain()
            except BaseException:          # Ctrl-C, SIGTERM: no worker goes on writing alone
                stop_pool(pool)
                raise
            pool.shutdown(wait=True)
    finally:
        if own:
            bar.close()
    order = {str(f): i for i, f in enumerate(files)}
    batch.results.sort(key=lambda r: order.get(r.source, 0))
    return verify(batch)


def _check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be a whole number >= 0 (0 = one per CPU, at most 8), "
                         f"got {workers!r}")
    return int(workers) or default_workers()


# =========================================================================== caption

def _caption(input, files, output, *, name, params, model, device, artist, title, bar, res):
    """Caption the encoded songs with one captioner, loaded once; metadata captions stand in
    (with a one-line notice) when its weights are missing."""
    from .captioning import caption_songs, captioner_or_fallback, fallback_notice, make_captioner
    from .errors import WeightsMissingError

    cap, res.caption_notice = captioner_or_fallback(name, model=model, device=device)
    kw = dict(params=params, artist=artist, title=title, only=files, progress=False,
              on_song=lambda r: bar.song_done(r.n_tiles if r is not None else 0))
    try:
        batch = caption_songs(cap, input, output, **kw)
    except WeightsMissingError as exc:          # found, but could not be loaded
        res.caption_notice = fallback_notice(name, exc)
        cap = make_captioner("metadata")
        batch = caption_songs(cap, input, output, **kw)
    res.caption_source = cap.name
    res.captions += [{"song": r.song, "status": r.status, "tiles": r.n_tiles,
                      "caption_source": cap.name} for r in batch.results]
    res.caption_failures += batch.failures


# =========================================================================== pipeline

def run_pipeline(input, output, *, params: CodecParams | None = None, captioner: str = "muq",
                 artist: str = "", title: str = "", workers: int = 0, model: str | None = None,
                 device: str = "auto", overwrite: bool = False, report: bool = True,
                 report_dir=None, png_compression: int = 0, progress: bool = True,
                 log=print) -> PipelineResult:
    """Encode, caption, export and report a batch of songs (see the module notes).

    Parameters
    ----------
    input : path-like
        Audio file or folder (searched recursively).
    output : path-like
        Dataset folder (created): ``<song>/<song>_<index:04d>.png`` + ``.txt``,
        ``metadata.jsonl``, ``README.md``, ``report/``.
    params : CodecParams, optional
        Codec (default ``CodecParams()``: exact 1024x1024 tiles).
    captioner : {"muq", "qwen", "metadata", "none"}
        MuQ-MuLan tag captions, Qwen2-Audio prose, captions from the file tags and
        tempo (no weights; also what stands in when the model weights are missing), or none.
    artist, title : str
        Caption prefix for every song; empty means "from each file's tags".
    workers : int
        Encode worker processes; 0 (default) = one per CPU, at most 8.
    model : str, optional
        Captioning model (hub id or local folder); default the captioner's
        own default, which ``$WAVDIFF_MUQ_MODEL`` / ``$WAVDIFF_QWEN_MODEL`` replace.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or ``"mps"`` for the captioner.
    overwrite : bool
        Re-encode songs finished with other codec parameters.
    report : bool
        Execute ``06_batch_report`` and render ``<report_dir>/batch_report.html``.
    report_dir : path-like, optional
        Default ``<output>/report``.
    png_compression : int
        zlib level 0-9 of the tiles.
    progress : bool
        Show the progress bar.
    log : callable
        Receives one-line notes (captions skipped, report being written); ``None`` silences them.

    Returns
    -------
    PipelineResult
        ``summary()`` says what was made and what failed, and why.

    Raises
    ------
    FileNotFoundError
        ``input`` does not exist.
    ValueError
        A bad option (the message names it), or ``input`` holds no audio.
    OutputLockedError
        Another run is writing to ``output``; the message names its pid and host.
    UnwritableOutputError
        ``output`` cannot be created or written.
    KeyboardInterrupt
        Passed on; finished songs and tiles stay, and a re-run resumes.  Worker
        processes are ended first; they also end by themselves if this process dies.
    """
    say = log or (lambda *_: None)
    if captioner not in CAPTIONERS:
        raise BadParameterError(f"captioner must be one of {', '.join(CAPTIONERS)}, got {captioner!r}")
    workers = _check_workers(workers)
    params = params or CodecParams()
    input, output = Path(input), Path(output)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output {str(output)!r} exists and is a file, not a folder")
    files = find_audio_files(input)
    with output_lock(output):           # one run per output folder
        return _run_locked(input, output, files, params=params, captioner=captioner,
                           artist=artist, title=title, workers=workers, model=model,
                           device=device, overwrite=overwrite, report=report,
                           report_dir=report_dir, png_compression=png_compression,
                           progress=progress, say=say)


def _library_warning(w) -> bool:
    """Chatter a user cannot act on: deprecations, unclosed files, warnings from other packages."""
    if issubclass(w.category, (DeprecationWarning, FutureWarning, ResourceWarning,
                               PendingDeprecationWarning)):
        return True
    return "wavdiff_utils" not in str(w.filename)


def _run_locked(input, output, files, *, params, captioner, artist, title, workers, model, device,
                overwrite, report, report_dir, png_compression, progress, say) -> PipelineResult:
    res = PipelineResult(input, output, captioner=captioner)
    # what atomic writes of a killed run left behind (we hold the lock: nobody is writing)
    remove_temporaries(output, ["metadata.jsonl", "README.md", SUMMARY_NAME])
    est = sum(_estimate_tiles(f, params) for f in files)
    steps = 2 if captioner != "none" else 1
    bar = _Bar(est * steps, len(files), progress)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            t0 = time.perf_counter()
            res.encode = encode_songs(input, output, params=params, workers=workers,
                                      overwrite=overwrite, png_compression=png_compression,
                                      _bar=bar)
            res.seconds["encode"] = time.perf_counter() - t0
            if captioner != "none":
                t0 = time.perf_counter()
                done = {r.source for r in res.encode.results}
                ok = [f for f in files if str(f) in done]
                bar.retotal(sum(r.n_tiles for r in res.encode.results) - est)
                bar.step(f"caption ({captioner})")
                if ok:
                    _caption(input, ok, output, name=captioner, params=params, model=model,
                             device=device, artist=artist, title=title, bar=bar, res=res)
                res.seconds["caption"] = time.perf_counter() - t0
        finally:
            bar.close()
    res.warnings += _unique([str(w.message) for w in caught if not _library_warning(w)])

    from .dataset import export_dataset
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res.export = export_dataset(output)
        res.warnings += res.export.warnings
    except (ValueError, OSError) as exc:
        res.export_error = first_line(exc)
    res.seconds["export"] = time.perf_counter() - t0
    _write_summary(res)

    if report and res.export is not None:
        t0 = time.perf_counter()
        folder = Path(report_dir) if report_dir else output / "report"
        say(f"report: executing {REPORT_NOTEBOOK.name} for the batch ...")
        log_path = folder.resolve() / f"{REPORT_NAME}.log"
        try:
            from .report import run_notebook
            with _stderr_to(log_path):    # the kernel's own chatter goes to the log, not the terminal
                _, html = run_notebook(REPORT_NOTEBOOK,
                                       parameters={"output": str(output.resolve()), "input": ""},
                                       output=folder.resolve(), name=REPORT_NAME, hide_code=True)
            res.report = html
        except ImportError as exc:        # a codec-only install: say which extra adds the report
            res.report_error = (f"the notebooks extra is not installed (no module {exc.name!r}): "
                                f"pip install -e '.[notebooks]'")
        except Exception as exc:          # the dataset is made; a report problem is one line
            res.report_error = f"{type(exc).__name__}: {first_line(exc)} (details: {log_path})"
        res.seconds["report"] = time.perf_counter() - t0
        _write_summary(res)
    return res


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Send file descriptor 2 (this process and the children it starts) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def _unique(items):
    seen, out = set(), []
    for i in items:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


# =========================================================================== benchmark

def songs_per_minute(input, *, workers=(1, 2), params: CodecParams | None = None,
                     repeats: int = 1, scratch=None, png_compression: int = 0) -> list[dict]:
    """Encode throughput of the pipeline in songs per minute, for each worker count.

    Every run encodes all songs under ``input`` from scratch into a fresh
    temporary folder (removed afterwards).

    Parameters
    ----------
    input : path-like
        A folder of songs (several, so that workers have something to share).
    workers : sequence of int
        Worker counts to measure, e.g. ``(1, os.cpu_count())``.
    params : CodecParams, optional
    repeats : int
        Runs per worker count; the fastest counts (the first run of a session
        also pays for cold file caches).
    scratch : path-like, optional
        Where the temporary folders go (default: the system's temp folder).
    png_compression : int

    Returns
    -------
    list of dict
        Per worker count: ``workers``, ``songs``, ``failed``, ``tiles``,
        ``audio_seconds``, ``wall_seconds``, ``songs_per_minute`` and
        ``speedup`` (over the first entry).
    """
    workers = list(workers)
    if not workers:
        raise ValueError("workers must name at least one worker count, e.g. (1, 2)")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a whole number >= 1, got {repeats!r}")
    rows = []
    for w in workers:
        w = _check_workers(w)
        dt = float("inf")
        for _ in range(repeats):
            tmp = Path(tempfile.mkdtemp(prefix="wavdiff-spm-", dir=scratch))
            try:
                t0 = time.perf_counter()
                b = encode_songs(input, tmp, params=params, workers=w,
                                 png_compression=png_compression, progress=False)
                dt = min(dt, time.perf_counter() - t0)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        rows.append({"workers": w, "songs": len(b.results), "failed": len(b.failures),
                     "tiles": sum(r.n_tiles for r in b.results),
                     "audio_seconds": round(sum(r.duration for r in b.results), 2),
                     "wall_seconds": round(dt, 3),
                     "songs_per_minute": round(60.0 * len(b.results) / dt, 2) if dt > 0 else 0.0})
    for r in rows:
        r["speedup"] = round(r["songs_per_minute"] / rows[0]["songs_per_minute"], 2) \
            if rows[0]["songs_per_minute"] else None
    return rows
