"""The embeddings: the weights-free fallback, MuQ through the captioners' weight lookup, the
choice between them, and a face that imports no torch."""
import subprocess
import sys

import numpy as np
import pytest

from tests.audio_fixtures import music_like
from wavdiff_utils.errors import BadAudioError, BadParameterError, WeightsMissingError
from wavdiff_utils.evaluate.embeddings import (MuQEmbedder, SpectralStatsEmbedder, make_embedder,
                                               window_starts)


def test_window_starts_cover_the_clip():
    assert window_starts(100, 30).tolist() == [0, 35, 70]
    assert window_starts(30, 30).tolist() == [0]
    with pytest.raises(BadParameterError):
        window_starts(29, 30)


def test_fallback_windows_shape_determinism_and_rates():
    e = SpectralStatsEmbedder()
    y = music_like(3.5, 44100, seed=1)
    a, b = e.embed([y, y], 44100)
    assert a.windows.shape == (3, e.dim) == (3, 128) and a.joint is None
    assert np.array_equal(a.windows, b.windows) and np.isfinite(a.windows).all()
    low = e.embed([music_like(3.5, 22050, seed=1)], 22050)[0].windows
    assert low.shape == (3, 128)
    assert e.key() == SpectralStatsEmbedder().key() and e.key().startswith("fallback-")
    assert e.embed([y[:20000]], 44100)[0].windows.shape == (1, 128)     # 0.45 s: one window
    with pytest.raises(BadAudioError, match="shorter than the 0.25 s"):
        e.embed([y[:8000]], 44100)


def test_fallback_texture_orders_tones_noise_and_clicks():
    """Crest factor in the texture block (its last 48 values): steady tones below noise below
    clicks, at the same level."""
    e = SpectralStatsEmbedder()
    t = np.arange(64000) / 32000
    tones = sum(np.sin(2 * np.pi * f * t) for f in (1200, 1700, 2500, 3900, 5700, 8500, 12500))
    noise = np.random.default_rng(0).standard_normal(len(t))
    clicks = np.zeros(len(t))
    clicks[::800] = 1.0
    crest = [e.embed([(x / np.std(x)).astype(np.float32) * 0.1], 32000)[0].windows[:, 80::2].mean()
             for x in (tones, noise, clicks)]
    assert crest[0] + 5 < crest[1] < crest[2] - 5, crest


def test_make_embedder_choices(tmp_path, monkeypatch):
    assert isinstance(make_embedder("fallback"), SpectralStatsEmbedder)
    with pytest.raises(BadParameterError, match="embedding must be one of"):
        make_embedder("vggish")
    muq = make_embedder("muq", device="cpu")          # the tiny model conftest.py points at
    assert isinstance(muq, MuQEmbedder) and muq.has_text and "layer 1 of 1" in muq.label
    out = muq.embed([music_like(2.2, 24000, seed=3)], 24000)[0]
    assert out.windows.shape == (2, 32) and np.linalg.norm(out.joint) == pytest.approx(1.0, rel=1e-5)
    assert muq.embed_texts(["a calm piano piece"]).shape == (1, 16)
    monkeypatch.setenv("WAVDIFF_MUQ_MODEL", str(tmp_path / "absent"))
    auto = make_embedder("auto")
    assert isinstance(auto, SpectralStatsEmbedder) and "MuQ is not available" in auto.notice
    assert "hf download" in auto.notice and "\n" not in auto.notice
    with pytest.raises(WeightsMissingError, match="hf download"):
        make_embedder("muq")


def test_importing_the_package_imports_no_torch():
    code = ("import sys, wavdiff_utils.evaluate as e; e.evaluate_sets; e.SpectralStatsEmbedder; "
            "e.frechet_distance; e.Evaluation; print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
