"""The distribution metrics against their published definitions and closed forms."""
import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist, pdist

from wavdiff_utils.errors import BadParameterError
from wavdiff_utils.evaluate.metrics import (FrechetReference, KernelReference, embedding_stats,
                                            fad_infinity, frechet_distance, group_counts,
                                            kernel_audio_distance, median_bandwidth, normal_interval)


def _spd(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d) + (0 if rank else 0.1 * np.eye(d))


def test_frechet_matches_the_closed_form_of_commuting_gaussians():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    a, b = rng.uniform(0.1, 5, 12), rng.uniform(0.1, 5, 12)
    mu1, mu2 = rng.standard_normal(12), rng.standard_normal(12)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, (u * a) @ u.T, mu2, (u * b) @ u.T)
    assert got == pytest.approx(closed, rel=1e-6)


def test_frechet_matches_the_sqrtm_definition_on_general_covariances():
    rng = np.random.default_rng(1)
    c1, c2 = _spd(rng, 20), _spd(rng, 20)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    tr = np.trace(scipy.linalg.sqrtm(c1 @ c2)).real
    want = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * tr
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(want, rel=1e-6)


def test_frechet_of_singular_covariances_is_finite_and_exact():
    """Fewer samples than dimensions: rank-deficient covariances, where sqrtm of the product
    needs the epsilon on the diagonal; the eigenvalue route is exact."""
    rng = np.random.default_rng(2)
    u, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    a = np.r_[rng.uniform(0.5, 3, 5), np.zeros(11)]            # rank 5
    b = np.r_[np.zeros(3), rng.uniform(0.5, 3, 6), np.zeros(7)]  # rank 6
    closed = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    c1, c2 = (u * a) @ u.T, (u * b) @ u.T
    got = frechet_distance(np.zeros(16), c1, np.zeros(16), c2)
    assert np.isfinite(got) and got == pytest.approx(closed, rel=1e-6)
    eps = 1e-6 * np.eye(16)                                      # the usual fallback agrees
    usual = np.trace(c1 + c2) - 2 * np.trace(scipy.linalg.sqrtm((c1 + eps) @ (c2 + eps))).real
    assert got == pytest.approx(usual, rel=1e-2)
    x, y = rng.standard_normal((8, 30)), rng.standard_normal((9, 30)) + 0.5    # n < dim, from data
    (m1, s1), (m2, s2) = embedding_stats(x), embedding_stats(y)
    assert np.isfinite(frechet_distance(m1, s1, m2, s2))


def test_frechet_falls_back_to_epsilon_when_a_covariance_is_not_semidefinite():
    c = np.diag([1.0, 2.0, -1e-7])                               # round-off below zero
    got = frechet_distance(np.zeros(3), c, np.zeros(3), np.eye(3), eps=1e-6)
    want = sum((np.sqrt(a + 1e-6) - np.sqrt(1 + 1e-6)) ** 2 for a in (1.0, 2.0, -1e-7 + 0.0))
    assert np.isfinite(got) and got == pytest.approx(want, abs=1e-3)
    with pytest.raises(BadParameterError, match="not positive"):    # not a covariance at all
        frechet_distance(np.zeros(3), np.diag([1.0, 2.0, -0.5]), np.zeros(3), np.eye(3))


@pytest.mark.parametrize("n", [6, 40])        # fewer and more windows than dimensions
def test_reference_form_equals_the_covariance_form(n):
    rng = np.random.default_rng(3)
    y, x = rng.standard_normal((50, 10)), rng.standard_normal((n, 10)) * 1.5 + 0.3
    ref = FrechetReference.from_embeddings(y)
    want = frechet_distance(*embedding_stats(x), *embedding_stats(y))
    assert ref.distance(x) == pytest.approx(want, rel=1e-6)
    counts = rng.integers(0, 3, n).astype(float)
    counts[:2] = 1
    repeated = np.repeat(x, counts.astype(int), axis=0)
    assert ref.weighted(x, counts) == pytest.approx(
        frechet_distance(*embedding_stats(repeated), *embedding_stats(y)), rel=1e-6)


def test_frechet_of_a_set_against_itself_is_zero():
    x = np.random.default_rng(4).standard_normal((200, 16))
    assert abs(FrechetReference.from_embeddings(x).distance(x)) < 1e-8


def test_fad_infinity_extrapolates_to_near_zero_for_the_same_distribution():
    rng = np.random.default_rng(5)
    ref = FrechetReference.from_embeddings(rng.standard_normal((20000, 4)))
    x = rng.standard_normal((2000, 4))
    inf = fad_infinity(ref, x, steps=25, seed=0)
    ns = [n for n, _ in inf.points]
    assert ns[0] == 400 and ns[-1] == 2000 and len(ns) == 25
    assert abs(inf.score) < 0.5 * inf.points[0][1] and inf.slope > 0
    vals = np.array([v for _, v in inf.points])          # the fit is a least-squares line in 1/n
    slope, icpt = np.polyfit(1 / np.array(ns), vals, 1)
    assert inf.score == pytest.approx(icpt) and inf.slope == pytest.approx(slope)


def _unbiased_mmd2(x, y, sigma):
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma ** 2 + 1e-8))
    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * k(x, y).mean())


def test_kad_matches_an_independent_unbiased_mmd():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((37, 5)) + 0.4, rng.standard_normal((53, 5))
    sigma = np.median(pdist(y))                               # kadtk: the reference's median distance
    assert median_bandwidth(y) == pytest.approx(sigma)
    assert kernel_audio_distance(x, y) == pytest.approx(100 * _unbiased_mmd2(x, y, sigma), rel=1e-9)
    assert kernel_audio_distance(x, y, bandwidth=2.5) == pytest.approx(100 * _unbiased_mmd2(x, y, 2.5),
                                                                       rel=1e-9)


def test_kad_by_samples_of_windows_and_resampled_counts():
    rng = np.random.default_rng(7)
    y, x = rng.standard_normal((40, 3)), rng.standard_normal((12, 3)) + 0.2
    groups = np.repeat(np.arange(4), 3)                        # 4 samples of 3 windows
    kr = KernelReference.from_embeddings(y)
    pair, cross, windows = kr.sample_sums(x, groups)
    assert kr.weighted(pair, cross, windows, np.ones(4)) == pytest.approx(kr.distance(x), rel=1e-9)
    picks = np.array([0, 0, 2, 3])                              # a resample repeating sample 0
    per_sample, per_window = group_counts(groups, picks)
    drawn = np.repeat(x, per_window.astype(int), axis=0)       # repeated windows: distinct positions
    assert kr.weighted(pair, cross, windows, per_sample) == pytest.approx(
        100 * _unbiased_mmd2(drawn, y, kr.bandwidth), rel=1e-9)


def test_per_sample_kernel_distances():
    rng = np.random.default_rng(8)
    y = rng.standard_normal((30, 4))
    ygroups = np.repeat(np.arange(10), 3)
    kr = KernelReference.from_embeddings(y, groups=ygroups)
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") * kr.gamma)
    x = rng.standard_normal((6, 4))
    pair, cross, windows = kr.sample_sums(x, np.repeat(np.arange(3), 2))
    for a in range(3):
        xa = x[2 * a:2 * a + 2]
        want = 100 * (k(xa, xa).mean() + kr.within - 2 * k(xa, y).mean())
        assert kr.per_sample(pair, cross, windows)[a] == pytest.approx(want, rel=1e-9)
    ya, rest = y[:3], y[3:]                                    # the reference's own: against the rest
    want = 100 * (k(ya, ya).mean() + kr.within - 2 * k(ya, rest).mean())
    assert kr.reference_distances()[0] == pytest.approx(want, rel=1e-9)


def test_normal_interval_and_bad_values():
    iv = normal_interval(1.0, [0.9, 1.1, 1.0, 1.2, 0.8])
    sd = np.std([0.9, 1.1, 1.0, 1.2, 0.8], ddof=1)
    assert iv.low == pytest.approx(1 - 1.959964 * sd, rel=1e-5) and iv.n == 5
    assert normal_interval(1.0, []) is None
    with pytest.raises(BadParameterError):
        FrechetReference.from_embeddings(np.zeros((1, 3)))
    with pytest.raises(BadParameterError):
        kernel_audio_distance([[np.nan]], [[0.0], [1.0]])
