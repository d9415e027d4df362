"""The captioner interface: what a captioner is given (the tiles of one song, their sample
spans and audio) and what it returns (a caption per tile), plus the small helpers every
captioner shares.  Adding a captioner is one file: subclass :class:`Captioner`, set ``name``
and ``suffix``, implement ``identity`` and ``caption_tiles`` (and ``load``), and name it in
:func:`~wavdiff_utils.captioning.make_captioner`.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.audio import load_audio
from ..errors import BadParameterError
from ..io.manifest import manifest_from_tiles, manifest_params, manifest_spans, read_manifest
from ..codec.params import CodecParams
from ..paths import atomic_path, song_id
from .results import TileCaption
from ..io.tiles import tile_name
from ..codec.tiling import TileSpan, tile_spans

__all__ = ["Captioner", "SongTiles", "song_tiles", "caption_path", "write_caption",
           "tags_from_file", "caption_prefix", "pick_device", "positive_int", "check_tile_length",
           "title_from_name"]

# =========================================================================== tiles of a song

@dataclass
class SongTiles:
    """A song's audio (mono float32 at ``params.sample_rate``) cut into the spans of its tiles,
    which live with their captions in ``folder`` (``<output>/<song>``); ``from_manifest`` says
    the spans come from ``01_encode``'s manifest or tile metadata rather than computed."""

    song: str
    source: Path
    folder: Path
    params: CodecParams
    spans: list[TileSpan]
    audio: np.ndarray
    from_manifest: bool = False

    def tile_audio(self, index: int) -> np.ndarray:
        """The real samples of tile ``index`` (no padding)."""
        s = self.spans[index]
        return self.audio[s.start:s.end]


def song_tiles(audio_path, output, *, params: CodecParams | None = None,
               song: str | None = None) -> SongTiles:
    """Load a song and find the sample span of each of its tiles, as ``01_encode`` made them.

    Parameters
    ----------
    audio_path : path-like
    output : path-like
        Root folder of the tiles; the song's folder is ``output/<song>``.
    params : CodecParams, optional
        Tiling when the song has no manifest (default ``CodecParams()``); a
        manifest's parameters win, with a warning when they differ.
    song : str, optional
        Song id; default :func:`wavdiff_utils.paths.song_id` of the file name.

    Notes
    -----
    Spans come from the manifest, else from a complete set of the song's tiles'
    PNG metadata, else from :func:`wavdiff_utils.codec.tiling.tile_spans`.
    """
    audio_path = Path(audio_path)
    song = song or song_id(audio_path)
    folder = Path(output) / song
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None and folder.is_dir():
        manifest = manifest_from_tiles(folder, song)
    if manifest is None:
        given = params or CodecParams()
        y = load_audio(audio_path, sample_rate=given.sample_rate, mono=True)
        spans = tile_spans(len(y), frames_per_tile=given.frames_per_tile,
                           hop_length=given.hop_length)
        return SongTiles(song, audio_path, folder, given, spans, y, False)
    used = manifest_params(manifest)
    if params is not None and used != params:
        warnings.warn(f"{folder}: tiles were made with {used.describe()}; using those "
                      f"parameters instead of the ones given", stacklevel=2)
    y = load_audio(audio_path, sample_rate=used.sample_rate, mono=True)
    if len(y) != manifest["n_samples"]:
        raise BadParameterError(f"{audio_path}: decodes to {len(y)} samples but its tiles in "
                                f"{folder} were made from {manifest['n_samples']}; re-encode the song")
    return SongTiles(song, audio_path, folder, used, manifest_spans(manifest), y, True)


def check_tile_length(tiles: SongTiles, max_seconds: float | None, *, who: str = "the model") -> None:
    """Refuse (:class:`BadParameterError`, saying what to change) tiles over ``max_seconds``."""
    p = tiles.params
    longest = max((s.n_samples for s in tiles.spans), default=0) / p.sample_rate
    if max_seconds is None or longest <= max_seconds + 1e-9:
        return
    where = "from its manifest" if tiles.from_manifest else "computed"
    raise BadParameterError(
        f"{tiles.source}: its tiles ({where}) last {longest:.2f} s ({p.frames_per_tile} frames x "
        f"hop {p.hop_length} at {p.sample_rate} Hz), but {who} hears at most {max_seconds:g} s "
        f"per clip and silently drops the rest. Tiles over {max_seconds:g} s are refused, not "
        f"split: make them shorter (a smaller size or hop_length, or a higher sample_rate) and "
        f"encode again.")


# =========================================================================== small shared helpers

def caption_path(folder, song: str, index: int, *, suffix: str = "") -> Path:
    """``folder/<song>_<index:04d><suffix>.txt``, beside the tile with the same stem."""
    return Path(folder) / tile_name(song, index, ext=f"{suffix}.txt")


def write_caption(path, text: str) -> Path:
    """Write one caption atomically (UTF-8, single trailing newline)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text.strip() + "\n", encoding="utf-8")
    return Path(path)


def tags_from_file(path) -> dict:
    """Artist, title, album, genre and year from the file's tags (tinytag); ``""`` when absent."""
    keys = ("artist", "title", "album", "genre", "year")
    try:
        from tinytag import TinyTag
        tag = TinyTag.get(str(path))
        return {k: str(getattr(tag, k, None) or "").strip() for k in keys}
    except Exception:
        return dict.fromkeys(keys, "")


def title_from_name(path) -> str:
    """A title for a file without one in its tags: its name, ``_`` and ``-`` read as spaces
    (``01_night-drive.mp3`` -> ``01 night drive``)."""
    return " ".join(re.split(r"[\s_\-]+", Path(path).stem)).strip()


def caption_prefix(artist: str = "", title: str = "") -> str:
    """``"style of Artist, Title. "`` style prefix; empty when both are empty."""
    artist, title = (artist or "").strip(), (title or "").strip()
    if artist:
        return f"style of {artist}, {title}. " if title else f"style of {artist}. "
    return f"{title}. " if title else ""


def pick_device(device: str = "auto") -> str:
    """``"auto"`` picks cuda, then mps, then cpu; anything else is checked and returned."""
    import torch
    device = (device or "auto").strip().lower()
    if device == "auto":
        mps = getattr(torch.backends, "mps", None)
        return ("cuda" if torch.cuda.is_available()
                else "mps" if mps is not None and mps.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadParameterError(f"device={device!r} asked for, but torch sees no CUDA GPU; "
                                f"use 'cpu' or 'auto'")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise BadParameterError(f"device must be 'auto', 'cpu', 'mps' or 'cuda[:N]', got {device!r}")
    return device


def positive_int(name: str, value) -> int:
    """``value`` as an int > 0, else :class:`BadParameterError` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BadParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# =========================================================================== the interface

class Captioner:
    """Base of the captioners: how to caption the tiles of one song.

    A captioner with weights resolves them in its constructor (raising
    :class:`~wavdiff_utils.errors.WeightsMissingError`, one line, when they are
    missing) and loads them in :meth:`load`, called once before the first song
    that needs captioning.
    """

    #: Short name, written as ``caption_source`` in every record and dataset row.
    name = ""
    #: Suffix before ``.txt`` when another captioner's caption holds the plain name.
    suffix = ""
    #: Per-song record file beside the tiles (``captions_<name>.json``).
    record_name = ""
    #: Longest tile it hears whole, in seconds; longer tiles are refused (``None``: no limit).
    max_seconds: float | None = None
    #: Model id or folder the captions come from (for records and summaries).
    model_name = ""
    #: What the captioner is called in messages ("Qwen2-Audio").
    label = ""

    @property
    def namings(self) -> tuple[str, str, str]:
        """``naming`` choices: ``"auto"``, ``"txt"``, and the suffix word (``"tags"``, ``"prose"``)."""
        return ("auto", "txt", self.suffix.lstrip("."))

    def identity(self) -> dict:
        """What the captions depend on besides the audio and the prefix (model, settings)."""
        raise NotImplementedError

    def load(self) -> None:
        """Load the model (called once, before the first song that needs captioning)."""

    #: Whether a file without a title tag is titled by its name in the caption prefix (the
    #: metadata captioner, which says nothing else about the song; a model describes the music).
    title_from_file: bool = False

    def caption_tiles(self, tiles: SongTiles, *, prefix: str) -> list[TileCaption]:
        """One :class:`TileCaption` per span of ``tiles``, in order (``path`` left empty)."""
        raise NotImplementedError
