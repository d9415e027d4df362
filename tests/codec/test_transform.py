import librosa
import numpy as np
import pytest

from tests.audio_fixtures import music_like
from wavdiff_utils.codec.transform import (decode_array, encode_array, encode_stream,
                                           pixels_to_stft, stft_to_pixels)
from wavdiff_utils.codec.metrics import lsd_db, psnr16, snr_db
from wavdiff_utils.codec.params import CodecParams


@pytest.fixture(scope="module")
def song():
    return music_like(26.0, 44100, seed=3)


def test_default_layout_round_trip_reaches_85_db(song):
    p = CodecParams()
    tiles = encode_array(song, p)
    assert len(tiles) == 3 and tiles[0].pixels.shape == (1024, 1024, 3)
    assert tiles[0].pixels.dtype == np.uint16
    y = decode_array([t.pixels for t in tiles], p, n_samples=len(song))
    assert len(y) == len(song)
    assert snr_db(song, y) >= 85.0
    assert lsd_db(song, y) < 0.2          # dB; far below audibility


def test_seed_layout_is_lossy_but_usable(song):
    p = CodecParams(layout="seed")
    tiles = encode_array(song[: 44100 * 14], p)
    assert tiles[0].pixels.shape == (1024, 1024, 3)
    y = decode_array([t.pixels for t in tiles], p, n_samples=44100 * 14)
    snr = snr_db(song[: 44100 * 14], y)
    assert 5.0 < snr < 40.0      # resizing the phase planes caps fidelity far below "exact"


def test_tiles_equal_slices_of_whole_file_stft(song):
    p = CodecParams(size=256)
    y = song[: 44100 * 4]
    S = librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, center=True, pad_mode="constant")
    tiles = encode_array(y, p, block=4321)
    F = p.frames_per_tile
    for t in tiles[:-1]:
        ref = S[:, t.span.index * F:(t.span.index + 1) * F]
        got = pixels_to_stft(t.pixels, p)
        rel = np.abs(got[:-1] - ref[:-1]).max() / np.abs(S).max()
        assert rel < 1e-3


def test_no_clicks_at_tile_borders(song):
    """Tiles are joined in the STFT domain: the streamed decode equals one whole-file inverse
    STFT of all tiles (so generated tiles blend across borders through the overlap-add)."""
    p = CodecParams(size=128)
    y = song[: 44100 * 3]
    pix = [t.pixels for t in encode_array(y, p)]
    z = decode_array(pix, p, n_samples=len(y))
    S = np.concatenate([pixels_to_stft(x, p) for x in pix], axis=1)
    whole = librosa.istft(S, hop_length=p.hop_length, n_fft=p.n_fft, center=True, length=len(y))
    assert np.max(np.abs(z - whole)) < 1e-6


def test_leaving_padding_in_is_caught(song):
    p = CodecParams(size=128)
    y = song[:10_000]
    z = decode_array([t.pixels for t in encode_array(y, p)], p)
    assert len(z) == p.tile_samples * 2 > len(y)
    assert np.max(np.abs(z[len(y):])) < 1e-3          # the padding really is (near) silence
    with pytest.raises(ValueError, match="missing"):
        decode_array([t.pixels for t in encode_array(y, p)][:1], p, n_samples=len(y))


@pytest.mark.parametrize("db_max,expect_clipped", [(10.0, False), (-30.0, True)])
def test_clipping_is_counted(song, db_max, expect_clipped):
    p = CodecParams(size=64, db_max=db_max)
    tiles = encode_array(song[:8192], p)
    assert (sum(t.stats.clipped_high for t in tiles) > 0) == expect_clipped


def test_silence_stays_silent():
    p = CodecParams(size=64)
    y = np.zeros(5000, np.float32)
    y[2000] = 0.5
    z = decode_array([t.pixels for t in encode_array(y, p)], p, n_samples=len(y))
    assert np.max(np.abs(z[:1000])) == 0.0


def test_pixel_mapping_matches_documentation():
    p = CodecParams(size=16, db_min=-100, db_max=0)
    S = np.zeros((17, 16), np.complex64)
    S[3, 0] = p.db_scale * 10 ** (-50 / 20) * np.exp(1j * np.pi / 2)   # -50 dB, phase 90 deg
    pix, _ = stft_to_pixels(S, p)
    r, g, b = pix[16 - 1 - 3, 0]
    assert abs(int(r) - 32768) <= 1          # -50 dB is the middle of [-100, 0]
    assert abs(int(g) - 32768) <= 1          # cos 90 deg = 0
    assert int(b) == 65535                   # sin 90 deg = 1
    assert pix[0, 0, 0] == 0                 # empty bins are pixel 0 (silence)


def test_psnr16_scale():
    a = np.zeros((4, 4, 3), np.uint16)
    b = a.copy()
    b[0, 0, 0] = 65535
    assert psnr16(a, a) == float("inf")
    assert psnr16(a, b) == pytest.approx(10 * np.log10(48), abs=1e-9)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_mono_mix_is_the_channel_mean_bit_for_bit(channels):
    from wavdiff_utils.io.audio import _mix
    data = (np.random.default_rng(channels).standard_normal((50_000, channels)) * 2).astype(np.float32)
    assert np.array_equal(_mix(data), data.mean(axis=1, dtype=np.float32))


@pytest.mark.parametrize("size", [64, 256])
def test_fast_pixels_within_one_lsb_of_plane_by_plane(size):
    """The encoder's fused path against the plane-by-plane reference: at most 1 LSB on any
    pixel, the same clipping counts, and silent bins stored as phase 0 (cos 1, sin 0)."""
    from wavdiff_utils.codec.transform import _stft_to_pixels_planes, frames_to_pixels
    p = CodecParams(size=size)
    rng = np.random.default_rng(size)
    S = (rng.standard_normal((p.n_fft // 2 + 1, p.frames_per_tile))
         + 1j * rng.standard_normal((p.n_fft // 2 + 1, p.frames_per_tile)))
    S *= np.logspace(-9, 4, S.shape[0])[:, None]          # from below the floor to clipping
    S[:, :3] = 0                                            # digital silence
    ref, ref_stats = _stft_to_pixels_planes(S, p)
    fast, stats = frames_to_pixels(S.T, p)
    assert (stats.clipped_high, stats.below_floor) == (ref_stats.clipped_high, ref_stats.below_floor)
    assert stats.clipped_high > 0 and stats.below_floor > 0
    assert np.abs(fast.astype(np.int32) - ref.astype(np.int32)).max() <= 1
    assert (fast[:, :3] == [0, 65535, 32768]).all()


@pytest.mark.parametrize("threads", [2, 3])
def test_tiles_computed_in_threads_are_the_same_in_order(threads):
    p = CodecParams(size=64)
    y = music_like(seconds=3.0, sr=p.sample_rate, seed=threads)
    blocks = [y[i:i + 5000] for i in range(0, len(y), 5000)]
    one = list(encode_stream(blocks, p))
    many = list(encode_stream(blocks, p, threads=threads))
    assert len(one) == len(many) > 3
    assert [t.span for t in one] == [t.span for t in many]
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(one, many))


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        next(encode_stream([np.zeros(10, np.float32)], CodecParams(size=64), threads=0))


@pytest.mark.parametrize("threads", [2, 3])
def test_inverse_stft_in_threads_is_the_same(threads, song):
    from wavdiff_utils.codec.transform import istft_stream
    p = CodecParams(size=64)
    y = song[: p.tile_samples * 5 + 300]
    stfts = [pixels_to_stft(t.pixels, p) for t in encode_array(y, p)]
    one = np.concatenate(list(istft_stream(stfts, p, n_samples=len(y))))
    many = np.concatenate(list(istft_stream(stfts, p, n_samples=len(y), threads=threads)))
    assert len(one) == len(y) and np.array_equal(one, many)
    with pytest.raises(ValueError, match="a tile at the end is missing"):
        list(istft_stream(stfts[:-1], p, n_samples=len(y), threads=threads))


@pytest.mark.parametrize("omp, spare, expected", [("4", 0, 4), ("4", 1, 3), ("1", 1, 1),
                                                  ("64", 0, 4), ("junk", 0, None), ("", 1, None)])
def test_tile_threads_follow_omp_num_threads_and_the_cores(monkeypatch, omp, spare, expected):
    from wavdiff_utils.codec import threads as workers
    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    want = expected if expected is not None else max(1, min(4, workers.usable_cores() - spare))
    assert workers.tile_threads(spare=spare) == want
    monkeypatch.setattr(workers, "_IN_POOL", True)          # a pool's worker: the songs fill the cores
    assert workers.tile_threads(spare=spare) == 1


def test_silent_end_keeps_a_generated_tiles_last_samples_from_blowing_up():
    """An STFT that no audio has (random phase, as a generator's image): the plain inverse
    divides the last hop by the thin tails of the last windows, and those samples come out
    louder than the whole body; with ``silent_end`` they fade out.  Only the last n_fft/2
    samples change (our own tiles keep the plain inverse: exactness there needs the tails)."""
    from wavdiff_utils.codec.transform import istft_stream

    p = CodecParams(size=128)
    rng = np.random.default_rng(3)
    shape = (p.n_fft // 2 + 1, p.frames_per_tile)
    S = (rng.rayleigh(1.0, shape) * np.exp(2j * np.pi * rng.random(shape))).astype(np.complex64)
    plain = np.concatenate(list(istft_stream([S], p)))
    faded = np.concatenate(list(istft_stream([S], p, silent_end=True)))
    half = p.n_fft // 2                     # the span the silent frames' windows reach
    assert np.array_equal(plain[:-half], faded[:-half])    # only the last n_fft/2 samples differ
    hop = p.hop_length

    def rms(x):
        return float(np.sqrt(np.mean(np.square(x))))

    body = rms(plain[:-half])
    assert rms(plain[-hop:]) > 1.3 * body                  # louder than the body: the click
    assert rms(faded[-hop:]) < body and np.abs(faded[-8:]).max() < body       # faded out
