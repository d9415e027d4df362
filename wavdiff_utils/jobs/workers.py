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

Processes this one does not start itself (an embedded Ray's servers, agents and workers,
started by Ray) end with it through :func:`die_with_this_process`: a small watcher
process kills every process marked with the run's token when this one dies, even by
``kill -9``.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..codec.transform import stft
from ..codec.params import CodecParams
from ..codec.threads import mark_in_pool

__all__ = ["init_worker", "make_pool", "stop_pool", "silence_library_warnings", "die_with_parent", "forks_of",
           "native_stderr_silenced", "die_with_this_process", "RUN_MARK"]

_PR_SET_PDEATHSIG = 1
#: Environment variable marking the processes started under :func:`die_with_this_process`.
RUN_MARK = "WAVDIFF_RUN_MARK"
#: What the watcher process runs (it imports this module, nothing heavier).
_WATCHER = "from wavdiff_utils.jobs.workers import watch_and_sweep; watch_and_sweep()"


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


@contextlib.contextmanager
def die_with_this_process(*, patterns=()):
    """Processes started under the block's ``mark()``, and all they start in turn, end with
    this process: at the end of the block, or within a second when this process is killed
    (``kill -9`` included).

    The children of an embedded Ray (its servers, agents and workers) are Ray's, not ours:
    they cannot call :func:`die_with_parent`, and some outlive a killed driver by minutes.
    So a watcher process (its own session, out of reach of Ctrl-C) holds a pipe from this
    one; when the pipe ends (this process exited or died) or its parent changes, it kills
    every process of the run: those whose environment carries the block's :data:`RUN_MARK`
    token, and those using a folder the block ``claim()``-ed (Ray's session folder: its
    agents rename themselves and clear their environment) or a path matching one of
    ``patterns``.  Without a Python to start the watcher with, or off Linux and macOS, the
    block runs unwatched.

    Parameters
    ----------
    patterns : sequence of str
        Regular expressions: a process whose command line or open files match one belongs to
        the run (for processes started before the block can ``claim()`` their folder).

    Examples
    --------
    >>> with die_with_this_process() as run:          # doctest: +SKIP
    ...     with run.mark():
    ...         ray.init()
    ...     run.claim(session_folder)
    """
    run = _Run(f"{os.getpid()}-{uuid.uuid4().hex}")
    for pattern in patterns:
        run.send("re", pattern)
    try:
        yield run
    finally:
        run.close()


class _Run:
    """The driver's side of :func:`die_with_this_process`: the token and the watcher's pipe."""

    def __init__(self, token: str):
        self.token = token
        self.watcher = _start_watcher(token)

    @contextlib.contextmanager
    def mark(self):
        """Processes started in this block carry the run's token (and their children too)."""
        old = os.environ.get(RUN_MARK)
        os.environ[RUN_MARK] = self.token
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(RUN_MARK, None)
            else:
                os.environ[RUN_MARK] = old

    def claim(self, folder) -> None:
        """Processes with ``folder`` (or a file in it) open or on their command line belong to
        the run."""
        if folder:
            self.send("dir", str(folder))

    def send(self, kind: str, value: str = "") -> None:
        """One line to the watcher: ``dir`` (a folder), ``re`` (a pattern) or ``end``."""
        if self.watcher is not None and "\n" not in value:
            with contextlib.suppress(OSError, ValueError):
                self.watcher.stdin.write(f"{kind} {value}\n".encode())
                self.watcher.stdin.flush()

    def close(self) -> None:
        """The block ended: the watcher sweeps what is left of the run, then exits."""
        if self.watcher is None:
            return
        self.send("end")
        with contextlib.suppress(OSError, ValueError):
            self.watcher.stdin.close()
        try:
            self.watcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.watcher.kill()
            self.watcher.wait()


def _start_watcher(token: str):
    if not sys.executable or not sys.platform.startswith(("linux", "darwin")):
        return None
    root = str(Path(__file__).resolve().parents[2])          # the wavdiff_utils imported here
    env = {k: v for k, v in os.environ.items() if k != RUN_MARK}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        return subprocess.Popen([sys.executable, "-c", _WATCHER, str(os.getpid()), token],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError:
        return None


def watch_and_sweep() -> None:
    """The watcher's body (``python -c``; arguments: the watched pid and the token): wait for
    the watched process to end the block or die, then kill the processes of its run."""
    parent, token = int(sys.argv[1]), sys.argv[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    claims = _read_claims(sys.stdin.fileno(), parent)
    sweep(token, claims["dir"], claims["re"], spare=(os.getpid(), parent, *forks_of(parent)))


def forks_of(pid: int) -> list:
    """Living children of ``pid`` running its very command line: its own forks (a torch
    ``DataLoader``'s workers, a fork pool's), which inherit its open files, Ray's session logs
    included, and so would look like the run's; they are the process's to end, not the
    watcher's.  Linux only (elsewhere none)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and (d / "cmdline").read_bytes() == cmdline:
                found.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _read_claims(fd: int, parent: int) -> dict:
    """The folders (``dir``) and patterns (``re``) claimed on the pipe ``fd``, until "end",
    its end (the watched process is gone), or a new parent (the pipe is held open
    elsewhere, but the watched process died)."""
    claims, buf = {"dir": [], "re": []}, b""
    while True:
        if not select.select([fd], [], [], 0.5)[0]:
            if os.getppid() != parent:
                return claims
            continue
        chunk = os.read(fd, 65536)
        *lines, buf = (buf + chunk).split(b"\n")
        for line in lines:
            kind, _, value = line.decode(errors="replace").partition(" ")
            if kind not in claims:
                return claims
            claims[kind].append(value)
        if not chunk:
            return claims


def sweep(token: str, folders=(), patterns=(), *, spare=(), rounds: int = 20) -> list:
    """Kill (SIGKILL) the processes of a run: those whose environment holds
    ``RUN_MARK=token``, or whose command line or open files lie in one of ``folders`` or
    match one of the regular expressions ``patterns``, except the pids in ``spare``; again
    until none is left (a dying server may start one more).

    Returns
    -------
    list of int
        The pids killed.
    """
    killed = []
    uses = _in_folders([str(f).rstrip("/") for f in folders], [re.compile(p) for p in patterns])
    for _ in range(rounds):
        found = [pid for pid in _run_pids(token, uses) if pid not in spare and pid not in killed]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.1)
    return killed


def _in_folders(folders: list, patterns: list):
    """A test of paths: does one lie in (or name) one of ``folders``, or match a pattern?"""
    def uses(paths) -> bool:
        return any(p == f or p.startswith(f + "/") for p in paths for f in folders) or any(
            pat.fullmatch(p) for p in paths for pat in patterns)
    return uses


def _run_pids(token: str, uses) -> list:
    """Pids of this user's processes marked with ``token``, or using paths that ``uses``."""
    needle = f"{RUN_MARK}={token}".encode()
    if not os.path.isdir("/proc/self"):
        return _run_pids_psutil(token, uses)
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(name))
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
            fds = [os.readlink(f"/proc/{name}/fd/{fd}") for fd in os.listdir(f"/proc/{name}/fd")]
        except OSError:                      # another user's process, or it ended meanwhile
            continue
        if uses([a.split("=", 1)[-1] for a in args] + fds):
            found.append(int(name))
    return found


def _run_pids_psutil(token: str, uses) -> list:
    try:
        import psutil                       # macOS: no /proc
    except ImportError:
        return []
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.environ().get(RUN_MARK) == token or uses(
                    [a.split("=", 1)[-1] for a in p.cmdline()]
                    + [f.path for f in p.open_files()]):
                found.append(p.pid)
    return found
