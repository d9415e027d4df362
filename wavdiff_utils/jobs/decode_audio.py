"""Writing decoded audio: streamed to a temporary file, renamed onto the final name on success.

Every write goes through :func:`wavdiff_utils.paths.writing`: a full disk, a read-only
folder or a missing permission is one :class:`~wavdiff_utils.errors.UnwritableOutputError`
naming the final audio file, never the temporary one, and nothing partial is left under
the final name.  The audio library (libsndfile) writes through a Python file object here,
so the operating system's own error (``ENOSPC``, ``EROFS``, ``EACCES``) reaches the
message instead of the library's bare "System error".
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ..paths import atomic_path, writing

__all__ = ["NORMALIZED_PEAK", "write_decoded_audio", "level_warnings"]

#: Level ``peak="normalize"`` scales to: -1 dBFS.
NORMALIZED_PEAK = 10 ** (-1 / 20)
#: Frames read per block when the float intermediate is converted.
_BLOCK = 1 << 18


class _Guarded:
    """A binary file handed to the audio library: an OS error is kept (the first one) and
    reported as "nothing written", so the library stops and the caller raises the real error."""

    def __init__(self, fh):
        self._fh = fh
        self.error: OSError | None = None

    def _keep(self, exc: OSError):
        if self.error is None:
            self.error = exc

    def write(self, data) -> int:
        if self.error is not None:
            return 0
        try:
            return self._fh.write(data)
        except OSError as exc:
            self._keep(exc)
            return 0

    def readinto(self, buf) -> int:
        try:
            return self._fh.readinto(buf)
        except OSError as exc:
            self._keep(exc)
            return 0

    def read(self, n: int = -1) -> bytes:
        try:
            return self._fh.read(n)
        except OSError as exc:
            self._keep(exc)
            return b""

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._fh.seek(offset, whence)
        except OSError as exc:
            self._keep(exc)
            return 0

    def tell(self) -> int:
        try:
            return self._fh.tell()
        except OSError as exc:
            self._keep(exc)
            return 0


def _encode(blocks, fh, sample_rate: int, fmt: str, subtype: str | None, channels: int = 1) -> None:
    """Write float ``blocks`` to the open binary file ``fh`` as ``fmt``; an OS error raised."""
    guard = _Guarded(fh)
    try:
        with sf.SoundFile(guard, "w", samplerate=sample_rate, channels=channels, format=fmt,
                          subtype=subtype) as out:
            for b in blocks:
                out.write(b)
                if guard.error is not None:       # full disk: no use encoding the rest
                    break
    except Exception as exc:              # the library's own error, or its check of a short write
        if guard.error is not None:
            raise guard.error from None
        if not isinstance(exc, sf.SoundFileError):
            raise
        text = getattr(exc, "error_string", "") or "unknown reason"
        raise OSError(errno.EIO, f"the {fmt} encoder stopped: {text}") from None
    if guard.error is not None:
        raise guard.error


def _measured(blocks, stats: list):
    """``blocks`` as float32, counting into ``stats``: [peak, samples beyond 1, length] (frames)."""
    for b in blocks:
        b = np.asarray(b, dtype=np.float32)
        if len(b):
            a = np.abs(b)
            stats[0] = max(stats[0], float(a.max()))
            stats[1] += int(np.count_nonzero(a > 1.0))
            stats[2] += len(b)
        yield b


def _scaled(raw, gain: float):
    """The float intermediate ``raw`` (a WAV file object at its start), scaled and limited."""
    guard = _Guarded(raw)
    try:
        with sf.SoundFile(guard) as src:
            for b in src.blocks(blocksize=_BLOCK, dtype="float32"):
                yield np.clip(b * np.float32(gain), -1.0, 1.0)
    except Exception as exc:
        if guard.error is not None:
            raise guard.error from None
        if not isinstance(exc, sf.SoundFileError):
            raise
        text = getattr(exc, "error_string", "") or "unknown reason"
        raise OSError(errno.EIO, f"the decoded audio cannot be read back: {text}") from None
    if guard.error is not None:
        raise guard.error


def _stream(blocks, output: Path, tmp: Path, sample_rate: int, peak: str, channels: int) -> list:
    """Write ``blocks`` to ``tmp`` in ``output``'s format; returns [peak, beyond 1, length]."""
    fmt = output.suffix[1:].upper()
    stats = [0.0, 0, 0]
    with open(tmp, "wb") as fh:
        if fmt == "WAV" and peak == "keep":       # the true values, straight to the file
            _encode(_measured(blocks, stats), fh, sample_rate, "WAV", "FLOAT", channels)
            return stats
        # a float intermediate first (the gain needs the whole file's peak); unnamed, so a
        # killed run leaves nothing behind
        with tempfile.TemporaryFile(dir=output.parent) as raw:
            _encode(_measured(blocks, stats), raw, sample_rate, "WAV", "FLOAT", channels)
            raw.seek(0)
            gain = NORMALIZED_PEAK / stats[0] if peak == "normalize" and stats[0] > 0 else 1.0
            _encode(_scaled(raw, gain), fh, sample_rate, fmt, "FLOAT" if fmt == "WAV" else None,
                    channels)
    return stats


def write_decoded_audio(blocks, output, sample_rate: int, *, peak: str,
                        channels: int = 1) -> tuple[float, int, int]:
    """Stream float ``blocks`` to ``output`` (.wav, .flac or .ogg) atomically.

    Parameters
    ----------
    blocks : iterable of ndarray
        Audio, one block at a time (closed here, whatever happens): 1-D for mono,
        ``(n, channels)`` otherwise (left and right for stereo).
    output : path-like
        The audio file; its folder is created.
    sample_rate : int
        Samples per second.
    peak : {"keep", "limit", "normalize"}
        ``keep`` writes a WAV's true float values (FLAC and Ogg are limited to full
        scale), ``limit`` clips to [-1, 1], ``normalize`` scales the file to -1 dBFS.
    channels : int
        Channels of the file (1: mono blocks; 2: ``(n, 2)`` blocks).

    Returns
    -------
    (peak, samples beyond full scale, length)
        Measured before any limiting, over every channel; the length in frames.

    Raises
    ------
    UnwritableOutputError
        The file or its folder cannot be written (full disk, read-only, no
        permission); the message names ``output``.  Nothing is left under its name
        (an existing file there is kept as it was).
    """
    output = Path(output)
    try:
        with writing(output), atomic_path(output) as tmp:
            top, over, n = _stream(blocks, output, tmp, sample_rate, peak, int(channels))
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:                     # stop the decode feeding a failed write
            close()
    return top, over, n


def level_warnings(reports, peak_abs: float, clipped: int, output: Path, peak: str) -> list:
    """Warnings about tiles and a file beyond full scale, saying what ``peak`` did about it."""
    loud = [r.index for r in reports if r.clipped]
    warn = [f"tile(s) {', '.join(map(str, loud[:8]))}{' ...' if len(loud) > 8 else ''} "
            f"decode beyond full scale"] if loud else []
    if peak_abs > 1.0:
        how = {"limit": "limited to full scale", "normalize": "the file was scaled to -1 dBFS",
               "keep": "kept as float values (pass peak='limit' or 'normalize' to bring them in)"
               if output.suffix.lower() == ".wav" else f"limited to full scale: {output.suffix} "
               "cannot hold them (write .wav to keep them, or pass peak='normalize')"}[peak]
        warn.append(f"decoded audio peaks at {peak_abs:.2f} ({20 * np.log10(peak_abs):+.1f} "
                    f"dBFS): {clipped} sample(s) beyond full scale, {how}")
    return warn
