"""What a decode makes of images that are not 16-bit RGB tiles of the codec's size.

Resized images
--------------
A model trained on tiles resized to a smaller square (a Stable Diffusion
fine-tune on 512x512 images of 1024x1024 tiles) gives back images of that
smaller size without wavdiff metadata.  Two readings of such an image exist:

- a tile of the codec's size, resized (``resize="auto"``, the default, for any
  smaller square image, or ``resize=512`` for exactly that size, smaller or
  larger): its pixels are brought back to the codec's grid (Lanczos, in the dB
  and cos/sin planes) before the phase is rebuilt, so it lasts as long as a
  codec tile (11.89 s at 1024x1024);
- a tile of its own size (``resize="none"`` with ``size`` set to it): a smaller
  STFT, a quarter of the duration at half the edge (2.97 s at 512x512).

The run says once which reading it took and what the other would give.  An
image that fits neither (under ``auto``: not square, or larger than the codec's
size, which more likely means a wrong ``size``; under ``resize=N``: neither the
codec's size nor N) is refused with one line giving both readings.  Tiles with
wavdiff metadata carry their own size and are never resized.

8-bit and grey images
---------------------
Their warnings carry no file name, so that a batch says each once (the
summary lists the files): 8 bits cap how consistent any audio can be with the
image's magnitude (measured: clean 8-bit tiles of real music decode to
-38.6 dB SC against the 8-bit magnitude, about -83 dB for 16-bit tiles); a
grey image has no phase planes, and the warning names the method that ran
on it and from which start.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..codec.params import CodecParams
from ..errors import BadParameterError, WavdiffError
from ..io.manifest import manifest_params, read_manifest
from ..io.tiles import (CorruptMetadataError, TileImageError, check_tile_metadata,
                        read_tile_metadata)

__all__ = ["RESIZE_MODES", "EIGHT_BIT_CAP_DB", "ResizeReadingError", "check_resize",
           "fit_to_codec", "image_notes", "own_size_params", "codec_for", "sequence_warnings",
           "set_aside_metadata", "wavdiff_metadata"]

#: ``resize`` values besides a size in pixels.
RESIZE_MODES = ("auto", "none")
#: Best consistency (SC, dB) of audio with an 8-bit image's magnitude: clean 8-bit tiles of six
#: real songs decode to -38.6 dB with phase "auto" (-39.3 dB against the true 16-bit magnitude).
EIGHT_BIT_CAP_DB = -39.0


class ResizeReadingError(TileImageError):
    """An image whose size is neither the codec's nor one it is read as resized from; names it."""


def check_resize(value):
    """``resize`` checked: ``"auto"``, ``"none"`` or a size in pixels (an int, or digits)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, str) and value in RESIZE_MODES:
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 16:
        return int(value)
    raise BadParameterError(f"resize must be 'auto', 'none' or an image size in pixels (>= 16), "
                            f"got {value!r}")


def own_size_params(params: CodecParams, size: int) -> CodecParams | None:
    """The codec of a ``size`` x ``size`` tile of its own (the other reading), or None."""
    try:
        if params.layout == "exact":
            hop = max(1, round(params.hop_length * size / params.size))
            return CodecParams(sample_rate=params.sample_rate, size=size,
                               hop_length=min(hop, size), db_min=params.db_min,
                               db_max=params.db_max)
        return CodecParams(sample_rate=params.sample_rate, layout=params.layout, size=size,
                           n_fft=params.n_fft, hop_length=params.hop_length,
                           db_min=params.db_min, db_max=params.db_max)
    except WavdiffError:
        return None


def _own_reading(w: int, h: int, params: CodecParams) -> str:
    """What the image would be as a tile of its own size."""
    own = own_size_params(params, w) if w == h else None
    if own is None:
        return f"no {w}x{h} tile of its own exists (tiles are square, at least 16 pixels)"
    return (f"as a {w}x{h} tile of its own (resize='none', size={w}) {own.tile_seconds:.2f} s "
            f"(STFT n_fft={own.n_fft})")


def _refusal(path, w: int, h: int, params: CodecParams, resize) -> ResizeReadingError:
    """The one line refusing an image that fits no reading ``resize`` allows."""
    S = params.size
    stretched = (f"stretched to {S}x{S} it would be {params.tile_seconds:.2f} s "
                 f"({S / w:.2f}x in time, {S / h:.2f}x in frequency)")
    if resize == "none":
        why = (f"is {w}x{h} pixels; expected {S}x{S} (the codec 'size' parameter); read as a "
               f"{S}x{S} tile resized (resize='auto') it would be {params.tile_seconds:.2f} s, "
               f"{_own_reading(w, h, params)}")
    elif resize == "auto" and w != h:
        why = (f"is {w}x{h} pixels: not square, so neither a {S}x{S} tile nor one resized from "
               f"it (resize='auto' reads square images only); {stretched}, and "
               f"{_own_reading(w, h, params)}; crop or resize it to a square first")
    elif resize == "auto":
        why = (f"is {w}x{h} pixels; expected {S}x{S} (the codec 'size' parameter) or smaller "
               f"(resize='auto' reads smaller square images as resized tiles); as a {S}x{S} "
               f"tile enlarged (resize={w}) it would be {params.tile_seconds:.2f} s, "
               f"{_own_reading(w, h, params)}")
    else:
        why = (f"is {w}x{h} pixels: neither a {S}x{S} tile nor one resized to {resize}x{resize} "
               f"(resize={resize}); as a resized {S}x{S} tile (resize='auto') "
               f"{params.tile_seconds:.2f} s, {_own_reading(w, h, params)}")
    return ResizeReadingError(path, why)


def _resized_note(w: int, h: int, params: CodecParams, resize) -> str:
    """The run's one line about images read as resized tiles: both readings."""
    S = params.size
    return (f"{w}x{h} image(s) without wavdiff metadata read as {S}x{S} tiles resized to "
            f"{w}x{h} (resize={resize!r}): magnitude brought back to {S}x{S} before the phase "
            f"was rebuilt, {params.tile_seconds:.2f} s each; {_own_reading(w, h, params)} each "
            f"(what they are if the model was trained on {w}x{h} tiles)")


def fit_to_codec(pixels: np.ndarray, path, params: CodecParams, resize, *, has_metadata: bool,
                 notes: list) -> np.ndarray:
    """An image's pixels on the codec's ``size`` x ``size`` grid, per the ``resize`` reading.

    Parameters
    ----------
    pixels : ndarray (H, W, 3) or (H, W), uint16
    path : path-like
        Names the image in messages.
    params : CodecParams
        The codec the image is decoded with.
    resize : "auto", "none" or int
        See the module notes (checked by :func:`check_resize`).
    has_metadata : bool
        Tiles with wavdiff metadata must have their codec's size: they are never resized.
    notes : list of str
        Gets the run's line about resized images (once: not added when already there).

    Raises
    ------
    TileImageError
        A tile with metadata of another size, or an image that fits no reading.
    """
    h, w = pixels.shape[:2]
    S = params.size
    if (h, w) == (S, S):
        return pixels
    if has_metadata:
        raise TileImageError(path, f"is {w}x{h} pixels; expected {S}x{S} (the codec 'size' "
                                   f"parameter of its own wavdiff metadata): the tile was resized "
                                   f"or damaged after it was written")
    fits = w < S if resize == "auto" else w == resize
    if resize == "none" or h != w or not fits:
        raise _refusal(path, w, h, params, resize)
    note = _resized_note(w, h, params, resize)
    if note not in notes:
        notes.append(note)
    # measured on real tiles shrunk 1024 -> 512 (area or PIL bicubic) and brought back: the
    # magnitude is -9.2 dB SC from the true one with Lanczos, -9.0 bicubic, -7.3 bilinear
    how = cv2.INTER_LANCZOS4 if S > w else cv2.INTER_AREA
    return cv2.resize(np.ascontiguousarray(pixels), (S, S), interpolation=how)


def image_notes(*, depth: int, grey: bool, asked: str, ran: str) -> list[str]:
    """What a decode says about an 8-bit or grey image: the cost of 8 bits, and for a grey
    image the method that ran on it (``ran``) and from which start, against ``asked``."""
    out = []
    if depth == 8:
        out.append(f"8-bit image(s), scaled to 16 bits: 8 bits cap the consistency of any audio "
                   f"with the image's magnitude at about {EIGHT_BIT_CAP_DB:g} dB SC (16-bit "
                   f"tiles: about -83 dB); write 16-bit PNGs to go beyond it")
    if grey:
        start = {"auto": "phase 'auto': PGHI from the magnitude, then fast Griffin-Lim",
                 "pghi": "phase 'pghi' (as asked): PGHI from the magnitude, then fast Griffin-Lim",
                 "griffinlim": "phase 'griffinlim' (as asked): fast Griffin-Lim from random phase",
                 "fgla": "phase 'fgla' (as asked): fast Griffin-Lim from zero phase, there being "
                         "no image phase to start from (phase 'auto' starts from PGHI and "
                         "usually fits better)",
                 "image": "phase 'image' (as asked): zero phase, one inverse STFT (pass "
                          "phase='auto' to rebuild it)"}[ran]
        swapped = f"phase {asked!r} has no phase planes to use, so " if asked != ran else ""
        out.append(f"grey image(s), read as magnitude only: {swapped}{start}")
    return out


def codec_for(job, metas: list, params: CodecParams | None):
    """Codec parameters, song length (or None) and what was assumed ("" if nothing), for one
    :class:`~wavdiff_utils.jobs.decode.DecodeJob` whose tiles' metadata is ``metas``."""
    manifest = read_manifest(job.folder) if job.folder is not None else None
    if manifest is not None:
        return manifest_params(manifest), manifest["n_samples"], ""
    known = [(t, m) for t, m in zip(job.tiles, metas) if m is not None]
    if known:
        first_path, first = known[0]
        found = CodecParams.from_dict(first["codec"])
        for path, meta in known[1:]:
            if CodecParams.from_dict(meta["codec"]) != found:
                raise TileImageError(path, f"was made with other codec parameters than "
                                           f"{first_path.name} ({found.describe()}); decode "
                                           f"them apart")
        n = None
        if len(known) == len(job.tiles) and metas[-1].get("is_last"):
            n = metas[-1]["end"] - metas[0]["start"]
        return found, n, ""
    params = params or CodecParams()
    return params, None, f"no wavdiff metadata: assumed {params.describe()}"


def sequence_warnings(tiles: list, metas: list) -> list[str]:
    """Signs that the tiles of one sequence do not belong together."""
    out = []
    songs = {(m.get("song"), m.get("source")) for m in metas if m is not None}
    if len(songs) > 1:
        names = ", ".join(sorted(f"{s!r}" for s, _ in songs))
        out.append(f"tiles of {len(songs)} different songs ({names}) were joined in one sequence; "
                   f"expect jumps at their borders")
    idx = [m["tile_index"] for m in metas if m is not None]
    if len(idx) == len(metas) and len(idx) > 1 and any(b != a + 1 for a, b in zip(idx, idx[1:])):
        out.append(f"the tiles' own indices ({idx[0]}..{idx[-1]}) are not consecutive in file-name "
                   f"order; tiles were renamed or reordered")
    return out


def set_aside_metadata(exc: CorruptMetadataError, bad_metadata: str, warn: list) -> None:
    """Corrupt metadata: refused (the message names the option) under ``bad_metadata="error"``,
    else warned about in ``warn`` and ignored (the image decodes as one without metadata)."""
    if bad_metadata == "error":
        raise CorruptMetadataError(exc.path, f"{exc.reason}; pass bad_metadata='defaults' to "
                                             f"decode it as an image without metadata") from None
    warn.append(f"{Path(exc.path).name}: wavdiff metadata is corrupt: {exc.reason}; decoded as "
                f"an image without metadata (bad_metadata='defaults')")


def wavdiff_metadata(path, bad_metadata: str, warn: list) -> dict | None:
    """A tile's wavdiff metadata, checked; None when it has none (or other metadata), or when
    it is corrupt and set aside (:func:`set_aside_metadata`)."""
    try:
        meta = read_tile_metadata(path, strict=True)
        if meta is not None:
            check_tile_metadata(meta, path)
    except CorruptMetadataError as exc:
        meta = set_aside_metadata(exc, bad_metadata, warn)
    return meta if isinstance(meta, dict) and meta.get("format") == "wavdiff-tile" else None
