"""Distances between two sets of embeddings: Frechet (FAD), FAD-infinity, kernel (KAD), per sample,
with bootstrap intervals.  numpy and scipy only; fadtk and kadtk are the references, not used.

Each sample (a generated clip, a reference tile) is a few *window* embeddings (one per second
of audio, see :mod:`wavdiff_utils.evaluate.embeddings`); as in fadtk and kadtk the statistics
are taken over all windows of a set, and a set is resampled by whole samples.

Frechet distance
    ``d^2 = |mu_1 - mu_2|^2 + tr(C_1) + tr(C_2) - 2 tr((C_1^1/2 C_2 C_1^1/2)^1/2)`` between the
    Gaussians fitted to two sets (means, covariances with ``n - 1``).  The last trace is computed
    from the eigenvalues of the symmetric matrix ``C_1^1/2 C_2 C_1^1/2`` (equal to
    ``tr sqrtm(C_1 C_2)``, what pytorch-fid and fadtk take with ``scipy.linalg.sqrtm``), clipped
    at zero: exact for singular covariances (fewer samples than dimensions).  Where a covariance
    is not positive semi-definite beyond round-off, or a value is not finite, ``eps`` is added to
    both diagonals and the distance computed again (the fallback fadtk uses when ``sqrtm`` fails).
    When a set has fewer windows than dimensions the eigenvalues come from the ``n x n`` Gram
    matrix instead of the ``D x D`` one (the same non-zero eigenvalues, far cheaper).

FAD-infinity
    fadtk's extrapolation: the reference statistics fixed, ``steps`` (25) subsets of the generated
    windows of growing size ``n`` drawn with replacement, a least-squares line of FAD against
    ``1/n``; its intercept is FAD-inf (the FAD of an infinite generated set), with slope and R^2.
    Reported only from :data:`MIN_SAMPLES_INF` samples a side on.

Kernel audio distance (KAD)
    kadtk's definition: the unbiased estimate of the squared maximum mean discrepancy with the
    Gaussian RBF kernel ``k(a, b) = exp(-|a - b|^2 / (2 sigma^2 + 1e-8))``, the bandwidth
    ``sigma`` the median Euclidean distance between pairs of *reference* embeddings (all pairs
    of at most 2,000 windows; a random 2,000 of a larger set, seeded), times kadtk's scale factor
    100::

        KAD = 100 * ( mean_{i != i'} k(x_i, x_i') + mean_{j != j'} k(y_j, y_j') - 2 mean_{i,j} k(x_i, y_j) )

    Kernel sums are taken in blocks, so memory stays bounded by the block size.

Intervals
    Bootstrap over samples (whole clips with their windows), the reference held fixed:
    ``estimate +- 1.96 x`` the standard deviation of the resampled values (the normal bootstrap
    interval; resampled sets repeat clips, which moves FAD up, so the percentiles themselves
    would not be centred on the estimate).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BadParameterError

__all__ = ["MIN_SAMPLES_INF", "KAD_SCALE", "embedding_stats", "psd_sqrt", "frechet_distance",
           "FrechetReference", "FadInf", "fad_infinity", "median_bandwidth", "KernelReference",
           "kernel_audio_distance", "Interval", "normal_interval", "group_counts"]

#: Fewest samples on a side for FAD-infinity (below it the fit has too few points to mean much).
MIN_SAMPLES_INF = 50
#: kadtk's scale factor.
KAD_SCALE = 100.0
#: kadtk's guard in the kernel's denominator.
KERNEL_EPS = 1e-8
#: Most reference windows the median bandwidth is taken over.
BANDWIDTH_POINTS = 2000
#: Kernel and distance matrices are computed in blocks of at most this many entries (16 MB).
_BLOCK_ENTRIES = 1 << 21


def _rows_per_block(n_cols: int) -> int:
    return max(1, _BLOCK_ENTRIES // max(1, n_cols))


def _rows(x, what: str = "embeddings") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise BadParameterError(f"{what} must be a non-empty (n, dim) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise BadParameterError(f"{what} hold NaN or infinite values")
    return a


def embedding_stats(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``n - 1`` in the denominator) of the rows of ``x``."""
    a = _rows(x)
    if len(a) < 2:
        raise BadParameterError("a covariance needs at least 2 embeddings")
    return a.mean(axis=0), np.cov(a, rowvar=False).reshape(a.shape[1], a.shape[1])


def psd_sqrt(c: np.ndarray, *, tol: float = 1e-9) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (eigenvalues clipped at zero).

    Raises ``np.linalg.LinAlgError`` when ``c`` has an eigenvalue below ``-tol * max``:
    not positive semi-definite beyond round-off.
    """
    c = (np.asarray(c, dtype=np.float64) + np.asarray(c, dtype=np.float64).T) / 2
    w, u = np.linalg.eigh(c)
    top = max(float(np.max(np.abs(w))), 1e-300)
    if not np.isfinite(w).all() or w.min() < -tol * top:
        raise np.linalg.LinAlgError("covariance is not positive semi-definite")
    return (u * np.sqrt(np.clip(w, 0, None))) @ u.T


def _trace_sqrt(cov1: np.ndarray, cov2: np.ndarray) -> float:
    s = psd_sqrt(cov1)
    m = s @ cov2 @ s
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    if not np.isfinite(lam).all():
        raise np.linalg.LinAlgError("non-finite eigenvalues")
    return float(np.sqrt(np.clip(lam, 0, None)).sum())


def frechet_distance(mu1, cov1, mu2, cov2, *, eps: float = 1e-6) -> float:
    """Frechet distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)`` (see the module notes).

    >>> round(frechet_distance([0, 0], [[1, 0], [0, 1]], [1, 0], [[4, 0], [0, 1]]), 6)
    2.0
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mu1), len(mu1)):
        raise BadParameterError(f"means {mu1.shape}, {mu2.shape} and covariances {cov1.shape}, "
                                f"{cov2.shape} do not fit together")
    diff = mu1 - mu2
    try:
        tr = _trace_sqrt(cov1, cov2)
    except np.linalg.LinAlgError:
        offset = np.eye(len(mu1)) * eps
        cov1, cov2 = cov1 + offset, cov2 + offset
        try:
            tr = _trace_sqrt(cov1, cov2)
        except np.linalg.LinAlgError:
            raise BadParameterError("a covariance given to the Frechet distance is not positive "
                                    "semi-definite (or not finite), even with eps on its diagonal") from None
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * tr)


def group_counts(groups: np.ndarray, picks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample and per-window counts when the samples ``picks`` (indices, repeats allowed)
    are drawn; ``groups[w]`` is the sample that window ``w`` belongs to."""
    per_sample = np.bincount(picks, minlength=int(groups.max()) + 1).astype(np.float64)
    return per_sample, per_sample[groups]


@dataclass
class FrechetReference:
    """A reference set's statistics, computed once, against which sets of windows are measured.

    ``distance(x)`` and ``weighted(x, counts)`` give the Frechet distance of a set of windows
    (each counted ``counts[w]`` times: resampling) to the reference.
    """

    mu: np.ndarray
    cov: np.ndarray
    sqrt_cov: np.ndarray
    trace: float
    n: int
    eps: float = 1e-6

    @classmethod
    def from_embeddings(cls, y, *, eps: float = 1e-6) -> "FrechetReference":
        mu, cov = embedding_stats(y)
        try:
            s = psd_sqrt(cov)
        except np.linalg.LinAlgError:
            cov = cov + np.eye(len(mu)) * eps
            s = psd_sqrt(cov)
        return cls(mu, cov, s, float(np.trace(cov)), len(np.asarray(y)), eps)

    def distance(self, x) -> float:
        x = _rows(x)
        return self.weighted(x, np.ones(len(x)))

    def weighted(self, x: np.ndarray, counts: np.ndarray, projected: np.ndarray | None = None,
                 gram: np.ndarray | None = None) -> float:
        """Frechet distance of the windows ``x`` repeated ``counts`` times; ``projected`` is
        ``x @ sqrt_cov`` and ``gram`` is ``projected @ projected.T`` when the caller has them
        (resampling the same windows many times)."""
        act = counts > 0
        c, xa = counts[act], x[act]
        n = float(c.sum())
        if n < 2:
            raise BadParameterError("a Frechet distance needs at least 2 embeddings a side")
        mu = c @ xa / n
        diff = mu - self.mu
        tr_g = (c @ np.einsum("ij,ij->i", xa, xa) - n * (mu @ mu)) / (n - 1)
        y = projected[act] if projected is not None else xa @ self.sqrt_cov
        m = c @ y / n
        if len(xa) < y.shape[1]:                 # Gram side: n_active x n_active
            g = gram[np.ix_(act, act)] if gram is not None else y @ y.T
            gc = g @ c / n
            k = g - gc[:, None] - gc[None, :] + (c @ gc) / n
            r = np.sqrt(c)
            lam = np.linalg.eigvalsh(r[:, None] * k * r[None, :] / (n - 1))
        else:                                    # dimension side: D x D
            mat = ((y * c[:, None]).T @ y - n * np.outer(m, m)) / (n - 1)
            lam = np.linalg.eigvalsh((mat + mat.T) / 2)
        tr = float(np.sqrt(np.clip(lam, 0, None)).sum())
        return float(diff @ diff + self.trace + max(tr_g, 0.0) - 2 * tr)


@dataclass
class FadInf:
    """FAD-infinity: the intercept of FAD against ``1/n`` (fadtk), with the fit's slope and R^2."""

    score: float
    slope: float
    r2: float
    points: list = field(default_factory=list)      # (n windows, FAD)

    def to_dict(self) -> dict:
        return {"score": self.score, "slope": self.slope, "r2": self.r2,
                "points": [[int(n), float(v)] for n, v in self.points]}


def fad_infinity(ref: FrechetReference, x, *, steps: int = 25, min_n: int | None = None,
                 seed: int = 0, projected: np.ndarray | None = None,
                 gram: np.ndarray | None = None) -> FadInf:
    """FAD-infinity of the windows ``x`` against ``ref`` (module notes): ``steps`` sizes from
    ``min_n`` (default: a fifth of the windows, at least 20) to all windows, drawn with
    replacement."""
    x = _rows(x)
    n_all = len(x)
    lo = min_n if min_n is not None else max(20, n_all // 5)
    if lo < 2 or lo >= n_all:
        raise BadParameterError(f"FAD-inf needs min_n between 2 and the {n_all} windows, got {lo}")
    rng = np.random.default_rng(seed)
    y = projected if projected is not None else x @ ref.sqrt_cov
    ns = np.unique(np.linspace(lo, n_all, int(steps)).astype(int))
    points = []
    for n in ns:
        counts = np.bincount(rng.integers(0, n_all, int(n)), minlength=n_all).astype(np.float64)
        points.append((int(n), ref.weighted(x, counts, y, gram)))
    inv = 1.0 / ns
    vals = np.array([v for _, v in points])
    slope, intercept = np.polyfit(inv, vals, 1)
    fit = slope * inv + intercept
    ss = float(np.sum((vals - vals.mean()) ** 2))
    r2 = 1.0 - float(np.sum((vals - fit) ** 2)) / ss if ss > 0 else 1.0
    return FadInf(float(intercept), float(slope), r2, points)

# --------------------------------------------------------------------------- kernel distance


def _sqdist(a: np.ndarray, b: np.ndarray, na: np.ndarray, nb: np.ndarray) -> np.ndarray:
    return np.maximum(na[:, None] + nb[None, :] - 2.0 * (a @ b.T), 0.0)


def median_bandwidth(y, *, max_points: int = BANDWIDTH_POINTS, seed: int = 0) -> float:
    """Median Euclidean distance between pairs of rows of ``y`` (a random ``max_points`` of them
    when there are more, seeded)."""
    y = _rows(y)
    if len(y) < 2:
        raise BadParameterError("a bandwidth needs at least 2 reference embeddings")
    if len(y) > max_points:
        y = y[np.random.default_rng(seed).choice(len(y), max_points, replace=False)]
    n2 = np.einsum("ij,ij->i", y, y)
    d = np.sqrt(_sqdist(y, y, n2, n2)[np.triu_indices(len(y), 1)])
    return float(np.median(d))


def _starts(groups: np.ndarray) -> np.ndarray:
    """First window of each sample (windows of a sample are contiguous, samples in order)."""
    g = np.asarray(groups)
    if len(g) and (np.any(np.diff(g) < 0) or g[0] != 0 or np.any(np.diff(g) > 1)):
        raise BadParameterError("window groups must be 0, 0, ..., 1, 1, ... in order")
    return np.flatnonzero(np.r_[True, np.diff(g) != 0])


@dataclass
class KernelReference:
    """A reference set's kernel statistics, computed once: bandwidth, ``gamma = 1 / (2 sigma^2 +
    1e-8)``, the unbiased mean kernel value between distinct reference windows (``within``), and
    per reference window the sum of its kernel values with all reference windows (``row_sums``,
    for each reference sample's own distance, :meth:`reference_distances`).
    """

    y: np.ndarray
    norms: np.ndarray
    bandwidth: float
    gamma: float
    within: float
    row_sums: np.ndarray
    groups: np.ndarray

    @classmethod
    def from_embeddings(cls, y, *, groups=None, bandwidth: float | None = None,
                        seed: int = 0) -> "KernelReference":
        y = _rows(y)
        if len(y) < 2:
            raise BadParameterError("KAD needs at least 2 reference embeddings")
        h = float(bandwidth) if bandwidth is not None else median_bandwidth(y, seed=seed)
        gamma = 1.0 / (2.0 * h * h + KERNEL_EPS)
        n2 = np.einsum("ij,ij->i", y, y)
        rows, step = np.empty(len(y)), _rows_per_block(len(y))
        for i in range(0, len(y), step):
            rows[i:i + step] = np.exp(-gamma * _sqdist(y[i:i + step], y, n2[i:i + step], n2)).sum(axis=1)
        m = len(y)
        within = (float(rows.sum()) - m) / (m * (m - 1))
        g = np.arange(m) if groups is None else np.asarray(groups)
        return cls(y, n2, h, gamma, within, rows, g)

    def sample_sums(self, x, groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For samples of windows ``x`` (``groups[w]`` = sample of window ``w``): the kernel sums
        between the windows of each pair of samples ``(n, n)``, each sample's sum over its
        windows of their mean kernel value with the reference ``(n,)``, and its window count."""
        x = _rows(x)
        starts = _starts(groups)
        counts = np.diff(np.r_[starts, len(x)]).astype(np.float64)
        nx = np.einsum("ij,ij->i", x, x)
        pair = np.zeros((len(starts), len(starts)))
        cross = np.empty(len(x))
        step = max(1, _rows_per_block(max(len(x), len(self.y))) // max(1, int(counts.max())))
        for a in range(0, len(starts), step):
            lo, hi = starts[a], (starts[a + step] if a + step < len(starts) else len(x))
            d = _sqdist(x[lo:hi], x, nx[lo:hi], nx)
            k = np.add.reduceat(np.exp(-self.gamma * d), starts, axis=1)
            pair[a:a + step] = np.add.reduceat(k, starts[a:a + step] - lo, axis=0)
            cross[lo:hi] = np.exp(-self.gamma * _sqdist(x[lo:hi], self.y, nx[lo:hi], self.norms)).mean(axis=1)
        return pair, np.add.reduceat(cross, starts), counts

    def weighted(self, pair: np.ndarray, cross: np.ndarray, windows: np.ndarray,
                 counts: np.ndarray) -> float:
        """KAD of samples drawn ``counts[a]`` times, from :meth:`sample_sums`.  Pairs of distinct
        positions only (the copies of a repeated sample do pair up, as in a resampled set)."""
        n = float(counts @ windows)
        if n < 2:
            raise BadParameterError("KAD needs at least 2 embeddings a side")
        within_x = (counts @ pair @ counts - counts @ windows) / (n * (n - 1))
        return KAD_SCALE * float(within_x + self.within - 2.0 * (counts @ cross) / n)

    def per_sample(self, pair: np.ndarray, cross: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """Each sample's kernel distance to the reference: ``100 x`` the squared distance between
        its windows' mean embedding in the kernel's space and the reference's (its own pairs
        included, so one window is enough)."""
        return KAD_SCALE * (np.diag(pair) / windows ** 2 + self.within - 2.0 * cross / windows)

    def reference_distances(self) -> np.ndarray:
        """:meth:`per_sample` of each reference sample against the rest of the reference."""
        starts = _starts(self.groups)
        ends = np.r_[starts[1:], len(self.y)]
        m = len(self.y)
        out = np.empty(len(starts))
        for a, (lo, hi) in enumerate(zip(starts, ends)):
            own = float(np.exp(-self.gamma * _sqdist(self.y[lo:hi], self.y[lo:hi], self.norms[lo:hi],
                                                     self.norms[lo:hi])).sum())
            w = hi - lo
            rest = (float(self.row_sums[lo:hi].sum()) - own) / (w * (m - w)) if m > w else 0.0
            out[a] = KAD_SCALE * (own / w ** 2 + self.within - 2.0 * rest)
        return out

    def distance(self, x) -> float:
        x = _rows(x)
        pair, cross, windows = self.sample_sums(x, np.arange(len(x)))
        return self.weighted(pair, cross, windows, np.ones(len(x)))


def kernel_audio_distance(x, y, *, bandwidth: float | None = None) -> float:
    """KAD of the rows of ``x`` (evaluated) against ``y`` (reference), as kadtk defines it
    (module notes).

    >>> round(kernel_audio_distance([[0.0], [1.0]], [[0.0], [1.0]]), 6)
    0.0
    """
    return KernelReference.from_embeddings(y, bandwidth=bandwidth).distance(x)

# --------------------------------------------------------------------------- intervals


@dataclass
class Interval:
    """A bootstrap interval: ``low``, ``high`` at ``level``, from ``n`` resamples."""

    low: float
    high: float
    level: float
    n: int

    def to_dict(self) -> dict:
        return {"low": round(self.low, 6), "high": round(self.high, 6), "level": self.level,
                "resamples": self.n}


def normal_interval(estimate: float, values, *, level: float = 0.95,
                    floor: float | None = None) -> Interval | None:
    """``estimate +- z * sd(values)`` (the normal bootstrap interval); ``None`` without values."""
    from scipy.stats import norm

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        return None
    half = float(norm.ppf(0.5 + level / 2)) * float(v.std(ddof=1))
    low = estimate - half if floor is None else max(floor, estimate - half)
    return Interval(float(low), float(estimate + half), level, len(v))
