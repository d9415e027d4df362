"""Whole commands, as a user runs them, timed A/B against the original recipe on the same file.

Each run is a fresh Python process (imports, start-up and writing included); the
two sides alternate, run after run, so that other work on the machine weighs on
both alike, and the figures are medians.  Peak memory is each process's own
maximum resident set (``ru_maxrss`` from ``os.wait4``).

``python -m wavdiff_utils.bench.command FILE [FILE ...] [--repeats 5]``
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..paths import REPO_ROOT, song_id

__all__ = ["COMMANDS", "run_command", "compare_commands", "command_summary_lines"]

_PY = sys.executable
#: name -> argv template ({input}, {output}, {tiles}); "ours" is what the README tells a user to run.
COMMANDS = {
    "encode ours": [_PY, "-m", "wavdiff_utils", "--input", "{input}", "--output", "{output}",
                    "--captioner", "none", "--no-report"],
    "encode original recipe": [_PY, "-c", "import sys; from wavdiff_utils.bench.reference "
                               "import reference_encode; reference_encode(sys.argv[1], sys.argv[2])",
                               "{input}", "{output}"],
    "decode ours": [_PY, "-c", "import sys; from wavdiff_utils import decode_song; "
                    "decode_song(sys.argv[1], sys.argv[2])", "{tiles}", "{output}/out.wav"],
    "decode original recipe": [_PY, "-c", "import sys; from wavdiff_utils.bench.reference "
                               "import reference_decode; reference_decode(sys.argv[1], sys.argv[2])",
                               "{reference_tiles}", "{output}/out.wav"],
    "start-up ours": [_PY, "-c", "import wavdiff_utils.jobs.encode, wavdiff_utils.jobs.decode"],
    "start-up python": [_PY, "-c", "pass"],
}


def run_command(argv: list[str]) -> dict:
    """Run one command in a fresh process: wall seconds, CPU seconds (user + system, all its
    threads) and peak memory (MiB)."""
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT)] + ([path] if path else [])))
    # stderr goes to a file, not a pipe: a pipe nobody reads while the process runs fills up
    # (a progress bar on a long file) and the command would wait for ever
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errf, env=env,
                                cwd=str(REPO_ROOT))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    code = proc.returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed (exit {code}): {err[-1500:]}")
    return {"seconds": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024}


def compare_commands(audio, *, repeats: int = 5, workdir=None) -> dict:
    """Encode and decode ``audio`` with ours and the original recipe, alternating, ``repeats`` times.

    Returns
    -------
    dict
        ``rows``: per command the median seconds, peak memory, x realtime;
        ``ratios``: ours vs the recipe (encode, decode, memory); ``audio_seconds``.
    """
    import soundfile as sf

    audio = Path(audio)
    seconds = sf.info(str(audio)).duration
    work = Path(workdir or tempfile.mkdtemp(prefix="wavdiff-cmd-"))
    runs: dict[str, list] = {k: [] for k in COMMANDS}
    try:
        for r in range(max(1, int(repeats))):
            for name, argv in COMMANDS.items():
                out = work / f"{name.replace(' ', '_')}_{r}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                fill = {"input": str(audio), "output": str(out),
                        "tiles": str(work / "encode_ours_0" / _song(audio)),
                        "reference_tiles": str(work / "encode_original_recipe_0")}
                runs[name].append(run_command([a.format(**fill) for a in argv]))
                if r and name.startswith("encode"):
                    shutil.rmtree(out, ignore_errors=True)    # keep run 0 for the decoders
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    rows = {}
    for name, rs in runs.items():
        med = statistics.median(x["seconds"] for x in rs)
        rows[name] = {"command": name, "median_s": round(med, 3),
                      "min_s": round(min(x["seconds"] for x in rs), 3),
                      "cpu_s": round(statistics.median(x["cpu_s"] for x in rs), 3),
                      "peak_mib": round(max(x["peak_mib"] for x in rs), 1),
                      "x_realtime": round(seconds / med, 1) if not name.startswith("start") else None}
    ratio = {
        "encode (recipe time / ours)": rows["encode original recipe"]["median_s"] / rows["encode ours"]["median_s"],
        "decode (recipe time / ours)": rows["decode original recipe"]["median_s"] / rows["decode ours"]["median_s"],
        "encode peak memory (ours / recipe)": rows["encode ours"]["peak_mib"] / rows["encode original recipe"]["peak_mib"],
        "start-up (ours - bare python), s": rows["start-up ours"]["median_s"] - rows["start-up python"]["median_s"],
        "encode, audio s per CPU-s (whole process)": seconds / rows["encode ours"]["cpu_s"],
        # steady state: the process's CPU time less what its start-up (imports) costs
        "encode, audio s per CPU-s (steady state)":
            seconds / max(1e-9, rows["encode ours"]["cpu_s"] - rows["start-up ours"]["cpu_s"]),
    }
    return {"audio": str(audio), "audio_seconds": round(seconds, 2), "repeats": int(repeats),
            "rows": list(rows.values()), "ratios": {k: round(v, 2) for k, v in ratio.items()},
            "cpu_count": os.cpu_count(),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def _song(audio: Path) -> str:

    return song_id(audio)


def command_summary_lines(result: dict) -> list[str]:
    """Table lines of :func:`compare_commands`."""
    lines = [f"{Path(result['audio']).name}: {result['audio_seconds']:.1f} s of audio, median of "
             f"{result['repeats']} alternating runs",
             f"{'command':>24s} {'median s':>9s} {'CPU s':>7s} {'x realtime':>10s} {'peak MiB':>9s}"]
    for r in result["rows"]:
        xr = f"{r['x_realtime']:.1f}" if r["x_realtime"] else ""
        lines.append(f"{r['command']:>24s} {r['median_s']:9.2f} {r.get('cpu_s', 0):7.2f} {xr:>10s} "
                     f"{r['peak_mib']:9.0f}")
    lines += [f"  {k}: {v}" for k, v in result["ratios"].items()]
    return lines

if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default="outputs/benchmark/commands.json")
    a = ap.parse_args()
    results = [compare_commands(f, repeats=a.repeats) for f in a.files]
    for res in results:
        print("\n".join(command_summary_lines(res)))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"saved {a.json}")
