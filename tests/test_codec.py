import librosa
import numpy as np
import pytest

from audio_fixtures import music_like
from wavdiff_utils.codec import (decode_array, encode_array, pixels_to_stft,
                                 stft_to_pixels)
from wavdiff_utils.metrics import lsd_db, psnr16, snr_db
from wavdiff_utils.params import CodecParams


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
