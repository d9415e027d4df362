"""Resource guards: a parameter that multiplies memory is checked against what the machine has
before anything is allocated, and refused in one line that names it, the estimate and the
largest value that fits (``size 100000: needs about 400 GB, 12.1 GB available; at most 8192``).
"""
from __future__ import annotations

import os

from ..errors import BadParameterError

__all__ = ["available_memory", "check_memory", "check_at_most", "gb"]

#: Share of the available memory one run may plan to use.
MEMORY_SHARE = 0.5


def available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``; else free pages; else 4 GB)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def gb(n: float) -> str:
    """Bytes as a short size (``1.2 GB``, ``340 MB``)."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _largest(need_for, value: int, budget: float) -> int:
    """The largest whole number in ``[1, value]`` whose need fits ``budget`` (0 if none)."""
    lo, hi = 0, int(value)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need_for(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_memory(name: str, value: int, need_for, *, available: int | None = None,
                 share: float = MEMORY_SHARE, unit: str = "") -> None:
    """Refuse ``value`` of option ``name`` when ``need_for(value)`` bytes exceed ``share`` of the
    available memory.

    Parameters
    ----------
    name : str
        The option, as the user wrote it (``"size"``, ``"batch_size"``).
    value : int
        Its value; ``need_for`` must grow with it.
    need_for : callable
        Estimated peak bytes for a value.
    available : int, optional
        Bytes available (default :func:`available_memory`).
    share : float
        Share of ``available`` a run may plan to use.
    unit : str
        Appended to the values in the message (``" px"``).

    Raises
    ------
    BadParameterError
        One line: the option, its value, the estimate, the memory available and the largest
        value that fits.
    """
    need = need_for(value)
    avail = available_memory() if available is None else int(available)
    budget = share * avail
    if need <= budget:
        return
    most = _largest(need_for, value, budget)
    limit = f"at most {most}{unit}" if most else "no value fits"
    raise BadParameterError(f"{name} {value}{unit}: needs about {gb(need)}, {gb(avail)} "
                            f"available; {limit}")


def check_at_most(name: str, value, maximum, why: str) -> None:
    """Refuse ``value`` above a hard ``maximum`` (where no estimate fits), saying ``why``."""
    if value > maximum:
        raise BadParameterError(f"{name} {value}: at most {maximum} ({why})")
