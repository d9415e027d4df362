"""What both captioners share: which samples each caption covers, where it is written, song tags.

A caption must describe exactly the audio inside its image.  :func:`song_tiles`
finds each tile's sample span the way the encoder did: from the song's
manifest when ``01_encode`` has run, otherwise computed by the same
:func:`wavdiff_utils.tiling.tile_spans` on the same decoded samples.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio_io import load_audio
from .manifest import manifest_params, manifest_spans, read_manifest
from .params import CodecParams
from .paths import atomic_path, song_id
from .tile_io import tile_name
from .tiling import TileSpan, tile_spans

__all__ = ["SongTiles", "song_tiles", "caption_path", "write_caption", "tags_from_file",
           "pick_device", "caption_prefix"]


@dataclass
class SongTiles:
    """A song's audio cut into the spans of its tiles.

    Attributes
    ----------
    song : str
        Song id (tile file prefix).
    source : Path
        Audio file.
    folder : Path
        Where the song's tiles and captions live (``<output>/<song>``).
    params : CodecParams
        Codec parameters the spans come from.
    spans : list of TileSpan
    audio : ndarray
        Mono float32 samples at ``params.sample_rate``.
    from_manifest : bool
        True when the spans were read from ``01_encode``'s manifest.
    """

    song: str
    source: Path
    folder: Path
    params: CodecParams
    spans: list[TileSpan]
    audio: np.ndarray
    from_manifest: bool = False
    extra: dict = field(default_factory=dict)

    def tile_audio(self, index: int) -> np.ndarray:
        """The real samples of tile ``index`` (no padding)."""
        s = self.spans[index]
        return self.audio[s.start:s.end]


def song_tiles(audio_path, output, *, params: CodecParams | None = None,
               song: str | None = None) -> SongTiles:
    """Load a song and find the sample span of each of its tiles.

    Parameters
    ----------
    audio_path : path-like
        The song.
    output : path-like
        Root folder of tiles (``01_encode``'s ``output``) or any folder; the
        song's folder is ``output/<song>``.
    params : CodecParams, optional
        Used when no manifest exists (default :class:`CodecParams()`).  When a
        manifest exists its parameters win, with a warning if they differ.
    song : str, optional
        Song id (the tile folder and file prefix).  Default
        :func:`wavdiff_utils.paths.song_id` of the file name; pass the id
        :func:`wavdiff_utils.pipeline.song_ids` gave the file when several
        input files share a stem, as ``encode_batch`` does.

    Notes
    -----
    Without a manifest, spans are read from the tiles' own PNG metadata when
    the folder holds a complete, numbered set of this song's tiles (e.g. the
    manifest was lost); otherwise they are computed by
    :func:`wavdiff_utils.tiling.tile_spans`.
    """
    audio_path = Path(audio_path)
    song = song or song_id(audio_path)
    folder = Path(output) / song
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None and folder.is_dir():
        manifest = _manifest_from_tiles(folder, song)
    given = params or CodecParams()
    if manifest is not None:
        used = manifest_params(manifest)
        if params is not None and used != params:
            warnings.warn(f"{folder}: tiles were made with {used.describe()}; using those "
                          f"parameters instead of the ones given", stacklevel=2)
        y = load_audio(audio_path, sample_rate=used.sample_rate, mono=True)
        spans = manifest_spans(manifest)
        if len(y) != manifest["n_samples"]:
            raise ValueError(f"{audio_path}: decodes to {len(y)} samples but its tiles in {folder} "
                             f"were made from {manifest['n_samples']}; re-encode the song")
        return SongTiles(song, audio_path, folder, used, spans, y, True)
    y = load_audio(audio_path, sample_rate=given.sample_rate, mono=True)
    spans = tile_spans(len(y), frames_per_tile=given.frames_per_tile, hop_length=given.hop_length)
    return SongTiles(song, audio_path, folder, given, spans, y, False)


def _manifest_from_tiles(folder: Path, song: str) -> dict | None:
    """A minimal manifest rebuilt from the PNG metadata of a song's tiles, or ``None``.

    Only a complete set counts: tiles ``0..n-1`` all present, all carrying the
    same codec parameters, the last one flagged ``is_last``.
    """
    from .tile_io import parse_tile_name, read_tile_metadata

    found = {}
    for p in folder.glob(f"{song}_*.png"):
        parsed = parse_tile_name(p.name)
        if parsed and parsed[0] == song:
            found[parsed[1]] = p
    if not found or sorted(found) != list(range(len(found))):
        return None
    tiles, codec = [], None
    for i in range(len(found)):
        try:
            meta = read_tile_metadata(found[i])
        except Exception:
            return None
        if not meta or "codec" not in meta or (codec is not None and meta["codec"] != codec):
            return None
        codec = meta["codec"]
        tiles.append({k: meta[k] for k in ("start", "end", "stop", "pad")} | {"index": i})
    if not meta.get("is_last"):
        return None
    return {"codec": codec, "tiles": tiles, "n_samples": tiles[-1]["end"]}


def caption_path(folder, song: str, index: int, *, suffix: str = "") -> Path:
    """``folder/<song>_<index:04d><suffix>.txt``, beside the tile with the same stem."""
    return Path(folder) / tile_name(song, index, ext=f"{suffix}.txt")


def write_caption(path, text: str) -> Path:
    """Write one caption atomically (UTF-8, single trailing newline)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text.strip() + "\n", encoding="utf-8")
    return Path(path)


def tags_from_file(path) -> dict:
    """Artist and title from the file's tags (tinytag); empty strings when absent or unreadable."""
    try:
        from tinytag import TinyTag
        tag = TinyTag.get(str(path))
        return {"artist": (tag.artist or "").strip(), "title": (tag.title or "").strip()}
    except Exception:
        return {"artist": "", "title": ""}


def caption_prefix(artist: str = "", title: str = "") -> str:
    """``"style of Artist, Title. "`` style prefix; empty when both are empty."""
    artist, title = (artist or "").strip(), (title or "").strip()
    if artist and title:
        return f"style of {artist}, {title}. "
    if artist:
        return f"style of {artist}. "
    if title:
        return f"{title}. "
    return ""


def pick_device(device: str = "auto") -> str:
    """``"auto"`` picks cuda, then mps, then cpu; anything else is checked and returned."""
    import torch
    device = (device or "auto").strip().lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'mps' or 'cuda[:N]', got {device!r}")
    return device
