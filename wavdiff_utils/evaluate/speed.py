"""Speed and memory of an evaluation, against the issue's target: 100 generated 11.9 s clips
against a 1,000-tile reference whose embeddings are cached (``python -m wavdiff_utils.evaluate.speed``).

The sets are synthetic, made from the bundled sample with the codec's defaults (1024x1024 tiles
at 44.1 kHz, 11.9 s each).  A reference tile is a clip of the sample at its own start and gain
with another clip mixed in below it (no two tiles alike), written with the pipeline's tile
metadata and a caption beside it.  A generated tile is made the same way and given phase noise
(std 0.5, as in the ``08_evaluate`` demo), so its decode must rebuild the phase as for a
generator's output, with a prompt beside it.  There are two generated sets, so the cached run
embeds new samples, as the next evaluation of a training run would.

Each evaluation is a fresh process (``--child``): its stages' seconds come from
:attr:`~wavdiff_utils.evaluate.report.Evaluation.timings` and its peak memory is its maximum
resident set (``os.wait4``).

1. *cold*: generated set A against the reference, empty cache;
2. *cached*: set B against the reference and the cache of 1 (the reference costs reading its
   cache entries, nothing is decoded or embedded);
3. *small*: a tenth of A against a tenth of the reference, its own cache, cold: the peak memory at
   a tenth of the set size, to set beside 1's (embeddings are streamed, so it should hardly move).

The figures are ratios: clips per second, cold over cached, peak memory over the small run's.
``--random-muq DIR`` builds a randomly initialised MuQ-MuLan of full size in ``DIR`` (see
:func:`build_random_muq_mulan`) and times the ``muq`` embedding with it, loaded through the same
weight lookup as the released model; on a slow machine give it smaller sets and
``--estimate 100,1000`` (the per-clip costs scaled up, printed as an estimate).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..errors import BadParameterError, WavdiffError, one_line

__all__ = ["SpeedRunError", "SMALL", "RUNS", "MULAN_LARGE", "build_speed_sets", "measure_speed",
           "time_metrics", "estimate", "speed_lines", "build_random_muq_mulan"]

#: Share of each set the *small* run takes.
SMALL = 0.1
#: The three runs: name -> (generated set, reference set, cache).
RUNS = {"cold": ("generated_a", "reference", "cache"),
        "cached": ("generated_b", "reference", "cache"),
        "small": ("generated_small", "reference_small", "cache_small")}
_STAMP = "speed_sets.json"
_SETS = ("reference", "generated_a", "generated_b", "reference_small", "generated_small")


class SpeedRunError(WavdiffError, RuntimeError):
    """An evaluation the speed measurement ran failed (names the run and its error)."""

# --------------------------------------------------------------------------- the sets


def _clip(y: np.ndarray, n: int, rng) -> np.ndarray:
    """A clip of ``n`` samples of ``y``: one stretch at a random gain, another mixed in below."""
    a, b = rng.integers(0, len(y) - n, 2)
    mix = rng.uniform(0.5, 1.0) * y[a:a + n] + rng.uniform(0.1, 0.4) * y[b:b + n]
    return (mix / max(1.0, float(np.max(np.abs(mix))) / 0.9)).astype(np.float32)


def _write_set(folder: Path, n: int, y: np.ndarray, params: CodecParams, rng, *, noise: float,
               text: str) -> None:
    from ..codec.transform import encode_array, pixels_to_stft, stft_to_pixels
    from ..io.tiles import tile_metadata, write_tile
    from .demo import _phase_noise

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        tile = encode_array(_clip(y, params.tile_samples, rng), params)[0]
        pixels = tile.pixels
        if noise:
            pixels = stft_to_pixels(_phase_noise(pixels_to_stft(pixels, params), noise, rng), params)[0]
        name = f"{folder.name}_{k:04d}"
        meta = tile_metadata(params, name, tile.span, source="speed", is_last=True,
                             generated=bool(noise))
        write_tile(folder / f"{name}.png", pixels, meta)
        (folder / f"{name}.txt").write_text(f"{text}, take {k}", encoding="utf-8")


def _link_first(src: Path, dst: Path, n: int) -> None:
    """``dst`` holding the first ``n`` tiles of ``src`` (and their captions) as hard links."""
    dst.mkdir(parents=True, exist_ok=True)
    for png in sorted(src.glob("*.png"))[:n]:
        for f in (png, png.with_suffix(".txt")):
            try:
                os.link(f, dst / f.name)
            except OSError:
                shutil.copy2(f, dst / f.name)


def _small(n: int, share: float) -> int:
    return max(2, int(round(n * share)))


def build_speed_sets(folder, *, generated: int = 100, reference: int = 1000,
                     params: CodecParams | None = None, small: float = SMALL,
                     seed: int = 0) -> dict[str, Path]:
    """Make (or reuse, when made with the same settings) the synthetic sets under ``folder``.

    Parameters
    ----------
    folder : path-like
        Created; 1024x1024 tiles take 6.3 MB each.
    generated, reference : int
        Tiles in each generated set and in the reference.
    params : CodecParams, optional
        Codec of the tiles (default: the codec's defaults, 11.9 s tiles).
    small : float
        Share of the sets the *small* run takes (at least 2 tiles).
    seed : int

    Returns
    -------
    dict
        ``reference``, ``generated_a``, ``generated_b``, ``reference_small``,
        ``generated_small`` -> folder.
    """
    from ..io.audio import load_audio
    from ..paths import SAMPLE_AUDIO, output_dir
    from .demo import DEMO_PROMPT

    params = params or CodecParams()
    if min(generated, reference) < 2 or not 0 < small <= 1:
        raise BadParameterError(f"speed sets need at least 2 tiles a side and 0 < small <= 1, got "
                                f"generated={generated}, reference={reference}, small={small}")
    root = output_dir(folder)
    paths = {k: root / k for k in _SETS}
    want = {"version": 1, "generated": generated, "reference": reference, "small": small,
            "seed": seed, "params": params.to_dict()}
    stamp = root / _STAMP
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == want:
        return paths
    stamp.unlink(missing_ok=True)
    for p in paths.values():
        shutil.rmtree(p, ignore_errors=True)
    y = load_audio(SAMPLE_AUDIO, sample_rate=params.sample_rate)
    rng = np.random.default_rng(seed)
    _write_set(paths["reference"], reference, y, params, rng, noise=0.0, text=DEMO_PROMPT)
    for side in ("generated_a", "generated_b"):
        _write_set(paths[side], generated, y, params, rng, noise=0.5, text=DEMO_PROMPT)
    _link_first(paths["reference"], paths["reference_small"], _small(reference, small))
    _link_first(paths["generated_a"], paths["generated_small"], _small(generated, small))
    stamp.write_text(json.dumps(want), encoding="utf-8")
    return paths

# --------------------------------------------------------------------------- the runs


def _child(spec: dict) -> None:
    """One evaluation (in the child process); writes what it measured to ``spec["result"]``."""
    from .run import evaluate_sets

    r = evaluate_sets(spec["generated"], spec["reference"], spec["output"],
                      embedding=spec["embedding"], model=spec["model"], device=spec["device"],
                      params=CodecParams.from_dict(spec["params"]), n_iter=spec["n_iter"],
                      bootstrap=spec["bootstrap"], batch_size=spec["batch_size"],
                      cache_dir=spec["cache"], progress=False)
    data = {"timings": r.timings, "generated": r.gen.n, "reference": r.ref.n,
            "reference_cached": r.ref.cached, "embedding": r.embedding_label,
            "fad": r.scores.fad, "kad": r.scores.kad}
    Path(spec["result"]).write_text(json.dumps(data), encoding="utf-8")


def _run_child(name: str, spec: dict) -> dict:
    """Run one evaluation in a fresh process: what it measured, its wall seconds and peak memory."""
    from ..paths import REPO_ROOT

    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT)] + ([path] if path else [])))
    argv = [sys.executable, "-m", "wavdiff_utils.evaluate.speed", "--child", json.dumps(spec)]
    with tempfile.TemporaryFile() as errf:        # a file, not a pipe nobody reads while it runs
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errf, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:                     # interrupted: the run goes with it
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        errf.seek(0)
        err = errf.read().decode(errors="replace").strip().splitlines()
    code = proc.returncode = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SpeedRunError(f"the {name} run ({spec['generated']} against {spec['reference']}) "
                            f"failed (exit {code}): {err[-1] if err else 'no message'}")
    data = json.loads(Path(spec["result"]).read_text(encoding="utf-8"))
    data.update(wall_s=wall, peak_mib=usage.ru_maxrss / 1024)
    return data


def measure_speed(folder, *, generated: int = 100, reference: int = 1000, small: float = SMALL,
                  embedding: str = "fallback", model=None, device: str = "cpu",
                  params: CodecParams | None = None, n_iter: int = 64, bootstrap: int = 100,
                  batch_size: int = 8, seed: int = 0) -> dict:
    """Time the cold, cached and small evaluations (module notes) and give their figures.

    Parameters
    ----------
    folder : path-like
        Holds the sets (:func:`build_speed_sets`, reused) and the runs' outputs (replaced).
    generated, reference, small, params, seed
        The sets (see :func:`build_speed_sets`).
    embedding, model, device, n_iter, bootstrap, batch_size
        As in :func:`wavdiff_utils.evaluate.evaluate_sets`.

    Returns
    -------
    dict
        Figures (:func:`speed_lines` prints them): seconds, clips per second, the cached
        speed-up, seconds per clip, peak memory of each run and its ratio to the small run's,
        and ``runs``: what each run measured.
    """
    params = params or CodecParams()
    sets = build_speed_sets(folder, generated=generated, reference=reference, params=params,
                            small=small, seed=seed)
    work = Path(sets["reference"]).parent / f"runs-{embedding}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    base = {"embedding": embedding, "model": str(model) if model else None, "device": device,
            "params": params.to_dict(), "n_iter": int(n_iter), "bootstrap": int(bootstrap),
            "batch_size": int(batch_size)}
    runs = {}
    for name, (gen, ref, cache) in RUNS.items():
        spec = {**base, "generated": str(sets[gen]), "reference": str(sets[ref]),
                "output": str(work / name), "cache": str(work / cache),
                "result": str(work / f"{name}.json")}
        runs[name] = _run_child(name, spec)
    return _figures(runs, params.tile_seconds, device)


def _figures(runs: dict, clip_seconds: float, device: str) -> dict:
    cold, cached, small = runs["cold"], runs["cached"], runs["small"]
    t = lambda run, stage: float(run["timings"].get(stage, 0.0))
    n_gen, n_ref = cold["generated"], cold["reference"]
    clips, small_clips = n_gen + n_ref, small["generated"] + small["reference"]
    return {
        "embedding": cold["embedding"], "device": device, "generated": n_gen, "reference": n_ref,
        "clip_seconds": clip_seconds,
        "cold_s": t(cold, "total"), "cached_s": t(cached, "total"),
        "cached_speedup": t(cold, "total") / t(cached, "total"),
        "cold_clips_per_s": clips / t(cold, "total"),
        "cached_clips_per_s": n_gen / t(cached, "total"),
        "audio_x_realtime_cold": clips * clip_seconds / t(cold, "total"),
        "reference_s_per_clip": t(cold, "reference") / n_ref,
        "generated_s_per_clip": t(cached, "generated") / n_gen,
        "cached_reference_s": t(cached, "reference"),
        "reference_cached": cached["reference_cached"],
        "model_s": t(cold, "model"), "metrics_s": t(cached, "metrics"),
        "peak_mib": cold["peak_mib"], "peak_mib_cached": cached["peak_mib"],
        "peak_mib_small": small["peak_mib"], "small_clips": small_clips,
        "set_ratio": clips / small_clips, "memory_ratio": cold["peak_mib"] / small["peak_mib"],
        "runs": runs,
    }


def time_metrics(*, generated: int = 100, reference: int = 1000, clip_seconds: float = 11.9,
                 embedding: str = "fallback", model=None, device: str = "cpu", bootstrap: int = 100,
                 seed: int = 0) -> dict:
    """Seconds of the metrics stage at a set size, on random embeddings of the embedding's shape.

    The metrics' cost depends on the shapes only (windows, width); the captions (a prompt per
    generated clip, at most 256 of the reference's) go through the embedding's text tower as in
    a real run.  For an estimate where the full sets would take too long to embed.

    Returns
    -------
    dict
        ``metrics_s``, ``windows`` per clip, ``dim``, ``model_s`` (loading the embedding).
    """
    from .collect import SideEmbeddings
    from .embeddings import make_embedder, window_starts
    from .scores import compute_scores
    from .sets import THUMBNAIL, Sample

    t0 = time.perf_counter()
    embedder = make_embedder(embedding, model=model, device=device)
    model_s = time.perf_counter() - t0
    rate = 24000
    rng = np.random.default_rng(seed)
    probe = embedder.embed([0.1 * rng.standard_normal(rate).astype(np.float32)], rate)[0]
    windows = len(window_starts(int(clip_seconds * rate), rate))
    dim = probe.windows.shape[1]

    def side(role: str, n: int) -> SideEmbeddings:
        samples = [Sample(f"{role}_{k}.png", Path(f"{role}_{k}.png"), "image", rate,
                          caption=f"a calm electronic track with soft pads, take {k}") for k in range(n)]
        joint = None
        if probe.joint is not None:
            joint = rng.standard_normal((n, len(probe.joint)))
            joint /= np.linalg.norm(joint, axis=1, keepdims=True)
        return SideEmbeddings(role, samples, rng.standard_normal((n * windows, dim)),
                              np.repeat(np.arange(n), windows), joint, np.full(n, -6.0),
                              rng.random((n, THUMBNAIL, THUMBNAIL)).astype(np.float32))

    gen, ref = side("generated", generated), side("reference", reference)
    t0 = time.perf_counter()
    compute_scores(gen, ref, embedder, bootstrap=bootstrap, seed=seed, tile_sizes=(1024, 1024))
    return {"metrics_s": time.perf_counter() - t0, "windows": windows, "dim": int(dim),
            "model_s": model_s}


def estimate(figures: dict, *, generated: int = 100, reference: int = 1000,
             metrics_s: float | None = None) -> dict:
    """The cold and cached seconds at other set sizes, from the per-clip costs measured: an
    estimate.  The model load is taken as measured; the metrics as ``metrics_s`` (from
    :func:`time_metrics` at that size) or else as measured at the measured size."""
    metrics = figures["metrics_s"] if metrics_s is None else metrics_s
    fixed = figures["model_s"] + metrics
    per_cached_ref = figures["cached_reference_s"] / figures["reference"]
    cold = fixed + reference * figures["reference_s_per_clip"] + generated * figures["generated_s_per_clip"]
    cached = fixed + reference * per_cached_ref + generated * figures["generated_s_per_clip"]
    return {"generated": generated, "reference": reference, "cold_s": cold, "cached_s": cached,
            "cached_clips_per_s": generated / cached, "metrics_s": metrics,
            "metrics_measured_at_size": metrics_s is not None}


def speed_lines(figures: dict, est: dict | None = None) -> list[str]:
    """The figures as a few lines of ratios."""
    f = figures
    lines = [f"{f['generated']} generated vs {f['reference']} reference clips of {f['clip_seconds']:.1f} s, "
             f"{f['embedding']}, device {f['device']}",
             f"  cold (reference decoded and embedded): {f['cold_s']:.1f} s, {f['cold_clips_per_s']:.2f} "
             f"clips/s ({f['audio_x_realtime_cold']:.1f}x realtime); reference "
             f"{f['reference_s_per_clip']:.3f} s/clip",
             f"  cached reference: {f['cached_s']:.1f} s, {f['cached_clips_per_s']:.2f} generated clips/s "
             f"({f['generated_s_per_clip']:.3f} s/clip, decode + embed), {f['cached_speedup']:.1f}x "
             f"faster than cold; reading {f['reference_cached']} cached entries {f['cached_reference_s']:.2f} s",
             f"  model load {f['model_s']:.1f} s, metrics {f['metrics_s']:.1f} s",
             f"  peak memory {f['peak_mib']:.0f} MiB (cached run {f['peak_mib_cached']:.0f}) vs "
             f"{f['peak_mib_small']:.0f} MiB at {f['small_clips']} clips: {f['memory_ratio']:.2f}x the "
             f"memory for {f['set_ratio']:.1f}x the clips"]
    if est:
        how = "timed at that size on random embeddings" if est["metrics_measured_at_size"] else \
            "as measured"
        lines.append(f"  estimate at {est['generated']} vs {est['reference']} (per-clip costs scaled; "
                     f"metrics {est['metrics_s']:.1f} s, {how}): cold {est['cold_s']:.0f} s, cached "
                     f"{est['cached_s']:.0f} s ({est['cached_clips_per_s']:.2f} generated clips/s)")
    return lines

# --------------------------------------------------------------------------- a full-size random MuQ

#: MuQ-MuLan-large's shape: the muq package's own defaults (``MuLanConfig``,
#: ``AudioTransformerConfig``, ``TextTransformerConfig``; ``MuQConfig`` for MuQ-large: 12 conformer
#: layers 1024 wide, 25 frames a second) with the conformer settings of MuQ's pre-training recipe
#: (16 heads, 4096 feed-forward, depthwise kernel 31, rotary positions) and XLM-R base.
MULAN_LARGE = {
    "mulan": {"sr": 24000, "clip_secs": 10, "dim_latent": 512, "decoupled_contrastive_learning": True,
              "hierarchical_contrastive_loss": False, "hierarchical_contrastive_loss_layers": None,
              "sigmoid_contrastive_loss": False, "rank_contrast": True},
    "audio_model": {"name": "OpenMuQ/MuQ-large-msd-iter", "model_dim": 1024, "use_layer_idx": -1},
    "text_model": {"name": "xlm-roberta-base", "model_dim": 768},
    "audio_transformer": {"dim": 768, "tf_depth": 8, "heads": 8, "dim_head": 64, "attn_dropout": 0.0,
                          "ff_dropout": 0.0, "ff_mult": 4},
    "text_transformer": {"dim": 768, "tf_depth": 8, "max_seq_len": 1024, "dim_head": 64, "heads": 8,
                         "attn_dropout": 0.0, "ff_dropout": 0.0, "ff_mult": 4},
}


def _build_muq_large(folder: Path) -> None:
    import dataclasses

    from muq import MuQ, MuQConfig
    from safetensors.torch import save_file
    from transformers import Wav2Vec2ConformerConfig

    w2v2 = Wav2Vec2ConformerConfig(hidden_size=1024, num_hidden_layers=12, num_attention_heads=16,
                                   intermediate_size=4096, conv_depthwise_kernel_size=31,
                                   position_embeddings_type="rotary", hidden_act="swish",
                                   do_stable_layer_norm=True, num_conv_pos_embeddings=128,
                                   num_conv_pos_embedding_groups=16).to_dict()
    w2v2 = {k: v for k, v in w2v2.items() if not k.startswith("_") and not isinstance(v, dict)}
    config = MuQConfig(encoder_dim=1024, encoder_depth=12, conv_dim=512, w2v2_config=w2v2,
                       stat={"melspec_2048_cnt": 1, "melspec_2048_mean": 6.77,
                             "melspec_2048_std": 18.42})
    model = MuQ(config)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().clone() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))


def _build_xlmr_base(folder: Path) -> None:
    """XLM-R base, random, with a word-level tokenizer of the caption vocabulary (about one token
    a word, as XLM-R's own gives for English captions)."""
    import string

    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    from ..captioning.labels import CATEGORIES, load_vocabulary

    vocab = load_vocabulary()
    words = {w for c in CATEGORIES for lab in vocab[c] for w in lab.prompt.lower().split()}
    words |= set(string.ascii_lowercase) | set(string.digits) | set(string.punctuation)
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + sorted(words) + ["<mask>"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>").save_pretrained(str(folder))
    config = XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12,
                              num_attention_heads=12, intermediate_size=3072,
                              max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    XLMRobertaModel(config).save_pretrained(str(folder))


def build_random_muq_mulan(folder, *, seed: int = 0) -> Path:
    """A randomly initialised MuQ-MuLan of full size (:data:`MULAN_LARGE`: the same compute as the
    released ``OpenMuQ/MuQ-MuLan-large``), laid out like a downloaded one: ``config.json``,
    ``model.safetensors``, ``MuQ-large-msd-iter/``, ``xlm-roberta-base/``.  Reused when there.
    About 5 GB on disk; it measures speed only (random weights give no ordering).

    Returns
    -------
    pathlib.Path
        ``folder``, to pass as ``model``.
    """
    import torch
    from muq import MuQMuLan
    from safetensors.torch import save_file

    from ..paths import atomic_path

    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    audio, text = folder / "MuQ-large-msd-iter", folder / "xlm-roberta-base"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _build_muq_large(audio)
        _build_xlmr_base(text)
        build = json.loads(json.dumps(MULAN_LARGE))
        build["audio_model"]["name"] = str(audio.resolve())
        build["text_model"]["name"] = str(text.resolve())
        net = MuQMuLan(build)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}, str(tmp))
    (folder / "config.json").write_text(json.dumps(MULAN_LARGE, indent=1))
    return folder

# --------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m wavdiff_utils.evaluate.speed",
                                 description="Time an evaluation (cold, with a cached reference) "
                                             "and its peak memory at two set sizes.")
    ap.add_argument("--folder", default="outputs/evaluate_speed",
                    help="sets (reused when made with the same settings) and runs")
    ap.add_argument("--generated", type=int, default=100, help="clips in each generated set")
    ap.add_argument("--reference", type=int, default=1000, help="tiles in the reference")
    ap.add_argument("--small", type=float, default=SMALL, help="share of the sets in the small run")
    ap.add_argument("--size", type=int, default=1024, help="tile size (1024: 11.9 s at 44.1 kHz)")
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--embedding", choices=("fallback", "muq", "auto"), default="fallback")
    ap.add_argument("--model", default=None, help="MuQ-MuLan hub id or folder")
    ap.add_argument("--random-muq", default=None, metavar="DIR",
                    help="build a random full-size MuQ-MuLan in DIR (reused) and time embedding muq with it")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n-iter", type=int, default=64)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--estimate", default=None, metavar="G,R",
                    help="also estimate the seconds for G generated and R reference clips (per-clip "
                         "costs scaled, the metrics timed at that size on random embeddings)")
    ap.add_argument("--json", default=None, help="write the figures to this file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap


def _sizes(text: str) -> dict:
    g, _, r = text.partition(",")
    if not (g.strip().isdigit() and r.strip().isdigit()):
        raise BadParameterError(f"--estimate takes two counts, generated and reference (e.g. 100,1000), "
                                f"got {text!r}")
    return {"generated": int(g), "reference": int(r)}


def main(argv=None) -> int:
    """Measure and print; 0 on success, 2 on an error (one line)."""
    args = _parser().parse_args(argv)
    try:
        if args.child:
            _child(json.loads(args.child))
            return 0
        sizes = _sizes(args.estimate) if args.estimate else None
        model, embedding = args.model, args.embedding
        if args.random_muq:
            model, embedding = build_random_muq_mulan(args.random_muq), "muq"
        figures = measure_speed(args.folder, generated=args.generated, reference=args.reference,
                                small=args.small, embedding=embedding, model=model, device=args.device,
                                params=CodecParams(size=args.size, sample_rate=args.sample_rate),
                                n_iter=args.n_iter, bootstrap=args.bootstrap, batch_size=args.batch_size)
        est = None
        if sizes:
            timed = time_metrics(**sizes, clip_seconds=figures["clip_seconds"], embedding=embedding,
                                 model=model, device=args.device, bootstrap=args.bootstrap)
            est = {**estimate(figures, **sizes, metrics_s=timed["metrics_s"]), "metrics": timed}
            figures["estimate"] = est
    except (WavdiffError, OSError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print("\n".join(speed_lines(figures, est)))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
