"""Evaluate a set of generated music against a reference: one call, one result, one JSON record.

:func:`evaluate_sets` finds the samples of both sides, embeds them (the reference first, its
embeddings cached per file), measures (:mod:`wavdiff_utils.evaluate.scores`) and writes
``<output>/evaluation.json``, the generated images' decoded audio in ``<output>/decoded/`` and
the new cache entries in ``<output>/cache/`` (or ``cache_dir``).  All three are written only
when the whole evaluation succeeded; a run that stops leaves what an earlier one wrote.  One
run at a time per output folder (its lock).

:func:`evaluate_run` is the same at the end of a training run (``07_train``): where no
distribution can be measured (too few samples, a reference it cannot read) it gives a
:class:`Skipped` saying why instead of stopping the notebook.
"""
from __future__ import annotations

import os
import shutil
import html
import time
from dataclasses import dataclass
from pathlib import Path

from ..codec.params import CodecParams
from ..errors import BadParameterError
from ..io.locking import output_lock
from ..paths import display_path, output_dir, remove_temporaries, resolve
from .cache import EmbeddingCache
from .collect import SILENT_MODES, embed_side
from .embeddings import make_embedder
from .report import JSON_NAME, Evaluation
from .scores import compute_scores
from .sets import MIN_SAMPLES, check_rates, scan_set, scratch_folder

__all__ = ["evaluate_sets", "evaluate_run", "Skipped", "DECODED_DIR", "CACHE_DIR"]

#: Sub-folder of the output with the generated images' decoded audio.
DECODED_DIR = "decoded"
#: Sub-folder of the output with the embedding cache (unless ``cache_dir`` says otherwise).
CACHE_DIR = "cache"


def _check(phase: str, silent: str, bootstrap, threshold, n_iter) -> None:
    from ..phase.reconstruct import METHODS

    if phase not in METHODS:
        raise BadParameterError(f"phase must be one of {METHODS}, got {phase!r}")
    if silent not in SILENT_MODES:
        raise BadParameterError(f"silent must be one of {SILENT_MODES}, got {silent!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise BadParameterError(f"bootstrap must be a whole number of resamples >= 0, got {bootstrap!r}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise BadParameterError(f"n_iter must be a whole number >= 0, got {n_iter!r}")
    if not isinstance(threshold, (int, float)) or not -1.0 <= float(threshold) <= 1.0:
        raise BadParameterError(f"threshold must be a similarity between -1 and 1, got {threshold!r}")


def _sweep(out: Path) -> None:
    """Remove what a killed run left (its scratch folders, a half-written record); under the lock."""
    for leftover in list(out.glob(".decoded-*")) + list(out.glob(".reference-audio-*")) + \
            list((out / DECODED_DIR).glob(".generated.old-*")):
        shutil.rmtree(leftover, ignore_errors=True)
    remove_temporaries(out, [JSON_NAME])


def _publish(staging: Path, final: Path) -> None:
    """Put the staged decoded audio in place of ``final`` (the old one removed)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def evaluate_sets(generated, reference, output, *, embedding: str = "auto", model=None,
                  device: str = "auto", split: str | None = None, params: CodecParams | None = None,
                  phase: str = "auto", n_iter: int = 64, clip_seconds: float | None = None,
                  silent: str = "error", bootstrap: int = 100, threshold: float = 0.99,
                  seed: int = 0, batch_size: int = 8, cache_dir=None, progress: bool = True) -> Evaluation:
    """Measure how close ``generated`` music is to ``reference`` music, as the field measures it.

    Parameters
    ----------
    generated, reference : path-like
        A folder of images (ours or any generator's), a dataset made by the pipeline, a folder
        of audio, or one file each (see :mod:`wavdiff_utils.evaluate.sets`).
    output : path-like
        Folder for ``evaluation.json``, ``decoded/`` and ``cache/`` (created).
    embedding : {"auto", "muq", "fallback"}
        ``auto``: MuQ when its weights are found, else the weights-free fallback with one
        notice (in :attr:`Evaluation.notes`); ``muq``: MuQ or a one-line error.
    model, device, batch_size
        MuQ-MuLan weights (hub id or folder; default ``OpenMuQ/MuQ-MuLan-large`` or
        ``$WAVDIFF_MUQ_MODEL``), device, clips per forward pass.
    split : str, optional
        Rows of a reference dataset to use (e.g. ``"validation"``).
    params : CodecParams, optional
        Codec assumed for images without wavdiff metadata.
    phase, n_iter
        Decode settings for images (phase ``auto`` rebuilds what the image's phase lacks).
    clip_seconds : float, optional
        Clip length for audio (default: the tile length).
    silent : {"error", "drop"}
        A silent generated clip (peak below -60 dBFS) stops the evaluation with one line naming
        it, or is left out.  Silent reference tiles (a song's silent ending) are always left out,
        with a note.
    bootstrap : int
        Resamples for the 95% intervals (0: none).
    threshold : float
        Nearest-reference similarity at which a sample is flagged as possibly memorized.
    seed : int
        Resampling, FAD-inf subsets, bandwidth subset.
    cache_dir : path-like or False, optional
        Embedding cache (default ``<output>/cache``; False: none).

    Returns
    -------
    Evaluation
    """
    _check(phase, silent, bootstrap, threshold, n_iter)
    settings = {"embedding": embedding, "split": split, "phase": phase, "n_iter": n_iter,
                "clip_seconds": clip_seconds, "silent": silent, "bootstrap": bootstrap,
                "threshold": threshold, "seed": seed, "batch_size": batch_size}
    t0 = time.perf_counter()
    gen_set = scan_set(generated, "generated", params=params, clip_seconds=clip_seconds)
    ref_set = scan_set(reference, "reference", split=split, params=params, clip_seconds=clip_seconds)
    check_rates(gen_set, ref_set)
    timings = {"scan": time.perf_counter() - t0}
    out = output_dir(output)
    with output_lock(out):
        _sweep(out)
        t = time.perf_counter()
        embedder = make_embedder(embedding, model=model, device=device, batch_size=batch_size)
        timings["model"] = time.perf_counter() - t
        cache_root = None if cache_dir is False else (resolve(cache_dir) if cache_dir else out / CACHE_DIR)
        return _evaluate_locked(gen_set, ref_set, embedder, EmbeddingCache(cache_root, embedder.key()),
                                out, settings, timings, progress, t0)


def _evaluate_locked(gen_set, ref_set, embedder, cache: EmbeddingCache, out: Path, settings: dict,
                     timings: dict, progress: bool, t0: float) -> Evaluation:
    """Embed both sides, measure, publish: the body of :func:`evaluate_sets`, under the lock."""
    decode = {k: settings[k] for k in ("phase", "n_iter", "batch_size")}
    staging = scratch_folder(out, "decoded")
    try:
        t = time.perf_counter()
        ref = embed_side(ref_set, embedder, cache, work=out, silent="drop", progress=progress, **decode)
        timings["reference"] = time.perf_counter() - t
        t = time.perf_counter()
        gen = embed_side(gen_set, embedder, cache, work=out, decoded_folder=staging,
                         silent=settings["silent"], progress=progress, **decode)
        timings["generated"] = time.perf_counter() - t
        t = time.perf_counter()
        scores = compute_scores(gen, ref, embedder, bootstrap=settings["bootstrap"], seed=settings["seed"],
                                threshold=settings["threshold"],
                                tile_sizes=(gen_set.tile_size, ref_set.tile_size))
        timings["metrics"] = time.perf_counter() - t
        result = _result(gen_set, ref_set, gen, ref, scores, embedder, out, timings, settings)
        timings["total"] = time.perf_counter() - t0
        _finish(result, cache, staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _result(gen_set, ref_set, gen, ref, scores, embedder, out: Path, timings: dict,
            settings: dict) -> Evaluation:
    settings = {**settings, "embedding_key": embedder.key()}
    settings["params_assumed"] = gen_set.params.to_dict() if gen_set.params is not None else None
    notes = ([embedder.notice] if embedder.notice else []) + gen_set.notes + ref_set.notes
    for side in (gen, ref):
        if side.dropped:
            shown = ", ".join(side.dropped[:3]) + (", ..." if len(side.dropped) > 3 else "")
            notes.append(f"{side.role}: {len(side.dropped)} silent clip(s) left out (peak below "
                         f"-60 dBFS): {shown}")
    return Evaluation(gen_set.root, ref_set.root, out, embedder.name, embedder.label, scores, gen,
                      ref, settings, timings, notes)


def _finish(result: Evaluation, cache: EmbeddingCache, staging: Path, out: Path) -> None:
    """Publish a successful run: decoded audio, cache entries, then the JSON record."""
    if result.gen.decode is not None:
        final = out / DECODED_DIR / "generated"
        final.parent.mkdir(parents=True, exist_ok=True)
        _publish(staging, final)
        for name, path in list(result.gen.decoded.items()):
            result.gen.decoded[name] = final / Path(path).name
        for r in result.gen.decode_results.values():
            r.output = str(final / Path(r.output).name)
        result.gen.decode.root = (final, result.generated)
    cache.commit()
    result.write_json()


# --------------------------------------------------------------------------- after training


@dataclass
class Skipped:
    """An evaluation that measured nothing, and why (one line): what :func:`evaluate_run` gives
    where no distribution can be measured."""

    reason: str

    def summary(self) -> str:
        return f"evaluation skipped: {self.reason}"

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return f"<p><b>Evaluation skipped</b>: {html.escape(self.reason)}</p>"


def _why_not(generated, reference, split: str | None, params) -> str:
    """Why no distribution can be measured between the two sides ("" when one can)."""
    from ..dataset.export import METADATA_NAME, read_metadata

    ref = resolve(reference)
    if (ref / "shards.json").is_file():
        return (f"the reference {display_path(ref)} is WebDataset shards, which the evaluation does "
                f"not read; give it the pipeline's export ({METADATA_NAME}) or a folder of tiles")
    gen = scan_set(generated, "generated", params=params, minimum=0)
    if len(gen.samples) < MIN_SAMPLES:
        return (f"{len(gen.samples)} generated sample(s) in {display_path(gen.root)}; a distribution "
                f"needs at least {MIN_SAMPLES} a side (50 for FAD-inf): sample more")
    if split and (ref / METADATA_NAME).is_file():
        rows = sum(str(r.get("split", "")) == split for r in read_metadata(ref))
        if rows < MIN_SAMPLES:
            return (f"the dataset {display_path(ref)} has {rows} tile(s) in split {split!r}; a "
                    f"distribution needs at least {MIN_SAMPLES} a side")
    n = len(scan_set(reference, "reference", split=split, params=params, minimum=0).samples)
    if n < MIN_SAMPLES:
        return (f"the reference {display_path(ref)} has {n} tile(s) with a window of audio; a "
                f"distribution needs at least {MIN_SAMPLES} a side")
    return ""


def evaluate_run(generated, reference, output, *, split: str | None = "validation",
                 params: CodecParams | None = None, **options) -> Evaluation | Skipped:
    """:func:`evaluate_sets` at the end of a training run: its samples against a split of the
    dataset it trained on (``07_train``).

    Where no distribution can be measured, a :class:`Skipped` says why instead of an error:
    fewer than 2 samples on a side (too few samples drawn, a dataset without the split), or a
    reference of WebDataset shards, which the evaluation does not read.  Every other problem
    stops it as in :func:`evaluate_sets`.  With few samples the numbers are wide and FAD-inf is
    n/a (it needs 50 a side): a smoke check that the run ends with numbers.

    Parameters
    ----------
    generated : path-like
        The run's sampled tiles (``<run>/samples``).
    reference : path-like
        The dataset the run trained on.
    output : path-like
        Folder for ``evaluation.json``, ``decoded/`` and ``cache/``.
    split : str, optional
        Rows of the dataset to compare with (default ``"validation"``; None: all).
    params : CodecParams, optional
        Codec assumed for images without wavdiff metadata.
    **options
        Passed to :func:`evaluate_sets` (``embedding``, ``device``, ``bootstrap``, ...).

    Returns
    -------
    Evaluation or Skipped
    """
    reason = _why_not(generated, reference, split, params)
    if reason:
        return Skipped(reason)
    return evaluate_sets(generated, reference, output, split=split, params=params, **options)
