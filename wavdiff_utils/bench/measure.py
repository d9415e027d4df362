"""Measuring for the benchmark: wall time of a call, and peak memory of a job in a fresh process.

:func:`run_in_subprocess` runs one encode, decode or reference job in a new
Python process and returns that process's own peak resident memory (VmHWM),
its baseline after the imports and the job's wall time, so the memory figure
is the codec's, not the notebook's.
"""
from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import time
from typing import Callable

from ..codec.params import CodecParams
from ..paths import REPO_ROOT

__all__ = ["measure", "timed", "run_in_subprocess", "peak_memory_of_encode",
           "peak_memory_of_decode", "peak_memory_of_reference_encode"]


def timed(fn: Callable, *args, **kwargs):
    """``(wall seconds, result)`` of one call of ``fn(*args, **kwargs)``."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def measure(fn: Callable, *args, repeats: int = 1, setup: Callable | None = None, **kwargs) -> float:
    """Best wall time in seconds of ``repeats`` calls of ``fn(*args, **kwargs)``.

    ``setup()``, if given, runs before every call, outside the timed region
    (e.g. to remove the previous call's output).
    """
    best = math.inf
    for _ in range(max(1, int(repeats))):
        if setup is not None:
            setup()
        best = min(best, timed(fn, *args, **kwargs)[0])
    return best


_CHILD = r"""
import json, sys, time

def _peak():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)

job = json.loads(sys.argv[1])
import cv2, librosa, numpy, soundfile, soxr  # noqa: F401  (the baseline counts the imports)
from wavdiff_utils.bench.reference import reference_decode, reference_encode
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils import decode_song, encode_song
base = _peak()
t0 = time.perf_counter()
kind = job["kind"]
if kind == "encode":
    encode_song(job["input"], job["output"], params=CodecParams.from_dict(job["params"]),
                overwrite=True)
elif kind == "decode":
    decode_song(job["input"], job["output"])
elif kind == "reference_encode":
    reference_encode(job["input"], job["output"])
elif kind == "reference_decode":
    reference_decode(job["input"], job["output"])
else:
    raise SystemExit("unknown job " + repr(kind))
seconds = time.perf_counter() - t0
print("WAVDIFF_BENCH " + json.dumps({"peak_bytes": _peak(), "baseline_bytes": base,
                                     "seconds": seconds}), flush=True)
"""


def run_in_subprocess(kind: str, input, output, params: CodecParams | None = None) -> dict:
    """Run one job in a fresh Python process and return its own figures.

    Parameters
    ----------
    kind : {"encode", "decode", "reference_encode", "reference_decode"}
        ``encode_song(input, output)``, ``decode_song(input, output)`` or the reference.
    params : CodecParams, optional
        For ``"encode"`` (default ``CodecParams()``).

    Returns
    -------
    dict
        ``peak_bytes``: the child's peak resident memory (VmHWM, from
        ``/proc/self/status``; ``ru_maxrss`` where there is no ``/proc``);
        ``baseline_bytes``: its peak after the imports, before the job;
        ``seconds``: the job's wall time, imports excluded.
    """
    job = {"kind": kind, "input": str(input), "output": str(output),
           "params": (params or CodecParams()).to_dict()}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(job)], capture_output=True,
                          text=True, env=env, cwd=str(REPO_ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess ({kind} {input}) failed with exit code "
                           f"{proc.returncode}:\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("WAVDIFF_BENCH "):
            return json.loads(line[len("WAVDIFF_BENCH "):])
    raise RuntimeError(f"benchmark subprocess ({kind}) printed no figures:\n{proc.stdout[-2000:]}")


def peak_memory_of_encode(wav_path, out_dir, params: CodecParams | None = None) -> int:
    """Peak resident memory in bytes of ``encode_song(wav_path, out_dir)`` in a fresh process."""
    return int(run_in_subprocess("encode", wav_path, out_dir, params)["peak_bytes"])


def peak_memory_of_decode(song_dir, out_wav) -> int:
    """Peak resident memory in bytes of ``decode_song(song_dir, out_wav)`` in a fresh process."""
    return int(run_in_subprocess("decode", song_dir, out_wav)["peak_bytes"])


def peak_memory_of_reference_encode(wav_path, out_dir) -> int:
    """Peak resident memory in bytes of :func:`~wavdiff_utils.bench.reference.reference_encode` in a fresh process."""
    return int(run_in_subprocess("reference_encode", wav_path, out_dir)["peak_bytes"])
