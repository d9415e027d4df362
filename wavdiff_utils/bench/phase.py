"""How well each phase method turns generated-looking tiles back into audio, and how fast.

A generator's tiles are imitated from real music: tiles of a song are encoded,
then their phase planes get Gaussian noise (``std`` in cos/sin units, clipped
to [-1, 1], as a generator whose phase is only partly coherent) or are
replaced by random phase, and optionally their magnitude gets Gaussian noise
in dB (a generator's magnitude is never clean either).  Every method decodes
each clip of consecutive tiles as one piece (seams included), and the
spectral convergence of the audio is measured against the magnitude the
tiles ask for (with a perturbed magnitude: the perturbed one, i.e. how
consistent the audio is with the image).  Only the two edge frames of each
clip are left out.

``source_rate`` (``--source-rate 22050``) first brings each file to that rate, as
a song published at 22.05 kHz would be, before it is encoded at the codec's rate
(its top half of frequency rows then silent).  Methods may name variants of
:data:`VARIANTS` (``auto-before``: ``auto`` as it was before PGHI treated the
zero-frequency bin as real), so that before and after are measured in one run.

Run it from ``05_benchmark`` or ``python -m wavdiff_utils.bench.phase FILES...``
(``--methods auto,auto-before --levels 0.3,random --no-magnitude`` for a short run).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import BadParameterError, MissingInputError
from ..codec.params import CodecParams
from ..codec.transform import encode_stream, istft_stream, pixels_to_stft, stft_to_pixels
from ..io.audio import AudioStream
from ..io.manifest import manifest_params, read_manifest
from ..io.tiles import read_tile, write_tile
from ..paths import REPO_ROOT, atomic_path
from ..phase.reconstruct import PhaseSettings, reconstruct_tiles, spectral_convergence
from ..phase.stft_engine import stft_engine

__all__ = ["LEVELS", "VARIANTS", "perturb", "run_phase_benchmark", "phase_summary_lines", "decode_memory",
           "write_generated_demo"]

#: Phase noise levels (std in cos/sin units), and "random" for a phase with no information.
LEVELS = (0.0, 0.1, 0.3, 1.0, 1.5, 2.0, "random")
#: (magnitude noise in dB, phase level) scenarios with a perturbed magnitude.
MAGNITUDE_CASES = ((1.0, 0.3), (1.0, "random"), (3.0, 0.3), (3.0, "random"))
METHODS = ("image", "griffinlim", "fgla", "pghi", "auto")
#: Named variants a run may compare with the methods: method name -> phase settings.
VARIANTS = {"auto-before": {"method": "auto", "real_edges": False},
            "pghi-before": {"method": "pghi", "real_edges": False}}


def _settings_for(base: PhaseSettings, method: str, n_iter: int) -> PhaseSettings:
    """The phase settings of one method or variant of a run."""
    return replace(base, n_iter=n_iter, **VARIANTS.get(method, {"method": method}))


def perturb(S: np.ndarray, level, *, mag_db: float = 0.0, rng: np.random.Generator) -> np.ndarray:
    """A tile's STFT as a generator might give it back: phase noise ``level``, magnitude noise in dB."""
    M = np.abs(S).astype(np.float64)
    if mag_db:
        M = M * 10 ** (mag_db * rng.standard_normal(M.shape) / 20)
    if level == "random":
        return (M * np.exp(2j * np.pi * rng.random(S.shape))).astype(np.complex64)
    safe = np.where(np.abs(S) > 0, np.abs(S), 1)
    c = np.clip(S.real / safe + level * rng.standard_normal(S.shape), -1, 1)
    s = np.clip(S.imag / safe + level * rng.standard_normal(S.shape), -1, 1)
    n = np.hypot(c, s)
    n[n == 0] = 1
    return (M * (c + 1j * s) / n).astype(np.complex64)


def write_generated_demo(song_dir, out_dir, *, noise=0.5, n_tiles: int = 2, seed: int = 0) -> list[Path]:
    """Write a few of a song's tiles as a generator might: phase noise, no metadata, ``sample_<k>.png``.

    For demos of the decode of generator output (``03_decode``); ``noise`` is
    the phase noise of :func:`perturb` (``"random"`` for none of the phase).
    """

    man = read_manifest(song_dir)
    if man is None:
        raise MissingInputError(f"{song_dir}: no manifest.json; encode a song there first")
    params = manifest_params(man)
    rng = np.random.default_rng(seed)
    out = []
    for k, t in enumerate(man["tiles"][:n_tiles]):
        S = perturb(pixels_to_stft(read_tile(Path(song_dir) / t["file"]).pixels, params), noise,
                    rng=rng)
        px, _ = stft_to_pixels(S, params)
        out.append(write_tile(Path(out_dir) / f"sample_{k}.png", px))
    return out


def _at_rate(stream, rate: int, codec_rate: int):
    """``stream``'s blocks (at ``rate``) brought to ``codec_rate`` (soxr, high quality)."""
    import soxr

    if rate == codec_rate:
        yield from stream
        return
    rs = soxr.ResampleStream(rate, codec_rate, 1, dtype="float32", quality="HQ")
    for block in stream:
        yield rs.resample_chunk(np.asarray(block, np.float32))
    yield rs.resample_chunk(np.zeros(0, np.float32), last=True)


def _clips(files, params: CodecParams, tiles_per_clip: int, source_rate: int | None = None):
    """Consecutive tiles from the middle of each file: (name, list of complex STFT tiles).

    ``source_rate``: the file is first brought to that rate (a song published at it).
    """
    for f in files:
        rate = source_rate or params.sample_rate
        with AudioStream(f, sample_rate=rate, mono=True) as stream:
            tiles = [t.pixels for t in encode_stream(_at_rate(stream, rate, params.sample_rate),
                                                     params)]
        mid = max(0, len(tiles) // 2 - tiles_per_clip // 2)
        chosen = tiles[mid:mid + tiles_per_clip]
        yield Path(f).stem, [pixels_to_stft(t, params) for t in chosen]


def _tile_scs(y, target, params: CodecParams) -> list[float]:
    """SC per tile of a decoded clip (whole-clip STFT, two edge frames left out)."""
    import librosa

    S = np.abs(librosa.stft(y, n_fft=params.n_fft, hop_length=params.hop_length, window="hann",
                            center=True))[:params.bins]
    F = params.frames_per_tile
    n = min(S.shape[1], target.shape[1])
    out = []
    for k in range(n // F):
        lo, hi = max(k * F, 2), min((k + 1) * F, n - 2)
        out.append(spectral_convergence(S[:, lo:hi], target[:, lo:hi]))
    return out


def _decode(stfts, params: CodecParams, settings: PhaseSettings):

    t0, c0 = time.perf_counter(), time.process_time()
    out = list(reconstruct_tiles(((S, True) for S in stfts), params, settings))
    y = np.concatenate(list(istft_stream((S for S, _ in out), params)))
    return y, [r for _, r in out], (time.perf_counter() - t0, time.process_time() - c0)


@dataclass(frozen=True)
class _Run:
    """The fixed settings of one :func:`run_phase_benchmark` run."""

    params: CodecParams
    base: PhaseSettings
    methods: tuple
    n_iter: int
    seed: int


def _warm_up(clips, params: CodecParams, base: PhaseSettings):
    """Decode one tile twice, so the PGHI kernel and the first FFT plans are not timed."""
    _decode(clips[0][1][:1], params, replace(base, method="auto", n_iter=2))
    _decode([perturb(clips[0][1][0], "random", rng=np.random.default_rng(0))], params,
            replace(base, method="pghi", n_iter=2))


def _tile_row(where: dict, k: int, sc: float, report) -> dict:
    """The figures of tile ``k`` of a decoded clip; ``where`` says scenario, method and clip."""
    return {**where, "tile": k, "sc_db": round(sc, 2), "chosen": report.method,
            "iterations": report.iterations,
            "coherence_db": None if report.coherence_db is None else round(report.coherence_db, 2)}


def _run_case(run: _Run, clips, case: tuple, bar) -> tuple[list, dict, dict, float]:
    """Decode every clip with every method under one perturbation ``(mag_db, level)``.

    Returns the tile rows, the wall and CPU seconds per method and the seconds of audio.
    """
    mag_db, level = case
    params = run.params
    tiles = []
    wall = {m: 0.0 for m in run.methods}
    cpu = {m: 0.0 for m in run.methods}
    audio = 0.0
    for c, (name, stfts) in enumerate(clips):
        rng = np.random.default_rng([run.seed, c, int(mag_db * 10),
                                     999 if level == "random" else int(level * 100)])
        noisy = [perturb(S, level, mag_db=mag_db, rng=rng) for S in stfts]
        target = np.concatenate([np.abs(S) for S in noisy], axis=1)[:params.bins]
        audio += len(noisy) * params.tile_seconds
        for m in run.methods:
            y, reports, (dt, dc) = _decode(noisy, params, _settings_for(run.base, m, run.n_iter))
            wall[m] += dt
            cpu[m] += dc
            where = {"mag_db": mag_db, "level": level, "method": m, "clip": name}
            tiles += [_tile_row(where, k, sc, reports[k])
                      for k, sc in enumerate(_tile_scs(y, target, params))]
            bar.update(1)
    return tiles, wall, cpu, audio


def _method_row(case: tuple, m: str, tiles: list, seconds: tuple[float, float],
                audio: float) -> dict:
    """One method's summary row of a scenario from its tile rows and its wall and CPU seconds."""
    mag_db, level = case
    wall, cpu = seconds
    scs = [r["sc_db"] for r in tiles]
    return {"mag_db": mag_db, "level": level, "method": m, "tiles": len(scs),
            "sc_mean_db": round(float(np.mean(scs)), 2),
            "sc_worst_db": round(float(np.max(scs)), 2),
            "x_realtime": round(audio / max(wall, 1e-9), 1),
            "x_per_cpu_second": round(audio / max(cpu, 1e-9), 1),
            "chosen": sorted({r["chosen"] for r in tiles})}


def _run_settings(files, tiles_per_clip: int, n_iter: int, params: CodecParams,
                  base: PhaseSettings, source_rate: int | None = None) -> dict:
    """The ``settings`` entry of the result: inputs, codec, phase settings and the machine."""
    return {"files": [str(f) for f in files], "tiles_per_clip": tiles_per_clip,
            "source_rate": source_rate or params.sample_rate,
            "n_iter": n_iter, "codec": params.describe(),
            "phase": {k: v for k, v in base.__dict__.items()},
            "backend": _backend_name(base), "cpu_count": os.cpu_count(),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": sys.version.split()[0]}


def run_phase_benchmark(files, *, tiles_per_clip: int = 2, n_iter: int = 64, levels=LEVELS,
                        magnitude_cases=MAGNITUDE_CASES, methods=METHODS, seed: int = 0,
                        params: CodecParams | None = None, settings: PhaseSettings | None = None,
                        results_file=None, progress: bool = True,
                        source_rate: int | None = None) -> dict:
    """Spectral convergence and speed of every phase method on perturbed real-music tiles.

    Parameters
    ----------
    files : list of path-like
        Real music (e.g. ``scripts/fetch_music.py``'s tracks, or the bundled sample).
    tiles_per_clip : int
        Consecutive tiles per file, decoded as one clip (seams included).
    n_iter : int
        Fast Griffin-Lim iterations (the most, for ``auto``).
    levels, magnitude_cases, methods
        Scenarios and methods (defaults: :data:`LEVELS`, :data:`MAGNITUDE_CASES`, :data:`METHODS`);
        a method may also be a name of :data:`VARIANTS`.
    seed : int
        Seed of the perturbations.
    params : CodecParams, optional
    settings : PhaseSettings, optional
        Base settings; ``method`` and ``n_iter`` are set per run.
    results_file : path-like, optional
        Where the JSON goes.
    source_rate : int, optional
        Bring each file to this rate first (e.g. 22050: a song published at 22.05 kHz).

    Returns
    -------
    dict
        ``rows``: one per scenario and method (mean / worst tile SC in dB, x realtime);
        ``tiles``: every tile's figures; ``targets``; ``settings``.
    """
    from tqdm.auto import tqdm

    params = params or CodecParams()
    base = settings or PhaseSettings()
    unknown = [m for m in methods if m not in METHODS and m not in VARIANTS]
    if unknown:
        raise BadParameterError(f"unknown phase method(s) {unknown}; choose from "
                                f"{METHODS + tuple(VARIANTS)}")
    clips = list(_clips(files, params, tiles_per_clip, source_rate))
    if not clips:
        raise BadParameterError("no input files given")
    cases = [(0.0, lv) for lv in levels] + list(magnitude_cases)
    _warm_up(clips, params, base)
    run = _Run(params=params, base=base, methods=tuple(methods), n_iter=n_iter, seed=seed)
    tile_rows, rows = [], []
    bar = tqdm(total=len(cases) * len(clips) * len(methods), desc="phase benchmark",
               disable=not progress)
    for case in cases:
        tiles, wall, cpu, audio = _run_case(run, clips, case, bar)
        tile_rows += tiles
        rows += [_method_row(case, m, [r for r in tiles if r["method"] == m], (wall[m], cpu[m]),
                             audio) for m in run.methods]
    bar.close()
    result = {"rows": rows, "tiles": tile_rows, "targets": _targets(rows),
              "settings": _run_settings(files, tiles_per_clip, n_iter, params, base, source_rate)}
    if results_file is not None:
        with atomic_path(results_file) as tmp:
            tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
        result["results_file"] = str(results_file)
    return result


def _backend_name(settings: PhaseSettings) -> str:

    e = stft_engine(64, 16, backend=settings.backend, device=settings.device)
    return f"torch ({e.device})" if hasattr(e, "torch") else "numpy (scipy.fft)"


def _targets(rows) -> list[dict]:
    """The issue's targets, each with the figure measured and whether it is met."""
    by = {(r["mag_db"], r["level"], r["method"]): r for r in rows}
    out = []
    for (mag, level, m), r in by.items():
        if m != "auto" or mag:
            continue
        starts = [by[(mag, level, s)]["sc_mean_db"] for s in ("fgla", "pghi") if (mag, level, s) in by]
        if starts:
            best = min(starts)
            out.append({"target": f"auto within 0.5 dB of the best start, phase noise {level}",
                        "value": round(r["sc_mean_db"] - best, 2), "met": r["sc_mean_db"] <= best + 0.5})
    for level, bound in ((0.3, -45.0), (1.0, -30.0), ("random", -27.0)):
        r = by.get((0.0, level, "auto"))
        if r:
            out.append({"target": f"auto mean SC <= {bound:g} dB at phase noise {level}",
                        "value": r["sc_mean_db"], "met": r["sc_mean_db"] <= bound})
    speeds = [r["x_realtime"] for r in rows if r["method"] == "auto" and not r["mag_db"]]
    if speeds:
        for floor in (10.0, 8.0):             # the first speed target, and issue 23's
            out.append({"target": f"auto decode >= {floor:g}x realtime (slowest level, warm)",
                        "value": min(speeds), "met": min(speeds) >= floor})
    return out


def phase_summary_lines(result: dict) -> list[str]:
    """The table and the targets as text lines."""
    lines = [f"{'magnitude':>9s} {'phase':>7s} {'method':>11s} {'SC mean':>8s} {'worst':>7s} "
             f"{'x realtime':>10s} {'x per CPU s':>11s}  chosen"]
    for r in result["rows"]:
        mag = f"+-{r['mag_db']:g} dB" if r["mag_db"] else "clean"
        lines.append(f"{mag:>9s} {str(r['level']):>7s} {r['method']:>11s} {r['sc_mean_db']:8.1f} "
                     f"{r['sc_worst_db']:7.1f} {r['x_realtime']:10.1f} "
                     f"{r.get('x_per_cpu_second', float('nan')):11.1f}  {', '.join(r['chosen'])}")
    for t in result["targets"]:
        lines.append(f"{'MET ' if t['met'] else 'MISS'} {t['target']}: {t['value']}")
    return lines


def decode_memory(tile_dir, out_wav, *, phase: str = "fgla", n_iter: int = 4) -> dict:
    """Peak resident memory of one ``decode_song`` in a fresh process (``VmHWM``), and its wall time."""
    import subprocess

    code = (
        "import json, sys, time, resource\n"
        "from wavdiff_utils.jobs.decode import decode_song\n"
        "t0 = time.perf_counter()\n"
        f"r = decode_song({str(tile_dir)!r}, {str(out_wav)!r}, phase={phase!r}, n_iter={int(n_iter)})\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print('WAVDIFF_MEM ' + json.dumps({'peak_bytes': peak, 'seconds': time.perf_counter() - t0,"
        " 'audio_seconds': r.duration, 'methods': r.methods()}))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("WAVDIFF_MEM "):
            return json.loads(line[len("WAVDIFF_MEM "):])
    raise RuntimeError(f"decode memory run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")

if __name__ == "__main__":                   # python -m wavdiff_utils.bench.phase FILES...
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--tiles", type=int, default=2)
    ap.add_argument("--n-iter", type=int, default=64)
    ap.add_argument("--json", default="outputs/benchmark/phase.json")
    ap.add_argument("--source-rate", type=int, default=None,
                    help="bring each file to this rate first (22050: a 22.05 kHz song)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated, from {', '.join(METHODS + tuple(VARIANTS))}")
    ap.add_argument("--levels", default=",".join(map(str, LEVELS)),
                    help="comma-separated phase noise levels and/or 'random'")
    ap.add_argument("--no-magnitude", action="store_true", help="skip the magnitude-noise cases")
    a = ap.parse_args()
    res = run_phase_benchmark(a.files, tiles_per_clip=a.tiles, n_iter=a.n_iter,
                              results_file=a.json, source_rate=a.source_rate,
                              methods=tuple(a.methods.split(",")),
                              levels=tuple(v if v == "random" else float(v)
                                           for v in a.levels.split(",")),
                              magnitude_cases=() if a.no_magnitude else MAGNITUDE_CASES)
    print("\n".join(phase_summary_lines(res)))
    print(f"saved {a.json}")
