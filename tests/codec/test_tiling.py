import numpy as np
import pytest

from wavdiff_utils.codec.transform import encode_array
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.codec.tiling import n_tiles_for, tile_spans


@pytest.mark.parametrize("n", [1, 511, 512, 513, 4096, 4097, 10_000])
@pytest.mark.parametrize("frames,hop", [(4, 128), (1024, 512), (7, 3)])
def test_spans_partition_the_song(n, frames, hop):
    spans = tile_spans(n, frames_per_tile=frames, hop_length=hop)
    assert len(spans) == n_tiles_for(n, frames_per_tile=frames, hop_length=hop)
    assert spans[0].start == 0 and spans[-1].end == n
    for a, b in zip(spans, spans[1:]):
        assert a.end == b.start == a.stop and a.pad == 0
    assert all(s.stop - s.start == frames * hop for s in spans)
    assert spans[-1].pad == spans[-1].stop - n
    assert sum(s.n_samples for s in spans) == n


def test_empty_song_has_no_tiles():
    assert tile_spans(0, frames_per_tile=4, hop_length=8) == []


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_geometry_names_the_value(bad):
    with pytest.raises((ValueError, TypeError), match="frames_per_tile"):
        tile_spans(100, frames_per_tile=bad, hop_length=8)


@pytest.mark.parametrize("layout,size", [("exact", 64), ("seed", 32), ("exact", 128)])
@pytest.mark.parametrize("seconds", [0.05, 0.2, 0.37])
def test_encoder_spans_equal_shared_function(layout, size, seconds):
    sr = 22050
    p = CodecParams(sample_rate=sr, layout=layout, size=size, n_fft=128 if layout == "seed" else None)
    y = np.random.default_rng(0).standard_normal(int(seconds * sr)).astype(np.float32) * 0.1
    tiles = encode_array(y, p, block=997)            # odd block size: streaming must not matter
    assert [t.span for t in tiles] == tile_spans(len(y), frames_per_tile=p.frames_per_tile,
                                                 hop_length=p.hop_length)
    assert [t.is_last for t in tiles] == [False] * (len(tiles) - 1) + [True]
