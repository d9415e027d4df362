"""The numbers of an evaluation, from the two sides' embeddings.

- distribution: FAD with a bootstrap interval, FAD-infinity (from 50 samples a side), KAD with
  a bootstrap interval (:mod:`wavdiff_utils.evaluate.metrics`);
- per sample: its kernel distance to the reference (outliers lie above the 95th percentile of
  the reference samples' own distances, each measured against the rest of the reference);
- memorization: each generated sample's nearest reference sample by embedding cosine (sample
  means, both centred on the reference's mean) and, when both sides are images of one size, by
  the correlation of their 16-bit magnitude planes (averaged down to 64x64, the reference's
  mean plane taken off: the spectral tilt every tile shares would make any two alike);
  flagged at or above ``threshold``.  The reference's own nearest neighbours (itself left out)
  are the yardstick;
- text-audio: MuQ-MuLan cosine between a sample's latent and its caption's, and the same for
  the reference against its own captions (at most 256, seeded).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .collect import SideEmbeddings
from .embeddings import Embedder
from .metrics import (MIN_SAMPLES_INF, FadInf, FrechetReference, Interval, KernelReference,
                      fad_infinity, group_counts, normal_interval)

__all__ = ["Scores", "Neighbours", "compute_scores", "OUTLIER_PERCENTILE", "TEXT_REFERENCE_MAX"]

#: Percentile of the reference's own per-sample distances above which a generated sample is an outlier.
OUTLIER_PERCENTILE = 95.0
#: Most generated windows whose Gram matrix is kept for the resampled Frechet distances (8 bytes each squared).
GRAM_MAX = 4000
#: Most reference captions the text-audio yardstick embeds.
TEXT_REFERENCE_MAX = 256


@dataclass
class Neighbours:
    """Nearest reference sample of each generated one (``index``, ``value``) and the reference's
    own nearest-neighbour values (``reference``), by one measure."""

    measure: str
    index: np.ndarray
    value: np.ndarray
    reference: np.ndarray


@dataclass
class Scores:
    """Everything :func:`compute_scores` measured (see the module notes)."""

    fad: float
    fad_interval: Interval | None
    fad_inf: FadInf | None
    fad_inf_note: str
    kad: float
    kad_interval: Interval | None
    bandwidth: float
    distances: np.ndarray
    reference_distances: np.ndarray
    outlier_threshold: float
    cosine: Neighbours
    magnitude: Neighbours | None
    magnitude_note: str
    threshold: float
    text: np.ndarray | None = None
    reference_text: np.ndarray | None = None
    text_note: str = ""
    notes: list = field(default_factory=list)

    @property
    def outliers(self) -> np.ndarray:
        return self.distances > self.outlier_threshold

    @property
    def memorized(self) -> np.ndarray:
        flag = self.cosine.value >= self.threshold
        if self.magnitude is not None:
            flag |= self.magnitude.value >= self.threshold
        return flag


def _frechet(gen: SideEmbeddings, ref: SideEmbeddings, bootstrap: int, rng) -> tuple:
    fr = FrechetReference.from_embeddings(ref.windows)
    proj = gen.windows @ fr.sqrt_cov
    gram = proj @ proj.T if len(proj) <= GRAM_MAX else None       # reused by every resample
    ones = np.ones(len(gen.windows))
    fad = fr.weighted(gen.windows, ones, proj, gram)
    values = [fr.weighted(gen.windows, group_counts(gen.groups, rng.integers(0, gen.n, gen.n))[1],
                          proj, gram) for _ in range(bootstrap)]
    interval = normal_interval(fad, values, floor=0.0)
    if gen.n >= MIN_SAMPLES_INF and ref.n >= MIN_SAMPLES_INF:
        inf = fad_infinity(fr, gen.windows, projected=proj, gram=gram, seed=int(rng.integers(1 << 31)))
        note = ""
    else:
        inf, note = None, (f"n/a: FAD-inf needs at least {MIN_SAMPLES_INF} samples a side "
                           f"(generated {gen.n}, reference {ref.n})")
    return fad, interval, inf, note


def _kernel(gen: SideEmbeddings, ref: SideEmbeddings, bootstrap: int, rng, seed: int) -> tuple:
    kr = KernelReference.from_embeddings(ref.windows, groups=ref.groups, seed=seed)
    pair, cross, windows = kr.sample_sums(gen.windows, gen.groups)
    kad = kr.weighted(pair, cross, windows, np.ones(gen.n))
    values = [kr.weighted(pair, cross, windows, np.bincount(rng.integers(0, gen.n, gen.n),
                                                            minlength=gen.n).astype(np.float64))
              for _ in range(bootstrap)]
    return (kad, normal_interval(kad, values), kr.bandwidth, kr.per_sample(pair, cross, windows),
            kr.reference_distances())


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _nearest(measure: str, g: np.ndarray, r: np.ndarray) -> Neighbours:
    """Nearest reference row of each row of ``g`` by dot product (rows unit length), and each
    reference row's nearest other reference row; in blocks."""
    idx, val = np.empty(len(g), np.int64), np.empty(len(g))
    step = max(1, (1 << 21) // max(1, len(r)))             # blocks of at most 16 MB
    for i in range(0, len(g), step):
        s = g[i:i + step] @ r.T
        idx[i:i + step], val[i:i + step] = s.argmax(axis=1), s.max(axis=1)
    own = np.empty(len(r))
    for i in range(0, len(r), step):
        s = r[i:i + step] @ r.T
        s[np.arange(len(s)), np.arange(i, i + len(s))] = -np.inf
        own[i:i + step] = s.max(axis=1)
    return Neighbours(measure, idx, val, own)


def _neighbours(gen: SideEmbeddings, ref: SideEmbeddings, tile_sizes: tuple[int, int]):
    gm, rm = gen.sample_means(), ref.sample_means()
    centre = rm.mean(axis=0)
    cosine = _nearest("embedding cosine", _unit_rows(gm - centre), _unit_rows(rm - centre))
    if gen.thumbnails is None or ref.thumbnails is None:
        return cosine, None, "n/a: needs images on both sides"
    if tile_sizes[0] != tile_sizes[1] or not tile_sizes[0]:
        return cosine, None, f"n/a: tile sizes differ ({tile_sizes[0]} and {tile_sizes[1]} pixels)"
    gt = gen.thumbnails.reshape(gen.n, -1).astype(np.float64)
    rt = ref.thumbnails.reshape(ref.n, -1).astype(np.float64)
    mean_plane = rt.mean(axis=0)
    prep = lambda t: _unit_rows((t - mean_plane) - (t - mean_plane).mean(axis=1, keepdims=True))
    return cosine, _nearest("16-bit magnitude correlation", prep(gt), prep(rt)), ""


def _text(embedder: Embedder, side: SideEmbeddings, rng, limit: int | None) -> np.ndarray | None:
    """Cosine between each captioned sample's latent and its caption's (NaN without a caption)."""
    caps = [s.caption for s in side.samples]
    pick = [i for i, c in enumerate(caps) if c]
    if not pick or side.joint is None:
        return None
    if limit is not None and len(pick) > limit:
        pick = sorted(rng.choice(pick, limit, replace=False).tolist())
    texts = sorted({caps[i] for i in pick})
    emb = dict(zip(texts, embedder.embed_texts(texts)))
    out = np.full(side.n, np.nan)
    for i in pick:
        out[i] = float(side.joint[i] @ emb[caps[i]])
    return out


def compute_scores(gen: SideEmbeddings, ref: SideEmbeddings, embedder: Embedder, *,
                   bootstrap: int = 100, seed: int = 0, threshold: float = 0.99,
                   tile_sizes: tuple[int, int] = (0, 0)) -> Scores:
    """All the numbers of an evaluation (module notes); ``bootstrap`` resamples for the
    intervals (0: none), ``threshold`` for the memorization flags."""
    rng = np.random.default_rng(seed)
    fad, fad_ci, inf, inf_note = _frechet(gen, ref, int(bootstrap), rng)
    kad, kad_ci, bandwidth, dist, ref_dist = _kernel(gen, ref, int(bootstrap), rng, seed)
    cosine, magnitude, mag_note = _neighbours(gen, ref, tile_sizes)
    scores = Scores(fad, fad_ci, inf, inf_note, kad, kad_ci, bandwidth, dist, ref_dist,
                    float(np.percentile(ref_dist, OUTLIER_PERCENTILE)), cosine, magnitude, mag_note,
                    float(threshold))
    if not embedder.has_text:
        scores.text_note = "n/a: needs MuQ-MuLan's text tower (embedding 'muq' or 'auto' with its weights)"
    else:
        scores.text = _text(embedder, gen, rng, None)
        scores.reference_text = _text(embedder, ref, rng, TEXT_REFERENCE_MAX)
        if scores.text is None:
            scores.text_note = "n/a: the generated samples have no captions (<name>.txt beside them)"
    return scores
