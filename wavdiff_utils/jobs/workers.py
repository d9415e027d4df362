"""Encode worker processes that never outlive the run that started them.

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

from ..codec.transform import stft
from ..codec.params import CodecParams
from ..codec.threads import mark_in_pool

__all__ = ["init_worker", "make_pool", "stop_pool", "silence_library_warnings", "die_with_parent",
           "native_stderr_silenced"]

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


def init_worker(parent: int, progress_queue, set_progress) -> None:
    """Start-up of one worker process (see the module notes); ``set_progress(queue)`` installs
    the queue the worker reports tiles on."""
    mark_in_pool()
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

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = CodecParams(size=16)
        stft(np.zeros(p.n_fft, np.float32), p)


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
