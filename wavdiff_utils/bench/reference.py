"""The original recipe the project started from, kept as a reference for timing and contrast.

:func:`reference_encode` and :func:`reference_decode` are a plain, honest
implementation of the *original* recipe: load the whole file with
``librosa.load``, one ``librosa.stft`` of the whole song, cut it into
1025 x 1025 chunks, dB magnitude / cos / sin planes, ``cv2.resize`` to
``size x size`` with Lanczos4, ``cv2.imwrite`` a 16-bit PNG; and back.  It uses
the same dB range as :class:`~wavdiff_utils.codec.params.CodecParams` so fidelity
figures are comparable.  It exists **for timing and contrast only**: it is not
part of the codec, keeps the whole song (and its whole STFT) in memory, and
its tiles carry no metadata.  Only :mod:`wavdiff_utils.bench.throughput` uses it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import BadParameterError, MissingInputError
from ..codec.params import CodecParams

__all__ = ["reference_encode", "reference_decode", "REFERENCE_META"]

#: Side file the reference encoder writes beside its PNGs (song length, STFT settings).
REFERENCE_META = "reference.json"


def _reference_db_settings(n_fft: int) -> tuple[float, float, float]:
    """dB range and full-scale reference of the codec defaults, for this ``n_fft``."""
    p = CodecParams(layout="seed", n_fft=n_fft)
    return p.db_min, p.db_max, p.db_scale


def reference_encode(path, out_dir, *, size: int = 1024, n_fft: int = 2048, hop: int = 512,
                     sr: int = 44100, song: str | None = None) -> list[Path]:
    """Encode a song the original, straightforward way (reference for timing only).

    Loads the whole file (``librosa.load``, mono, resampled to ``sr``), takes one
    ``librosa.stft`` of the whole song (centred frames), cuts it into chunks of
    ``n_fft//2 + 1`` bins x ``n_fft//2 + 1`` frames (the last one zero-padded),
    turns each chunk into three planes - magnitude in dB mapped linearly from
    the codec's default ``[db_min, db_max]`` onto ``[0, 1]``, and ``cos``/``sin`` of
    the phase mapped from ``[-1, 1]`` - resizes each plane to ``size x size``
    with ``cv2.INTER_LANCZOS4`` and writes a 16-bit PNG with ``cv2.imwrite``
    (library default compression), low frequencies at the bottom.

    Not part of the codec: the whole song and its whole STFT are in memory, and
    the Lanczos resize is lossy.  Use :func:`wavdiff_utils.jobs.encode.encode_song`.

    Parameters
    ----------
    path : path-like
        Audio file.
    out_dir : path-like
        Folder for ``<song>_<index:04d>.png`` and ``reference.json`` (created).
    size, n_fft, hop, sr : int
        Tile edge, FFT size, hop and sample rate of the original recipe.
    song : str, optional
        File-name prefix; default the file's stem.

    Returns
    -------
    list of Path
        The PNGs written, in order.
    """
    import cv2
    import librosa

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    song = song or Path(path).stem
    db_min, db_max, db_scale = _reference_db_settings(n_fft)
    y, _ = librosa.load(str(path), sr=sr, mono=True)
    S = librosa.stft(y, n_fft=n_fft, hop_length=hop)
    chunk = n_fft // 2 + 1                      # 1025 frames per tile, as many as bins
    n_chunks = max(1, math.ceil(S.shape[1] / chunk))
    files = []
    for i in range(n_chunks):
        C = S[:, i * chunk:(i + 1) * chunk]
        if C.shape[1] < chunk:
            C = np.pad(C, ((0, 0), (0, chunk - C.shape[1])))
        mag = np.abs(C)
        db = 20.0 * np.log10(np.maximum(mag, 1e-12) / db_scale)
        red = (db - db_min) / (db_max - db_min)
        phase = np.angle(C)
        planes = [red, (np.cos(phase) + 1.0) / 2.0, (np.sin(phase) + 1.0) / 2.0]
        planes = [cv2.resize(p.astype(np.float32), (size, size), interpolation=cv2.INTER_LANCZOS4)
                  for p in planes]
        img = np.stack(planes[::-1], axis=-1)[::-1]          # BGR for OpenCV, low bins at bottom
        img16 = np.round(np.clip(img, 0.0, 1.0) * 65535.0).astype(np.uint16)
        f = out_dir / f"{song}_{i:04d}.png"
        if not cv2.imwrite(str(f), img16):
            raise OSError(f"cv2.imwrite could not write {f}")
        files.append(f)
    meta = {"song": song, "n_samples": int(len(y)), "sr": sr, "n_fft": n_fft, "hop": hop,
            "size": size, "n_tiles": n_chunks}
    (out_dir / REFERENCE_META).write_text(json.dumps(meta), encoding="utf-8")
    return files


def reference_decode(tile_dir, out_wav, *, size: int = 1024, n_fft: int = 2048, hop: int = 512,
                     sr: int = 44100, n_samples: int | None = None) -> Path:
    """Decode :func:`reference_encode` tiles the original way (reference for timing only).

    Reads every PNG (``cv2.imread``), resizes each plane back to
    ``n_fft//2 + 1`` x ``n_fft//2 + 1`` with Lanczos4, rebuilds the complex STFT,
    concatenates all chunks and runs one ``librosa.istft`` of the whole song,
    then writes a 32-bit float WAV (as the codec's decoder does).

    Parameters
    ----------
    tile_dir : path-like
        Folder written by :func:`reference_encode`.
    out_wav : path-like
        WAV file to write.
    n_samples : int, optional
        Song length; default from ``reference.json`` in ``tile_dir`` if present.
    """
    import cv2
    import librosa
    import soundfile as sf

    tile_dir = Path(tile_dir)
    meta_file = tile_dir / REFERENCE_META
    if n_samples is None and meta_file.is_file():
        n_samples = json.loads(meta_file.read_text(encoding="utf-8"))["n_samples"]
    files = sorted(tile_dir.glob("*.png"))
    if not files:
        raise MissingInputError(f"no PNG tiles in {str(tile_dir)!r}")
    db_min, db_max, db_scale = _reference_db_settings(n_fft)
    chunk = n_fft // 2 + 1
    chunks = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if img is None or img.shape != (size, size, 3):
            raise BadParameterError(f"{f}: not a {size}x{size} 3-channel image")
        img = img[::-1].astype(np.float32) / 65535.0
        blue, green, red = (cv2.resize(np.ascontiguousarray(img[..., c]), (chunk, chunk),
                                       interpolation=cv2.INTER_LANCZOS4) for c in range(3))
        red = np.clip(red, 0.0, 1.0)
        mag = db_scale * np.power(10.0, (db_min + red * (db_max - db_min)) / 20.0)
        mag[red <= 0.0] = 0.0
        phase = np.arctan2(blue * 2.0 - 1.0, green * 2.0 - 1.0)
        chunks.append((mag * np.exp(1j * phase)).astype(np.complex64))
    S = np.concatenate(chunks, axis=1)
    y = librosa.istft(S, hop_length=hop, n_fft=n_fft, length=n_samples)
    out_wav = Path(out_wav)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out_wav), y, sr, subtype="FLOAT")
    return out_wav
