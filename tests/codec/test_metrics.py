"""stereo_width against signals whose width is known."""
import numpy as np
import pytest

from wavdiff_utils.codec.metrics import stereo_width
from wavdiff_utils.errors import WavdiffError

NOISE = np.random.default_rng(3).standard_normal(20000)


def test_a_centred_mono_mix_has_no_width():
    w = stereo_width(np.stack([NOISE, NOISE], 1))
    assert w["level_difference_db"] == 0 and w["correlation"] == pytest.approx(1)
    assert w["side_to_mid_db"] == float("-inf")


def test_a_panned_source_and_opposite_phase():
    w = stereo_width(np.stack([NOISE, 0.5 * NOISE], 1))
    assert w["level_difference_db"] == pytest.approx(6.0206, abs=1e-3)
    assert w["side_to_mid_db"] == pytest.approx(20 * np.log10(0.25 / 0.75), abs=1e-6)
    assert stereo_width(np.stack([NOISE, -NOISE], 1))["correlation"] == pytest.approx(-1)


def test_unrelated_channels_correlate_near_zero_and_silence_gives_nan():
    other = np.random.default_rng(4).standard_normal(20000)
    assert abs(stereo_width(np.stack([NOISE, other], 1))["correlation"]) < 0.03
    assert np.isnan(stereo_width(np.stack([NOISE, 0 * NOISE], 1))["correlation"])


@pytest.mark.parametrize("shape", [(10,), (10, 1), (10, 3), (0, 2)])
def test_wrong_shapes_are_refused(shape):
    with pytest.raises(WavdiffError, match="needs \\(n, 2\\)"):
        stereo_width(np.zeros(shape))


def test_split_pairs_gives_both_halves_in_order_holding_little():
    from wavdiff_utils.codec.threads import split_pairs

    taken = []

    def source():
        for i in range(1000):
            taken.append(i)
            yield i, -i

    a, b = split_pairs(source())
    got = []
    for x, y in zip(a, b):                       # in step, as the stereo encoder reads them
        got.append((x, y))
        assert len(taken) - len(got) <= 1         # nothing read ahead beyond the pair in hand
    assert got == [(i, -i) for i in range(1000)]
    a, b = split_pairs(iter([(1, 2), (3, 4)]))
    assert list(a) == [1, 3] and list(b) == [2, 4]  # one drained first: the other still whole
