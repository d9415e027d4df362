"""Benchmark of the codec: throughput, fidelity and peak memory, next to a reference.

What it measures (:func:`run_benchmark`, used by ``notebooks/05_benchmark.ipynb``):

- encode and decode throughput, in seconds of audio per wall second ("x
  realtime"), of each layout (:func:`wavdiff_utils.jobs.encode.encode_song` /
  :func:`~wavdiff_utils.jobs.encode.decode_song`, file to tiles and tiles to file),
  on the bundled sample and on a generated long signal, next to the same
  figure for :func:`reference_encode` / :func:`reference_decode`;
- round-trip SNR and LSD per method, against the audio as
  :func:`~wavdiff_utils.io.audio.load_audio` reads it (44.1 kHz mono);
- peak memory (the process's VmHWM) of encoding and decoding a long input,
  each in a fresh subprocess, so the figure is the codec's own.

The reference (:mod:`wavdiff_utils.bench.reference`) is a plain
implementation of the original recipe, for timing and contrast only; the
timing and subprocess memory helpers are in :mod:`wavdiff_utils.bench.measure`.
This module holds the run itself, its targets and the synthetic music-like
signal it times on.  Their public names are importable from here as before.

Speed and memory targets are checked here, by printed figures measured in one
run, never by timed assertions in the tests.
"""
from __future__ import annotations

import gc
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..codec.metrics import lsd_db, snr_db
from ..codec.params import CodecParams
from ..io.audio import audio_info, load_audio
from ..jobs.decode import decode_song
from ..jobs.encode import encode_song
from ..paths import SAMPLE_AUDIO, atomic_path, output_dir, resolve
from .measure import run_in_subprocess, timed
from .reference import reference_decode, reference_encode

__all__ = ["synth_music", "synth_music_blocks", "write_synth_wav", "run_benchmark",
           "summary_lines", "MEMORY_BOUND_BYTES", "SNR_TARGET_DB", "SPEEDUP_TARGET"]

#: Issue targets.
SNR_TARGET_DB = 85.0              # default layout, real music at 44.1 kHz
SPEEDUP_TARGET = 2.0              # encode and decode throughput vs the reference
MEMORY_BOUND_BYTES = 1 << 30      # peak memory for a 60-minute input

_MIB = float(1 << 20)

# =========================================================================== synthetic music

_LOOP_STEPS = 40          # notes per loop: 40 x 0.25 s = a 10 s loop
_N_LOOPS = 4              # distinct loops the signal is assembled from


def _render_loop(sr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One 10 s loop of plucked harmonic notes over a bass line.

    Returns the loop ``body`` and the ``tail`` of its last notes that rings
    into the next loop (added to the next loop's first step), so consecutive
    loops join without a click.
    """
    step = int(round(0.25 * sr))
    t = np.arange(2 * step) / sr                     # every note rings for two steps
    attack = np.minimum(1.0, t / 0.004)
    # melody: one plucked note per step, 7 harmonics kept under 0.35 * sr
    f0 = 220.0 * 2.0 ** (rng.integers(0, 24, _LOOP_STEPS) / 12.0)
    ph = rng.uniform(0, 2 * np.pi, (_LOOP_STEPS, 8))
    notes = np.zeros((_LOOP_STEPS, 2 * step))
    for h in range(1, 9):
        keep = (f0 * h < 0.35 * sr)[:, None]
        notes += keep * np.sin(2 * np.pi * f0[:, None] * h * t + ph[:, h - 1:h]) / h
    notes *= 0.35 * attack * np.exp(-t * 6.0)
    # bass: one softer, slower-decaying note per four steps (a bar), two harmonics
    n_bars = _LOOP_STEPS // 4
    b0 = 55.0 * 2.0 ** (rng.choice([0, 3, 5, 7, 8, 10], n_bars) / 12.0)
    tb = np.arange(5 * step) / sr
    bass = (np.sin(2 * np.pi * b0[:, None] * tb) + 0.4 * np.sin(4 * np.pi * b0[:, None] * tb))
    bass *= 0.3 * np.minimum(1.0, tb / 0.01) * np.exp(-tb * 1.5)
    n = _LOOP_STEPS * step
    body = np.zeros(n + 2 * step)                    # room for the last notes' tails
    idx = np.arange(_LOOP_STEPS) * step
    body[:n + step].reshape(-1, step)[:_LOOP_STEPS] += notes[:, :step]
    body[step:n + step].reshape(-1, step)[:_LOOP_STEPS] += notes[:, step:]
    for k in range(n_bars):
        s = idx[4 * k]
        body[s:s + 5 * step] += bass[k]
    loop, tail = body[:n].copy(), body[n:]
    scale = 0.6 / max(np.max(np.abs(loop)), 1e-9)
    return loop * scale, tail * scale


def synth_music_blocks(seconds: float, sr: int = 44100, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield a band-limited, music-like mono signal in 10-second float32 blocks.

    Four 10 s loops of plucked harmonic notes and a bass line are rendered
    once (vectorised) and played in a random order, each with a random gain,
    note tails ringing across loop borders; a fresh low-passed (16 kHz, like
    MP3) noise floor with a hi-hat-like pulse is added to every block, and
    the whole signal fades in and out.  Memory is one block whatever the
    length, so an hour takes a few seconds and little memory.
    """
    import scipy.signal as ss

    n_total = int(round(seconds * sr))
    if n_total <= 0:
        return
    rng = np.random.default_rng(seed)
    loops = [_render_loop(sr, rng) for _ in range(_N_LOOPS)]
    step = int(round(0.25 * sr))
    loop_len = _LOOP_STEPS * step
    sos = ss.butter(8, min(16000.0, 0.36 * sr) / (sr / 2), output="sos")
    zi = np.zeros((sos.shape[0], 2))
    hat = 0.3 + np.exp(-np.arange(step) / sr * 40.0)        # noise pulse on every step
    hat = np.tile(hat, _LOOP_STEPS)
    fade = min(int(0.5 * sr), n_total // 4)
    ramp = np.sin(np.linspace(0, np.pi / 2, fade)) ** 2 if fade else np.zeros(0)
    prev_tail = np.zeros(2 * step)
    pos = 0
    while pos < n_total:
        k = int(rng.integers(_N_LOOPS))
        gain = float(rng.uniform(0.75, 1.0))
        body, tail = loops[k]
        y = gain * body
        y[:2 * step] += prev_tail
        prev_tail = gain * tail
        noise, zi = ss.sosfilt(sos, rng.standard_normal(loop_len) * 0.02, zi=zi)
        y += noise * hat
        m = min(loop_len, n_total - pos)
        y = y[:m]
        if fade:                                         # fades by global sample index
            a, b = pos, pos + m
            if a < fade:
                y[:min(fade, b) - a] *= ramp[a:min(fade, b)]
            if b > n_total - fade:
                lo = max(a, n_total - fade)
                y[lo - a:] *= ramp[::-1][lo - (n_total - fade):b - (n_total - fade)]
        yield np.clip(y, -1.0, 1.0).astype(np.float32)
        pos += m


def synth_music(seconds: float, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """The whole signal of :func:`synth_music_blocks` as one float32 array."""
    blocks = list(synth_music_blocks(seconds, sr, seed))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def write_synth_wav(path, seconds: float, sr: int = 44100, seed: int = 0, *,
                    subtype: str = "PCM_16") -> Path:
    """Stream :func:`synth_music_blocks` into a WAV file block by block (written atomically).

    Only one 10 s block is in memory at a time, so a 60-minute file costs no
    more memory than a 10-second one.
    """
    import soundfile as sf

    path = Path(path)
    with atomic_path(path) as tmp:
        with sf.SoundFile(str(tmp), "w", samplerate=int(sr), channels=1, format="WAV",
                          subtype=subtype) as fh:
            for block in synth_music_blocks(seconds, sr, seed):
                fh.write(block)
    return path

# =========================================================================== the benchmark


def _loadavg():
    """1-minute load average of the machine (other work competing for the CPUs), or None."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _dir_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def _rm(path: Path):
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _codec_methods(layout: str):

    params = CodecParams(layout=layout)

    def enc(src, tiles_root, song):
        encode_song(src, tiles_root, params=params, song=song, overwrite=True)
        return tiles_root / song

    def dec(song_dir, out_wav):
        decode_song(song_dir, out_wav)

    return enc, dec


def _reference_methods():
    def enc(src, tiles_root, song):
        reference_encode(src, tiles_root / song, song=song)
        return tiles_root / song

    def dec(song_dir, out_wav):
        reference_decode(song_dir, out_wav)

    return enc, dec


@dataclass(frozen=True)
class _Bench:
    """What the steps of :func:`run_benchmark` share: folders, rate, seed and methods."""

    work: Path
    scratch: Path
    sr: int
    seed: int
    default_layout: str
    methods: dict
    progress: bool

    def say(self, msg):
        """Print ``msg`` (flushed) when progress is on."""
        if self.progress:
            print(msg, flush=True)

    def tiles_root(self, method: str) -> Path:
        """Scratch folder of ``method``'s tiles."""
        return self.scratch / "tiles" / method

    def out_wav(self, method: str) -> Path:
        """Scratch file of ``method``'s decoded audio."""
        return self.scratch / f"decoded_{method}.wav"


def _start_bench(workdir, layouts: list, seed: int, progress: bool) -> _Bench:
    """Check the layouts, make an empty scratch folder and gather the methods to time."""
    for lay in layouts:
        CodecParams(layout=lay)                 # validates the name
    default_layout = CodecParams().layout
    sr = CodecParams().sample_rate
    work = output_dir(workdir)
    scratch = work / "scratch"
    _rm(scratch)
    scratch.mkdir(parents=True)
    methods = {lay: _codec_methods(lay) for lay in layouts}
    methods["reference"] = _reference_methods()
    return _Bench(work=work, scratch=scratch, sr=sr, seed=seed, default_layout=default_layout,
                  methods=methods, progress=progress)


def _make_long_input(bench: _Bench, long_minutes: float, long_repeats: int) -> tuple:
    """Write the long synthetic signal; its ``(label, path, repeats)`` input entry."""
    long_wav = bench.scratch / "synthetic_long.wav"
    dt, _ = timed(write_synth_wav, long_wav, long_minutes * 60.0, bench.sr, bench.seed)
    bench.say(f"generated {long_minutes:g} min synthetic signal in {dt:.1f} s")
    return (f"synthetic {long_minutes:g} min", long_wav, max(1, int(long_repeats)))


def _warm_up(bench: _Bench):
    """Run every method once on a short signal, so imports, FFT plans and caches are not timed."""
    scratch = bench.scratch
    warm = write_synth_wav(scratch / "warmup.wav", 3.0, bench.sr, bench.seed + 1)
    for name, (enc, dec) in bench.methods.items():
        dec(enc(warm, scratch / "warm_tiles", f"warm_{name}"), scratch / f"warm_{name}.wav")
    _rm(scratch / "warm_tiles")


def _best_times(bench: _Bench, path, repeats: int) -> tuple[dict, dict]:
    """Best-of-``repeats`` encode and decode seconds of every method, timed round robin."""
    names = list(bench.methods)
    enc_s = {m: math.inf for m in names}
    dec_s = {m: math.inf for m in names}
    # round robin (order reversed every other pass), so that a busy moment on the
    # machine does not fall on one method only
    for rep in range(repeats):
        for m in names if rep % 2 == 0 else names[::-1]:
            _rm(bench.tiles_root(m))
            enc_s[m] = min(enc_s[m], timed(bench.methods[m][0], path, bench.tiles_root(m),
                                           "song")[0])
    for rep in range(repeats):
        for m in names if rep % 2 == 0 else names[::-1]:
            _rm(bench.out_wav(m))
            dec_s[m] = min(dec_s[m], timed(bench.methods[m][1], bench.tiles_root(m) / "song",
                                           bench.out_wav(m))[0])
    return enc_s, dec_s


def _score_method(bench: _Bench, label: str, name: str, ref: np.ndarray,
                  seconds: tuple[float, float]) -> dict:
    """Score one method's decoded audio against ``ref``, print its row and remove its files."""
    import soundfile as sf

    audio_s = len(ref) / bench.sr
    enc_s, dec_s = seconds
    song_dir = bench.tiles_root(name) / "song"
    n_tiles = len(list(song_dir.glob("*.png")))
    tile_bytes = _dir_bytes(song_dir)
    y, got_sr = sf.read(str(bench.out_wav(name)), dtype="float32")
    if got_sr != bench.sr:
        raise RuntimeError(f"{name} decoded at {got_sr} Hz, expected {bench.sr}")
    snr = snr_db(ref, y)
    lsd = lsd_db(ref, y)
    row = {"input": label, "method": name, "audio_s": audio_s,
           "encode_s": enc_s, "decode_s": dec_s,
           "encode_x": audio_s / enc_s, "decode_x": audio_s / dec_s,
           "snr_db": snr, "lsd_db": lsd, "tiles": n_tiles,
           "tile_mib": tile_bytes / _MIB, "length_ok": len(y) == len(ref)}
    bench.say(f"  {name:9s} encode {row['encode_s']:7.2f} s "
              f"({row['encode_x']:6.1f}x realtime)  "
              f"decode {row['decode_s']:7.2f} s ({row['decode_x']:6.1f}x)  SNR {snr:6.2f} dB  "
              f"LSD {lsd:.3f} dB  {n_tiles} tiles, {row['tile_mib']:.1f} MiB")
    _rm(bench.tiles_root(name))
    _rm(bench.out_wav(name))
    del y
    return row


def _add_ratios(bench: _Bench, rows: list[dict]):
    """Add each row's throughput ratio to the reference row of the same input, and print it."""
    refrow = next(r for r in rows if r["method"] == "reference")
    for r in rows:
        r["encode_vs_ref"] = r["encode_x"] / refrow["encode_x"]
        r["decode_vs_ref"] = r["decode_x"] / refrow["decode_x"]
    for r in rows:
        if r["method"] != "reference":
            bench.say(f"  {r['method']:9s} vs reference: encode {r['encode_vs_ref']:.2f}x, "
                      f"decode {r['decode_vs_ref']:.2f}x")


def _time_input(bench: _Bench, label: str, path, repeats: int) -> list[dict]:
    """Time and score every method on one input; one row per method."""
    ref = load_audio(path, sample_rate=bench.sr, mono=True)
    audio_s = len(ref) / bench.sr
    info = audio_info(path)
    bench.say(f"\n== {label}: {Path(path).name}, {audio_s:.1f} s "
              f"({info['sample_rate']} Hz, {info['channels']} ch), best of {repeats}")
    enc_s, dec_s = _best_times(bench, path, repeats)
    rows = [_score_method(bench, label, name, ref, (enc_s[name], dec_s[name]))
            for name in bench.methods]
    del ref
    gc.collect()
    _add_ratios(bench, rows)
    return rows


def _measure_memory(bench: _Bench, minutes: float, decode: bool) -> list[dict]:
    """Peak memory of encoding (and decoding) a generated input, each in a fresh process."""
    memory = []
    if not (minutes and minutes > 0):
        return memory
    scratch = bench.scratch
    mem_wav = scratch / "synthetic_memory.wav"
    dt, _ = timed(write_synth_wav, mem_wav, minutes * 60.0, bench.sr, bench.seed + 2)
    bench.say(f"\n== peak memory: generated {minutes:g} min synthetic signal in {dt:.1f} s")
    mem_tiles = scratch / "mem_tiles"
    jobs = [("encode", mem_wav, mem_tiles)]
    if decode:
        jobs.append(("decode", mem_tiles / "synthetic_memory", scratch / "mem_decoded.wav"))
    for kind, src, dst in jobs:
        fig = run_in_subprocess(kind, src, dst, CodecParams())
        m = _memory_row(f"{bench.default_layout} {kind}", minutes, fig)
        memory.append(m)
        bench.say(f"  {m['job']:18s} {minutes:g} min: peak {m['peak_mib']:.0f} MiB "
                  f"(after imports {m['baseline_mib']:.0f} MiB), {m['seconds']:.1f} s "
                  f"({m['x_realtime']:.1f}x realtime)")
    _rm(mem_tiles)
    _rm(scratch / "mem_decoded.wav")
    _rm(mem_wav)
    return memory


def _measure_reference_memory(bench: _Bench, src, minutes: float) -> dict:
    """Peak memory of the reference encoder on ``src``, in a fresh process."""
    fig = run_in_subprocess("reference_encode", src, bench.scratch / "ref_mem_tiles")
    m = _memory_row("reference encode", minutes, fig)
    bench.say(f"  {m['job']:18s} {minutes:g} min: peak {m['peak_mib']:.0f} MiB "
              f"(after imports {m['baseline_mib']:.0f} MiB), {m['seconds']:.1f} s")
    _rm(bench.scratch / "ref_mem_tiles")
    return m


def _write_results(work: Path, result: dict) -> Path:
    """Write ``results.json`` (all but the table) and ``results.csv`` (the table) into ``work``."""
    results_file = work / "results.json"
    with atomic_path(results_file) as tmp:
        tmp.write_text(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=1,
                                  default=float), encoding="utf-8")
    with atomic_path(work / "results.csv") as tmp:
        result["table"].to_csv(tmp, index=False)
    return results_file


def run_benchmark(*, sample=SAMPLE_AUDIO, long_minutes: float = 10.0, memory_minutes: float = 60.0,
                  workdir="outputs/benchmark", layouts=("exact", "seed"), sample_repeats: int = 3,
                  long_repeats: int = 2,
                  memory_decode: bool = True, reference_memory: bool = True, seed: int = 0,
                  keep_files: bool = False, progress: bool = True) -> dict:
    """Measure the codec next to the reference recipe, in one run.

    Parameters
    ----------
    sample : path-like
        Real music (default the bundled 30 s MP3).
    long_minutes : float
        Length of the generated music-like signal timed next to the sample (0 skips it).
    memory_minutes : float
        Length of the generated input whose peak encode (and decode) memory is
        measured, each in a fresh subprocess, with the default layout (0 skips it).
    workdir : path-like
        Scratch folder (created); ``results.json`` and ``results.csv`` stay there,
        the big files are removed at the end unless ``keep_files``.
    layouts : sequence of str
        Codec layouts to time (each as ``CodecParams(layout=...)``).
    sample_repeats, long_repeats : int
        Best-of-N timings on the sample and on the long signal.  The methods are
        run round robin, so the ratios compare runs made at the same moments.
    memory_decode : bool
        Also measure the peak memory of decoding the ``memory_minutes`` input.
    reference_memory : bool
        Also measure the reference encoder's peak memory on the long signal, for contrast.
    seed : int
        Seed of the generated signals.
    progress : bool
        Print each figure as it is measured.

    Returns
    -------
    dict
        ``table``: pandas DataFrame, one row per input and method, with
        ``encode_x``/``decode_x`` (seconds of audio per wall second),
        ``encode_vs_ref``/``decode_vs_ref`` (throughput ratio to the reference on
        the same input), ``snr_db``, ``lsd_db``, wall seconds and tile bytes;
        ``memory``: list of dicts (job, input minutes, peak/baseline MiB, seconds);
        ``targets``: list of dicts (target, measured, bound, met);
        ``rows``, ``settings``, ``wall_seconds``, ``results_file``.
    """
    import pandas as pd

    t_start = time.perf_counter()
    load_before = _loadavg()
    layouts = list(layouts)
    bench = _start_bench(workdir, layouts, seed, progress)
    inputs = [("sample", resolve(sample), max(1, int(sample_repeats)))]
    try:
        if long_minutes and long_minutes > 0:
            inputs.append(_make_long_input(bench, long_minutes, long_repeats))
        _warm_up(bench)
        rows = []
        for label, path, repeats in inputs:
            rows += _time_input(bench, label, path, repeats)
        memory = _measure_memory(bench, memory_minutes, memory_decode)
        if reference_memory and len(inputs) > 1:
            memory.append(_measure_reference_memory(bench, inputs[1][1], long_minutes))
    finally:
        if not keep_files:
            _rm(bench.scratch)

    targets = _targets(rows, memory, bench.default_layout, memory_minutes)
    table = pd.DataFrame(rows)
    settings = {"sample": str(resolve(sample)), "long_minutes": long_minutes,
                "memory_minutes": memory_minutes, "layouts": layouts,
                "default_layout": bench.default_layout, "sample_repeats": sample_repeats,
                "long_repeats": long_repeats, "sample_rate": bench.sr, "seed": seed,
                "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
                "loadavg_before": load_before, "loadavg_after": _loadavg()}
    wall = time.perf_counter() - t_start
    result = {"rows": rows, "table": table, "memory": memory, "targets": targets,
              "settings": settings, "wall_seconds": wall}
    results_file = _write_results(bench.work, result)
    result["results_file"] = str(results_file)
    bench.say(f"\nbenchmark finished in {wall:.0f} s; figures in {results_file}")
    return result


def _memory_row(job: str, minutes: float, fig: dict) -> dict:
    """One ``memory`` entry from the figures of :func:`run_in_subprocess`."""
    return {"job": job, "input_minutes": minutes, "peak_mib": fig["peak_bytes"] / _MIB,
            "baseline_mib": fig["baseline_bytes"] / _MIB, "seconds": fig["seconds"],
            "x_realtime": minutes * 60.0 / fig["seconds"]}


def _targets(rows, memory, default_layout, memory_minutes) -> list[dict]:
    out = []
    sample_row = next((r for r in rows if r["input"] == "sample" and r["method"] == default_layout),
                      None)
    if sample_row is not None:
        out.append({"target": f"{default_layout} round-trip SNR on real music (sample) >= "
                              f"{SNR_TARGET_DB:g} dB",
                    "measured": sample_row["snr_db"], "bound": SNR_TARGET_DB,
                    "unit": "dB", "met": bool(sample_row["snr_db"] >= SNR_TARGET_DB)})
    for r in rows:
        if r["method"] != default_layout:
            continue
        for d in ("encode", "decode"):
            v = r[f"{d}_vs_ref"]
            out.append({"target": f"{default_layout} {d} throughput >= {SPEEDUP_TARGET:g}x the "
                                  f"reference ({r['input']})",
                        "measured": v, "bound": SPEEDUP_TARGET, "unit": "x",
                        "met": bool(v >= SPEEDUP_TARGET)})
    for m in memory:
        if m["job"].startswith(default_layout):
            note = "" if memory_minutes >= 60 else f" (measured on {memory_minutes:g} min only)"
            out.append({"target": f"{m['job']} peak memory for a {memory_minutes:g}-minute input "
                                  f"< 1 GiB{note}",
                        "measured": m["peak_mib"], "bound": MEMORY_BOUND_BYTES / _MIB,
                        "unit": "MiB", "met": bool(m["peak_mib"] * _MIB < MEMORY_BOUND_BYTES)})
    return out


def summary_lines(result: dict) -> list[str]:
    """One line per target: met or missed, with the measured figure."""
    lines = []
    for t in result["targets"]:
        v = t["measured"]
        fig = f"{v:.2f} {t['unit']}" if t["unit"] != "x" else f"{v:.2f}x"
        lines.append(f"[{'MET ' if t['met'] else 'MISS'}] {t['target']}: measured {fig}")
    return lines
