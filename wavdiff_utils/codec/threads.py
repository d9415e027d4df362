"""Threads inside one song: how many tiles are computed at once, the read-ahead thread that
overlaps reading with computing (:func:`prefetched`), and :func:`ordered_map`, which computes
jobs in threads and yields them in order.  Used by the encoder, the decoder and the codec."""
from __future__ import annotations

import contextlib
import os
from collections import deque

from ..errors import BadParameterError

__all__ = ["split_pairs", "prefetched", "ordered_map", "tile_threads", "usable_cores", "mark_in_pool",
           "MAX_TILE_THREADS"]

_IN_POOL = False           # set in the worker processes of a pool (mark_in_pool)
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


def mark_in_pool() -> None:
    """Say that this process is one worker of a pool of songs: :func:`tile_threads` is then 1."""
    global _IN_POOL
    _IN_POOL = True


def split_pairs(pairs):
    """Two iterators over ``pairs``, the first and second of each, an item held only until
    both have taken it (``itertools.tee`` frees its buffer 57 items at a time: most of a song's
    blocks, for a stereo encode reading mid and side in step)."""
    it, queues = iter(pairs), (deque(), deque())

    def one(k: int):
        while True:
            if not queues[k]:
                try:
                    pair = next(it)
                except StopIteration:
                    return
                queues[0].append(pair[0])
                queues[1].append(pair[1])
            yield queues[k].popleft()

    return one(0), one(1)


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
        raise BadParameterError(f"threads must be >= 1, got {threads!r}")
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
