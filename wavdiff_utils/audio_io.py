"""Audio input and output: reading (streamed or whole), resampling, writing, finding files.

Reading goes through one streaming path (:class:`AudioStream`), so the encoder,
which streams, and the captioners, which load a whole song, see exactly the
same samples.  Files libsndfile cannot open (m4a, some mp3s) fall back to
``librosa.load``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from .errors import BadAudioError
from .paths import AUDIO_EXTENSIONS, atomic_path

__all__ = ["AudioError", "AudioStream", "load_audio", "write_audio", "find_audio_files",
           "audio_info"]


class AudioError(BadAudioError):
    """Raised for audio that cannot be used; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def find_audio_files(path, *, extensions=AUDIO_EXTENSIONS) -> list[Path]:
    """Audio files at ``path``: the file itself, or every audio file below a folder (recursive, sorted).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    AudioError
        If ``path`` is a folder without audio files, or a file with an unknown extension.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"input {str(p)!r} does not exist")
    exts = tuple(e.lower() for e in extensions)
    if p.is_file():
        if p.suffix.lower() not in exts:
            raise AudioError(p, f"extension {p.suffix or '(none)'!r} is not a known audio type "
                                f"({', '.join(exts)})")
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts
                   and not f.name.startswith("."))
    if not files:
        raise AudioError(p, f"folder holds no audio files ({', '.join(exts)})")
    return files


def audio_info(path) -> dict:
    """Sample rate, channels, frames and duration of a file, without decoding it all."""
    try:
        info = sf.info(str(path))
        return {"sample_rate": info.samplerate, "channels": info.channels,
                "frames": info.frames, "duration": info.frames / info.samplerate}
    except Exception:
        import librosa
        sr = librosa.get_samplerate(str(path))
        dur = librosa.get_duration(path=str(path))
        return {"sample_rate": sr, "channels": None, "frames": int(round(dur * sr)),
                "duration": dur}


class AudioStream:
    """Read a file block by block as float32 at a target sample rate, optionally mixed to mono.

    Memory stays bounded by the block size for anything libsndfile reads
    (wav, flac, ogg, mp3, aiff); other formats are decoded whole by librosa.

    Parameters
    ----------
    path : path-like
        Audio file.
    sample_rate : int
        Target rate; resampled with soxr (high quality) when the file differs.
    mono : bool
        Average the channels (default).  Otherwise blocks are ``(frames, channels)``.
    block : int
        Frames read per block at the file's rate.

    Examples
    --------
    >>> for chunk in AudioStream("song.mp3", sample_rate=44100):  # doctest: +SKIP
    ...     print(chunk.shape)
    """

    def __init__(self, path, *, sample_rate: int, mono: bool = True, block: int = 1 << 18):
        self.path = Path(path)
        if not self.path.exists():
            raise AudioError(self.path, "file does not exist")
        if not self.path.is_file():
            raise AudioError(self.path, "is not a file")
        if int(sample_rate) <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
        self.sample_rate = int(sample_rate)
        self.mono = bool(mono)
        self.block = int(block)
        self._sf = None
        self._whole = None
        try:
            self._sf = sf.SoundFile(str(self.path))
            self.source_rate = int(self._sf.samplerate)
            self.channels = int(self._sf.channels)
        except Exception as exc_sf:  # libsndfile cannot read it: try librosa/audioread
            self._whole, self.source_rate, self.channels = self._load_fallback(exc_sf)
        if self.source_rate <= 0:
            raise AudioError(self.path, f"reports an invalid sample rate {self.source_rate}")

    def _load_fallback(self, exc_sf):
        import librosa
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(self.path), sr=None, mono=False)
        except Exception as exc:
            size = self.path.stat().st_size
            if size == 0:
                raise AudioError(self.path, "is an empty file (0 bytes)") from None
            raise AudioError(self.path, f"cannot be decoded as audio: damaged, or not a supported "
                                        f"format ({size} bytes; libsndfile and "
                                        f"{type(exc).__name__} from the fallback decoder "
                                        f"both refused it)") from None
        y = np.asarray(y, dtype=np.float32)
        y = y[None, :] if y.ndim == 1 else y
        return y.T.copy(), int(sr), y.shape[0]

    def _raw_blocks(self) -> Iterator[np.ndarray]:
        if self._whole is not None:
            for i in range(0, len(self._whole), self.block):
                yield self._whole[i:i + self.block]
            return
        self._sf.seek(0)
        while True:
            try:
                data = self._sf.read(self.block, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(self.path, f"decoding failed part-way: {exc}") from None
            if len(data) == 0:
                break
            yield data

    def __iter__(self) -> Iterator[np.ndarray]:
        resampler = None
        if self.source_rate != self.sample_rate:
            import soxr
            ch = 1 if self.mono else self.channels
            resampler = soxr.ResampleStream(self.source_rate, self.sample_rate, ch,
                                            dtype="float32", quality="HQ")
        pending = None
        for data in self._raw_blocks():
            x = data.mean(axis=1, dtype=np.float32) if self.mono else data
            if resampler is None:
                yield np.ascontiguousarray(x)
                continue
            # hold one block back so the final one can be flagged last=True
            if pending is not None:
                out = resampler.resample_chunk(pending, last=False)
                if len(out):
                    yield out
            pending = x
        if resampler is not None:
            tail = pending if pending is not None else np.zeros((0,) if self.mono else (0, self.channels), np.float32)
            out = resampler.resample_chunk(tail, last=True)
            if len(out):
                yield out

    def close(self):
        if self._sf is not None:
            self._sf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load_audio(path, *, sample_rate: int, mono: bool = True) -> np.ndarray:
    """Load a whole file as float32 at ``sample_rate`` (same samples as the streaming encoder sees).

    Raises
    ------
    AudioError
        If the file is missing, unreadable or holds no samples.
    """
    with AudioStream(path, sample_rate=sample_rate, mono=mono) as stream:
        blocks = list(stream)
    if not blocks:
        raise AudioError(path, "contains no audio samples (empty file)")
    return np.concatenate(blocks, axis=0)


def write_audio(path, y: np.ndarray, *, sample_rate: int, subtype: str = "FLOAT") -> Path:
    """Write audio atomically (temporary file, then rename).

    The format follows the extension (.wav, .flac, .ogg); ``subtype`` defaults
    to 32-bit float for WAV so a round trip is not limited by 16-bit PCM.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".wav", ".flac", ".ogg"):
        raise ValueError(f"cannot write audio to {str(path)!r}: use a .wav, .flac or .ogg name")
    if ext != ".wav":
        subtype = None
    y = np.asarray(y, dtype=np.float32)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), y, int(sample_rate), subtype=subtype, format=ext[1:].upper())
    return path
