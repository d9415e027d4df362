"""Encode worker processes that never outlive the run that started them, and the read-ahead
thread (:func:`prefetched`) that overlaps reading with computing inside one song.

Each worker, as it starts (:func:`init_worker`):

- asks Linux to kill it when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``),
  and also watches its parent pid from a thread (every 0.5 s), which covers macOS
  and parents that die between ``fork`` and ``prctl``;
- ignores SIGINT: Ctrl-C reaches the whole process group, and the parent, not
  each worker, decides what happens (:func:`stop_pool` ends the workers, keeping
  the finished tiles of the songs in progress for the next run);
- silences library chatter: warnings, and the C libraries' lines on stderr
  (libpng, mpg123), since a worker's failures come back as values, not as text.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

__all__ = ["init_worker", "make_pool", "stop_pool", "silence_library_warnings", "die_with_parent",
           "native_stderr_silenced", "prefetched", "ordered_map", "tile_threads", "usable_cores"]

_PR_SET_PDEATHSIG = 1


def silence_library_warnings() -> None:
    """Ignore the warnings libraries print that a user cannot act on (FutureWarning,
    DeprecationWarning, ResourceWarning such as ``unclosed file``, audioread/librosa notes)."""
    for cat in (FutureWarning, DeprecationWarning, PendingDeprecationWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=cat)
    warnings.filterwarnings("ignore", message=r".*(PySoundFile|audioread|__audioread_load).*")


def die_with_parent(parent: int) -> None:
    """End this process as soon as process ``parent`` is gone (Linux: at once; elsewhere: 0.5 s)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:                 # the parent died before prctl took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wavdiff-parent-watch", daemon=True).start()


_IN_POOL = False           # set in the worker processes of make_pool
MAX_TILE_THREADS = 4       # the most tiles of one song computed at once


def tile_threads(*, spare: int = 0) -> int:
    """Tiles of one song computed at once when not told: 1 in a worker process of a pool (the
    songs already fill the cores); else the CPUs in ``OMP_NUM_THREADS`` when set (Ray and most
    schedulers set it to the CPUs a task was given), or the cores this process may use, less
    ``spare`` (cores left to the reading and writing threads); at least 1 and at most
    :data:`MAX_TILE_THREADS` (each thread holds a tile and its STFT, 30-50 MB at 1024, and one
    PNG writer thread limits the encoder beyond a few).

    The encoder leaves one core spare: on 2 cores its three stages (audio decoding, STFT and
    pixels, PNG writing) already fill both, and a second tile thread took 15-20% more CPU time
    for the same wall time (10-minute song, measured); the decoder, whose reading thread does
    less, gains about 10% from one thread per core.
    """
    if _IN_POOL:
        return 1
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        n = 0
    n = n if n >= 1 else usable_cores()
    return max(1, min(MAX_TILE_THREADS, n - int(spare)))


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the system says, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def init_worker(parent: int, progress_queue, set_progress) -> None:
    """Start-up of one worker process (see the module notes); ``set_progress(queue)`` installs
    the queue the worker reports tiles on."""
    global _IN_POOL
    _IN_POOL = True
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    silence_library_warnings()
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass
    set_progress(progress_queue)


def _warm_up() -> None:
    """Run the encoder's STFT once, here, so that forked workers inherit whatever it loads
    lazily instead of each paying for it."""
    if mp.get_start_method(allow_none=False) != "fork":
        return
    import numpy as np

    from .codec import _stft
    from .params import CodecParams
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = CodecParams(size=16)
        _stft(np.zeros(p.n_fft, np.float32), p)


def make_pool(workers: int, progress_queue, set_progress) -> ProcessPoolExecutor:
    """A process pool of ``workers`` processes started with :func:`init_worker`."""
    _warm_up()
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(),
                               initializer=init_worker,
                               initargs=(os.getpid(), progress_queue, set_progress))


def stop_pool(pool: ProcessPoolExecutor, *, timeout: float = 5.0) -> None:
    """End every worker now (interrupt, error): queued songs are dropped, songs in progress keep
    their finished tiles for the next run.  Waits up to ``timeout`` seconds for them to exit."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            p.terminate()
        except (OSError, ValueError, AttributeError):
            pass
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
        except (OSError, ValueError, AssertionError, AttributeError):
            pass


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what C libraries write to file descriptor 2 (libpng, mpg123 lines) to /dev/null, while
    Python's own ``sys.stderr`` (progress bar, messages, errors) keeps the real terminal."""
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    old = sys.stderr
    try:
        real = old.fileno() == 2           # not when a test harness captures sys.stderr
    except (AttributeError, OSError, ValueError):
        real = False
    old.flush()
    new = old if not real else os.fdopen(
        saved, "w", buffering=1, encoding=getattr(old, "encoding", None) or "utf-8",
        errors="backslashreplace", closefd=False)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = new
    try:
        yield
    finally:
        new.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr = old


@contextlib.contextmanager
def prefetched(blocks, depth: int = 2):
    """``blocks`` read ahead by a background thread (at most ``depth`` waiting), as a context
    manager yielding an iterator; an error while reading is raised in the reader's place."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:                         # False once the consumer has gone
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read():
        try:
            for b in blocks:
                if not put(b):
                    return
            put(done)
        except BaseException as exc:               # handed to the consumer, raised there
            put(exc)

    def consume():
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    thread = threading.Thread(target=read, name="wavdiff-audio", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()


def ordered_map(fn, jobs, threads: int):
    """``fn(*job)`` for each job, computed in ``threads`` threads, yielded in the jobs' order.

    At most ``threads`` jobs are in flight (memory stays bounded); with ``threads=1`` nothing
    runs in a thread.  Worth it where ``fn`` spends its time in code that releases the GIL
    (numpy's FFT and ufuncs, OpenCV).  An error in a job is raised when its turn comes.
    """
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    if threads == 1:
        for job in jobs:
            yield fn(*job)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, thread_name_prefix="wavdiff-tile") as pool:
        pending: deque = deque()
        try:
            for job in jobs:
                pending.append(pool.submit(fn, *job))
                if len(pending) >= threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
