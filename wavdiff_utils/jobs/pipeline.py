"""The one-step pipeline: audio in, a training-ready dataset of captioned 16-bit tiles out.

:func:`run_pipeline` (what ``python -m wavdiff_utils`` runs) does, for a file
or every audio file under a folder:

1. **encode** the songs in parallel worker processes
   (:func:`wavdiff_utils.jobs.encode.encode_song` per song);
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
import sys
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import numpy as np

from ..captioning.batch import caption_songs
from ..captioning.registry import captioner_or_fallback, fallback_notice, make_captioner
from ..codec.params import CodecParams
from ..codec import resources
from ..codec.threads import usable_cores
from ..codec.tiling import n_tiles_for
from ..dataset.export import METADATA_NAME, export_dataset, holdout_splits
from ..dataset.parquet import write_parquet
from ..errors import (BadParameterError, MissingInputError, OutputIsAFileError, WavdiffError,
                      WeightsMissingError, first_line, one_line)
from ..io.audio import audio_info, find_audio_files
from ..io.locking import output_lock
from ..paths import REPO_ROOT, remove_temporaries, resolve, song_ids, writing
from ..results import BatchResult, SUMMARY_NAME, plain_failure
from ..views.report import failure_line, run_notebook
from .encode import capped_workers, encode_one, verify
from .pipeline_result import PipelineResult, write_summary
from .settings import PipelineSettings, check_workers_memory, song_memory
from .ray_captions import caption_on_ray
from .ray_engine import check_engine, ray_session, run_encode
from .shard_writer import write_shards
from .workers import make_pool, stop_pool

__all__ = ["REPORT_NOTEBOOK", "run_pipeline", "encode_songs", "default_workers", "check_workers",
           "ensure_dataset"]

#: The per-batch report notebook.
REPORT_NOTEBOOK = REPO_ROOT / "notebooks" / "06_batch_report.ipynb"
#: Name of the report files in the report folder.
REPORT_NAME = "batch_report"


def default_workers(params: CodecParams | None = None) -> int:
    """Encode worker processes used when ``workers=0``: the usable CPU cores, at most 8, and
    with ``params`` no more songs at once than the memory available holds
    (:func:`~wavdiff_utils.jobs.settings.song_memory` each)."""
    n = max(1, min(8, usable_cores()))
    if params is not None:
        budget = resources.MEMORY_SHARE * resources.available_memory()
        n = max(1, min(n, int(budget // song_memory(params))))
    return n

# =========================================================================== encode

_PROGRESS = None          # a worker process's queue for per-tile progress


def _init_worker(q):
    global _PROGRESS
    _PROGRESS = q


def _encode_job(path, output, params, song, overwrite, png_compression):
    """Encode one song in a local worker process (or here), tiles counted on ``_PROGRESS``."""
    def tick(n):
        if _PROGRESS is not None:
            _PROGRESS.put((song, n))
    return encode_one(path, output, params=params, song=song, overwrite=overwrite,
                      png_compression=png_compression, progress=tick)


def _estimate_tiles(path: Path, params: CodecParams) -> int:
    try:
        info = audio_info(path)
        n = int(np.ceil(info["frames"] * params.sample_rate / info["sample_rate"]))
        return max(1, n_tiles_for(n, frames_per_tile=params.frames_per_tile,
                                  hop_length=params.hop_length))
    except Exception:
        return 1


class _Bar:
    """The progress bar of a run: the tiles of the current step (encode, caption, shards), songs
    done in the label; each step starts again from 0 with its own total."""

    def __init__(self, total: int, n_songs: int, progress: bool, desc: str = "encode"):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=max(total, 1), unit="tile", disable=not progress, dynamic_ncols=True,
                        desc=desc)
        self.n_songs = n_songs
        self.songs = 0

    def step(self, name: str, *, songs: bool = True, total: int | None = None):
        self.bar.set_description(name, refresh=total is None)
        if total is not None:
            self.bar.reset(total=max(int(total), 1))
        self.songs = 0
        if songs:
            self._label()
        else:
            self.bar.set_postfix_str("", refresh=False)

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
                 engine: str = "local", ray_address: str | None = None,
                 _bar: _Bar | None = None) -> BatchResult:
    """Encode a file or every audio file under a folder, songs in parallel.

    The same as :func:`wavdiff_utils.jobs.encode.encode_batch` (same parameters; ``workers=1``
    encodes here, 0 means :func:`default_workers`), with a progress bar that counts tiles
    as the workers write them.  Returns the results in input order, failures collected.
    ``engine="ray"`` runs one Ray task per song instead of local worker processes
    (:mod:`wavdiff_utils.jobs.ray_engine`; ``ray_address`` as in :func:`run_pipeline`), with
    the same tiles, resume and failure rules.
    """

    params = params or CodecParams()
    engine = check_engine(engine)
    raw = check_workers(workers, auto=engine == "ray")
    if not ray_address:
        check_workers_memory(raw, params)
    workers = raw or default_workers(params)
    files = find_audio_files(input)
    output = Path(output)
    with output_lock(output), _engine_session(engine, ray_address, raw, params) as session:
        return _encode_songs_locked(files, output, params=params, workers=workers,
                                    overwrite=overwrite, png_compression=png_compression,
                                    progress=progress, _bar=_bar, session=session, raw=raw)


@contextlib.contextmanager
def _engine_session(engine: str, address, workers: int, params: CodecParams):
    """``None`` for the local engine; the :class:`~wavdiff_utils.jobs.ray_engine.RaySession` of the
    Ray engine (an embedded Ray gets ``workers`` CPUs, capped at the cores; 0 = as many as the
    cores and the memory allow)."""
    if engine != "ray":
        yield None
        return

    cpus, note = (None, "") if address else capped_workers(workers or default_workers(params))
    with ray_session(address, num_cpus=cpus) as session:
        if note and session.started:
            session.notes.append(note)
        yield session


def _ray_limit(session, workers: int) -> int:
    """Songs in flight on Ray: twice the CPUs of an embedded Ray (no idle gap between
    songs; Ray runs one per CPU), else ``workers`` when given, else twice the cluster's CPUs."""
    if session.started:
        return 2 * max(1, session.cpus)
    return workers or 2 * max(1, session.cpus)


def _encode_songs_locked(files, output, *, params, workers, overwrite, png_compression, progress,
                         _bar, session=None, raw=0) -> BatchResult:
    """Encode ``files`` into ``output`` (locked) on the engine given: Ray, this process, or a pool."""
    ids = song_ids(files)
    est = {ids[f]: _estimate_tiles(f, params) for f in files}
    own = _bar is None
    bar = _bar or _Bar(sum(est.values()), len(files), progress)
    counted = {s: 0 for s in est}
    batch = BatchResult()
    if session is None:
        workers, note = capped_workers(workers, len(files))
        if note:
            batch.notes.append(note)
    else:
        batch.notes += [session.describe()] + [n for n in session.notes if n]

    def finish(res, fail, song):
        if res is not None:
            batch.results.append(res)
            bar.retotal(res.n_tiles - est[song])
            bar.song_done(res.n_tiles - counted[song])
        else:
            batch.failures.append(plain_failure(fail))
            bar.retotal(counted[song] - est[song])
            bar.song_done(0)

    def tiles(song, n):
        counted[song] += n
        bar.tiles(n)

    jobs = [(f, output, params, ids[f], overwrite, png_compression) for f in files]
    try:
        if session is not None:
            run_encode(jobs, limit=_ray_limit(session, raw), on_tiles=tiles, on_done=finish)
        elif workers == 1 or len(jobs) == 1:
            _encode_here(jobs, tiles=tiles, finish=finish)
        else:
            _encode_in_pool(jobs, workers, tiles=tiles, finish=finish)
    finally:
        if own:
            bar.close()
    order = {str(f): i for i, f in enumerate(files)}
    batch.results.sort(key=lambda r: order.get(r.source, 0))
    return verify(batch)


def _encode_here(jobs, *, tiles, finish) -> None:
    """Encode the songs one after the other in this process, the bar moving with each tile."""
    global _PROGRESS

    class _Here:                        # in this process: move the bar at once
        @staticmethod
        def put(item):
            tiles(*item)

    _PROGRESS, old = _Here, _PROGRESS
    try:
        for job in jobs:
            finish(*_encode_job(*job), job[3])
    finally:
        _PROGRESS = old


def _encode_in_pool(jobs, workers: int, *, tiles, finish) -> None:
    """Encode the songs in worker processes; their tiles are counted as the workers write them."""
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
                tiles(s, n)

        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for fut in done:
                job = futures[fut]
                try:
                    res, fail = fut.result()
                except Exception:             # a worker died (killed, out of memory)
                    res, fail = None, (str(job[0]), _worker_died(job[0], job[2]))
                finish(res, fail, job[3])
        drain()
    except BaseException:          # Ctrl-C, SIGTERM: no worker goes on writing alone
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _worker_died(path, params: CodecParams) -> str:
    """Why a song failed whose worker process ended without a word (killed, out of memory)."""
    return (f"{path}: the worker process encoding it ended unexpectedly (killed, or out of "
            f"memory: one {params.size} x {params.size} tile needs about "
            f"{resources.gb(params.tile_memory)}); run again to resume, with fewer --workers or "
            f"a smaller --size if it happens again")


def check_workers(workers, *, auto: bool = False) -> int:
    """``workers`` checked; 0 becomes :func:`default_workers` (kept 0 with ``auto``)."""
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise BadParameterError(f"workers must be a whole number >= 0 (0 = one per CPU, at most 8), "
                         f"got {workers!r}")
    return int(workers) or (0 if auto else default_workers())

# =========================================================================== caption


def _caption(input, files, output, s: PipelineSettings, *, bar, res):
    """Caption the encoded songs with one captioner, loaded once; metadata captions stand in
    (with a one-line notice) when its weights are missing."""
    name = s.captioner
    cap, res.caption_notice = captioner_or_fallback(name, model=s.model, device=s.device)
    kw = dict(params=s.params, artist=s.artist, title=s.title, only=files, progress=False,
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


def _caption_ray(files, ok, output, s: PipelineSettings, *, bar, res, session):
    """:func:`_caption` on a Ray actor pool (see :func:`wavdiff_utils.jobs.ray_captions.caption_on_ray`)."""
    ids = song_ids(files)
    jobs = [(str(f), str(output), ids[f], s.params, s.artist, s.title) for f in ok]
    source, res.caption_notice, results, failures = caption_on_ray(
        s.captioner, jobs, model=s.model, device=s.device, session=session,
        actors=s.caption_actors,
        on_song=lambda r: bar.song_done(r.n_tiles if r is not None else 0),
        restart=lambda label: bar.step(label))
    res.caption_source = source
    res.captions += [{"song": r.song, "status": r.status, "tiles": r.n_tiles,
                      "caption_source": source} for r in results]
    res.caption_failures += failures


def _export(res: PipelineResult, holdout: float) -> None:
    """``metadata.jsonl`` and the card; a problem becomes ``res.export_error``."""
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res.export = export_dataset(res.output, splits=holdout_splits(holdout))
        res.warnings += res.export.warnings
    except (ValueError, OSError) as exc:
        res.export_error = first_line(exc)
    res.seconds["export"] = time.perf_counter() - t0


def _shards(res: PipelineResult, folder: Path, *, shard_size, engine: str, bar: _Bar) -> None:
    """WebDataset shards of the exported dataset; a problem becomes ``res.shards_error``."""

    t0 = time.perf_counter()
    if res.export is None:
        res.shards_error = "no dataset to shard (see the dataset line)"
        return
    bar.step("shards", songs=False, total=res.export.n_tiles)
    try:
        res.shards = write_shards(res.output, folder, shard_size=shard_size, engine=engine,
                                  progress=False, on_samples=bar.tiles)
    except (WavdiffError, ValueError, OSError) as exc:
        res.shards_error = first_line(exc)
    res.seconds["shards"] = time.perf_counter() - t0

def _parquet(res: PipelineResult, s: PipelineSettings, *, bar: _Bar) -> None:
    """The Parquet export of the dataset; a problem becomes ``res.parquet_error``."""
    t0 = time.perf_counter()
    if res.export is None:
        res.parquet_error = "no dataset to export (see the dataset line)"
        return
    bar.step("parquet", songs=False, total=res.export.n_tiles)
    try:
        res.parquet = write_parquet(res.output, shard_size=s.parquet_shard_size,
                                    compression=s.parquet_compression, progress=False,
                                    on_rows=bar.tiles)
    except (WavdiffError, ValueError, OSError) as exc:
        res.parquet_error = first_line(exc)
    res.seconds["parquet"] = time.perf_counter() - t0

# =========================================================================== pipeline


def run_pipeline(input, output, settings: PipelineSettings | None = None, *, log=print,
                 **overrides) -> PipelineResult:
    """Encode, caption, export and report a batch of songs (see the module notes).

    Parameters
    ----------
    input : path-like
        Audio file or folder (searched recursively).
    output : path-like
        Dataset folder (created): ``<song>/<song>_<index:04d>.png`` + ``.txt``,
        ``metadata.jsonl``, ``README.md``, ``report/``.
    settings : PipelineSettings, optional
        Every other option (default ``PipelineSettings()``: exact 1024x1024 tiles, MuQ
        captions, one worker per CPU, a report); its fields say what each does.
    log : callable
        Receives one-line notes (captions skipped, report being written); ``None`` silences them.
    **overrides
        Fields of :class:`~wavdiff_utils.jobs.PipelineSettings` replacing those of
        ``settings`` (``params=CodecParams(size=256)``, ``captioner="metadata"``,
        ``workers=2``, ``shards=True``, ...), or flat codec options (``size=256``).

    Returns
    -------
    PipelineResult
        ``summary()`` says what was made and what failed, and why.

    Raises
    ------
    MissingInputError
        ``input`` does not exist.
    BadParameterError
        A bad option (the message names it), or ``input`` holds no audio.
    OutputLockedError
        Another run is writing to ``output``; the message names its pid and host.
    UnwritableOutputError
        ``output`` cannot be created or written.
    KeyboardInterrupt
        Passed on; finished songs and tiles stay, and a re-run resumes.  Worker
        processes are ended first; they also end by themselves if this process dies.
    """
    s = (settings or PipelineSettings()).replace(**overrides)
    raw = check_workers(s.workers, auto=s.engine == "ray")
    input, output = Path(input), Path(output)
    if output.exists() and not output.is_dir():
        raise OutputIsAFileError(f"output {str(output)!r} exists and is a file, not a folder")
    files = find_audio_files(input)
    with output_lock(output):           # one run per output folder
        return _run_locked(input, output, files, s, raw=raw, say=log or (lambda *_: None))


def _library_warning(w) -> bool:
    """Chatter a user cannot act on: deprecations, unclosed files, warnings from other packages."""
    if issubclass(w.category, (DeprecationWarning, FutureWarning, ResourceWarning,
                               PendingDeprecationWarning)):
        return True
    return "wavdiff_utils" not in str(w.filename)


def _run_locked(input, output, files, s: PipelineSettings, *, raw: int, say) -> PipelineResult:
    """The whole run, the output folder locked: each step, the record, then the report."""
    res = PipelineResult(input, output, captioner=s.captioner, channels=s.params.channels)
    res.asked = ("dataset",) + ("shards",) * (s.shards is not None) + ("report",) * s.report \
        + ("parquet",) * (s.format == "parquet")
    # what atomic writes of a killed run left behind (we hold the lock: nobody is writing)
    remove_temporaries(output, ["metadata.jsonl", "README.md", SUMMARY_NAME])
    est = sum(_estimate_tiles(f, s.params) for f in files)
    shards_dir = s.shards_folder(output)
    starting = s.engine == "ray" and not s.ray_address     # an embedded Ray: seconds to start
    with contextlib.ExitStack() as stack:
        # joining a cluster takes a moment, and its errors come before any progress bar
        ray = _engine_session(s.engine, s.ray_address, raw, s.params)
        session = None if starting else stack.enter_context(ray)
        bar = _Bar(est, len(files), s.progress,
                   "ray start-up" if starting else "encode")
        stack.callback(bar.close)
        if starting:
            session = stack.enter_context(ray)
            bar.step("encode")
        if session is not None:
            res.seconds["ray start"] = session.start_seconds
        _encode_and_caption(input, output, files, s, res=res, bar=bar, session=session,
                            raw=raw, est=est)
        _export(res, s.holdout)
        if shards_dir is not None:
            _shards(res, shards_dir, shard_size=s.shard_size, engine=s.engine, bar=bar)
        if s.format == "parquet":
            _parquet(res, s, bar=bar)
    write_summary(res)
    if s.report and res.export is not None:
        _report(res, output, s.report_dir, say)
    return res


def _encode_and_caption(input, output, files, s: PipelineSettings, *, res, bar, session, raw,
                        est) -> None:
    """Encode every song, then caption the encoded ones; the warnings raised go to ``res``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        res.encode = _encode_songs_locked(files, output, params=s.params,
                                          workers=raw or default_workers(s.params),
                                          overwrite=s.overwrite,
                                          png_compression=s.png_compression,
                                          progress=s.progress, _bar=bar, session=session, raw=raw)
        res.seconds["encode"] = time.perf_counter() - t0
        if s.captioner != "none":
            t0 = time.perf_counter()
            done = {r.source for r in res.encode.results}
            ok = [f for f in files if str(f) in done]
            bar.step(f"caption ({s.captioner})",
                     total=sum(r.n_tiles for r in res.encode.results if str(r.source) in
                               {str(f) for f in ok}))
            if ok and session is not None:
                _caption_ray(files, ok, output, s, bar=bar, res=res, session=session)
            elif ok:
                _caption(input, ok, output, s, bar=bar, res=res)
            res.seconds["caption"] = time.perf_counter() - t0
    res.warnings += _unique([str(w.message) for w in caught if not _library_warning(w)])


def _report(res: PipelineResult, output: Path, report_dir, say) -> None:
    """Execute ``06_batch_report`` for the batch and render it; a problem is one line in ``res``."""
    t0 = time.perf_counter()
    folder = Path(report_dir) if report_dir else output / "report"
    say(f"report: executing {REPORT_NOTEBOOK.name} for the batch ...")
    log_path = folder.resolve() / f"{REPORT_NAME}.log"
    try:
        with _stderr_to(log_path):    # the kernel's own chatter goes to the log, not the terminal
            _, html = run_notebook(REPORT_NOTEBOOK,
                                   parameters={"output": str(output.resolve()), "input": ""},
                                   output=folder.resolve(), name=REPORT_NAME, hide_code=True)
        res.report = html
    except ImportError as exc:        # a codec-only install: say which extra adds the report
        res.report_error = (f"the notebooks extra is not installed (no module {exc.name!r}): "
                            f"pip install -e '.[notebooks]'")
    except WavdiffError as exc:       # e.g. the report folder cannot be written: its one line
        res.report_error = one_line(exc)
    except Exception as exc:          # the dataset is made; a report problem is one line
        why = (failure_line(exc) if getattr(exc, "ename", None)
               else f"{type(exc).__name__}: {first_line(exc)}")
        res.report_error = f"{why} (details: {log_path})"
    res.seconds["report"] = time.perf_counter() - t0
    write_summary(res)


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Send file descriptor 2 (this process and the children it starts) to ``path``."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    sys.stderr.flush()
    saved = os.dup(2)
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


def ensure_dataset(output, *, input="") -> bool:
    """Make sure ``output`` holds a dataset, building one from ``input`` (no captions, no report)
    when it holds none; what ``06_batch_report`` does before showing a folder.

    Parameters
    ----------
    output : path-like
        The batch's output folder.
    input : path-like
        Audio to build the dataset from; ``""`` never builds.

    Returns
    -------
    bool
        True when a dataset was built now.

    Raises
    ------
    MissingInputError
        ``output`` holds no dataset and no ``input`` is given.
    """
    folder = resolve(output)
    if (folder / METADATA_NAME).is_file():
        return False
    if not input:
        raise MissingInputError(f"{folder} holds no {METADATA_NAME}; run python -m wavdiff_utils "
                                f"first")
    built = run_pipeline(resolve(input), folder, captioner="none", workers=1, report=False,
                         progress=False, log=None)
    print(built.summary())
    return True
