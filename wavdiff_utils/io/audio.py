"""Audio input and output: reading (streamed or whole), resampling, writing, finding files.

Reading goes through one streaming path (:class:`AudioStream`), so the encoder,
which streams, and the captioners, which load a whole song, see exactly the
same samples.  Files libsndfile cannot open (m4a, some mp3s) fall back to
``librosa.load``.
"""
from __future__ import annotations

import hashlib
import re
import stat as _stat
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from ..errors import (BadAudioError, BadParameterError, MissingInputError, NonFiniteAudioError,
                      UnreadableAudioError)
from ..paths import AUDIO_EXTENSIONS, atomic_path, writing

__all__ = ["AudioError", "AudioUnreadableError", "AudioNotFiniteError", "AudioStream", "load_audio", "write_audio", "find_audio_files",
           "audio_info"]


class AudioError(BadAudioError):
    """Raised for audio that cannot be used; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class AudioUnreadableError(AudioError, UnreadableAudioError):
    """The file exists but cannot be opened (no permission, a FIFO, a device); not a decode problem."""


class AudioNotFiniteError(AudioError, NonFiniteAudioError):
    """The file decodes to NaN or infinite samples (a broken float WAV, for instance)."""


def _check_readable(path: Path) -> None:
    """Raise :class:`AudioUnreadableError` when ``path`` is not a regular file we may open."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise AudioUnreadableError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not _stat.S_ISREG(mode):
        kind = ("a folder" if _stat.S_ISDIR(mode) else "a FIFO (named pipe)" if _stat.S_ISFIFO(mode)
                else "a device or socket")
        raise AudioUnreadableError(path, f"is {kind}, not a regular file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except PermissionError as exc:
        raise AudioUnreadableError(path, f"cannot be read: permission denied ({exc.strerror}); "
                                         f"check the file's permissions") from None
    except OSError as exc:
        raise AudioUnreadableError(path, f"cannot be read ({exc.strerror or exc})") from None


def _not_audio(path: Path, size: int) -> AudioError:
    """The error for a file no decoder here reads: a text file is called one; anything else
    is damaged, cut short or not audio (no decoder's name: the user cannot act on it)."""
    if size == 0:
        return AudioError(path, "is an empty file (0 bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        head = b""
    if head and b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:       # a character cut at the 4096-byte boundary
            text = head[:exc.start].decode("utf-8") if exc.start > len(head) - 4 else ""
        if text and sum(c.isprintable() or c.isspace() for c in text) >= 0.95 * len(text):
            return AudioError(path, f"cannot be decoded: it is a text file, not audio "
                                    f"({size} bytes)")
    return AudioError(path, f"cannot be decoded: no decoder here reads it as audio (damaged, cut "
                            f"short, or not an audio format; {size} bytes)")


#: What libsndfile's log says of a stream that is shorter than its header announces.
_LOG_FRAMES = re.compile(r"^\s*Frames\s*:\s*(\d+)\s*$", re.M)          # AIFF COMM, FLAC
_LOG_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be \d+\)", re.M)    # WAV, W64, RF64
_LOG_ALIGN = re.compile(r"^\s*Block Align\s*:\s*(\d+)", re.M)
_LOG_NO_END = "lacks an end-of-stream"                                   # Ogg
#: A WAV data size that means "unknown" (a stream written through a pipe), not a length.
_UNKNOWN_SIZE = 0xFFFFFF00
#: Frames re-read at a time after a block failed to decode, to keep what still decodes.
_SALVAGE_BLOCK = 4096


def _header_frames(info: str, frames: int) -> int | None:
    """Frames the file's header announces (libsndfile's log ``info``), at least ``frames``
    (what libsndfile found in the file); None when the header says nothing."""
    declared = [int(m) for m in _LOG_FRAMES.findall(info)]
    data, align = _LOG_DATA.search(info), _LOG_ALIGN.search(info)
    if data and align and int(align.group(1)) > 0 and int(data.group(1)) < _UNKNOWN_SIZE:
        declared.append(int(data.group(1)) // int(align.group(1)))
    best = max([frames, *declared])
    return best if best > 0 else None


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
        raise MissingInputError(f"input {str(p)!r} does not exist")
    exts = tuple(e.lower() for e in extensions)
    if p.is_file():
        if p.suffix.lower() not in exts:
            raise AudioError(p, f"extension {p.suffix or '(none)'!r} is not a known audio type "
                                f"({', '.join(exts)})")
        return [p]
    # special files (FIFOs, broken links) with an audio name are kept, so they are reported
    # as failures instead of vanishing; folders named like audio are searched, not read
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in exts and not f.is_dir()
                   and not f.name.startswith("."))
    if not files:
        raise AudioError(p, f"folder holds no audio files ({', '.join(exts)})")
    return files


def audio_info(path) -> dict:
    """Sample rate, channels, frames and duration of a file, without decoding it all."""
    _check_readable(Path(path))           # a FIFO would block the decoders forever
    try:
        info = sf.info(str(path))
        return {"sample_rate": info.samplerate, "channels": info.channels,
                "frames": info.frames, "duration": info.frames / info.samplerate}
    except Exception:
        import librosa
        try:
            with warnings.catch_warnings():      # audioread's deprecation notes: not for users
                warnings.simplefilter("ignore")
                sr = librosa.get_samplerate(str(path))
                dur = librosa.get_duration(path=str(path))
        except Exception:
            raise _not_audio(Path(path), Path(path).stat().st_size) from None
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
    mid_side : bool
        Yield ``(mid, side)`` pairs of 1-D blocks instead: the mid is exactly the mono
        stream's block, the side is (first - second channel) / 2, resampled on its own
        (zeros for a one-channel file).
    block : int
        Frames read per block at the file's rate.

    Examples
    --------
    >>> for chunk in AudioStream("song.mp3", sample_rate=44100):  # doctest: +SKIP
    ...     print(chunk.shape)
    """

    def __init__(self, path, *, sample_rate: int, mono: bool = True, mid_side: bool = False,
                 block: int = 1 << 18):
        self.path = Path(path)
        if not self.path.exists() and not self.path.is_symlink():
            raise AudioError(self.path, "file does not exist")
        _check_readable(self.path)
        if int(sample_rate) <= 0:
            raise BadParameterError(f"sample_rate must be positive, got {sample_rate!r}")
        self.sample_rate = int(sample_rate)
        self.mono = bool(mono)
        self.mid_side = bool(mid_side)
        self.block = int(block)
        self._sf = None
        self._whole = None
        self._hash = hashlib.sha256()
        #: Frames the file's header announces (None when unknown) and frames actually read.
        self.frames_expected = None
        self.frames_read = 0
        #: Why the stream stopped before its end when its length is unknown, else "".
        self.ended_early = ""
        try:
            self._sf = sf.SoundFile(str(self.path))
            self.source_rate = int(self._sf.samplerate)
            self.channels = int(self._sf.channels)
            info = self._sf.extra_info
            self.frames_expected = _header_frames(info, int(self._sf.frames))
            if _LOG_NO_END in info:
                self.ended_early = "the end of the stream is missing"
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
        except Exception:
            raise _not_audio(self.path, self.path.stat().st_size) from None
        y = np.asarray(y, dtype=np.float32)
        y = y[None, :] if y.ndim == 1 else y
        return y.T.copy(), int(sr), y.shape[0]

    def _raw_blocks(self) -> Iterator[np.ndarray]:
        if self._whole is not None:
            for i in range(0, len(self._whole), self.block):
                yield self._whole[i:i + self.block]
            return
        damaged = "cannot be decoded: the file is damaged or cut short"
        if not self._seek(0):
            raise AudioError(self.path, damaged)
        pos, block = 0, self.block
        while True:
            try:
                data = self._sf.read(block, dtype="float32", always_2d=True)
            except Exception:       # libsndfile's error: damaged or cut short from here on
                if block > _SALVAGE_BLOCK and self._seek(pos):
                    block = _SALVAGE_BLOCK      # the failed block again, in small steps
                    continue
                if pos == 0:
                    raise AudioError(self.path, damaged) from None
                self.ended_early = "the rest cannot be decoded"
                return
            if len(data) == 0:
                break
            pos += len(data)
            yield data

    def _seek(self, frame: int) -> bool:
        try:
            self._sf.seek(frame)
            return True
        except Exception:
            return False

    def _checked_blocks(self) -> Iterator[np.ndarray]:
        """Raw blocks, hashed and checked for NaN/Inf as they pass (no extra pass over the file)."""
        for data in self._raw_blocks():
            if not np.isfinite(data).all():
                bad = int(np.flatnonzero(~np.isfinite(data).all(axis=1))[0]) + self.frames_read
                raise AudioNotFiniteError(self.path, f"holds NaN or infinite samples (first at "
                                                     f"frame {bad}, {bad / self.source_rate:.3f} s); "
                                                     f"the file is damaged")
            self._hash.update(np.ascontiguousarray(data).tobytes())
            self.frames_read += len(data)
            yield data
        if not self.frames_read and self.ended_early:
            raise AudioError(self.path, "cannot be decoded: the file is cut short before its "
                                        "first sound (stream ended early)")

    @property
    def content_hash(self) -> str:
        """SHA-256 of the decoded samples read so far (the whole file once iterated)."""
        return self._hash.hexdigest()

    @property
    def truncated(self) -> str:
        """A warning when fewer frames were read than the header announced, else ``""``."""
        if self.frames_expected and self.frames_read < self.frames_expected:
            return (f"stream ended early: {self.frames_read} of {self.frames_expected} frames "
                    f"read (truncated file?)")
        if self.ended_early:                  # no length to compare with (Ogg has none)
            return (f"stream ended early: {self.frames_read} frames read, {self.ended_early} "
                    f"(truncated file?)")
        return ""

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.mid_side:
            yield from self._mid_side_blocks()
            return
        resampler = None
        if self.source_rate != self.sample_rate:
            import soxr
            ch = 1 if self.mono else self.channels
            resampler = soxr.ResampleStream(self.source_rate, self.sample_rate, ch,
                                            dtype="float32", quality="HQ")
        pending = None
        for data in self._checked_blocks():
            x = _mix(data) if self.mono else data
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

    def _mid_side_blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(mid, side)`` blocks: each channel mixed at the file's rate, then resampled by a
        one-channel resampler of its own (so the mid is the mono stream, bit for bit)."""
        pair = None
        if self.source_rate != self.sample_rate:
            import soxr
            pair = [soxr.ResampleStream(self.source_rate, self.sample_rate, 1, dtype="float32",
                                        quality="HQ") for _ in range(2)]
        pending = None
        for data in self._checked_blocks():
            mid = _mix(data)
            side = ((data[:, 0] - data[:, 1]) * np.float32(0.5) if data.shape[1] > 1
                    else np.zeros(len(data), np.float32))
            if pair is None:
                yield np.ascontiguousarray(mid), np.ascontiguousarray(side)
                continue
            if pending is not None:        # hold one block back: the last is flagged last=True
                out = tuple(r.resample_chunk(x, last=False) for r, x in zip(pair, pending))
                if len(out[0]):
                    yield out
            pending = (mid, side)
        if pair is not None:
            tail = pending if pending is not None else (np.zeros(0, np.float32),) * 2
            out = tuple(r.resample_chunk(x, last=True) for r, x in zip(pair, tail))
            if len(out[0]):
                yield out

    def close(self):
        if self._sf is not None:
            self._sf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _mix(data: np.ndarray) -> np.ndarray:
    """Mono mix of ``(frames, channels)`` float32: the channels' mean, bit for bit as
    ``data.mean(axis=1)``, without numpy's slow reduction along the short axis (9 ms -> 1 ms
    per 12 s of stereo)."""
    if data.shape[1] == 1:
        return data[:, 0].copy()
    if data.shape[1] == 2:
        x = data[:, 0] + data[:, 1]
        x *= np.float32(0.5)
        return x
    return data.mean(axis=1, dtype=np.float32)


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

    Raises
    ------
    UnwritableOutputError
        The file cannot be written (full disk, read-only folder, a file where a folder
        should be); the message names ``path``.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".wav", ".flac", ".ogg"):
        raise BadParameterError(f"cannot write audio to {str(path)!r}: use a .wav, .flac or .ogg name")
    if ext != ".wav":
        subtype = None
    y = np.asarray(y, dtype=np.float32)
    with writing(path), atomic_path(path) as tmp:
        try:
            sf.write(str(tmp), y, int(sample_rate), subtype=subtype, format=ext[1:].upper())
        except sf.LibsndfileError as exc:       # libsndfile's "System error" and the like
            raise OSError(getattr(exc, "code", None), str(exc)) from None
    return path
