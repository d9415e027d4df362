"""Captions from the file's own tags and the tile's tempo: no model, no weights.

Artist, title, album, genre and year come from the audio file's tags
(tinytag: ID3, Vorbis comments, MP4, FLAC, ...); the tempo of each tile from
``librosa.feature.tempo`` on exactly that tile's samples::

    style of Ada, Tide. A Rock track from the album Waves (2021). 120 BPM.

The pipeline uses it when the MuQ or Qwen weights are missing, so a dataset
still gets captions; ``--captioner metadata`` asks for it directly.  The song's
key is left out: essentia (the library that estimates it) is only published
as pre-releases on PyPI and adds 38 MB installed, for an estimate not yet
checked on real music tiles.
"""
from __future__ import annotations

import re

import numpy as np

from .results import TileCaption
from .interface import Captioner, tags_from_file
from .tempo import bpm_text, clip_bpm

__all__ = ["MetadataCaptioner", "MIN_TEMPO_SECONDS", "metadata_caption"]

#: Tiles shorter than this (seconds) get no tempo: too few beats to count.
MIN_TEMPO_SECONDS = 2.0


def metadata_caption(tags: dict, *, prefix: str = "", bpm: float | None = None) -> str:
    """``[prefix]A <Genre> track from the album <Album> (<year>). <BPM> BPM.``; parts without a value are left out.

    Examples
    --------
    >>> metadata_caption({"genre": "Rock", "album": "Waves", "year": "2021-05-01"}, bpm=119.6)
    'A Rock track from the album Waves (2021). 120 BPM.'
    >>> metadata_caption({}, prefix="Tide. ")
    'Tide. A track.'
    """
    genre, album = (tags.get("genre") or "").strip(), (tags.get("album") or "").strip()
    year = re.match(r"\s*(\d{4})", str(tags.get("year") or ""))
    text = f"{'An' if genre[:1].lower() in tuple('aeiou') else 'A'} {genre + ' ' if genre else ''}track"
    text += f" from the album {album}" if album else ""
    text += f" ({year.group(1)})." if year else "."
    return f"{prefix}{text} {bpm_text(bpm)}".rstrip()


class MetadataCaptioner(Captioner):
    """Tag-and-tempo captions on the shared interface (:class:`wavdiff_utils.captioning.Captioner`).

    Parameters
    ----------
    tempo : bool
        End each caption with the tile's tempo (tiles of at least
        :data:`MIN_TEMPO_SECONDS` that are not silent).
    """

    name = "metadata"
    label = "the metadata captioner"
    suffix = ".meta"
    record_name = "captions_metadata.json"
    model_name = "file tags (tinytag) + librosa.feature.tempo"
    title_from_file = True

    def __init__(self, *, tempo: bool = True):
        self.tempo = bool(tempo)

    def identity(self) -> dict:
        return {"tempo": self.tempo, "min_tempo_seconds": MIN_TEMPO_SECONDS, "version": 1}

    def caption_tiles(self, tiles, *, prefix: str) -> list[TileCaption]:
        tags = tags_from_file(tiles.source)
        out = []
        for s in tiles.spans:
            y = tiles.tile_audio(s.index)
            bpm = (clip_bpm(y, tiles.params.sample_rate, min_seconds=MIN_TEMPO_SECONDS)
                   if self.tempo else None)
            out.append(TileCaption(s.index, s.start, s.end, metadata_caption(tags, prefix=prefix, bpm=bpm),
                                   bpm=bpm, silent=not np.any(y), tags=tags))
        return out
