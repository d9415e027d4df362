"""MuQ-MuLan tag captions: one per tile, in sync with 01_encode, from a tiny local model.

The model is the tiny random MuQ-MuLan that ``conftest.py`` builds and points
``$WAVDIFF_MUQ_MODEL`` at; it is loaded through :func:`load_muq_mulan` with
the default model id, the path users take.
"""
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.audio_fixtures import music_like, write
from tests.captioning.tiny_models import TINY_MUQ_TOWERS, build_tiny_muq_mulan
from wavdiff_utils.captioning import muq as mc
from wavdiff_utils.captioning.labels import Label
from wavdiff_utils.captioning.interface import caption_prefix
from wavdiff_utils.captioning.batch import caption_songs
from wavdiff_utils.io.manifest import manifest_spans, read_manifest
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.jobs.encode import encode_batch
from wavdiff_utils.io.tiles import find_tiles
from wavdiff_utils.codec.tiling import tile_spans

P = CodecParams(size=256)          # 256x256 tiles, 0.74 s each at 44.1 kHz: a few tiles per clip
CAPTION = re.compile(r"^(style of [^.]+\. )?An? [A-Z][\w&' -]* track( featuring [\w&'., -]+)?\."
                     r"( Characterized as [a-z ,]+\.)?( \d+ BPM\.)?$")


@pytest.fixture(scope="module")
def mulan():
    """The tiny model, loaded once, through the default id (redirected by $WAVDIFF_MUQ_MODEL)."""
    return mc.load_muq_mulan(mc.DEFAULT_MODEL, device="cpu")


CAPTIONER_OPTIONS = ("batch_size", "bpm", "bpm_tolerance", "silence_db", "text_cache", "vocabulary",
                     "templates")


def caption(inp, out, mulan, tmp_path, **kw):
    """Caption with MuQ on the shared interface; tag settings and captioner options go to the captioner."""
    kw.setdefault("progress", False)
    kw.setdefault("text_cache", tmp_path / "text-cache")
    options = {k: kw.pop(k) for k in CAPTIONER_OPTIONS if k in kw}
    settings = {k: kw.pop(k) for k in list(kw) if k.startswith("max_") or k.endswith("_threshold")}
    cap = mc.MuQCaptioner(mulan, settings=mc.TagSettings(**settings), **options)
    return caption_songs(cap, inp, out, **kw)


# ----------------------------------------------------------------------------- sync

@pytest.mark.parametrize("file_sr,codec_sr",
                         [(44100, 44100), (48000, 44100), (22050, 22050), (32000, 22050)])
@pytest.mark.parametrize("seconds", [0.37, 1.0, 1.73])
def test_spans_agree_to_the_sample_with_01_encode(tmp_path, mulan, file_sr, codec_sr, seconds):
    (tmp_path / "in").mkdir()
    src = write(tmp_path / "in" / "song.wav", music_like(seconds, file_sr, seed=3), file_sr)
    params = CodecParams(size=256, sample_rate=codec_sr)
    enc = encode_batch(src, tmp_path / "tiles", params=params, progress=False)
    enc.raise_if_failed()
    manifest = read_manifest(tmp_path / "tiles" / "song")
    expected = [(s.start, s.end) for s in manifest_spans(manifest)]

    # from the manifest, beside the PNGs
    res = caption(src, tmp_path / "tiles", mulan, tmp_path, params=params, bpm=False).results[0]
    assert res.from_manifest and [(t.start, t.end) for t in res.tiles] == expected
    pngs = sorted(p.stem for p in (tmp_path / "tiles" / "song").glob("*.png"))
    txts = sorted(p.stem for p in (tmp_path / "tiles" / "song").glob("*.txt"))
    assert pngs == txts and len(pngs) == len(expected)

    # computed by the same shared function when there are no tiles yet
    res2 = caption(src, tmp_path / "elsewhere", mulan, tmp_path, params=params, bpm=False).results[0]
    assert not res2.from_manifest and [(t.start, t.end) for t in res2.tiles] == expected
    assert expected == [(s.start, s.end) for s in tile_spans(
        manifest["n_samples"], frames_per_tile=params.frames_per_tile, hop_length=params.hop_length)]

    # and from the tiles' own metadata when the manifest is gone
    (tmp_path / "tiles" / "song" / "manifest.json").unlink()
    res3 = caption(src, tmp_path / "tiles", mulan, tmp_path, params=params, bpm=False,
                   overwrite=True).results[0]
    assert res3.from_manifest and [(t.start, t.end) for t in res3.tiles] == expected


def test_songs_with_the_same_stem_get_the_encoders_folders(tmp_path, mulan):
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "b").mkdir()
    write(tmp_path / "in" / "a" / "x.wav", music_like(0.8, 44100, seed=1), 44100)
    write(tmp_path / "in" / "b" / "x.wav", music_like(1.2, 44100, seed=2), 44100)
    encode_batch(tmp_path / "in", tmp_path / "t", params=P, progress=False).raise_if_failed()
    batch = caption(tmp_path / "in", tmp_path / "t", mulan, tmp_path, bpm=False)
    batch.raise_if_failed()
    groups = find_tiles(tmp_path / "t")
    assert {r.song for r in batch.results} == set(groups) and len(groups) == 2
    for r in batch.results:
        assert r.from_manifest and len(r.tiles) == len(groups[r.song])
        assert all(p.with_suffix(".txt").is_file() for p in groups[r.song])


# ----------------------------------------------------------------------------- captions

@pytest.mark.parametrize("artist,title", [("", ""), ("Given Artist", ""), ("Given Artist", "Given Title")])
def test_one_caption_per_tile_in_the_format(tmp_path, mulan, artist, title):
    src = write(tmp_path / "song.flac", music_like(2.0, 44100, seed=7), 44100)
    encode_batch(src, tmp_path / "t", params=P, progress=False).raise_if_failed()
    res = caption(src, tmp_path / "t", mulan, tmp_path, artist=artist, title=title).results[0]
    assert res.status == "captioned" and res.n_tiles == len(res.tiles) == 3
    for t in res.tiles:
        text = (tmp_path / "t" / "song" / f"song_{t.index:04d}.txt").read_text(encoding="utf-8")
        assert text == t.caption + "\n" and "\n" not in t.caption
        assert CAPTION.match(t.caption), t.caption
        assert t.caption.startswith(caption_prefix(artist, title))
        assert t.tags["genre"] and t.tags["instruments"]
        assert all(len(t.top[c]) == 5 for c in mc.CATEGORIES)
        scores = [s for _, s in t.top["genre"]]
        assert scores == sorted(scores, reverse=True)


def test_prefix_comes_from_the_file_tags_when_not_given(tmp_path, mulan):
    src = tmp_path / "tagged.flac"
    with sf.SoundFile(src, "w", samplerate=44100, channels=1, format="FLAC") as fh:
        fh.artist, fh.title = "Tag Artist", "Tag Title"
        fh.write(music_like(0.5, 44100, seed=2))
    res = caption(src, tmp_path / "t", mulan, tmp_path, params=P).results[0]
    assert all(t.caption.startswith("style of Tag Artist, Tag Title. ") for t in res.tiles)
    res = caption(src, tmp_path / "t", mulan, tmp_path, params=P, artist="Other").results[0]
    assert all(t.caption.startswith("style of Other, Tag Title. ") for t in res.tiles)


def test_captions_are_deterministic_across_runs_batches_and_loads(tmp_path, mulan):
    src = write(tmp_path / "s.wav", music_like(2.5, 44100, seed=11), 44100)
    a = caption(src, tmp_path / "t", mulan, tmp_path, params=P, batch_size=1).results[0]
    b = caption(src, tmp_path / "t", mulan, tmp_path, params=P, batch_size=4,
                overwrite=True).results[0]
    again = mc.load_muq_mulan(mc.DEFAULT_MODEL, device="cpu")
    c = caption(src, tmp_path / "t2", again, tmp_path, params=P, text_cache=False).results[0]
    assert [t.caption for t in a.tiles] == [t.caption for t in b.tiles] == [t.caption for t in c.tiles]
    for x, y in zip(a.tiles, c.tiles):
        for cat in mc.CATEGORIES:
            np.testing.assert_allclose([s for _, s in x.top[cat]], [s for _, s in y.top[cat]],
                                       atol=1e-5)


def test_up_to_date_songs_are_skipped_and_stale_captions_removed(tmp_path, mulan):
    src = write(tmp_path / "s.wav", music_like(1.6, 44100, seed=5), 44100)
    folder = tmp_path / "t" / "s"
    first = caption(src, tmp_path / "t", mulan, tmp_path, params=P).results[0]
    again = caption(src, tmp_path / "t", mulan, tmp_path, params=P).results[0]
    assert first.status == "captioned" and again.status == "skipped"
    assert [t.caption for t in again.tiles] == [t.caption for t in first.tiles]
    changed = caption(src, tmp_path / "t", mulan, tmp_path, params=P, max_instruments=1).results[0]
    assert changed.status == "captioned"
    assert all(len(t.tags["instruments"]) == 1 for t in changed.tiles)
    # the song gets shorter: captions of tiles it no longer has go, files of others stay
    write(src, music_like(0.5, 44100, seed=5), 44100)
    (folder / "s_0042.txt").write_text("a note of the user\n")
    shorter = caption(src, tmp_path / "t", mulan, tmp_path, params=P).results[0]
    assert shorter.n_tiles == 1
    assert sorted(p.name for p in folder.glob("*.txt")) == ["s_0000.txt", "s_0042.txt"]


@pytest.mark.parametrize("naming", ["auto", "txt", "tags"])
def test_captions_it_did_not_write_are_never_overwritten_unasked(tmp_path, mulan, naming):
    src = write(tmp_path / "s.wav", music_like(0.6, 44100, seed=5), 44100)
    folder = tmp_path / "t" / "s"
    foreign = folder / "s_0000.txt"
    folder.mkdir(parents=True)
    foreign.write_text("A prose description from another captioner.\n")
    batch = caption(src, tmp_path / "t", mulan, tmp_path, params=P, naming=naming)
    assert foreign.read_text() == "A prose description from another captioner.\n"
    if naming == "txt":
        assert not batch.results and "s_0000.txt" in batch.failures[0][1]
        assert "overwrite=True" in batch.failures[0][1] and "naming=" in batch.failures[0][1]
        batch = caption(src, tmp_path / "t", mulan, tmp_path, params=P, naming="txt", overwrite=True)
        assert batch.ok and foreign.read_text() == batch.results[0].tiles[0].caption + "\n"
    else:
        tags = folder / "s_0000.tags.txt"
        assert batch.ok and tags.read_text() == batch.results[0].tiles[0].caption + "\n"
        again = caption(src, tmp_path / "t", mulan, tmp_path, params=P, naming=naming).results[0]
        assert again.status == "skipped"
        if naming == "auto":      # the other caption is gone: back to the plain name, no leftovers
            foreign.unlink()
            caption(src, tmp_path / "t", mulan, tmp_path, params=P).raise_if_failed()
            assert foreign.is_file() and not tags.exists()


def test_silent_tiles_say_so(tmp_path, mulan):
    y = music_like(2.3, 44100, seed=4)
    y[P.tile_samples:2 * P.tile_samples] = 0.0          # tile 1 holds digital silence
    src = write(tmp_path / "s.wav", y, 44100)
    res = caption(src, tmp_path / "t", mulan, tmp_path, params=P).results[0]
    assert [t.silent for t in res.tiles] == [False, True, False, False]
    assert res.tiles[1].caption == "Silence." and CAPTION.match(res.tiles[0].caption)


def test_failures_are_collected_per_song(tmp_path, mulan):
    (tmp_path / "in").mkdir()
    write(tmp_path / "in" / "good.wav", music_like(0.6, 44100, seed=1), 44100)
    (tmp_path / "in" / "broken.mp3").write_bytes(b"\x00" * 400)
    batch = caption(tmp_path / "in", tmp_path / "t", mulan, tmp_path, params=P)
    assert [r.song for r in batch.results] == ["good"]
    assert len(batch.failures) == 1 and "broken.mp3" in batch.failures[0][1]
    with pytest.raises(RuntimeError, match="broken.mp3"):
        batch.raise_if_failed()


# ----------------------------------------------------------------------------- selection and text

def _vocab():
    return mc.load_vocabulary(
        audioset={"categories": {"genre": ["Rock music", "Jazz", "Pop music"],
                                 "mood": ["Happy music", "Angry music"],
                                 "instruments": ["Guitar", "Electric guitar", "Piano", "Drum kit",
                                                 "Violin, fiddle"]}},
        descriptors=["guitar", "loud", "no vocals", "vocal", "soft"])


@pytest.mark.parametrize("inst_scores,max_inst,thr,expected", [
    ([0.1, 0.9, 0.8, 0.75, 0.0], 3, 0.5, ["Electric Guitar", "Piano", "Drum Kit"]),  # Guitar: subset
    ([0.1, 0.9, 0.8, 0.7, 0.0], 2, 0.5, ["Electric Guitar", "Piano"]),
    ([0.1, 0.9, 0.8, 0.7, 0.0], 3, 0.95, ["Electric Guitar"]),
    ([0.5, 0.5, 0.5, 0.5, 0.5], 3, 0.5, ["Guitar"]),          # no clear winner: the first only
    ([0.9, 0.1, 0.8, 0.0, 0.0], 0, 0.5, []),
])
def test_instrument_selection_uses_relative_threshold_and_maximum(inst_scores, max_inst, thr, expected):
    v = _vocab()
    scores = {"genre": [0.3, 0.1, 0.2], "mood": [0.1, 0.2], "instruments": inst_scores,
              "descriptors": [0.9, 0.8, 0.1, 0.7, 0.0]}
    tags = mc.select_tags(scores, v, mc.TagSettings(max_instruments=max_inst,
                                                    instrument_threshold=thr))
    assert [lab.display for lab in tags["instruments"]] == expected
    assert [lab.display for lab in tags["genre"]] == ["Rock"]
    assert [lab.display for lab in tags["mood"]] == ["Angry"]


@pytest.mark.parametrize("desc_scores,expected", [
    ([0.9, 0.8, 0.1, 0.7, 0.0], ["loud"]),              # "guitar" repeats Electric Guitar; "vocal" < thr
    ([0.0, 0.1, 0.9, 0.85, 0.0], ["no vocals"]),        # "vocal" contradicts/repeats "no vocals"
    ([0.0, 0.8, 0.1, 0.1, 0.79], ["loud", "soft"]),
])
def test_descriptors_skip_repeated_words(desc_scores, expected):
    scores = {"genre": [0.3, 0.1, 0.2], "mood": [0.1, 0.2], "instruments": [0, 0.9, 0, 0, 0],
              "descriptors": desc_scores}
    tags = mc.select_tags(scores, _vocab(), mc.TagSettings(descriptor_threshold=0.8))
    assert [lab.display for lab in tags["descriptors"]] == expected


@pytest.mark.parametrize("bad", [dict(max_instruments=-1), dict(instrument_threshold=1.5),
                                 dict(max_genres=1.5), dict(descriptor_threshold=-0.1)])
def test_bad_settings_name_the_value(bad):
    name, value = next(iter(bad.items()))
    with pytest.raises(ValueError, match=rf"{name}.*{re.escape(repr(value))}"):
        mc.TagSettings(**bad)


@pytest.mark.parametrize("mood,genre,inst,desc,bpm,expected", [
    ("Angry", "Rock", ["Electric Guitar"], ["heavy"], 119.6,
     "An Angry Rock track featuring Electric Guitar. Characterized as heavy. 120 BPM."),
    ("Sad", "Jazz", ["Piano", "Double Bass", "Drum Kit"], [], None,
     "A Sad Jazz track featuring Piano, Double Bass and Drum Kit."),
    (None, "Electronic", [], ["fast", "loud"], 0,
     "An Electronic track. Characterized as fast, loud."),
    (None, None, ["Cello"], [], 72.4, "A track featuring Cello. 72 BPM."),
])
def test_caption_format(mood, genre, inst, desc, bpm, expected):
    def label(c, d):
        return Label(c, d, d, d.lower())

    tags = {"mood": [label("mood", mood)] if mood else [],
            "genre": [label("genre", genre)] if genre else [],
            "instruments": [label("instruments", i) for i in inst],
            "descriptors": [label("descriptors", d) for d in desc]}
    assert mc.format_caption(tags, bpm=bpm) == expected
    assert mc.format_caption(tags, prefix="style of X. ", bpm=bpm) == "style of X. " + expected


def test_vocabularies_hold_official_names():
    v = mc.load_vocabulary()
    names = {c: [lab.name for lab in v[c]] for c in mc.CATEGORIES}
    assert len(names["descriptors"]) == 50 and names["descriptors"][:3] == ["guitar", "classical", "slow"]
    assert {"Happy music", "Sad music", "Scary music"} <= set(names["mood"])
    assert {"Rock music", "Drum and bass", "Music of Latin America"} <= set(names["genre"])
    assert {"Violin, fiddle", "Keyboard (musical)", "Female singing"} <= set(names["instruments"])
    display = {lab.name: lab.display for c in mc.CATEGORIES for lab in v[c]}
    assert display["Violin, fiddle"] == "Violin" and display["Rock music"] == "Rock"
    assert display["Keyboard (musical)"] == "Keyboard" and display["Happy music"] == "Happy"


@pytest.mark.parametrize("bad,match", [
    ({"categories": {"genre": ["Jazz"], "mood": [], "instruments": ["Piano"]}}, "mood"),
    ({"categories": {"genre": ["Jazz", "jazz"], "mood": ["Sad music"], "instruments": ["Piano"]}}, "twice"),
    ({"nothing": 1}, "categories"),
])
def test_bad_vocabulary_is_named(bad, match):
    with pytest.raises(ValueError, match=match):
        mc.load_vocabulary(audioset=bad)


def test_text_embeddings_are_cached_by_model_and_vocabulary(tmp_path, mulan, monkeypatch):
    cache = tmp_path / "cache"
    emb = mc.text_embeddings(mulan, cache_dir=cache)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1
    for c in mc.CATEGORIES:
        assert emb[c].shape[0] == len(mc.load_vocabulary()[c])
        np.testing.assert_allclose(np.linalg.norm(emb[c], axis=1), 1, atol=1e-5)
    fresh = mc.load_muq_mulan(mc.DEFAULT_MODEL, device="cpu")
    monkeypatch.setattr(mc.MuQMuLanModel, "embed_texts",
                        lambda *a, **k: pytest.fail("text embeddings recomputed despite the cache"))
    again = mc.text_embeddings(fresh, cache_dir=cache)
    assert all(np.array_equal(emb[c], again[c]) for c in mc.CATEGORIES)
    monkeypatch.undo()
    other = mc.load_vocabulary(descriptors=["loud", "soft"])
    mc.text_embeddings(fresh, other, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 2


def test_text_embeddings_do_not_depend_on_batch_padding(mulan):
    texts = ["rock", "a track featuring electric guitar", "the sound of piano"]
    together = mulan.embed_texts(texts)
    alone = np.stack([mulan.embed_texts([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


# ----------------------------------------------------------------------------- tempo

def _clicks(bpm, seconds, sr=22050):
    y = np.zeros(int(seconds * sr), np.float32)
    burst = (np.random.default_rng(0).standard_normal(400) * np.hanning(400)).astype(np.float32)
    for t in np.arange(0, seconds, 60.0 / bpm):
        i = int(t * sr)
        y[i:i + 400] += burst[: len(y) - i]
    return y


@pytest.mark.parametrize("bpm", [90, 120, 150])
def test_song_tempo_is_found(bpm):
    sr = 22050
    y = _clicks(bpm, 20, sr)
    spans = tile_spans(len(y), frames_per_tile=256, hop_length=256)   # 3 s tiles: too short
    song, tiles = mc.estimate_bpm(y, sr, spans)
    assert abs(song - bpm) <= 2 and tiles == [song] * len(spans)


def test_tile_reports_its_own_tempo_only_when_it_differs_clearly():
    sr = 22050
    y = np.concatenate([_clicks(100, 24, sr), _clicks(100, 24, sr), _clicks(150, 24, sr)])
    spans = tile_spans(len(y), frames_per_tile=1034, hop_length=512)  # 24 s tiles
    song, tiles = mc.estimate_bpm(y, sr, spans)
    assert abs(tiles[2] - 150) <= 3
    assert tiles[0] == tiles[1] == song and abs(song - 100) <= 3


# ----------------------------------------------------------------------------- model loading

def test_env_variable_replaces_only_the_default_id(monkeypatch):
    monkeypatch.setenv(mc.MODEL_ENV, "/models/tiny")
    assert mc.resolve_model(mc.DEFAULT_MODEL) == "/models/tiny"
    assert mc.resolve_model("someone/other-model") == "someone/other-model"
    monkeypatch.delenv(mc.MODEL_ENV)
    assert mc.resolve_model(mc.DEFAULT_MODEL) == mc.DEFAULT_MODEL
    with pytest.raises(ValueError, match="empty"):
        mc.resolve_model("  ")


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_checkpoint_is_loaded_last_from_either_format(tmp_path, weights):
    folder = build_tiny_muq_mulan(tmp_path / "m", weights=weights)
    loaded = mc.load_muq_mulan(folder, device="cpu")
    assert loaded.weights.name == ("model.safetensors" if weights == "safetensors" else "pytorch_model.bin")
    ckpt = mc._load_state_dict(loaded.weights)
    state = loaded.model.state_dict()
    assert all(torch.equal(state[k], ckpt[k]) for k in ckpt)
    from safetensors.torch import load_file
    tower = load_file(str(folder / TINY_MUQ_TOWERS["audio"].split("/")[-1] / "model.safetensors"))
    k = next(k for k in tower if tower[k].is_floating_point() and tower[k].numel() > 1)
    assert not torch.equal(state["mulan.audio.model." + k], tower[k])
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_loading_keeps_the_global_random_state(mulan):
    torch.manual_seed(1234)
    random.seed(1234)
    want = (torch.rand(4), random.random())
    torch.manual_seed(1234)
    random.seed(1234)
    mc.load_muq_mulan(mc.DEFAULT_MODEL, device="cpu")
    assert torch.equal(torch.rand(4), want[0]) and random.random() == want[1]


def _complete_message(msg: str):
    assert "\n" not in msg, "one line"
    assert "hf download" in msg and "`model`" in msg and "-p model" in msg and mc.MODEL_ENV in msg


def test_missing_hub_weights_give_one_message(tmp_path, monkeypatch):
    monkeypatch.delenv(mc.MODEL_ENV, raising=False)
    with pytest.raises(mc.ModelWeightsMissing) as info:
        mc.load_muq_mulan(mc.DEFAULT_MODEL, device="cpu", cache_dir=tmp_path / "empty-cache",
                          local_files_only=True)
    msg = str(info.value)
    _complete_message(msg)
    for repo in ("OpenMuQ/MuQ-MuLan-large", "OpenMuQ/MuQ-large-msd-iter", "xlm-roberta-base"):
        assert f"hf download {repo}" in msg
    assert "local_files_only" in msg and str(tmp_path / "empty-cache") in msg


@pytest.mark.parametrize("damage,expect", [
    ("weights", "no model.safetensors or pytorch_model.bin"),
    ("config", "no config.json"),
    ("text tower", "xlm-roberta-tiny-random"),
    ("audio tower weights", "model.safetensors"),
])
def test_incomplete_local_folder_gives_one_message(tmp_path, monkeypatch, damage, expect):
    folder = shutil.copytree(mc.resolve_model(mc.DEFAULT_MODEL), tmp_path / "model")
    audio, text = (folder / TINY_MUQ_TOWERS[k].split("/")[-1] for k in ("audio", "text"))
    {"weights": lambda: (folder / "model.safetensors").unlink(),
     "config": lambda: (folder / "config.json").unlink(),
     "text tower": lambda: shutil.rmtree(text),
     "audio tower weights": lambda: (audio / "model.safetensors").unlink()}[damage]()
    song = write(tmp_path / "s.wav", music_like(0.3, 44100), 44100)
    with pytest.raises(mc.ModelWeightsMissing) as info:
        caption_songs(mc.MuQCaptioner(folder, device="cpu", local_files_only=True), song,
                      tmp_path / "out", progress=False)
    msg = str(info.value)
    assert str(folder) in msg and expect in msg
    assert "`model`" in msg and "-p model" in msg
    if damage == "text tower":
        _complete_message(msg)
        assert f"--local-dir {folder}/xlm-roberta-tiny-random" in msg


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(mc.ModelWeightsMissing, match="does not exist"):
        mc.load_muq_mulan(str(tmp_path / "no" / "such" / "model"), device="cpu")


def test_bad_device_is_named():
    with pytest.raises(ValueError, match="'tpu'"):
        mc.load_muq_mulan(mc.DEFAULT_MODEL, device="tpu")


def test_tile_clips_never_leave_the_tile():
    a = np.arange(1, 26, dtype=np.float32)
    clips = mc.tile_clips(a, 10)
    assert clips.shape == (3, 10)
    assert np.array_equal(clips[2], np.r_[a[20:], a[:5]])
    short = mc.tile_clips(a[:4], 10)
    assert short.shape == (1, 10) and set(short[0]) <= set(a[:4])


def test_sidecar_records_what_was_done(tmp_path, mulan):
    src = write(tmp_path / "s.wav", music_like(0.9, 44100, seed=9), 44100)
    res = caption(src, tmp_path / "t", mulan, tmp_path, params=P).results[0]
    rec = json.loads((tmp_path / "t" / "s" / mc.SIDECAR_NAME).read_text())
    assert rec["model"] == mc.resolve_model(mc.DEFAULT_MODEL)
    assert [t["caption"] for t in rec["tiles"]] == [t.caption for t in res.tiles]


def _fake_hub_cache(cache, repo, folder):
    """Put ``folder``'s files into a Hugging Face cache as the snapshot of ``repo``."""
    commit = "0" * 40
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(folder, root / "snapshots" / commit,
                    ignore=lambda d, names: [n for n in names if (Path(d) / n).is_dir()])


def test_hub_id_is_loaded_from_the_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.delenv(mc.MODEL_ENV, raising=False)
    src = build_tiny_muq_mulan(tmp_path / "tiny")
    cache = tmp_path / "hf-cache"
    _fake_hub_cache(cache, "wavdiff-tests/MuQ-MuLan-tiny", src)
    for kind in ("audio", "text"):
        _fake_hub_cache(cache, TINY_MUQ_TOWERS[kind], src / TINY_MUQ_TOWERS[kind].split("/")[-1])
    loaded = mc.load_muq_mulan("wavdiff-tests/MuQ-MuLan-tiny", device="cpu", cache_dir=cache,
                               local_files_only=True)
    assert str(cache) in str(loaded.weights)
    assert all(str(cache) in str(p) for p in loaded.towers.values())
    ref = mc.load_muq_mulan(src, device="cpu")
    x = mc.tile_clips(music_like(3.0, 24000, seed=1), ref.clip_samples)
    np.testing.assert_allclose(loaded.embed_clips(x), ref.embed_clips(x), atol=1e-6)


def test_tower_folders_may_have_any_name(tmp_path):
    folder = build_tiny_muq_mulan(tmp_path / "m")
    (folder / "xlm-roberta-tiny-random").rename(folder / "text")
    (folder / "MuQ-tiny-random").rename(folder / "audio")
    config = json.loads((folder / "config.json").read_text())
    config["text_model"]["name"], config["audio_model"]["name"] = "text", "audio"
    (folder / "config.json").write_text(json.dumps(config))
    loaded = mc.load_muq_mulan(folder, device="cpu", local_files_only=True)
    assert loaded.embed_texts(["piano"]).shape == (1, 16)


def test_notebook_defaults_are_the_real_model_and_match_the_params_file():
    import yaml

    root = Path(__file__).resolve().parents[2]
    nb = json.loads((root / "notebooks" / "02_caption_muq.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code[0]["metadata"].get("tags") == ["parameters"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    params = {}
    exec("".join(code[0]["source"]), {}, params)
    assert params["model"] == mc.DEFAULT_MODEL and params["input"] == "sample_data/wavdiff_demo.mp3"
    yaml_params = yaml.safe_load((root / "params" / "caption_muq.yaml").read_text())
    assert yaml_params == params


def test_relative_model_folder_and_tiles_from_01_encode(tmp_path, monkeypatch):
    """What the notebook run with papermill covered: a relative model folder, encoded tiles, CPU."""
    src = write(tmp_path / "song.wav", music_like(2.0, 44100, seed=8), 44100)
    encode_batch(src, tmp_path / "tiles", params=P, progress=False).raise_if_failed()
    shutil.copytree(mc.resolve_model(mc.DEFAULT_MODEL), tmp_path / "my-model")
    monkeypatch.chdir(tmp_path)
    batch = caption_songs(mc.MuQCaptioner("my-model", device="cpu", text_cache=False), "song.wav",
                          "tiles", progress=False)
    batch.raise_if_failed()
    pngs = sorted((tmp_path / "tiles" / "song").glob("*.png"))
    assert len(pngs) == 3 == len(batch.results[0].tiles)
    for png in pngs:
        assert CAPTION.match(png.with_suffix(".txt").read_text(encoding="utf-8").strip())
    record = json.loads((tmp_path / "tiles" / "song" / mc.SIDECAR_NAME).read_text())
    assert record["model"] == "my-model" and record["from_manifest"]
    assert record["caption_source"] == "muq" and {t["caption_source"] for t in record["tiles"]} == {"muq"}


@pytest.mark.parametrize("version,breaks", [("4.57.6", False), ("5.15.2", False), ("5.16.0", True),
                                            ("6.0.0.dev0", True)])
def test_transformers_that_break_muq_are_refused_up_front(monkeypatch, version, breaks):
    import transformers

    monkeypatch.setattr(transformers, "__version__", version)
    if breaks:
        with pytest.raises(RuntimeError, match=rf"transformers {re.escape(version)}.*<5\.16"):
            mc.load_muq_mulan(mc.DEFAULT_MODEL, device="cpu")
    else:
        mc._check_transformers()
