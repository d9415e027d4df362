"""Scaling figures: the local and the Ray engine at 1 and 2 workers, shards against a PNG folder.

::

    python -m wavdiff_utils.bench.scaling --clips /tmp/wt11_clips --sources outputs/music

cuts ``--n`` clips of ``--seconds`` from the Ogg tracks under ``--sources`` into
``--clips``/``n<N>_<S>s`` (a sub-folder per count and length, outside the repository;
nothing is committed), then prints (``--what engines``, ``loader`` or ``both``):

1. **engines**: encode throughput in songs per minute of the local engine (worker
   processes) and the Ray engine (an embedded Ray with as many CPUs), for each worker
   count.  Ray's start-up and its first run (worker processes starting and importing the
   package) are reported apart; the steady figure is the median of ``--repeats`` runs on the
   warm Ray, each into a fresh folder.  The local runs alternate with the Ray runs while
   that Ray is up (its idle daemons share the cores with them too), so the ratio compares
   the engines under the same load.
2. **loader**: samples per second through a torch ``DataLoader`` (the same workers and
   batch size) reading the tile folder (:class:`~wavdiff_utils.dataset.TileDataset`) and its
   WebDataset shards (:class:`~wavdiff_utils.dataset.ShardDataset`), median of 5 epochs after
   a warm-up, and a bit-exact check of every shard sample against its PNG file.

The ratios are measured in one run on the same machine; absolute figures vary with its load.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import BadParameterError, MissingInputError
from ..codec.params import CodecParams
from ..dataset.shards import iter_shard_samples
from ..io.audio import find_audio_files
from ..io.png16 import decode_png16
from ..jobs.pipeline import check_workers, encode_songs, run_pipeline
from ..jobs.ray_engine import check_engine, ray_session
from ..paths import resolve

__all__ = ["songs_per_minute", "clip_folder", "cut_clips", "engine_scaling", "loader_throughput", "main"]


def clip_folder(dest, *, n: int, seconds: float) -> Path:
    """The sub-folder of ``dest`` for ``n`` clips of ``seconds``: ``n48_20s``."""
    return Path(dest) / f"n{int(n)}_{float(seconds):g}s"


def cut_clips(sources, dest, *, n: int = 48, seconds: float = 20.0) -> list[Path]:
    """``n`` clips of ``seconds`` cut from the audio files under ``sources`` (consecutive pieces
    of each file in turn) into ``dest`` as Ogg Vorbis; existing clips of that name are kept
    (give each ``(n, seconds)`` its own ``dest``: :func:`clip_folder`)."""
    import soundfile as sf

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = [f for f in find_audio_files(sources) if f.suffix.lower() == ".ogg"]
    if not files:
        raise MissingInputError(f"{sources}: no .ogg tracks to cut clips from "
                                f"(python scripts/fetch_music.py fetches six)")
    out, offset = [], 0
    while len(out) < n:
        made = len(out)
        for src in files:
            info = sf.info(str(src))
            frames = int(seconds * info.samplerate)
            if (offset + 1) * frames > info.frames or len(out) == n:
                continue
            clip = dest / f"{src.stem}_{offset:03d}.ogg"
            if not clip.is_file():
                y, sr = sf.read(str(src), start=offset * frames, frames=frames, dtype="float32")
                sf.write(str(clip), y, sr, format="OGG", subtype="VORBIS")
            out.append(clip)
        if len(out) == made:
            raise BadParameterError(f"{sources}: too little audio for {n} clips of {seconds:g} s")
        offset += 1
    return out


def _timed_encode(input, *, workers, params, png_compression, scratch, engine="local", session=None):

    tmp = Path(tempfile.mkdtemp(prefix="wavdiff-spm-", dir=scratch))
    try:
        t0 = time.perf_counter()
        b = encode_songs(input, tmp, params=params, workers=workers, engine=engine,
                         png_compression=png_compression, progress=False)
        return time.perf_counter() - t0, b
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def songs_per_minute(input, *, workers=(1, 2), params: CodecParams | None = None,
                     repeats: int = 1, scratch=None, png_compression: int = 0,
                     engine: str = "local") -> list[dict]:
    """Encode throughput of the pipeline in songs per minute, for each worker count.

    Every run encodes all songs under ``input`` from scratch into a fresh
    temporary folder (removed afterwards).

    Parameters
    ----------
    input : path-like
        A folder of songs (several, so that workers have something to share).
    workers : sequence of int
        Worker counts to measure, e.g. ``(1, os.cpu_count())``.
    params : CodecParams, optional
    repeats : int
        Runs per worker count; the fastest counts (the first run of a session
        also pays for cold file caches).
    scratch : path-like, optional
        Where the temporary folders go (default: the system's temp folder).
    png_compression : int
    engine : {"local", "ray"}
        With ``"ray"`` each worker count gets its own embedded Ray with that many CPUs
        (or the Ray already running here); its start-up (``ray_start_seconds``) and a
        first, warm-up run (``first_run_seconds``) are not counted in the figure.

    Returns
    -------
    list of dict
        Per worker count: ``workers``, ``songs``, ``failed``, ``tiles``,
        ``audio_seconds``, ``wall_seconds``, ``songs_per_minute`` and
        ``speedup`` (over the first entry).
    """

    engine = check_engine(engine)
    workers = list(workers)
    if not workers:
        raise BadParameterError("workers must name at least one worker count, e.g. (1, 2)")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise BadParameterError(f"repeats must be a whole number >= 1, got {repeats!r}")
    kw = dict(params=params, png_compression=png_compression, scratch=scratch)
    rows = []
    for w in workers:
        w = check_workers(w)
        extra, times = {}, []
        if engine == "ray":
            with ray_session(None, num_cpus=w) as session:
                first, _ = _timed_encode(input, workers=w, engine="ray", **kw)
                extra = {"ray_start_seconds": round(session.start_seconds, 2),
                         "first_run_seconds": round(first, 3)}
                for _ in range(repeats):
                    dt, b = _timed_encode(input, workers=w, engine="ray", **kw)
                    times.append(dt)
        else:
            for _ in range(repeats):
                dt, b = _timed_encode(input, workers=w, **kw)
                times.append(dt)
        dt = min(times)
        rows.append({"engine": engine, "workers": w, "songs": len(b.results),
                     "failed": len(b.failures), "tiles": sum(r.n_tiles for r in b.results),
                     "audio_seconds": round(sum(r.duration for r in b.results), 2),
                     "wall_seconds": round(dt, 3), "median_seconds": round(statistics.median(times), 3),
                     "songs_per_minute": round(60.0 * len(b.results) / dt, 2) if dt > 0 else 0.0,
                     **extra})
    for r in rows:
        r["speedup"] = round(r["songs_per_minute"] / rows[0]["songs_per_minute"], 2) \
            if rows[0]["songs_per_minute"] else None
    return rows


def engine_scaling(input, *, workers=(1, 2), repeats: int = 3, params: CodecParams | None = None,
                   scratch=None) -> list[dict]:
    """Songs per minute of the local and the Ray engine at each worker count, runs alternating
    (local, Ray, local, Ray, ...) so that a change in the machine's load hits both alike.
    The local runs too happen while the embedded Ray is up (its daemons, idle then, share the
    cores): ``ray_vs_local`` compares the engines on the same loaded machine, not Ray against
    a machine without it.

    For each worker count an embedded Ray with that many CPUs is started (``ray_start_s``),
    both engines make one warm-up run (file caches; Ray's worker processes start and
    import the package: ``first_run_s``), then ``repeats`` timed runs each.  Rows hold the
    median and best wall time, songs per minute from the median, and for Ray ``ray_vs_local``.
    """

    kw = dict(params=params, png_compression=0, scratch=scratch)
    rows = []
    for w in workers:
        with ray_session(None, num_cpus=w) as session:
            _timed_encode(input, workers=w, **kw)
            first, _ = _timed_encode(input, workers=w, engine="ray", **kw)
            times = {"local": [], "ray": []}
            for _ in range(repeats):
                for engine in ("local", "ray"):
                    dt, b = _timed_encode(input, workers=w, engine=engine, **kw)
                    if b.failures:
                        raise RuntimeError(f"{engine} engine: {b.failures[0][1]}")
                    times[engine].append(dt)
        for engine, ts in times.items():
            med = statistics.median(ts)
            rows.append({"engine": engine, "workers": w, "songs": len(b.results),
                         "tiles": sum(r.n_tiles for r in b.results),
                         "median_seconds": round(med, 3), "best_seconds": round(min(ts), 3),
                         "songs_per_minute": round(60.0 * len(b.results) / med, 1)})
        rows[-1].update(ray_start_s=round(session.start_seconds, 2), first_run_s=round(first, 2),
                        ray_vs_local=round(rows[-1]["songs_per_minute"] / rows[-2]["songs_per_minute"], 3))
    return rows


def loader_throughput(folder, shards, *, workers: int = 2, batch_size: int = 8,
                      epochs: int = 5) -> dict:
    """Samples per second reading ``folder``'s tiles and ``shards`` in a ``DataLoader``.

    Each source gets one warm-up epoch (page cache) and then ``epochs`` timed ones,
    alternating between the two; the medians are reported, with ``bit_exact``: every shard sample's pixels equal
    :func:`~wavdiff_utils.io.decode_png16` of its tile file.
    """
    import torch

    from ..dataset.loader import TileDataset
    from ..dataset.loader import ShardDataset

    folder = Path(folder)
    exact = all(np.array_equal(s["pixels"], decode_png16(folder / s["meta"]["file_name"]))
                for s in iter_shard_samples(shards))

    def epoch(ds) -> float:
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers)
        t0, n = time.perf_counter(), 0
        for batch in loader:
            n += len(batch["pixel_values"])
        return n / (time.perf_counter() - t0)

    tiles, shard_set = TileDataset(folder), ShardDataset(shards, split=None)
    folder_rates, shard_rates = [], []
    for k in range(epochs + 1):              # alternating; the first of each is a warm-up
        f, s = epoch(tiles), epoch(shard_set)
        if k:
            folder_rates.append(f)
            shard_rates.append(s)
    f, s = statistics.median(folder_rates), statistics.median(shard_rates)
    return {"workers": workers, "batch_size": batch_size, "samples": len(TileDataset(folder)),
            "png_folder_samples_per_s": round(f, 1), "shards_samples_per_s": round(s, 1),
            "shards_vs_folder": round(s / f, 3), "bit_exact": exact,
            "folder_runs": [round(x, 1) for x in folder_rates],
            "shard_runs": [round(x, 1) for x in shard_rates]}


def main(argv=None) -> int:
    """Cut the clips, then print the engine and loader figures (see the module notes)."""

    ap = argparse.ArgumentParser(prog="python -m wavdiff_utils.bench.scaling",
                                 description="Local vs Ray engine, PNG folder vs WebDataset shards.")
    ap.add_argument("--clips", required=True, help="folder for the clips (outside the repository); "
                                                   "each --n and --seconds get a sub-folder")
    ap.add_argument("--sources", default="outputs/music", help="folder of .ogg tracks to cut from")
    ap.add_argument("--n", type=int, default=48, help="number of clips (default 48)")
    ap.add_argument("--seconds", type=float, default=20.0, help="clip length (default 20 s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per engine and workers")
    ap.add_argument("--size", type=int, default=1024, help="tile size (default 1024)")
    ap.add_argument("--what", choices=("engines", "loader", "both"), default="both",
                    help="what to measure: engines, loader or both (default)")
    args = ap.parse_args(argv)

    folder = clip_folder(args.clips, n=args.n, seconds=args.seconds)
    clips = cut_clips(resolve(args.sources), folder, n=args.n, seconds=args.seconds)
    params = CodecParams(size=args.size)
    print(f"{len(clips)} clips of {args.seconds:g} s in {folder}, tiles {args.size}x{args.size}")
    if args.what in ("engines", "both"):
        for r in engine_scaling(folder, repeats=args.repeats, params=params):
            extra = (f"; ray start-up {r['ray_start_s']} s, first run {r['first_run_s']} s, "
                     f"ray/local {r['ray_vs_local']:.2f}" if r["engine"] == "ray" else "")
            print(f"{r['engine']:5s} workers {r['workers']}: {r['songs_per_minute']:6.1f} songs/min "
                  f"(median {r['median_seconds']} s, best {r['best_seconds']} s of "
                  f"{args.repeats}; {r['songs']} songs, {r['tiles']} tiles){extra}", flush=True)
    if args.what in ("loader", "both"):
        with tempfile.TemporaryDirectory(prefix="wavdiff-loader-") as tmp:
            res = run_pipeline(folder, Path(tmp) / "ds", params=params, captioner="metadata",
                               report=False, progress=False, log=None, shards=True)
            r = loader_throughput(Path(tmp) / "ds", res.shards.folder)
            print(f"loader, {r['workers']} workers, batch {r['batch_size']}, {r['samples']} "
                  f"samples: PNG folder {r['png_folder_samples_per_s']} samples/s, shards "
                  f"{r['shards_samples_per_s']} samples/s ({r['shards_vs_folder']:.2f}x), "
                  f"median of 5; bit-exact: {r['bit_exact']}")
            print(f"  runs: folder {r['folder_runs']}, shards {r['shard_runs']}; "
                  f"{res.shards.summary()}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
