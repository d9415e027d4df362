"""Small sets of music for the evaluation tests, built once per session (seconds, offline).

Real music is the bundled sample (``sample_data/wavdiff_demo.mp3``) and ``tests/audio_fixtures``
music, each song split in halves: the first halves are the reference, the second halves the
held-out real audio; the held-out clips are also written as generator-like tiles (phase planes
given Gaussian noise of std 2.0, no metadata) and as pure noise of the same level.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.bench.phase import perturb
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.codec.transform import encode_array, pixels_to_stft, stft_to_pixels
from wavdiff_utils.io.audio import load_audio
from wavdiff_utils.io.tiles import write_tile
from wavdiff_utils.paths import SAMPLE_AUDIO

#: 512x512 tiles at 22.05 kHz: 5.94 s each, 5 one-second windows.
PARAMS = CodecParams(size=512, sample_rate=22050)


def noisy_tile(clip: np.ndarray, rng, level=2.0) -> np.ndarray:
    """A generator-like tile of ``clip``: phase noise ``level`` (16-bit pixels)."""
    S = pixels_to_stft(encode_array(clip, PARAMS)[0].pixels, PARAMS)
    return stft_to_pixels(perturb(S, level, rng=rng), PARAMS)[0]


@pytest.fixture(scope="session")
def music_sets(tmp_path_factory):
    """Folders ``ref``, ``held`` (audio clips), ``noisy`` (tiles), ``noise`` (audio)."""
    root = tmp_path_factory.mktemp("music_sets")
    for d in ("ref", "held", "noisy", "noise"):
        (root / d).mkdir()
    sr, n = PARAMS.sample_rate, PARAMS.tile_samples
    songs = [load_audio(SAMPLE_AUDIO, sample_rate=sr)] + [music_like(24, sr, seed=s) for s in (1, 2, 3)]
    rng = np.random.default_rng(0)
    for k, y in enumerate(songs):
        half = len(y) // 2
        for part, seg in (("ref", y[:half]), ("held", y[half:])):
            for c in range(len(seg) // n):
                clip = seg[c * n:(c + 1) * n]
                write(root / part / f"s{k}_{c}.wav", clip, sr)
                if part == "held":
                    write_tile(root / "noisy" / f"s{k}_{c}.png", noisy_tile(clip, rng))
                    noise = rng.standard_normal(n).astype(np.float32)
                    write(root / "noise" / f"s{k}_{c}.wav",
                          noise * np.sqrt(np.mean(clip ** 2) / np.mean(noise ** 2)), sr)
    return root


@pytest.fixture(scope="session")
def tile_dataset(tmp_path_factory):
    """A dataset made by the pipeline's encoder and export from three songs, with captions,
    every song in the ``validation`` split: 512 tiles at 22.05 kHz."""
    from wavdiff_utils.dataset.export import export_dataset
    from wavdiff_utils.jobs.encode import encode_batch

    root = tmp_path_factory.mktemp("tile_dataset")
    src = root / "src"
    src.mkdir()
    for s in (4, 5, 6):
        write(src / f"song{s}.wav", music_like(14, PARAMS.sample_rate, seed=s), PARAMS.sample_rate)
    ds = root / "ds"
    encode_batch(src, ds, params=PARAMS, progress=False).raise_if_failed()
    for png in ds.rglob("*.png"):
        png.with_suffix(".txt").write_text(f"a plucked synth track, {png.stem}", encoding="utf-8")
    export_dataset(ds, splits=(("validation", 1.0),), card=False)
    return ds
