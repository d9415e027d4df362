"""One side's embeddings, streamed: audio is decoded or read a few clips at a time, embedded and
let go, so memory holds embeddings (a few kB per second of audio), never a set's audio.

Images of the generated side are decoded once into a folder the evaluation keeps (players,
the decode report); images of the reference are decoded only when their embeddings are not
cached, into a scratch folder emptied as it goes.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadAudioError, BadTileError
from ..jobs.decode import DecodeBatch
from ..paths import display_message
from .cache import EmbeddingCache, audio_key, file_key
from .embeddings import Embedder
from .sets import (SILENCE_DBFS, Sample, SampleSet, decode_images, describe_params, iter_audio,
                   magnitude_thumbnail, read_decoded, scratch_folder)

__all__ = ["SideEmbeddings", "embed_side", "SILENT_MODES"]

#: What a silent clip does: stop the evaluation with one line, or leave the clip out.
SILENT_MODES = ("error", "drop")
_CHUNK = 16


@dataclass
class SideEmbeddings:
    """What one side became: per sample its name, caption, peak (dBFS), windows and joint latent.

    ``windows`` stacks every sample's window embeddings; ``groups[w]`` is the sample of window
    ``w``.  ``thumbnails`` (images only) are the pooled magnitude planes; ``decoded`` maps a
    sample's name to its decoded audio (generated images); ``decode`` is the decode report.
    """

    role: str
    samples: list[Sample]
    windows: np.ndarray
    groups: np.ndarray
    joint: np.ndarray | None
    peaks: np.ndarray
    thumbnails: np.ndarray | None
    decode: DecodeBatch | None = None
    decoded: dict = field(default_factory=dict)
    decode_results: dict = field(default_factory=dict)
    params: object = None               # codec assumed for images without metadata
    dropped: list = field(default_factory=list)
    cached: int = 0

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    @property
    def n(self) -> int:
        return len(self.samples)

    def sample_means(self) -> np.ndarray:
        """Each sample's mean window embedding."""
        sums = np.zeros((self.n, self.windows.shape[1]))
        np.add.at(sums, self.groups, self.windows)
        return sums / np.bincount(self.groups, minlength=self.n)[:, None]


@dataclass
class _Acc:
    entries: list = field(default_factory=list)       # (sample, entry)
    todo: list = field(default_factory=list)          # (sample, clip, key, thumbnail)


def _peak_db(y: np.ndarray) -> float:
    p = float(np.max(np.abs(y))) if len(y) else 0.0
    return 20.0 * np.log10(p) if p > 0 else float("-inf")


def _flush(acc: _Acc, embedder: Embedder, cache: EmbeddingCache, rate: int) -> None:
    if not acc.todo:
        return
    embs = embedder.embed([c for _, c, _, _ in acc.todo], rate)
    for (s, clip, key, thumb), e in zip(acc.todo, embs):
        entry = {"windows": e.windows.astype(np.float32), "joint": e.joint, "peak": _peak_db(clip),
                 "thumbnail": thumb}
        cache.put(key, entry)
        acc.entries.append((s, entry))
    acc.todo.clear()


def _add(acc: _Acc, s: Sample, clip: np.ndarray, key: str, thumb, embedder, cache, rate, size) -> None:
    if _peak_db(clip) < SILENCE_DBFS:           # silent: no embedding, only its level
        acc.entries.append((s, {"windows": None, "joint": None, "peak": _peak_db(clip),
                                "thumbnail": thumb}))
        return
    acc.todo.append((s, clip, key, thumb))
    if len(acc.todo) >= size:
        _flush(acc, embedder, cache, rate)


def _audio_side(side: SampleSet, embedder, cache, acc: _Acc, size: int, bar) -> None:
    for s, clip in iter_audio(side.samples):
        key = file_key(s.path, start=s.start, stop=s.stop, rate=s.sample_rate)
        hit = cache.get(key)
        if hit is not None:
            acc.entries.append((s, hit))
        else:
            _add(acc, s, clip, key, None, embedder, cache, s.sample_rate, size)
        bar.update(1)


def _decode_failed(side: SampleSet, batch: DecodeBatch) -> None:
    if batch.failures:
        first = display_message(batch.failures[0][1])
        raise BadTileError(f"{side.label}: {len(batch.failures)} of {len(side.samples)} image(s) "
                           f"could not be decoded; the first: {first}")


def _reference_images(side: SampleSet, embedder, cache, acc: _Acc, size: int, bar, work: Path,
                      settings: dict) -> DecodeBatch:
    report = DecodeBatch()
    scratch = scratch_folder(work, "reference-audio")
    try:
        for i in range(0, len(side.samples), _CHUNK):
            part = side.samples[i:i + _CHUNK]
            keys = {s.name: file_key(s.path, **settings) for s in part}
            misses = []
            for s in part:
                hit = cache.get(keys[s.name])
                if hit is not None:
                    acc.entries.append((s, hit))
                    bar.update(1)
                else:
                    misses.append(s)
            if not misses:
                continue
            batch, written, _ = decode_images(misses, scratch, params=side.params, phase=settings["phase"],
                                           n_iter=settings["n_iter"])
            report.results += batch.results
            report.failures += batch.failures
            _decode_failed(side, report)
            for s in misses:
                y, rate = read_decoded(written[s.name])
                _add(acc, s, y, keys[s.name], magnitude_thumbnail(s.path), embedder, cache, rate, size)
                written[s.name].unlink(missing_ok=True)
                bar.update(1)
            _flush(acc, embedder, cache, side.sample_rate)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def _generated_images(side: SampleSet, embedder, cache, acc: _Acc, size: int, bar, folder: Path,
                      settings: dict) -> tuple[DecodeBatch, dict, dict]:
    batch, written, results, used = DecodeBatch(), {}, {}, set()
    for i in range(0, len(side.samples), _CHUNK):               # decode a chunk, embed it, go on
        part = side.samples[i:i + _CHUNK]
        one, out, res = decode_images(part, folder, params=side.params, phase=settings["phase"],
                                      n_iter=settings["n_iter"], used=used)
        batch.results += one.results
        batch.failures += one.failures
        written.update(out)
        results.update(res)
        _decode_failed(side, batch)
        for s in part:
            y, rate = read_decoded(written[s.name])
            key = audio_key(y, rate, kind="generated-image")
            hit = cache.get(key)
            thumb = magnitude_thumbnail(s.path)
            if hit is not None:
                acc.entries.append((s, {**hit, "thumbnail": thumb}))
            else:
                _add(acc, s, y, key, thumb, embedder, cache, rate, size)
            bar.update(1)
    batch.root = (folder, side.root)
    return batch, written, results


def embed_side(side: SampleSet, embedder: Embedder, cache: EmbeddingCache, *, work: Path,
               decoded_folder: Path | None = None, phase: str = "auto", n_iter: int = 64,
               silent: str = "error", batch_size: int = 8, progress: bool = True) -> SideEmbeddings:
    """Embed every sample of ``side`` (cached entries reused).

    Images are decoded with phase ``phase``: into ``decoded_folder`` when given (kept: the
    generated side), else into a scratch folder under ``work``.  Silent clips (peak below
    -60 dBFS) stop it with one line naming them, or are left out (``silent="drop"``).
    """
    from tqdm.auto import tqdm

    acc = _Acc()
    hits = cache.hits
    size = max(1, int(batch_size))
    settings = {"phase": phase, "n_iter": int(n_iter), "params": describe_params(side.params)}
    decode, decoded, results = None, {}, {}
    with tqdm(total=len(side.samples), desc=f"embed {side.role}", unit="sample",
              disable=not progress) as bar:
        if side.kind == "audio":
            _audio_side(side, embedder, cache, acc, size, bar)
        elif decoded_folder is not None:
            decode, decoded, results = _generated_images(side, embedder, cache, acc, size, bar,
                                                         decoded_folder, settings)
        else:
            decode = _reference_images(side, embedder, cache, acc, size, bar, work, settings)
        _flush(acc, embedder, cache, side.sample_rate)
    out = _assemble(side, acc, cache.hits - hits, silent, decode, decoded)
    out.decode_results, out.params = results, side.params
    return out


def _assemble(side: SampleSet, acc: _Acc, hits: int, silent: str, decode, decoded) -> SideEmbeddings:
    order = {s.name: i for i, s in enumerate(side.samples)}
    entries = sorted(acc.entries, key=lambda se: order[se[0].name])
    quiet = [s.name for s, e in entries if e["windows"] is None]
    if quiet and silent == "error":
        shown = ", ".join(quiet[:4]) + (", ..." if len(quiet) > 4 else "")
        raise BadAudioError(f"{side.label}: {len(quiet)} of {len(entries)} clip(s) are silent (peak "
                            f"below {SILENCE_DBFS:g} dBFS): {shown}; silence has no embedding to "
                            f"compare: remove them, or pass silent='drop'")
    kept = [(s, e) for s, e in entries if e["windows"] is not None]
    if len(kept) < 2:
        raise BadAudioError(f"{side.label}: {len(kept)} clip(s) with sound; a distribution needs "
                            f"at least 2 a side")
    windows = np.concatenate([np.asarray(e["windows"], np.float64) for _, e in kept])
    groups = np.concatenate([np.full(len(e["windows"]), i) for i, (_, e) in enumerate(kept)])
    joint = None
    if all(e.get("joint") is not None for _, e in kept):
        joint = np.stack([np.asarray(e["joint"], np.float64) for _, e in kept])
    thumbs = None
    if all(e.get("thumbnail") is not None for _, e in kept):
        thumbs = np.stack([np.asarray(e["thumbnail"], np.float32) for _, e in kept])
    return SideEmbeddings(side.role, [s for s, _ in kept], windows, groups, joint,
                          np.array([e["peak"] for _, e in kept]), thumbs, decode=decode,
                          decoded=decoded, dropped=quiet, cached=hits)
