"""Each bad input is one line naming what is wrong, a WavdiffError, and nothing is cached or
written from the failed run."""
import shutil

import numpy as np
import pytest

from tests.audio_fixtures import music_like, write
from tests.evaluate.conftest import PARAMS
from wavdiff_utils.errors import (BadAudioError, BadParameterError, BadTileError, MissingInputError,
                                  WavdiffError, WeightsMissingError)
from wavdiff_utils.evaluate import evaluate_sets


def evaluate(gen, ref, out, **kw):
    kw.setdefault("embedding", "fallback")
    return evaluate_sets(gen, ref, out, params=PARAMS, bootstrap=0, progress=False, **kw)


def fails(kind, gen, ref, out, match, **kw):
    with pytest.raises(kind) as info:
        evaluate(gen, ref, out, **kw)
    msg = str(info.value)
    assert isinstance(info.value, WavdiffError) and "\n" not in msg, msg
    for word in match:
        assert word in msg, msg
    written = [p for p in out.rglob("*") if p.is_file() and p.name != ".wavdiff.lock"] if out.exists() else []
    assert written == [], f"a failed run left {written}"
    return msg


def clips(folder, n, sr=22050, seconds=3.0, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        write(folder / f"c{k}.wav", music_like(seconds, sr, seed=seed + k), sr)
    return folder


def test_fewer_than_two_samples_on_a_side(music_sets, tmp_path):
    one = clips(tmp_path / "one", 1)
    fails(BadParameterError, one, music_sets / "ref", tmp_path / "out", ["generated", "one",
                                                                          "1 sample(s)", "at least 2",
                                                                          "clips of", "--clip-seconds"])
    fails(BadParameterError, music_sets / "held", one / "c0.wav", tmp_path / "out",
          ["reference", "c0.wav", "at least 2"])


def test_a_folder_of_unrelated_files(music_sets, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    (junk / "data.json").write_text("{}")
    fails(MissingInputError, junk, music_sets / "ref", tmp_path / "out",
          ["generated", "junk", "no images", "no audio", "nothing to evaluate"])
    fails(MissingInputError, tmp_path / "nowhere", music_sets / "ref", tmp_path / "out",
          ["nowhere", "does not exist"])


def test_images_that_are_not_tiles(music_sets, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    for k in range(3):
        (fake / f"sample_{k}.png").write_bytes(b"\xff\xd8\xff\xe0 not a png" * 10)
    msg = fails(BadTileError, fake, music_sets / "ref", tmp_path / "out",
                ["generated", "3 of 3 image(s) could not be decoded", "sample_0.png"])
    assert "JPEG" in msg


def test_mixed_sample_rates(music_sets, tmp_path):
    mixed = clips(tmp_path / "mixed", 2)
    write(mixed / "odd.wav", music_like(3.0, 44100, seed=9), 44100)
    fails(BadAudioError, mixed, music_sets / "ref", tmp_path / "out",
          ["generated", "mixed sample rates", "22050 Hz", "44100 Hz: odd.wav"])
    other = clips(tmp_path / "other", 3, sr=44100)             # one rate each, but not the same
    fails(BadAudioError, other, music_sets / "ref", tmp_path / "out",
          ["44100 Hz", "22050 Hz", "bandwidth"])


def test_silent_clips(music_sets, tmp_path):
    gen = tmp_path / "gen"
    shutil.copytree(music_sets / "held", gen)
    write(gen / "quiet.wav", np.zeros(PARAMS.tile_samples, np.float32), PARAMS.sample_rate)
    write(gen / "hum.wav", np.full(PARAMS.tile_samples, 1e-4, np.float32), PARAMS.sample_rate)
    fails(BadAudioError, gen, music_sets / "ref", tmp_path / "out",
          ["generated", "2 of", "silent", "-60 dBFS", "hum.wav", "quiet.wav", "silent='drop'"])
    ref = tmp_path / "ref"                                    # a song's silent ending in the reference
    shutil.copytree(music_sets / "ref", ref)
    write(ref / "tail.wav", np.zeros(PARAMS.tile_samples, np.float32), PARAMS.sample_rate)
    r = evaluate(gen, ref, tmp_path / "dropped", silent="drop")
    assert sorted(r.gen.dropped) == ["hum.wav", "quiet.wav"] and r.ref.dropped == ["tail.wav"]
    assert any(n.startswith("reference: 1 silent clip(s) left out") and "tail.wav" in n for n in r.notes)


def test_missing_weights(music_sets, tmp_path, monkeypatch):
    monkeypatch.setenv("WAVDIFF_MUQ_MODEL", str(tmp_path / "models" / "MuQ-MuLan-large"))
    msg = fails(WeightsMissingError, music_sets / "held", music_sets / "ref", tmp_path / "out",
                ["MuQ-MuLan", "hf download", "model"], embedding="muq")
    assert "does not exist" in msg


def test_bad_settings(music_sets, tmp_path, tile_dataset):
    fails(BadParameterError, music_sets / "held", music_sets / "ref", tmp_path / "out",
          ["embedding", "'clap'"], embedding="clap")
    fails(BadParameterError, music_sets / "held", tile_dataset, tmp_path / "out",
          ["split", "'train'", "validation"], split="train")
    fails(BadParameterError, music_sets / "held", music_sets / "ref", tmp_path / "out",
          ["silent", "'skip'"], silent="skip")
    both = tmp_path / "both"
    shutil.copytree(music_sets / "noisy", both)
    shutil.copy(next((music_sets / "held").glob("*.wav")), both)
    fails(BadParameterError, both, music_sets / "ref", tmp_path / "out", ["both images", "audio"])
