"""What stereo costs and what the side tile holds, measured on real music.

Two measurements for ``CodecParams(channels="stereo")`` (issue 25), used by
``notebooks/05_benchmark.ipynb`` and ``python -m wavdiff_utils.bench.stereo FILES...``:

- :func:`side_range`: each file encoded as stereo; from its manifest the side's sample peak and
  the clipped magnitude values (side and mid), and from its side tiles the distribution of the
  side's magnitudes in dB: the loudest bin of the song, its headroom below ``db_max``, the share
  of pixels at 0 (at or below its floor) and percentiles of the rest.  The side tile's range is
  ``[db_min - SIDE_FLOOR_DROP_DB, db_max]`` (:meth:`CodecParams.side_codec`); this tells whether
  its top fits the side (clipping) and how much of it sits on the floor;
- :func:`stereo_cost`: the same song encoded as mono and as stereo, each a fresh process, the runs
  alternating; wall time of the encode and of the whole process (start-up included), and the
  peak resident memory at the song's length and at a clip of it (flat memory: the same peak).

Speed figures depend on the machine and on what else runs on it: read the ratios, measured in
one run, never absolute seconds.
"""
from __future__ import annotations

import math
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..codec.transform import FULL_SCALE
from ..errors import BadParameterError, MissingInputError
from ..io.audio import AudioStream, audio_info
from ..io.manifest import read_manifest
from ..io.tiles import read_tile
from ..jobs.encode import encode_song
from ..paths import SAMPLE_AUDIO, resolve
from .measure import run_in_subprocess

__all__ = ["STEREO_TIME_TARGET", "side_range", "side_range_lines", "stereo_cost",
           "stereo_cost_lines", "run_stereo_benchmark", "default_music", "main"]

#: Issue 25: a stereo encode takes at most this many times the mono encode of the same song.
STEREO_TIME_TARGET = 2.2

_MIB = float(1 << 20)


def default_music() -> list[Path]:
    """The fetched tracks (``outputs/music/*.ogg``, ``scripts/fetch_music.py``), else the sample."""
    folder = resolve("outputs/music")
    fetched = sorted(folder.glob("*.ogg")) if folder.is_dir() else []
    return fetched or [SAMPLE_AUDIO]


# =========================================================================== side range

def _red_counts(path: Path, frames: int) -> np.ndarray:
    """Pixel-value counts (65536 bins) of a tile's red plane, its first ``frames`` columns."""
    red = read_tile(path, warn=False).pixels[:, :frames, 0]
    return np.bincount(red.ravel(), minlength=FULL_SCALE + 1)


def _real_frames(span: dict, params: CodecParams) -> int:
    """Columns of a tile that stand for real samples (the last tile's padding left out)."""
    n = int(span["end"]) - int(span["start"])
    return min(params.frames_per_tile, max(1, math.ceil(n / params.hop_length)))


def _level_figures(counts: np.ndarray, params: CodecParams, prefix: str) -> dict:
    """Loudest bin, headroom, share at pixel 0 and percentiles of the others, from counts."""
    to_db = lambda px: params.db_min + float(px) / FULL_SCALE * (params.db_max - params.db_min)  # noqa: E731
    total = int(counts.sum())
    lit = np.flatnonzero(counts[1:]) + 1
    top = to_db(lit[-1]) if len(lit) else params.db_min
    out = {f"{prefix}_max_db": top, f"{prefix}_headroom_db": params.db_max - top,
           f"{prefix}_zero_fraction": float(counts[0] / total) if total else 0.0}
    if prefix == "side":
        cum = np.cumsum(counts[1:])
        for q, name in ((0.01, "p01"), (0.5, "p50"), (0.99, "p99")):
            px = int(np.searchsorted(cum, q * cum[-1])) + 1 if cum[-1] else 0
            out[f"side_{name}_db"] = to_db(px)
    return out


def _side_row(path: Path, folder: Path) -> dict:
    """The figures of one song encoded as stereo into ``folder``."""
    manifest = read_manifest(folder)
    params = CodecParams.from_dict(manifest["codec"])
    mid = np.zeros(FULL_SCALE + 1, dtype=np.int64)
    side = np.zeros_like(mid)
    for t in manifest["tiles"]:
        frames = _real_frames(t, params)
        mid += _red_counts(folder / t["file"], frames)
        side += _red_counts(folder / t["side_file"], frames)
    return {"file": path.name, "seconds": manifest["duration"], "tiles": manifest["n_tiles"],
            "peak": manifest["peak"], "side_peak": manifest["side_peak"],
            "clipped_high": manifest["clipped_high"],
            "side_clipped_high": manifest["side_clipped_high"],
            **_level_figures(side, params.side_codec(), "side"),
            **_level_figures(mid, params.tile_codec(), "mid")}


def side_range(files=None, *, workdir, size: int = 1024, progress=None) -> list[dict]:
    """Encode each file as stereo and measure what its side tiles hold (see the module notes).

    Parameters
    ----------
    files : sequence of path-like, optional
        Stereo music (default :func:`default_music`).
    workdir : path-like
        Scratch folder; each song's tiles are removed once measured.
    size : int
        Tile edge (default 1024, the codec's default).
    progress : callable, optional
        Called with each row as it is made.

    Returns
    -------
    list of dict
        One row per file: ``file``, ``seconds``, ``tiles``, ``peak`` and ``side_peak`` (sample
        peaks), ``clipped_high`` and ``side_clipped_high`` (magnitude values above ``db_max``,
        from the manifest), ``side_max_db`` (the loudest side bin), ``side_headroom_db``
        (``db_max`` less it), ``side_zero_fraction`` (side pixels at 0: at or below ``db_min``),
        ``side_p01_db``, ``side_p50_db``, ``side_p99_db`` (percentiles of the side pixels above
        0), and ``mid_max_db``, ``mid_headroom_db``, ``mid_zero_fraction`` for contrast.  The
        last tile's padding is left out.
    """
    files = [resolve(f, must_exist=True) for f in (files or default_music())]
    params = CodecParams(size=size, channels="stereo")
    scratch = Path(workdir) / "side_range"
    rows = []
    try:
        for f in files:
            res = encode_song(f, scratch, params=params, overwrite=True)
            rows.append(_side_row(f, Path(res.output)))
            shutil.rmtree(res.output, ignore_errors=True)
            if progress is not None:
                progress(rows[-1])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def side_range_lines(rows, *, db_min: float = -130.0, db_max: float = 10.0) -> list[str]:
    """The side-range table as text lines, and one line saying whether the side's range fits
    (``db_min``, ``db_max``: the side tile's, by default the codec's default side range)."""
    head = (f"{'file':26s} {'min':>5s} {'peak':>6s} {'side pk':>7s} {'clip':>5s} {'s clip':>6s} "
            f"{'side max':>8s} {'headroom':>8s} {'side at 0':>9s} {'side p01':>8s} "
            f"{'side p50':>8s} {'side p99':>8s} {'mid max':>7s} {'mid at 0':>8s}")
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['file'][:26]:26s} {r['seconds'] / 60:5.1f} {r['peak']:6.3f} {r['side_peak']:7.3f} "
            f"{r['clipped_high']:5d} {r['side_clipped_high']:6d} {r['side_max_db']:8.1f} "
            f"{r['side_headroom_db']:8.1f} {100 * r['side_zero_fraction']:8.2f}% "
            f"{r['side_p01_db']:8.1f} {r['side_p50_db']:8.1f} {r['side_p99_db']:8.1f} "
            f"{r['mid_max_db']:7.1f} {100 * r['mid_zero_fraction']:7.2f}%")
    if rows:
        clipped = sum(r["side_clipped_high"] for r in rows)
        room = min(r["side_headroom_db"] for r in rows)
        lines.append(f"side range [{db_min:g}, {db_max:g}] dB: {clipped} side values "
                     f"clipped in {len(rows)} file(s), at least {room:.1f} dB of headroom; "
                     f"dB are re a full-scale sine's peak bin, 'at 0' = at or below {db_min:g} dB")
    return lines


# =========================================================================== cost

def _clip(song: Path, seconds: float | None, dest: Path) -> Path:
    """The first ``seconds`` of ``song`` (None: all of it; all its channels, its own rate) as a
    float WAV, so that every length measured is read the same way."""
    import soundfile as sf

    info = audio_info(song)
    if seconds is not None and not seconds > 0:
        raise BadParameterError(f"clip_seconds must be > 0, got {seconds!r}")
    if seconds is not None:                  # a song shorter than the clip: half of it
        seconds = min(seconds, info["duration"] / 2)
    left = info["frames"] if seconds is None else int(round(seconds * info["sample_rate"]))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with AudioStream(song, sample_rate=info["sample_rate"], mono=False) as stream, \
            sf.SoundFile(str(dest), "w", samplerate=info["sample_rate"],
                         channels=info["channels"], subtype="FLOAT") as out:
        for block in stream:
            out.write(block[:left])
            left -= len(block[:left])
            if left <= 0:
                break
    return dest


def _memory_rows(song: Path, scratch: Path, *, size: int, clip_seconds: float) -> list[dict]:
    """Peak memory of a mono and a stereo encode of the first ``clip_seconds`` of ``song`` and
    of all of it, both written as float WAV first (the same reader for both lengths)."""
    rows = []
    for seconds in (clip_seconds, None):
        clip = _clip(song, seconds, scratch / "clip.wav")
        length = audio_info(clip)["duration"]
        for ch in ("mono", "stereo"):
            run = _encode_run(clip, scratch / ch, CodecParams(size=size, channels=ch))
            rows.append({"seconds": length, "channels": ch, "peak_mib": run["peak_mib"],
                         "baseline_mib": run["baseline_mib"]})
        clip.unlink()
    return rows


def _encode_run(song: Path, out: Path, params: CodecParams) -> dict:
    """One encode in a fresh process: its encode seconds, whole-process seconds and peak."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    fig = run_in_subprocess("encode", song, out, params)
    whole = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"channels": params.channels, "encode_s": fig["seconds"], "process_s": whole,
            "peak_mib": fig["peak_bytes"] / _MIB, "baseline_mib": fig["baseline_bytes"] / _MIB}


def _timed_rounds(song: Path, scratch: Path, *, size: int, repeats: int) -> list[dict]:
    """``repeats`` rounds of a mono and a stereo encode of ``song``, the order alternating."""
    runs = []
    for k in range(max(1, int(repeats))):
        order = ("mono", "stereo") if k % 2 == 0 else ("stereo", "mono")
        for ch in order:
            run = _encode_run(song, scratch / ch, CodecParams(size=size, channels=ch))
            runs.append({**run, "round": k})
    return runs


def _ratio(runs, key: str) -> float:
    """Median of the per-round stereo/mono ratios of ``key`` (noise on a shared machine cancels
    in a round more than across rounds)."""
    by = {}
    for r in runs:
        by.setdefault(r["round"], {})[r["channels"]] = r[key]
    return statistics.median(v["stereo"] / v["mono"] for v in by.values())


def stereo_cost(song=None, *, workdir, size: int = 1024, repeats: int = 3,
                clip_seconds: float = 60.0) -> dict:
    """Time and memory of encoding ``song`` as stereo next to mono (see the module notes).

    Parameters
    ----------
    song : path-like, optional
        A stereo file (default the first of :func:`default_music`).
    workdir : path-like
        Scratch folder, removed at the end but for nothing (tiles and the clip go).
    size : int
        Tile edge (default 1024).
    repeats : int
        Rounds of one mono and one stereo encode, each a fresh process, the order alternating.
    clip_seconds : float
        Length of the clip cut from the start of ``song`` whose peak memory is measured next
        to the whole song's (both as float WAV, read the same way; at most half the song);
        0 skips the memory.

    Returns
    -------
    dict
        ``song``, ``seconds`` (its length), ``size``, ``runs`` (one row per encode:
        ``channels``, ``encode_s``, ``process_s``, ``peak_mib``, ``baseline_mib``, ``round``),
        ``mono_s`` and ``stereo_s`` (median encode seconds), ``ratio`` (median per-round
        stereo/mono encode time), ``process_ratio`` (the same for the whole process),
        ``memory`` (rows ``seconds``, ``channels``, ``peak_mib``, ``baseline_mib``: the clip
        and the whole song), ``target`` and ``met``.
    """
    song = resolve(song or default_music()[0], must_exist=True)
    scratch = Path(workdir) / "stereo_cost"
    try:
        runs = _timed_rounds(song, scratch, size=size, repeats=repeats)
        length = audio_info(song)["duration"]
        memory = (_memory_rows(song, scratch, size=size, clip_seconds=clip_seconds)
                  if clip_seconds else [])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {ch: statistics.median(r["encode_s"] for r in runs if r["channels"] == ch)
           for ch in ("mono", "stereo")}
    ratio = _ratio(runs, "encode_s")
    return {"song": song.name, "seconds": length, "size": size, "runs": runs,
            "mono_s": med["mono"], "stereo_s": med["stereo"], "ratio": ratio,
            "process_ratio": _ratio(runs, "process_s"), "memory": memory,
            "target": STEREO_TIME_TARGET, "met": bool(ratio <= STEREO_TIME_TARGET)}


def stereo_cost_lines(cost: dict) -> list[str]:
    """The cost figures as text lines: time ratio against the target, memory per length."""
    lines = [f"{cost['song']} ({cost['seconds']:.0f} s, size {cost['size']}): encode mono "
             f"{cost['mono_s']:.2f} s, stereo {cost['stereo_s']:.2f} s (medians of "
             f"{len(cost['runs']) // 2} alternating round(s), each a fresh process)",
             f"stereo encode time / mono: {cost['ratio']:.2f}x (whole process, start-up "
             f"included: {cost['process_ratio']:.2f}x); target <= {cost['target']:g}x: "
             f"{'MET' if cost['met'] else 'MISS'}"]
    for ch in ("mono", "stereo"):
        rows = sorted((m for m in cost["memory"] if m["channels"] == ch),
                      key=lambda m: m["seconds"])
        peaks = ", ".join(f"{m['peak_mib']:.0f} MiB at {m['seconds']:.0f} s" for m in rows)
        if rows:
            lines.append(f"peak memory, {ch} (fresh process, imports {rows[0]['baseline_mib']:.0f} "
                         f"MiB): {peaks}")
    return lines


def run_stereo_benchmark(files=None, *, workdir, size: int = 1024, repeats: int = 3,
                         clip_seconds: float = 60.0, cost: bool = True,
                         results_file=None) -> dict:
    """:func:`side_range` of ``files``, then :func:`stereo_cost` on the first of them.

    Parameters
    ----------
    files : sequence of path-like, optional
        Stereo music (default :func:`default_music`).
    workdir : path-like
        Scratch folder (emptied of what the runs write).
    size, repeats, clip_seconds
        As in :func:`stereo_cost` (``size`` for both).
    cost : bool
        Measure the cost too (default); False gives the side range only.
    results_file : path-like, optional
        Where to save the figures as JSON.

    Returns
    -------
    dict
        ``side_range`` (its rows) and ``cost`` (the :func:`stereo_cost` dict, or None).
    """
    import json

    from ..paths import atomic_path

    files = [resolve(f, must_exist=True) for f in (files or default_music())]
    out = {"side_range": side_range(files, workdir=workdir, size=size), "cost": None}
    if cost:
        out["cost"] = stereo_cost(files[0], workdir=workdir, size=size, repeats=repeats,
                                  clip_seconds=clip_seconds)
    if results_file is not None:
        Path(results_file).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(Path(results_file)) as tmp:
            tmp.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


# =========================================================================== command line

def main(argv=None) -> int:
    """``python -m wavdiff_utils.bench.stereo [FILES...] [--size N] [--repeats N]
    [--clip-seconds S] [--workdir DIR]``: the side-range table of FILES (default the fetched
    tracks), then the stereo cost on the first of them."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m wavdiff_utils.bench.stereo",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="stereo music (default outputs/music/*.ogg)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clip-seconds", type=float, default=60.0)
    ap.add_argument("--workdir", default="outputs/benchmark/stereo")
    ap.add_argument("--no-cost", action="store_true", help="the side-range table only")
    args = ap.parse_args(argv)
    files = [resolve(f) for f in args.files] or default_music()
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise MissingInputError(f"no such file: {', '.join(missing)}")
    res = run_stereo_benchmark(files, workdir=resolve(args.workdir), size=args.size,
                               repeats=args.repeats, clip_seconds=args.clip_seconds,
                               cost=not args.no_cost)
    print("\n".join(side_range_lines(res["side_range"])))
    if res["cost"] is not None:
        print("\n".join(stereo_cost_lines(res["cost"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
