"""The captioner interface: three captioners on it, the metadata one on real tagged files,
the fallback when weights are missing, ``caption_source`` everywhere, results that show themselves,
and the error hierarchy."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import music_like, write
from wavdiff_utils import captioning as C
from wavdiff_utils import errors as E
from wavdiff_utils.dataset.export import export_dataset, read_metadata
from wavdiff_utils.captioning.metadata import MetadataCaptioner, metadata_caption
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.jobs.encode import encode_batch

P = CodecParams(size=256)                   # 0.74 s tiles
SR = 44100


def tagged(path, fmt, seconds=1.6, **tags):
    """An audio file with tags written through libsndfile (ID3 in MP3, Vorbis comments in Ogg)."""
    y = music_like(seconds, SR, seed=3)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, format=fmt) as fh:
        for k, v in tags.items():
            setattr(fh, k, v)
        fh.write(y)
    return path


TAGS = dict(artist="Ada Band", title="Tide", album="Waves", genre="Rock", date="2021")


@pytest.mark.parametrize("fmt, ext", [("MP3", "mp3"), ("OGG", "ogg")])
def test_metadata_captioner_reads_the_file_tags(tmp_path, fmt, ext):
    src = tagged(tmp_path / f"song.{ext}", fmt, **TAGS)
    batch = C.caption_songs(MetadataCaptioner(), src, tmp_path / "out", params=P, progress=False)
    batch.raise_if_failed()
    res = batch.results[0]
    assert res.n_tiles == len(res.tiles) >= 2 and res.captioner == "metadata"
    for t in res.tiles:
        assert t.caption == "style of Ada Band, Tide. A Rock track from the album Waves (2021)."
        assert t.caption_source == "metadata" and t.tags["album"] == "Waves" and t.bpm is None
        assert (tmp_path / "out" / "song" / f"song_{t.index:04d}.txt").read_text() == t.caption + "\n"
    record = json.loads((tmp_path / "out" / "song" / "captions_metadata.json").read_text())
    assert record["caption_source"] == "metadata" and len(record["tiles"]) == res.n_tiles


def test_metadata_captioner_without_tags_gives_tempo_only(tmp_path):
    sr = 22050
    beat = np.zeros(int(6 * sr), np.float32)
    burst = np.hanning(400).astype(np.float32)
    for t in np.arange(0, 6, 0.5):                  # clicks at 120 BPM
        beat[int(t * sr):int(t * sr) + 400] += burst
    src = write(tmp_path / "plain.wav", beat, sr)
    params = CodecParams(size=1024, sample_rate=sr)   # one 23.8 s tile: long enough for a tempo
    res = C.caption_songs(MetadataCaptioner(), src, tmp_path / "o", params=params,
                          progress=False).results[0]
    (tile,) = res.tiles
    assert tile.caption.startswith("plain. A track. ") and tile.caption.endswith(" BPM.")
    assert abs(tile.bpm - 120) <= 3 and tile.tags["artist"] == ""
    no_tempo = C.caption_songs(MetadataCaptioner(tempo=False), src, tmp_path / "o2", params=params,
                               progress=False).results[0]
    assert no_tempo.tiles[0].caption == "plain. A track."


def test_metadata_caption_text():
    assert metadata_caption({"genre": "Ambient", "year": "1999-01-02"}, prefix="X. ", bpm=88.4) \
        == "X. An Ambient track (1999). 88 BPM."
    assert metadata_caption({"album": "B"}, bpm=0) == "A track from the album B."


def test_the_three_captioners_share_one_interface(tmp_path):
    """MuQ and Qwen (tiny local models, the real loading path) and metadata: one caption per tile."""
    src = tagged(tmp_path / "s.ogg", "OGG", seconds=2.0, **TAGS)
    encode_batch(src, tmp_path / "t", params=P, progress=False).raise_if_failed()
    spans = json.loads((tmp_path / "t" / "s" / "manifest.json").read_text())["tiles"]
    names = {}
    for name in C.CAPTIONERS:
        options = {"max_new_tokens": 3} if name == "qwen" else {}
        cap = C.make_captioner(name, device="cpu", **options) if name != "metadata" \
            else C.make_captioner(name)
        assert isinstance(cap, C.Captioner) and cap.name == name
        res = C.caption_songs(cap, src, tmp_path / "t", progress=False).results[0]
        assert [(t.start, t.end) for t in res.tiles] == [(s["start"], s["end"]) for s in spans]
        assert res.from_manifest and {t.caption_source for t in res.tiles} == {name}
        assert all(t.caption.startswith("style of Ada Band, Tide. ") for t in res.tiles)
        names[name] = sorted(p.name for p in (tmp_path / "t" / "s").glob("s_0000*.txt"))
        # the second run is skipped without loading anything again
        again = C.caption_songs(cap, src, tmp_path / "t", progress=False).results[0]
        assert again.status == "skipped" and again.texts == res.texts
    # the first captioner takes the plain name, the others write beside it
    assert names["metadata"] == ["s_0000.meta.txt", "s_0000.prose.txt", "s_0000.txt"]


def test_model_is_loaded_once_and_only_when_needed(tmp_path, monkeypatch):
    from wavdiff_utils.captioning.muq import MuQCaptioner
    src = write(tmp_path / "a.wav", music_like(1.0, SR, seed=1), SR)
    cap = MuQCaptioner(device="cpu", text_cache=False)
    assert cap.mulan is None                            # resolved, not loaded
    C.caption_songs(cap, src, tmp_path / "o", params=P, progress=False).raise_if_failed()
    loaded = cap.mulan
    assert loaded is not None
    C.caption_songs(cap, src, tmp_path / "o", params=P, progress=False, overwrite=True)
    assert cap.mulan is loaded
    fresh = MuQCaptioner(device="cpu", text_cache=False)
    monkeypatch.setattr(fresh, "load", lambda: pytest.fail("loaded for an up-to-date song"))
    assert C.caption_songs(fresh, src, tmp_path / "o", params=P, progress=False).results[0].status \
        == "skipped"


@pytest.mark.parametrize("name", ["muq", "qwen"])
def test_missing_weights_fall_back_to_metadata_with_one_line(tmp_path, name):
    cap, notice = C.captioner_or_fallback(name, model=str(tmp_path / "no-such-model"), device="cpu")
    assert cap.name == "metadata"
    assert notice.startswith(f"captions: {name} unavailable, metadata captions instead: ")
    assert "\n" not in notice and "no-such-model" in notice and "hf download" in notice
    assert "--model" in notice
    cap, notice = C.captioner_or_fallback(name, device="cpu")      # the tiny model (conftest)
    assert cap.name == name and notice == ""


def test_pipeline_falls_back_and_every_row_names_its_captioner(tmp_path):
    from wavdiff_utils.jobs.pipeline import run_pipeline
    src = tagged(tmp_path / "x.mp3", "MP3", **TAGS)
    out = tmp_path / "ds"
    res = run_pipeline(src, out, params=P, captioner="muq", model=str(tmp_path / "nope"),
                       workers=1, report=False, progress=False, log=None)
    assert res.ok and res.caption_source == "metadata" and res.caption_notice
    summary = res.summary()
    assert res.caption_notice in summary and "captions: metadata: " in summary
    rows = read_metadata(out)
    assert rows and all(r["caption_source"] == "metadata" and r["text"].startswith("style of Ada Band")
                        for r in rows)
    assert json.loads((out / "wavdiff_batch.json").read_text())["caption_notice"] == res.caption_notice
    # a caption no record claims is "unknown"; a tile without one has no source
    (out / "x" / "x_0000.txt").write_text("hand written\n")
    (out / "x" / "x_0001.txt").unlink()
    rows = {r["tile_index"]: r for r in read_metadata(export_dataset(out).folder)}
    assert (rows[0]["caption_source"], rows[1]["caption_source"], rows[1]["text"]) == ("unknown", "", "")


def test_pipeline_captions_songs_given_by_a_relative_path(tmp_path, monkeypatch):
    from wavdiff_utils.jobs.pipeline import run_pipeline
    tagged(tmp_path / "r.ogg", "OGG", **TAGS)
    monkeypatch.chdir(tmp_path)
    res = run_pipeline("r.ogg", "ds", params=P, captioner="metadata", workers=1, report=False,
                       progress=False, log=None)
    assert res.ok and res.caption_notice == "" and len(res.captions) == 1
    assert res.captions[0]["tiles"] == res.encode.results[0].n_tiles >= 2


def test_results_show_as_markdown_tables(tmp_path):
    src = tagged(tmp_path / "m.ogg", "OGG", artist="A|B", title="T")
    batch = C.caption_songs(MetadataCaptioner(), src, tmp_path / "o", params=P, progress=False)
    song = batch.results[0]
    md = song._repr_markdown_()
    assert md.startswith("**m** (metadata)") and md.count("\n| m | ") == song.n_tiles
    assert "A\\|B" in md and "m_0000.txt" in md                    # a pipe does not break the table
    whole = batch._repr_markdown_()
    assert whole.splitlines()[0].startswith("metadata: 1 song(s) captioned")
    assert whole.count("\n| m | ") == song.n_tiles
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.wav").write_bytes(b"RIFF....")
    failed = C.caption_songs(MetadataCaptioner(), tmp_path / "in", tmp_path / "o", progress=False)
    assert "| FAILED |" in failed._repr_markdown_() and "bad.wav" in failed._repr_markdown_()


def test_naming_and_options_are_checked_by_name(tmp_path):
    src = write(tmp_path / "a.wav", music_like(0.5, SR), SR)
    with pytest.raises(E.BadParameterError, match="naming must be one of .*'meta'.* got 'tags'"):
        C.caption_songs(MetadataCaptioner(), src, tmp_path, naming="tags", progress=False)
    with pytest.raises(E.BadParameterError, match="captioner must be one of muq, qwen, metadata, got 'x'"):
        C.make_captioner("x")


def test_every_error_kind_derives_from_the_base_and_its_builtin():
    from wavdiff_utils.io.audio import AudioError
    from wavdiff_utils.captioning.muq import ModelWeightsMissing
    from wavdiff_utils.jobs.encode import OutputExistsError
    from wavdiff_utils.captioning.qwen import QwenWeightsError, TileTooLongError
    from wavdiff_utils.io.tiles import TileImageError

    for cls, builtin in [(AudioError, ValueError), (TileImageError, ValueError),
                         (OutputExistsError, FileExistsError), (ModelWeightsMissing, FileNotFoundError),
                         (QwenWeightsError, FileNotFoundError), (TileTooLongError, ValueError),
                         (E.BadParameterError, ValueError), (E.OutputConflictError, FileExistsError)]:
        assert issubclass(cls, E.WavdiffError) and issubclass(cls, builtin), cls
    assert str(AudioError("a.wav", "is empty")) == "a.wav: is empty"


ERRORS = [E.BadAudioError("song.mp3: cannot be decoded"),
          E.BadTileError("x_0001.png: is 8-bit"),
          E.WeightsMissingError("MuQ-MuLan weights for model='m' are not available:\n  - m: gone"),
          E.BadParameterError("size must be at least 16 pixels, got 8"),
          E.OutputConflictError("out/s: made with other parameters")]


@pytest.mark.parametrize("exc", ERRORS, ids=lambda e: type(e).__name__)
def test_the_cli_prints_each_error_kind_as_one_line(tmp_path, monkeypatch, capsys, exc):
    import wavdiff_utils.jobs.cli as batch
    from wavdiff_utils.jobs.cli import main

    def fail(*a, **k):
        raise exc
    monkeypatch.setattr(batch, "run_pipeline", fail)
    write(tmp_path / "a.wav", music_like(0.3, SR), SR)
    rc = main(["--input", str(tmp_path / "a.wav"), "--output", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err == f"error: {E.one_line(exc)}\n" and E.one_line(exc).split()[0] in err


def test_the_cli_names_a_folder_without_audio_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    r = subprocess.run([sys.executable, "-m", "wavdiff_utils", "--input", str(tmp_path / "empty"),
                        "--output", str(tmp_path / "o"), "--captioner", "none"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "folder holds no audio files" in r.stderr and str(tmp_path / "empty") in r.stderr


def test_untagged_files_are_titled_by_their_name(tmp_path):
    """A file without tags is captioned with its name as the title, not just 'A track.'."""
    src = write(tmp_path / "01_night-drive.wav", music_like(0.5, SR), SR)
    batch = C.caption_songs(MetadataCaptioner(tempo=False), src, tmp_path / "out",
                            params=CodecParams(size=64), progress=False)
    texts = [t.caption for r in batch.results for t in r.tiles]
    assert texts and all(t.startswith("01 night drive. A track.") for t in texts), texts
    tagged = C.caption_songs(MetadataCaptioner(tempo=False), src, tmp_path / "out2",
                             params=CodecParams(size=64), title="Given", progress=False)
    assert all(t.caption.startswith("Given. ") for r in tagged.results for t in r.tiles)
