"""Prose captions with Qwen2-Audio: one file per tile, in sync, deterministic, no echo.

Every test runs a tiny randomly initialised Qwen2-Audio that ``tests/tiny_qwen.py``
builds locally (nothing is downloaded), loaded through the captioner's own
loading code.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.audio_fixtures import music_like, write
from tests.captioning.tiny_qwen import WORDS, build_tiny_qwen2_audio

from wavdiff_utils import CodecParams, tile_spans
from wavdiff_utils.io.audio import load_audio
from wavdiff_utils.captioning import batch as captioning
from wavdiff_utils.captioning import qwen as qc

SR = 22050
#: Small tiles so a 5.5 s song has four (256 frames x hop 128 at 22050 Hz = 1.49 s).
SMALL = CodecParams(sample_rate=SR, size=256)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are microseconds long; extra OpenMP threads only add sync overhead."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    env = os.environ.get(qc.MODEL_ENV, "").strip()
    folder = Path(env) if env else tmp_path_factory.mktemp("tiny-qwen")
    return build_tiny_qwen2_audio(folder)


@pytest.fixture(scope="session")
def captioner(model_dir) -> qc.QwenCaptioner:
    return qc.load_qwen(str(model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def song(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("songs")
    return write(folder / "tune.wav", music_like(5.5, SR, seed=7), SR)


def _describe(song_path, out, captioner, **kw):
    """Describe with the loaded model on the shared interface; generation options go to a copy."""
    options = {"max_new_tokens": 4, "batch_size": 8}
    options.update({k: kw.pop(k) for k in ("prompt", "max_new_tokens", "batch_size") if k in kw})
    kw.setdefault("params", SMALL)
    kw.setdefault("progress", False)
    return captioning.caption_songs(copy.copy(captioner).configure(**options), song_path, out, **kw)


def _texts(folder: Path, suffix: str = "") -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob(f"*_[0-9][0-9][0-9][0-9]{suffix}.txt"))}


# --------------------------------------------------------------------------- files and sync

def test_one_file_per_tile_in_sync_with_the_computed_spans(song, tmp_path, captioner):
    result = _describe(song, tmp_path, captioner)
    assert result.ok, result.summary()
    y = load_audio(song, sample_rate=SR)
    spans = tile_spans(len(y), frames_per_tile=SMALL.frames_per_tile, hop_length=SMALL.hop_length)
    files = sorted((tmp_path / "tune").glob("tune_*.txt"))
    assert [f.name for f in files] == [f"tune_{i:04d}.txt" for i in range(len(spans))]
    assert len(spans) > 3
    # each file holds the description of exactly its tile's samples, nothing shifted
    direct = captioner.describe([y[s.start:s.end] for s in spans], sample_rate=SR,
                                prompt=qc.DEFAULT_PROMPT, max_new_tokens=4)
    assert [f.read_text(encoding="utf-8").strip() for f in files] == direct
    assert result.songs[0].spans == [s.seconds(SR) for s in spans]


def test_spans_come_from_the_encoders_manifest(song, tmp_path, captioner):
    from wavdiff_utils.io.manifest import manifest_spans, read_manifest
    from wavdiff_utils.jobs.encode import encode_batch

    made = CodecParams(sample_rate=16000, size=128)        # not the parameters passed below
    encode_batch(song, tmp_path, params=made).raise_if_failed()
    with pytest.warns(UserWarning, match="tiles were made with"):
        result = _describe(song, tmp_path, captioner, params=SMALL)
    assert result.ok, result.summary()
    spans = manifest_spans(read_manifest(tmp_path / "tune"))
    pngs = sorted((tmp_path / "tune").glob("tune_*.png"))
    txts = sorted((tmp_path / "tune").glob("tune_*.txt"))
    assert [p.stem for p in txts] == [p.stem for p in pngs]
    assert len(txts) == len(spans)
    assert result.songs[0].from_manifest and result.songs[0].params == made
    y = load_audio(song, sample_rate=16000)
    direct = captioner.describe([y[s.start:s.end] for s in spans], sample_rate=16000,
                                prompt=qc.DEFAULT_PROMPT, max_new_tokens=4)
    assert [p.read_text(encoding="utf-8").strip() for p in txts] == direct


def test_different_tiles_get_different_descriptions(song, tmp_path, captioner):
    """Guards against audio being ignored (the old ``audios=`` keyword): one text for every clip."""
    _describe(song, tmp_path, captioner)
    assert len(set(_texts(tmp_path / "tune").values())) > 1
    t = np.arange(5 * SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, len(t)).astype(np.float32)
    a, b = captioner.describe([tone, noise], sample_rate=SR, prompt="Describe.", max_new_tokens=8)
    assert a != b


# --------------------------------------------------------------------------- generation

def test_deterministic_and_independent_of_batching(song, tmp_path, captioner):
    first = _describe(song, tmp_path / "a", captioner, batch_size=1)
    again = _describe(song, tmp_path / "b", captioner, batch_size=1)
    batched = _describe(song, tmp_path / "c", captioner, batch_size=3)   # 3 + 1 tiles
    assert first.songs[0].texts == again.songs[0].texts == batched.songs[0].texts
    assert _texts(tmp_path / "a" / "tune") == _texts(tmp_path / "c" / "tune")


@pytest.mark.parametrize("n", [3, 11])
def test_max_new_tokens_counts_only_the_written_words(captioner, n):
    clip = music_like(4.0, SR, seed=1)
    (text,) = captioner.describe([clip], sample_rate=SR, prompt="Describe.", max_new_tokens=n)
    # the tiny vocabulary is one word per token and never ends early: exactly n words,
    # although the input already holds ~100 audio tokens (max_length would leave none)
    assert len(text.split()) == n
    assert set(text.split()) <= set(WORDS)


def test_no_prompt_or_template_echo(song, tmp_path, captioner):
    prompt = "Zanzibar quokka: describe this clip thoroughly."
    result = _describe(song, tmp_path, captioner, prompt=prompt)
    for text in _texts(tmp_path / "tune").values():
        low = text.lower()
        assert text.strip() and "\n" not in text.strip()
        for echo in ("zanzibar", "quokka", "assistant", "user", "system", "audio 1", "<|", "helpful"):
            assert echo not in low, (echo, text)
    assert result.songs[0].texts == [t.strip() for t in _texts(tmp_path / "tune").values()]


@pytest.mark.parametrize("raw, clean", [
    ("assistant\nA calm piano piece.", "A calm piano piece."),
    ("  Warm pads,\n\nslow   tempo. ", "Warm pads, slow tempo."),
    ("<|im_start|>assistant\nBright brass.<|im_end|>", "Bright brass."),
    ("Drums and bass.", "Drums and bass."),
])
def test_clean_description_keeps_one_plain_paragraph(raw, clean):
    assert qc.clean_description(raw) == clean


def test_prompt_text_follows_the_chat_template(captioner):
    text = captioner.prompt_text("Describe it.")
    assert text.count("<|AUDIO|>") == 1 and text.rstrip().endswith("assistant")
    assert text.index("<|AUDIO|>") < text.index("Describe it.")


# --------------------------------------------------------------------------- naming, resume, tags

def test_tag_captions_are_never_overwritten(song, tmp_path, captioner):
    folder = tmp_path / "tune"
    folder.mkdir()
    tags = {f"tune_{i:04d}.txt": f"tag caption {i}" for i in range(4)}
    for name, text in tags.items():
        (folder / name).write_text(text, encoding="utf-8")
    result = _describe(song, tmp_path, captioner, naming="auto")
    assert result.ok, result.summary()
    assert _texts(folder) == tags
    prose = _texts(folder, qc.PROSE_SUFFIX)
    assert len(prose) == len(result.songs[0].files) == 4
    assert all(Path(f).name.endswith(".prose.txt") for f in result.songs[0].files)

    refused = _describe(song, tmp_path, captioner, naming="txt", resume=False)
    assert not refused.ok and "naming='txt' would overwrite" in refused.failures[0][1]
    assert _texts(folder) == tags


@pytest.mark.parametrize("naming, suffix", [("auto", ""), ("txt", ""), ("prose", ".prose")])
def test_naming_without_other_captions(song, tmp_path, captioner, naming, suffix):
    result = _describe(song, tmp_path, captioner, naming=naming)
    names = [Path(f).name for f in result.songs[0].files]
    assert names == [f"tune_{i:04d}{suffix}.txt" for i in range(len(names))]
    # a second run recognises its own .txt files and keeps the same names
    again = _describe(song, tmp_path, captioner, naming=naming, resume=False)
    assert [Path(f).name for f in again.songs[0].files] == names


def test_switching_naming_replaces_only_our_own_files(song, tmp_path, captioner):
    first = _describe(song, tmp_path, captioner, naming="auto")
    txt = _texts(tmp_path / "tune")
    assert len(txt) == len(first.songs[0].files)
    _describe(song, tmp_path, captioner, naming="prose")
    assert _texts(tmp_path / "tune") == {}
    assert sorted(_texts(tmp_path / "tune", qc.PROSE_SUFFIX)) == sorted(
        n.replace(".txt", ".prose.txt") for n in txt)


def test_an_interrupted_run_still_owns_its_files(song, tmp_path, captioner, monkeypatch):
    _describe(song, tmp_path, captioner)
    real, calls = captioning.write_caption, []

    def crash_on_third(path, text):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt("stopped while writing")
        return real(path, text)

    monkeypatch.setattr(captioning, "write_caption", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        _describe(song, tmp_path, captioner, prompt="Another instruction.")
    monkeypatch.setattr(captioning, "write_caption", real)
    # half old, half new texts: all still recognised as this captioner's, so no .prose.txt
    again = _describe(song, tmp_path, captioner, prompt="Another instruction.")
    assert again.ok and again.songs[0].status == "captioned"
    assert all(Path(f).name.endswith(f"_{i:04d}.txt") for i, f in enumerate(again.songs[0].files))
    assert _texts(tmp_path / "tune", qc.PROSE_SUFFIX) == {}


def test_songs_sharing_a_stem_use_the_encoders_song_ids(tmp_path, captioner):
    from wavdiff_utils.paths import song_ids

    for sub, seed in (("a", 1), ("b", 2)):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write(tmp_path / "in" / sub / "tune.wav", music_like(2.0, SR, seed=seed), SR)
    result = _describe(tmp_path / "in", tmp_path / "out", captioner)
    assert result.ok, result.summary()
    want = sorted(song_ids(sorted((tmp_path / "in").rglob("*.wav"))).values())
    assert sorted(s.song for s in result.songs) == want and len(set(want)) == 2
    for s in want:
        assert list((tmp_path / "out" / s).glob(f"{s}_0000.txt"))


def test_resume_skips_until_a_setting_changes(song, tmp_path, captioner):
    assert _describe(song, tmp_path, captioner).songs[0].status == "captioned"
    record = json.loads((tmp_path / "tune" / qc.RECORD_NAME).read_text(encoding="utf-8"))
    assert len(record["tiles"]) == 4 and record["identity"]["max_new_tokens"] == 4
    skipped = _describe(song, tmp_path, captioner)
    assert skipped.songs[0].status == "skipped"
    assert _describe(song, tmp_path, captioner, max_new_tokens=6).songs[0].status == "captioned"
    assert all(len(t.split()) == 6 for t in _texts(tmp_path / "tune").values())


@pytest.mark.parametrize("artist, title, start", [
    ("Ada", "Tide", "style of Ada, Tide. "),
    ("Ada", "", "style of Ada. "),
    ("", "", None),
])
def test_artist_and_title_prefix(song, tmp_path, captioner, artist, title, start):
    result = _describe(song, tmp_path, captioner, artist=artist, title=title)
    for text in result.songs[0].texts:
        if start is None:
            assert not text.startswith("style of")
        else:
            assert text.startswith(start) and len(text) > len(start)


# --------------------------------------------------------------------------- refusals and errors

def test_over_long_tiles_are_refused_and_the_batch_goes_on(tmp_path, captioner):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "long.wav", music_like(40.0, 8000, seed=2), 8000)
    write(folder / "short.wav", music_like(3.0, 8000, seed=3), 8000)
    params = CodecParams(sample_rate=8000, size=1024)       # 1024 x 512 / 8000 Hz = 65.5 s tiles
    result = _describe(folder, tmp_path / "out", captioner, params=params)
    assert [Path(p).name for p, _ in result.failures] == ["long.wav"]
    msg = result.failures[0][1]
    for part in ("40.00 s", "hears at most 30 s", "refused, not split", "sample_rate"):
        assert part in msg, msg
    assert not list((tmp_path / "out" / "long").glob("*.txt"))
    # a song shorter than 30 s fits in one tile of any length and is described
    assert [s.song for s in result.songs] == ["short"]
    assert len(list((tmp_path / "out" / "short").glob("short_*.txt"))) == 1


def test_describe_refuses_a_clip_over_the_window(captioner):
    with pytest.raises(qc.TileTooLongError, match="31.00 s.*only the first 30 s"):
        captioner.describe([np.zeros(31 * SR, np.float32)], sample_rate=SR)


MISSING = "Qwen2-Audio weights for model="


def test_missing_local_folder_has_one_clear_message(tmp_path):
    with pytest.raises(qc.QwenWeightsError) as err:
        qc.load_qwen(str(tmp_path / "no-such-model"))
    msg = str(err.value)
    assert msg.startswith(MISSING) and "no-such-model" in msg and "does not exist" in msg
    assert "hf download Qwen/Qwen2-Audio-7B-Instruct" in msg and "\n" not in msg
    assert "`--model" in msg and "-p model" in msg and qc.MODEL_ENV in msg


def test_incomplete_folder_names_what_is_missing(tmp_path, model_dir):
    folder = tmp_path / "half"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_bytes((model_dir / name).read_bytes())
    with pytest.raises(qc.QwenWeightsError, match="lacks preprocessor_config.json, "
                                                  r"\*.safetensors weights"):
        qc.load_qwen(str(folder))


@pytest.mark.parametrize("offline", [True, False])
def test_uncached_hub_id_has_one_clear_message(monkeypatch, offline):
    """Offline: no network call at all; online: the hub has no such model or cannot be reached."""
    monkeypatch.delenv(qc.MODEL_ENV, raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with pytest.raises(qc.QwenWeightsError) as err:
        qc.resolve_model("wavdiff-tests/not-a-model")
    msg = str(err.value)
    assert msg.startswith(MISSING) and "'wavdiff-tests/not-a-model'" in msg
    assert "not in the local Hugging Face cache" in msg and "\n" not in msg
    assert ("HF_HUB_OFFLINE" in msg) == offline


def test_env_variable_replaces_only_the_default_model(monkeypatch, model_dir, tmp_path):
    monkeypatch.setenv(qc.MODEL_ENV, str(model_dir))
    assert qc.resolve_model(qc.DEFAULT_MODEL) == str(model_dir)
    assert qc.resolve_model(str(model_dir)) == str(model_dir)
    monkeypatch.setenv(qc.MODEL_ENV, str(tmp_path / "gone"))
    with pytest.raises(qc.QwenWeightsError, match=f"from {qc.MODEL_ENV}"):
        qc.resolve_model(qc.DEFAULT_MODEL)


def test_loads_from_a_folder_at_the_first_song(song, tmp_path, model_dir):
    cap = qc.QwenCaptioner(str(model_dir), device="cpu", max_new_tokens=4)
    assert cap.model is None                       # resolved now, loaded at the first song
    result = captioning.caption_songs(cap, song, tmp_path, params=SMALL, progress=False)
    assert result.ok and result.model == str(model_dir)
    assert len(result.songs[0].files) == 4


def test_a_folder_of_another_model_is_named(tmp_path, model_dir):
    folder = tmp_path / "other"
    folder.mkdir()
    for f in model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "whisper"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="'whisper' model, not Qwen2-Audio"):
        qc.load_qwen(str(folder))


@pytest.mark.parametrize("kw, bad", [
    ({"naming": "tags"}, "'tags'"),
    ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer, got 0"),
    ({"batch_size": -1}, "batch_size must be 0"),
])
def test_bad_options_are_named(song, tmp_path, captioner, kw, bad):
    with pytest.raises(ValueError, match=bad):
        _describe(song, tmp_path, captioner, **kw)


@pytest.mark.parametrize("kw, bad", [
    ({"dtype": "int8"}, "dtype must be .* got 'int8'"),
    ({"device": "tpu"}, "got 'tpu'"),
    ({"load_in_4bit": True, "device": "cpu"}, "load_in_4bit needs a CUDA GPU"),
])
def test_bad_load_options_are_named(model_dir, kw, bad):
    with pytest.raises(ValueError, match=bad):
        qc.load_qwen(str(model_dir), **kw)


def test_default_tiling_from_a_model_folder(song, tmp_path, model_dir):
    """What the notebook run with papermill covered: default 1024x1024 tiling, a model folder."""
    out = tmp_path / "tiles"
    result = captioning.caption_songs(qc.QwenCaptioner(str(model_dir), max_new_tokens=6, device="cpu"),
                                      str(song), str(out), progress=False)
    assert result.ok, result.summary()
    y = load_audio(song, sample_rate=44100)
    n = len(tile_spans(len(y), frames_per_tile=1024, hop_length=512))
    files = sorted((out / "tune").glob("tune_[0-9][0-9][0-9][0-9].txt"))
    assert len(files) == n == len(result.songs[0].tiles)
    assert all(len(f.read_text(encoding="utf-8").split()) == 6 for f in files)
