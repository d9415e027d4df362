"""One run per output folder: a lock file with the owner's pid, host and a heartbeat.

:func:`output_lock` creates ``<output>/.wavdiff.lock`` with ``O_CREAT | O_EXCL``
(atomic on local disks and on NFS v3+), writes the holder's pid, host and start
time into it and refreshes its heartbeat every few seconds from a daemon thread.
A second run on the same folder stops at once with
:class:`~wavdiff_utils.errors.OutputLockedError` naming the holder.  A lock is
stale, and is taken over, when its heartbeat is older than ``stale_after``
seconds (the holder was killed, or its machine went away) or when its holder is
a process on this host that no longer exists.  The lock is re-entrant within one
process, so ``run_pipeline`` and the encode step it calls share it.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import threading
import time
from pathlib import Path

from ..errors import OutputLockedError, UnwritableOutputError

__all__ = ["LOCK_NAME", "output_lock", "read_lock"]

LOCK_NAME = ".wavdiff.lock"
#: Seconds between heartbeats, and the age after which a lock with no heartbeat is stale.
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0

_held: dict[str, int] = {}
_held_lock = threading.Lock()


def read_lock(folder) -> dict | None:
    """The lock record of ``folder`` (``pid``, ``host``, ``started``, ``heartbeat``), or None."""
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}                      # being written this instant, or damaged


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(rec: dict | None, path: Path, stale_after: float) -> bool:
    if rec is None:
        return False
    try:
        age = time.time() - path.stat().st_mtime     # the heartbeat touches the file
    except FileNotFoundError:
        return False
    if age > stale_after:
        return True
    if rec.get("host") == socket.gethostname() and isinstance(rec.get("pid"), int):
        return not _pid_alive(rec["pid"])
    return False


def _describe(rec: dict | None, path: Path) -> str:
    if not rec:
        return f"another run (lock file {path})"
    try:
        beat = time.time() - path.stat().st_mtime
    except OSError:
        beat = 0.0
    return (f"another run (pid {rec.get('pid')} on host {rec.get('host')}, started "
            f"{rec.get('started')}, last heartbeat {beat:.0f} s ago)")


def _remove_stale(path: Path, rec: dict) -> None:
    """Move the stale lock ``rec`` out of the way; if another run replaced it meanwhile (it took
    the lock over first), put that one back instead of deleting it."""
    aside = path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    try:
        mine = json.loads(aside.read_text(encoding="utf-8")) == rec
    except (OSError, ValueError):
        mine = True
    if not mine:
        with contextlib.suppress(OSError):
            os.link(aside, path)         # fails if a third run holds it now: theirs stays
    with contextlib.suppress(OSError):
        aside.unlink()


@contextlib.contextmanager
def output_lock(folder, *, stale_after: float = STALE_AFTER_S, heartbeat: float = HEARTBEAT_S):
    """Hold ``folder``'s lock for the body (the folder is created).

    Parameters
    ----------
    folder : path-like
        The output folder.
    stale_after : float
        Seconds without a heartbeat after which a lock is taken over.
    heartbeat : float
        Seconds between heartbeats.

    Raises
    ------
    OutputLockedError
        Another live run holds the lock; the message names its pid and host.
    UnwritableOutputError
        The folder or its lock file cannot be created.
    """
    folder = Path(folder).absolute()
    key = str(folder)
    with _held_lock:
        if _held.get(key):
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield folder
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnwritableOutputError(folder, exc, "output folder cannot be created") from None
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            rec = read_lock(folder)
            if attempt == 0 and _stale(rec, path, stale_after):
                _remove_stale(path, rec)
                continue
            raise OutputLockedError(f"{folder}: output folder is in use by {_describe(rec, path)}; "
                                    f"wait for it to finish, or delete {path} if that run is "
                                    f"gone") from None
        except OSError as exc:
            raise UnwritableOutputError(folder, exc, "output folder cannot be written") from None
    else:                                   # the stale lock was re-taken by someone else meanwhile
        raise OutputLockedError(f"{folder}: output folder is in use by {_describe(read_lock(folder), path)}")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f)
    stop = threading.Event()

    def beat():
        while not stop.wait(heartbeat):
            with contextlib.suppress(OSError):
                os.utime(path)

    thread = threading.Thread(target=beat, name="wavdiff-lock-heartbeat", daemon=True)
    thread.start()
    with _held_lock:
        _held[key] = 1
    try:
        yield folder
    finally:
        stop.set()
        with _held_lock:
            _held.pop(key, None)
        with contextlib.suppress(OSError):
            if read_lock(folder) == record:
                path.unlink()
