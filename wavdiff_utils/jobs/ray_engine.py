"""The Ray engine: the pipeline's songs spread over a Ray cluster (or an embedded one, here).

``run_pipeline(..., engine="ray")`` / ``python -m wavdiff_utils --engine ray`` runs the same
steps as the local engine, on Ray:

- **encode**: one Ray task per song (:func:`run_encode`), each calling the same
  :func:`wavdiff_utils.jobs.encode.encode_song` as the local worker processes, so tiles are
  bit-identical and the resume, changed-source and never-half-written rules are the
  encoder's own.  The task is a Ray generator: it streams tile counts back for the
  progress bar, then the song's result.  A task whose worker dies (killed, out of memory,
  its node lost) is retried by Ray (:data:`TASK_RETRIES`); the retry resumes from the
  tiles the dead one finished.  When retries run out the song is reported as failed.
- **caption**: an actor pool (:mod:`wavdiff_utils.jobs.ray_captions`, its names re-exported here).  Each actor builds the captioner once
  and loads its model at its first song; an actor asks Ray for a GPU when the cluster has
  them.  Plain actors rather than Ray Data ``map_batches``: a song (not a row or a
  batch of rows) is the unit of work, with side effects on disk (caption files and a
  record per song), its own failure and its own skip; Ray Data would add a second
  scheduler with its own progress output and whole-dataset failure rules to bend back.
- **shards**: one Ray task per WebDataset shard (:mod:`wavdiff_utils.dataset.shards`).

The driver (this process) holds the output folder's lock, keeps the one progress bar and
the summary, and shuts down the Ray it started (an embedded one, on 127.0.0.1, with a
small object store: only results and progress counts go through it).  A driver killed
outright (``kill -9``) takes that Ray with it within a second: a watcher process kills
every process of it (:func:`wavdiff_utils.jobs.workers.die_with_this_process`).  Ray's
own output stays out of the terminal: ``log_to_driver=False``, ``logging_level=ERROR``, no
usage-stats banner, and its driver-side notes (a worker died, a task is retried) go to the
``wavdiff.ray`` logger; this run reports its songs itself.

Joining a cluster (``"auto"``, ``"host:port"``, ``"ray://host:10001"``) ships this
process's ``wavdiff_utils`` to the nodes (``runtime_env`` ``py_modules``), so they run
the same code, with this process's ``WAVDIFF_*`` variables (``env_vars``).  Caption
weights are looked up by the actors on their nodes, never by the driver.  Paths are resolved to absolute paths here and handed to the tasks as they
are: on a cluster the input and output folders must be visible at the same path on every
node (NFS or another shared file system); a task on a node that cannot see them fails
with a message naming the node.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..captioning.weights import looks_local
from ..errors import BadParameterError, WavdiffError, first_line
from ..paths import resolve
from .encode import encode_one
from .workers import die_with_this_process, silence_library_warnings

__all__ = ["ENGINES", "TASK_RETRIES", "OBJECT_STORE_BYTES", "RayUnavailableError",
           "RayConnectError", "RaySession", "ray_session", "run_encode", "run_shard_tasks",
           "check_engine"]

#: The pipeline's engines: worker processes on this machine, or Ray.
ENGINES = ("local", "ray")
#: Times Ray re-runs a song whose worker died before it gives up and the song is reported.
TASK_RETRIES = 2
#: Object store of an embedded Ray: results and progress counts only, never tiles, so small.
OBJECT_STORE_BYTES = 256 * 2 ** 20
#: Seconds the driver waits for a cluster address to answer before it gives up.
CONNECT_TIMEOUT_S = 5.0
#: Seconds between the progress counts a task sends.
TICK_S = 0.25
RAY_EXTRA = "pip install -e '.[ray]'"


class RayUnavailableError(WavdiffError, ImportError):
    """Ray, the Ray client or webdataset (all in the ``ray`` extra) is not installed; says which
    extra to install."""


class RayConnectError(WavdiffError, ConnectionError):
    """The Ray cluster at the given address cannot be reached; names the address."""


def check_engine(engine: str) -> str:
    """``engine`` checked against :data:`ENGINES` (a :class:`BadParameterError` naming it)."""

    e = str(engine).strip().lower()
    if e not in ENGINES:
        raise BadParameterError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return e


def import_ray(address: str | None = None):
    if address and address != "auto" and "ray" not in sys.modules:
        _token_mode()                   # read by Ray as it loads
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"--engine ray needs Ray, which is not installed (no module "
                                  f"{exc.name or 'ray'!r}): {RAY_EXTRA}") from None
    return ray

# =========================================================================== session


@dataclass
class RaySession:
    """The Ray this run uses: ``started`` here (embedded, shut down at the end) or joined."""

    address: str = ""
    started: bool = False
    cpus: int = 0
    gpus: int = 0
    nodes: int = 1
    start_seconds: float = 0.0
    notes: list = field(default_factory=list)

    def describe(self) -> str:
        """One line: what Ray this is (a joined cluster by the address it answered at) and
        what its start cost."""
        where = ("a local Ray started here" if self.started
                 else f"the Ray cluster at {self.address}" if self.address
                 else "the Ray already running in this process")
        gpus = f", {self.gpus} GPU(s)" if self.gpus else ""
        start = (f"; start-up {self.start_seconds:.1f} s" if self.started or self.address
                 else "")
        return f"engine: ray, {where} ({self.nodes} node(s), {self.cpus} CPU(s){gpus}){start}"


def _quiet_env() -> None:
    # no "usage stats" banner; Ray Data (not used by the pipeline) without progress bars
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


@contextlib.contextmanager
def _loopback(ray):
    """An embedded Ray on the loopback address (Ray picks the machine's outward address, for
    other nodes to reach; an embedded Ray has none)."""
    from ray._private import ray_constants

    var = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # off: the node's address is 127.0.0.1
    old_env, old_flag = os.environ.get(var), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[var], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old_env


def _init(ray, **kw) -> None:
    """``ray.init``, keeping this process's SIGTERM handler: Ray replaces it with an exit that
    would skip the run's own clean-up and its "interrupted" line."""
    import signal

    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGTERM) if main else None
    try:
        with warnings.catch_warnings():           # the Ray client's connection notes
            warnings.simplefilter("ignore")
            ray.init(**kw)
    finally:
        if main and old is not None:
            signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _messages_to_log(ray):
    """Ray's driver-side messages (a worker died, a task will be retried), which it prints
    to stdout whatever ``log_to_driver`` says, go to the ``wavdiff.ray`` logger instead:
    this run reports its songs itself, in its summary."""
    from ray._private import worker as ray_worker

    old = ray_worker.print_to_stdstream
    ray_worker.print_to_stdstream = _to_log
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = old


def _to_log(data, ignore_prefix=False) -> None:
    """Where Ray's driver-side messages (a worker died, a task is retried) go: the log."""
    for line in data.get("lines", []):
        _LOG.info("%s: %s", data.get("pid", "ray"), line)

_LOG = logging.getLogger("wavdiff.ray")


def _check_reachable(address: str) -> None:
    """Fail fast, in one line, when ``host:port`` does not answer (Ray itself waits minutes)."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise RayConnectError(f"--ray-address {address!r} is not 'auto', 'host:port' or "
                              f"'ray://host:port'")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RayConnectError(f"cannot reach the Ray cluster at {address} "
                              f"({exc.strerror or type(exc).__name__}); start it with `ray start "
                              f"--head` on that machine, or check the address and port") from None


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None):
    """Join or start Ray for the body; Ray started here is shut down at the end.

    Parameters
    ----------
    address : str, optional
        ``None``: a Ray already running in this process, else an embedded local one
        started here (``num_cpus`` CPUs, :data:`OBJECT_STORE_BYTES` of object store, on the
        loopback address).  ``"auto"``: the cluster this machine belongs to (``ray start``);
        ``"host:port"`` or ``"ray://host:10001"``: that cluster.
    num_cpus : int, optional
        CPUs of an embedded Ray (default: all).

    Yields
    ------
    RaySession

    Raises
    ------
    RayUnavailableError
        Ray is not installed (the message names the extra).
    RayConnectError
        The address cannot be reached (the message names it).
    """
    ray = import_ray(address)
    if ray.is_initialized():
        yield _describe(ray, RaySession(address=address or ""), time.perf_counter())
        return
    _quiet_env()
    quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_messages_to_log(ray))
        if address:
            address = str(address).strip()
            _connect(ray, address, quiet)
        else:
            stack.enter_context(_loopback(ray))
            # every process of this Ray (agents, workers: Ray's children, not ours) ends with
            # this one, even when it is killed (Ray leaves some for minutes)
            run = stack.enter_context(die_with_this_process(patterns=[_session_pattern()]))
            with run.mark():
                # "local": a new Ray here, even where `ray start` left a cluster to join
                _init(ray, address="local", num_cpus=num_cpus,
                      object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False, **quiet)
            run.claim(_session_folder(ray))
        try:
            yield _describe(ray, RaySession(address=address or "", started=not address), t0)
        finally:
            ray.shutdown()


def _session_pattern() -> str:
    """The paths of a Ray session started by this process (before it can name its folder):
    Ray names the folder ``session_<date>_<time>_<microseconds>_<pid of the driver>``."""
    return rf".*/session_[^/]*_{os.getpid()}(/.*)?"


def _session_folder(ray) -> str:
    """The folder of the Ray session started here (its logs and sockets), or ``""``."""
    with contextlib.suppress(Exception):
        return str(ray._private.worker._global_node.get_session_dir_path())
    return ""


def _token_mode() -> None:
    """Clusters made by ``ray start`` (Ray 2.60) ask for their token, which only ``"auto"`` finds
    by itself: with a token at hand (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token``, which ``ray start --head`` writes) and no ``RAY_AUTH_MODE`` set, it
    is sent to explicit addresses too."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") \
            or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _connect(ray, address: str, quiet: dict) -> None:
    if address != "auto":
        _check_reachable(address)
    if address.startswith("ray://"):
        import importlib.util

        if importlib.util.find_spec("grpc") is None:      # the Ray client's transport
            raise RayUnavailableError(f"--ray-address {address} uses the Ray client, which "
                                      f"needs ray[client] (grpcio): {RAY_EXTRA}")
    # the nodes run this process's wavdiff_utils (shipped by Ray), whatever version they have,
    # with this process's WAVDIFF_* settings (e.g. $WAVDIFF_MUQ_MODEL)
    env = {"py_modules": [str(Path(__file__).resolve().parent.parent)], "excludes": ["__pycache__"]}
    if wavdiff_env():
        env["env_vars"] = wavdiff_env()
    try:
        _init(ray, address=address, runtime_env=env, **quiet)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        why = first_line(exc)
        if address == "auto" and "Could not find any running Ray" in why:
            why = ("no Ray cluster runs on this machine (start one with `ray start --head`, or "
                   "give --ray-address host:port)")
        elif "auth" in f"{exc} {exc.__cause__}".lower() or "timeout" in why.lower():
            why += (" (a cluster made by `ray start` asks for its token: set RAY_AUTH_TOKEN to "
                    "what `ray get-auth-token` prints on its head, and RAY_AUTH_MODE=token)")
        raise RayConnectError(f"cannot join the Ray cluster at {address}: {why}") from None


def wavdiff_env() -> dict:
    """This process's ``WAVDIFF_*`` environment variables, for the nodes of a joined cluster
    (``runtime_env`` ``env_vars``); a value naming an existing relative path made absolute."""
    out = {}
    for k, v in os.environ.items():
        if k.startswith("WAVDIFF_"):
            out[k] = absolute_if_local(v)
    return out


def absolute_if_local(value: str) -> str:
    """``value`` as an absolute path when it names a file or folder here, or looks like a path
    (``./x``, ``~/x``, ``a/b/c``); else (a hub id such as ``owner/name``) as it is."""

    name = str(value).strip()
    if not name:
        return value
    with contextlib.suppress(ValueError, OSError):
        p = resolve(name)
        if p.exists() or looks_local(name):
            return str(p)
    return value


def _describe(ray, session: RaySession, t0: float) -> RaySession:
    session.start_seconds = time.perf_counter() - t0
    if session.address and not session.started:    # "auto" -> the address it found
        session.address = _resolved_address(ray, session.address)
    res = ray.cluster_resources()
    session.cpus, session.gpus = int(res.get("CPU", 0)), int(res.get("GPU", 0))
    session.nodes = max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
    return session


def _resolved_address(ray, address: str) -> str:
    """The address a joined cluster answered at (the GCS's ``host:port`` for ``"auto"``);
    ``address`` as given when Ray does not say (the Ray client keeps its ``ray://``)."""
    if address.startswith("ray://"):
        return address
    with contextlib.suppress(Exception):
        found = ray.get_runtime_context().gcs_address
        if found:
            return found if address != "auto" else f"{found} (found by 'auto')"
    return address


def on_node(*paths) -> str:
    """``""``, or a failure line naming this node when a path the driver gave is not visible
    here (the Ray tasks and actors, and the shard writer, check with it)."""
    for p in paths:
        if not os.path.exists(p):
            return (f"{p}: not found on node {socket.gethostname()}; on a cluster the input, "
                    f"output and shard folders must be visible to every node at the same path")
    return ""


def _stream(work, fallback):
    """Run ``work(tick)`` in a thread and yield ``("tiles", n)`` counts at most every
    :data:`TICK_S` seconds while it runs, then ``("done", its result)``.

    ``fallback(why)`` makes the result when ``work`` raises (``why`` is ``TypeName: first
    line`` of the exception) or ends without one."""
    q: queue.SimpleQueue = queue.SimpleQueue()
    box = {}

    def run():
        try:
            box["out"] = work(q.put)
        except BaseException as exc:          # kept for the result, not lost with the thread
            box["error"] = f"{type(exc).__name__}: {first_line(exc)}"
        finally:
            q.put(None)

    thread = threading.Thread(target=run, name="wavdiff-ray-task", daemon=True)
    thread.start()
    n, last = 0, time.monotonic()
    while True:
        try:
            item = q.get(timeout=TICK_S)
        except queue.Empty:
            item = 0
        if item is None:
            break
        n += item
        if n and time.monotonic() - last >= TICK_S:
            yield "tiles", n
            n, last = 0, time.monotonic()
    thread.join()
    if n:
        yield "tiles", n
    if "out" in box:
        yield "done", box["out"]
    else:
        yield "done", fallback(box.get("error", "it stopped without a result"))

# =========================================================================== encode


def _encode_task(path, output, params, song, overwrite, png_compression):
    """One song, in a Ray worker (a generator task: tile counts, then ``(result, failure)``)."""

    silence_library_warnings()
    problem = on_node(path, output)
    if problem:
        yield "done", (None, (str(path), problem))
        return
    yield from _stream(lambda tick: encode_one(path, output, params=params, song=song,
                                               overwrite=overwrite,
                                               png_compression=png_compression, progress=tick),
                       lambda why: (None, (str(path), f"{path}: encode task failed: {why}")))

_REMOTE: dict = {}


def remote(name, fn, **options):
    ray = import_ray()
    if name not in _REMOTE:
        _REMOTE[name] = ray.remote(fn)
    return _REMOTE[name].options(**options)


def _died(path, exc, retries: int) -> str:
    from ray.exceptions import RayTaskError

    if isinstance(exc, RayTaskError):       # an error inside the task (not the song: ours)
        cause = getattr(exc, "cause", None) or exc
        return f"{path}: encode task failed: {type(cause).__name__}: {first_line(cause)}"
    return (f"{path}: its Ray worker died ({type(exc).__name__}) and {retries} retr"
            f"{'y' if retries == 1 else 'ies'} did not finish it; nothing of the song was "
            f"published: run again to redo it")


def _encode_whole(path, output, params, song, overwrite, png_compression):
    """One song in a Ray worker, as a plain task: ``(result, failure)`` (no tile counts: the
    Ray client, ``ray://``, has no generator tasks)."""
    *_, (kind, value) = _encode_task(path, output, params, song, overwrite, png_compression)
    return value


def _client_mode(ray) -> bool:
    with contextlib.suppress(Exception):
        return bool(ray.util.client.ray.is_connected())
    return False


def run_encode(jobs, *, limit: int, on_tiles, on_done) -> None:
    """Encode ``jobs`` (the local engine's ``(path, output, params, song, overwrite,
    png_compression)`` tuples) as Ray tasks, at most ``limit`` in flight.

    ``on_tiles(song, n)`` is called as tiles are written (through the Ray client: as each
    song ends); ``on_done(result, failure, song)`` once per song.  On an interrupt the tasks
    in flight are cancelled (their finished tiles stay for the next run) and the interrupt
    goes on.
    """
    ray = import_ray()
    retries = TASK_RETRIES
    stream = not _client_mode(ray)
    task = (remote("encode", _encode_task, num_cpus=1, max_retries=retries) if stream
            else remote("encode-whole", _encode_whole, num_cpus=1, max_retries=retries))
    waiting, running = deque(jobs), {}
    try:
        while waiting or running:
            while waiting and len(running) < max(1, limit):
                job = waiting.popleft()
                running[task.remote(*job)] = job
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
            for gen in ready:
                job = running[gen]
                try:
                    kind, value = ray.get(next(gen)) if stream else ("done", ray.get(gen))
                except StopIteration:
                    kind, value = "done", (None, (str(job[0]), f"{job[0]}: the encode task "
                                                               f"ended without a result"))
                except ray.exceptions.RayError as exc:
                    kind, value = "done", (None, (str(job[0]), _died(job[0], exc, retries)))
                if kind == "tiles":
                    on_tiles(job[3], value)
                else:
                    del running[gen]
                    on_done(*value, job[3])
    except BaseException:
        cancel(ray, running)
        raise


def cancel(ray, refs) -> None:
    for ref in list(refs):
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)

# =========================================================================== shards


def run_shard_tasks(fn, jobs, *, on_done) -> None:
    """Run ``fn(*job)`` for every job as a Ray task (one per shard), ``on_done(job, value,
    error)`` as each ends (``error`` is the first line of what went wrong, else ``""``)."""
    ray = import_ray()
    task = remote(f"shard:{fn.__module__}.{fn.__name__}", fn, num_cpus=1,
                   max_retries=TASK_RETRIES)
    running = {task.remote(*job): job for job in jobs}
    try:
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
            for ref in ready:
                job = running.pop(ref)
                try:
                    on_done(job, ray.get(ref), "")
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    on_done(job, None, f"{type(cause).__name__}: {first_line(cause)}")
    except BaseException:
        cancel(ray, running)
        raise

