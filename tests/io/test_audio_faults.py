"""Hostile audio input (issue 20, item 8): plain words, and streams that end early.

- a file no decoder here reads (text named ``.mp3``, random bytes) is one line naming
  the file, in plain words: never a library class name (``NoBackendError``,
  ``LibsndfileError``) or a decoder's internals (``psf_fseek``);
- a stream shorter than its header announces (WAV, AIFF, FLAC, MP3 cut short) is
  encoded as far as it decodes, with the warning ``stream ended early: N of M frames
  read (truncated file?)``; an Ogg stream, whose header holds no length, says that its
  end is missing; the warning reaches the song's warnings, the summary and
  ``wavdiff_batch.json``;
- complete files, and WAVs written through a pipe (no length in the header), are not
  warned about.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.audio_fixtures import music_like, write
from wavdiff_utils.codec.params import CodecParams
from wavdiff_utils.errors import BadAudioError, WavdiffError
from wavdiff_utils.io.audio import AudioError, AudioStream, audio_info, load_audio
from wavdiff_utils.jobs.cli import main
from wavdiff_utils.jobs.encode import encode_song
from wavdiff_utils.jobs.pipeline import run_pipeline

P = CodecParams(size=64)
SR = 44100
SMALL = ["--size", "64", "--captioner", "none", "--no-report", "-q", "--workers", "1"]
#: Words that must never reach a user: library class names and decoder internals.
JARGON = ("NoBackendError", "LibsndfileError", "audioread", "libsndfile", "psf_", "Traceback",
          "Error:", "Exception")
EARLY = re.compile(r"stream ended early: (\d+) of (\d+) frames read \(truncated file\?\)")


def plain_one_line(msg: str, path) -> None:
    assert str(path) in msg, msg
    assert "\n" not in msg.strip(), msg
    for word in JARGON:
        assert word not in msg, (word, msg)


def cut(path, fraction: float):
    """``path`` cut to ``fraction`` of its bytes, as an interrupted copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def song(path, seconds: float = 4.0, **kw):
    return write(path, music_like(seconds, SR, seed=5), SR, **kw)


# =========================================================================== not audio

def _text(p):
    p.write_text("Track list\n1. intro\n2. verse\n" * 20, encoding="utf-8")


def _utf8_text(p):
    p.write_text("Liedtext: ünïcödé 歌 🎵 — not music at all\n" * 30, encoding="utf-8")


def _random(p):
    p.write_bytes(np.random.default_rng(1).bytes(6000))


NOT_AUDIO = [("notes.mp3", _text, "it is a text file, not audio"),
             ("lyrics.mp3", _utf8_text, "it is a text file, not audio"),
             ("random.mp3", _random, "no decoder here reads it as audio"),
             ("random.ogg", _random, "no decoder here reads it as audio")]


@pytest.mark.parametrize("name,make,words", NOT_AUDIO, ids=[n[0] for n in NOT_AUDIO])
def test_defect_text_named_mp3_is_named_in_plain_words(tmp_path, name, make, words):
    """Old: ``... libsndfile and NoBackendError from the fallback decoder both refused it``."""
    src = tmp_path / name
    make(src)
    with pytest.raises(AudioError) as info:
        AudioStream(src, sample_rate=SR)
    msg = str(info.value)
    assert words in msg and "cannot be decoded" in msg
    plain_one_line(msg, src)
    assert isinstance(info.value, BadAudioError) and isinstance(info.value, WavdiffError)


@pytest.mark.parametrize("reader", ["audio_info", "load_audio", "encode_song"])
def test_every_reader_refuses_a_text_mp3_in_one_line(tmp_path, reader):
    """``audio_info`` (the progress estimate, the training data check) raised audioread's
    ``NoBackendError`` itself."""
    src = tmp_path / "readme.mp3"
    _text(src)
    out = tmp_path / "out"
    call = {"audio_info": lambda: audio_info(src),
            "load_audio": lambda: load_audio(src, sample_rate=SR),
            "encode_song": lambda: encode_song(src, out, params=P)}[reader]
    with pytest.raises(AudioError) as info:
        call()
    assert "text file" in str(info.value)
    plain_one_line(str(info.value), src)
    assert not out.exists() or not any(out.iterdir())          # nothing partial left


def test_empty_mp3_is_called_empty(tmp_path):
    src = tmp_path / "empty.mp3"
    src.write_bytes(b"")
    with pytest.raises(AudioError) as info:
        AudioStream(src, sample_rate=SR)
    assert "empty file (0 bytes)" in str(info.value)
    plain_one_line(str(info.value), src)


def test_flac_damaged_from_its_first_frame_is_one_plain_line(tmp_path):
    """Garbage after a valid header: libsndfile fails at once ("Internal psf_fseek() failed"
    or an empty message); nothing decodes, so it is an error, in plain words."""
    src = song(tmp_path / "damaged.flac", 1.0)
    data = bytearray(src.read_bytes())
    start = data.find(b"\xff\xf8")                 # the first audio frame's sync code
    assert start > 0
    data[start:] = np.random.default_rng(2).bytes(len(data) - start)
    src.write_bytes(bytes(data))
    with pytest.raises(AudioError) as info:
        load_audio(src, sample_rate=SR)
    assert "cannot be decoded" in str(info.value)
    plain_one_line(str(info.value), src)


# =========================================================================== cut short

@pytest.mark.parametrize("ext,total", [("wav", 4 * SR), ("aiff", 4 * SR), ("flac", 4 * SR),
                                       ("mp3", 4 * SR)])
def test_stream_shorter_than_its_header_warns_n_of_m_frames(tmp_path, ext, total):
    """WAV and AIFF were encoded without a word (libsndfile trims the length to the file);
    a cut FLAC failed with "decoding failed part-way: Internal psf_fseek() failed"."""
    src = cut(song(tmp_path / f"cut.{ext}"), 0.3)
    with AudioStream(src, sample_rate=SR) as stream:
        n = sum(len(b) for b in stream)
    m = EARLY.fullmatch(stream.truncated)
    assert m, stream.truncated
    read, expected = int(m.group(1)), int(m.group(2))
    assert 0 < read < expected and read == stream.frames_read
    assert n == read                                     # no resampling at 44.1 kHz
    if ext != "mp3":                                     # mp3: the length is an estimate
        assert expected == total


def test_cut_flac_encodes_what_decodes_with_the_warning(tmp_path):
    src = cut(song(tmp_path / "cut.flac"), 0.3)
    res = encode_song(src, tmp_path / "out", params=P)
    assert res.status == "encoded" and res.n_tiles >= 1
    assert any(EARLY.fullmatch(w) for w in res.warnings), res.warnings
    again = encode_song(src, tmp_path / "out", params=P)         # a re-run: skipped, same words
    assert again.status == "skipped" and again.warnings == res.warnings


def test_defect_cut_ogg_warns_that_its_end_is_missing(tmp_path):
    """Old: an Ogg Vorbis file cut to 30 % encoded without any warning (libsndfile reports
    the length it finds, and Ogg has no length in its header: only an end-of-stream mark)."""
    src = cut(song(tmp_path / "cut.ogg"), 0.3)
    with AudioStream(src, sample_rate=SR) as stream:
        n = sum(len(b) for b in stream)
    assert n > 0
    assert stream.truncated == (f"stream ended early: {stream.frames_read} frames read, the end "
                                f"of the stream is missing (truncated file?)")


def test_ogg_cut_before_its_first_sound_is_not_called_empty(tmp_path):
    """Old: ``contains no audio samples (empty file)`` for an Ogg file of 4 KB cut short."""
    src = cut(song(tmp_path / "intro.ogg", 1.0), 0.3)
    with pytest.raises(AudioError) as info:
        encode_song(src, tmp_path / "out", params=P)
    msg = str(info.value)
    assert "cut short" in msg and "empty file" not in msg
    plain_one_line(msg, src)


def test_defect_cut_ogg_warning_in_summary_and_batch_json(tmp_path):
    """Through ``run_pipeline``: the song's warnings, the summary and wavdiff_batch.json."""
    d = tmp_path / "in"
    d.mkdir()
    cut(song(d / "cut.ogg"), 0.3)
    _text(d / "notes.mp3")
    out = tmp_path / "out"
    res = run_pipeline(d, out, params=P, captioner="none", workers=1, report=False,
                       progress=False, log=None)
    words = "the end of the stream is missing (truncated file?)"
    [done] = res.encode.results
    assert done.status == "encoded" and any(words in w for w in done.warnings)
    text = res.summary()
    assert re.search(r"warning: +cut \(cut\.ogg\): stream ended early: \d+ frames read, "
                     + re.escape(words), text), text
    record = json.loads((out / "wavdiff_batch.json").read_text())
    [entry] = record["songs"]
    assert any(words in w for w in entry["warnings"])
    [failure] = record["failures"]
    assert "it is a text file, not audio" in failure["message"]
    plain_one_line(failure["message"], d / "notes.mp3")


def test_cli_names_the_text_file_and_warns_of_the_cut_one(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    cut(song(d / "cut.wav"), 0.5)
    _text(d / "notes.mp3")
    assert main(["-i", str(d), "-o", str(tmp_path / "out"), *SMALL]) == 1
    got = capsys.readouterr()
    assert EARLY.search(got.out) and f"{d / 'notes.mp3'}: cannot be decoded: it is a text " \
                                      f"file, not audio" in got.out
    for word in JARGON:
        assert word not in got.out + got.err, word


# --------------------------------------------------------------------------- no false alarms

def _piped_wav(p):
    """A WAV as written to a pipe: RIFF and data sizes left at 0xFFFFFFFF (no length)."""
    song(p, 1.0, subtype="PCM_16")
    data = bytearray(p.read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"
    i = data.find(b"data")
    data[i + 4:i + 8] = b"\xff\xff\xff\xff"
    p.write_bytes(bytes(data))


WHOLE = [("whole.wav", lambda p: song(p, 1.0)), ("whole.aiff", lambda p: song(p, 1.0)),
         ("whole.flac", lambda p: song(p, 1.0)), ("whole.ogg", lambda p: song(p, 1.0)),
         ("stereo.flac", lambda p: write(p, music_like(1.0, SR, seed=1, channels=2), SR)),
         ("piped.wav", _piped_wav)]


@pytest.mark.parametrize("name,make", WHOLE, ids=[w[0] for w in WHOLE])
def test_complete_files_are_not_called_truncated(tmp_path, name, make):
    src = tmp_path / name
    make(src)
    with AudioStream(src, sample_rate=SR) as stream:
        n = sum(len(b) for b in stream)
    assert n == SR and stream.truncated == ""


def test_write_audio_where_a_file_stands_for_the_folder_names_the_path(tmp_path):
    from wavdiff_utils.errors import UnwritableOutputError
    from wavdiff_utils.io.audio import write_audio

    (tmp_path / "blocker").write_text("not a folder")
    target = tmp_path / "blocker" / "out.wav"
    with pytest.raises(UnwritableOutputError, match="blocker/out.wav: cannot be written"):
        write_audio(target, np.zeros(64), sample_rate=44100)


def test_write_audio_on_a_full_disk_leaves_nothing_and_says_so(tmp_path, monkeypatch):
    import errno

    import soundfile

    from wavdiff_utils.errors import UnwritableOutputError
    from wavdiff_utils.io import audio

    def full(path, *a, **k):
        Path(path).write_bytes(b"RIFF")                 # a partial temporary, then ENOSPC
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(soundfile, "write", full)
    with pytest.raises(UnwritableOutputError, match="disk is full"):
        audio.write_audio(tmp_path / "out.wav", np.zeros(64), sample_rate=44100)
    assert list(tmp_path.iterdir()) == []
