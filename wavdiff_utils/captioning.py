"""One interface for every captioner: a caption per tile, in sync with the tiles, resumable.

A :class:`Captioner` only says how to caption the tiles of one song; the rest
lives here once: each tile's sample span (:func:`song_tiles`), file names and
``naming``, a per-song record that lets a re-run skip up-to-date songs and
never overwrite another captioner's files, failures collected per song
(:func:`caption_songs`), and the model loaded once, only when a song needs it.
Adding a captioner is one file: subclass :class:`Captioner`, set ``name`` and
``suffix``, implement ``identity`` and ``caption_tiles`` (and ``load``).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .audio_io import find_audio_files, load_audio
from .errors import BadParameterError, OutputConflictError, WeightsMissingError, one_line
from .manifest import manifest_from_tiles, manifest_params, manifest_spans, read_manifest
from .params import CodecParams
from .paths import atomic_path, resolve, song_id
from .caption_results import CaptionBatch, CaptionResult, TileCaption
from .encoding import song_ids
from .tile_io import tile_name
from .tiling import TileSpan, tile_spans

__all__ = ["CAPTIONERS", "Captioner", "TileCaption", "CaptionResult", "CaptionBatch",
           "SongTiles", "song_tiles", "caption_song", "caption_songs", "make_captioner",
           "caption_path", "write_caption", "tags_from_file", "caption_prefix", "pick_device",
           "check_tile_length", "captioner_or_fallback", "fallback_notice", "recorded_captions"]

#: Captioners :func:`make_captioner` knows, by name (also the ``caption_source`` of their rows).
CAPTIONERS = ("muq", "qwen", "metadata")
_RECORD_FORMAT = "wavdiff-captions"
_LEGACY_FORMATS = ("wavdiff-captions-muq", "wavdiff-qwen-descriptions")


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
    PNG metadata, else from :func:`wavdiff_utils.tiling.tile_spans`.
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

    def caption_tiles(self, tiles: SongTiles, *, prefix: str) -> list[TileCaption]:
        """One :class:`TileCaption` per span of ``tiles``, in order (``path`` left empty)."""
        raise NotImplementedError


def make_captioner(name: str, *, model=None, device: str = "auto", **options) -> Captioner:
    """A captioner by name (one of :data:`CAPTIONERS`).

    ``model`` (hub id or folder) defaults to the captioner's own, which
    ``$WAVDIFF_MUQ_MODEL`` / ``$WAVDIFF_QWEN_MODEL`` replace; ``"metadata"``
    takes neither ``model`` nor ``device``.  ``options`` go to the class.
    Raises :class:`WeightsMissingError` (one line) when the weights are not there.
    """
    if name == "metadata":
        from .metadata_captioner import MetadataCaptioner
        return MetadataCaptioner(**options)
    if name == "muq":
        from .muq_captioner import DEFAULT_MODEL, MuQCaptioner as cls
    elif name == "qwen":
        from .qwen_captioner import DEFAULT_MODEL, QwenCaptioner as cls
    else:
        raise BadParameterError(f"captioner must be one of {', '.join(CAPTIONERS)}, got {name!r}")
    return cls(model or DEFAULT_MODEL, device=device, **options)


def captioner_or_fallback(name: str, *, model=None, device: str = "auto") -> tuple[Captioner, str]:
    """The captioner asked for and ``""``, or the metadata captioner and a one-line notice
    saying why it stands in (missing weights) and how to get the weights."""
    try:
        return make_captioner(name, model=model, device=device), ""
    except (WeightsMissingError, ImportError, RuntimeError) as exc:
        return make_captioner("metadata"), fallback_notice(name, exc)


def fallback_notice(name: str, exc: BaseException) -> str:
    """One line: which captioner could not run, that metadata captions stand in, and why."""
    if isinstance(exc, ImportError) and getattr(exc, "name", None):   # a codec-only install
        why = (f"the {name} extra is not installed (no module {exc.name!r}): "
               f"pip install -e '.[{name}]'")
    else:
        why = one_line(exc)
    return f"captions: {name} unavailable, metadata captions instead: {why}"


def recorded_captions(folder) -> dict[str, dict]:
    """Caption file name -> ``{"caption", "caption_source"}`` from every captioner record in ``folder``."""
    from .metadata_captioner import MetadataCaptioner
    from .muq_captioner import MuQCaptioner
    from .qwen_captioner import QwenCaptioner

    out = {}
    for cls in (MuQCaptioner, QwenCaptioner, MetadataCaptioner):
        rec = _read_record(Path(folder), cls.record_name)
        for t in rec.get("tiles", []):
            out[t["file"]] = {"caption": str(t["caption"]).strip(),
                              "caption_source": rec.get("caption_source") or cls.name}
    return out


# =========================================================================== records

def _read_record(folder: Path, name: str) -> dict:
    """A captioner's record of the song (tile entries as ``file`` + ``caption``), or ``{}``."""
    try:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") not in (_RECORD_FORMAT, *_LEGACY_FORMATS):
        return {}
    for key in ("tiles", "previous", "pending"):              # older records named them otherwise
        data[key] = [{**t, "file": t.get("file") or Path(t.get("path", "")).name,
                      "caption": t.get("caption", t.get("text", ""))} for t in data.get(key, [])]
    return data


def _write_record(folder: Path, name: str, record: dict) -> None:
    with atomic_path(folder / name) as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")


def _mine(path: Path, record: dict, *, current: bool = False) -> bool:
    """True when ``path`` holds a caption this captioner recorded for that file name
    (with ``current``, the caption of its last finished run)."""
    entries = record.get("tiles", []) + ([] if current else record.get("previous", [])
                                         + record.get("pending", []))
    texts = [str(t["caption"]).strip() for t in entries if t["file"] == path.name]
    try:
        return bool(texts) and path.read_text(encoding="utf-8").strip() in texts
    except OSError:
        return False


def _suffix_for(captioner: Captioner, tiles: SongTiles, naming: str, old: dict,
                overwrite: bool) -> str:
    """``""`` or the captioner's suffix, never overwriting another caption unless asked."""
    if naming not in captioner.namings:
        raise BadParameterError(f"naming must be one of {captioner.namings}, got {naming!r}")
    if naming == captioner.namings[2]:
        return captioner.suffix
    plain = [caption_path(tiles.folder, tiles.song, s.index) for s in tiles.spans]
    foreign = [p for p in plain if p.exists() and not _mine(p, old)]
    if not foreign or (naming == "txt" and overwrite):
        return ""
    if naming == "auto":
        return captioner.suffix
    more = "" if len(foreign) == 1 else f" ({len(foreign)} such files)"
    raise OutputConflictError(
        f"{foreign[0]} holds a caption {captioner.name} did not write (another captioner's, or an "
        f"edited file){more}; naming='txt' would overwrite it. Pass overwrite=True to replace "
        f"them, or naming='auto' / {captioner.namings[2]!r} to write "
        f"<song>_<index>{captioner.suffix}.txt beside them")


def _remove_stale(folder: Path, old: dict, keep: set[str]) -> None:
    """Delete files this captioner wrote before that this run did not write again
    (tiles a re-encoded song no longer has, files of a naming no longer used)."""
    for t in old.get("tiles", []) + old.get("previous", []):
        p = folder / Path(t["file"]).name
        if t["file"] and p.name not in keep and p.is_file() and _mine(p, old):
            p.unlink()


# =========================================================================== captioning songs

def caption_song(captioner: Captioner, path, output, *, song: str | None = None,
                 params: CodecParams | None = None, artist: str = "", title: str = "",
                 naming: str = "auto", overwrite: bool = False, resume: bool = True) -> CaptionResult:
    """Caption every tile of one song (see :func:`caption_songs`); ``status="skipped"`` when its
    captions are untouched and were made with the same captioner identity, prefix, tags and spans."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiles = song_tiles(path, output, params=params, song=song)
    notes = [str(w.message) for w in caught]
    check_tile_length(tiles, captioner.max_seconds, who=captioner.label or captioner.name)
    tags = tags_from_file(path)
    prefix = caption_prefix((artist or "").strip() or tags["artist"],
                            (title or "").strip() or tags["title"])
    key_data = {"captioner": captioner.name, "identity": captioner.identity(), "prefix": prefix,
                "tags": tags, "spans": [(s.start, s.end) for s in tiles.spans],
                "codec": tiles.params.to_dict()}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:20]
    old = _read_record(tiles.folder, captioner.record_name)
    suffix = _suffix_for(captioner, tiles, naming, old, overwrite)
    paths = [caption_path(tiles.folder, tiles.song, s.index, suffix=suffix) for s in tiles.spans]
    base = dict(song=tiles.song, source=str(path), output=str(tiles.folder), n_tiles=len(paths),
                n_samples=len(tiles.audio), sample_rate=tiles.params.sample_rate,
                captioner=captioner.name, from_manifest=tiles.from_manifest, prefix=prefix,
                params=tiles.params)
    if (resume and not overwrite and old.get("key") == key and len(old["tiles"]) == len(paths)
            and all(_mine(p, old, current=True) for p in paths)):
        names = {f.name for f in fields(TileCaption)}
        done = [TileCaption(**{k: v for k, v in t.items() if k in names}) for t in old["tiles"]]
        for t, p in zip(done, paths):
            t.path, t.caption_source = str(p), t.caption_source or captioner.name
        for n in notes:
            warnings.warn(n, stacklevel=2)
        return CaptionResult(status="skipped", tiles=done, warnings=notes,
                             seconds=time.perf_counter() - t0, **base)
    captioner.load()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = captioner.caption_tiles(tiles, prefix=prefix)
    notes += [str(w.message) for w in caught]
    for n in notes:
        warnings.warn(n, stacklevel=2)
    if len(made) != len(paths):
        raise RuntimeError(f"{captioner.name} gave {len(made)} captions for {len(paths)} tiles of {path}")
    for t, p in zip(made, paths):
        t.path, t.caption_source = str(p), captioner.name
    record = {"format": _RECORD_FORMAT, "version": 2, "caption_source": captioner.name,
              "key": key, "model": captioner.model_name, "identity": captioner.identity(),
              "song": tiles.song, "source": str(path), "prefix": prefix,
              "codec": tiles.params.to_dict(), "from_manifest": tiles.from_manifest,
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "tiles": [{**t.to_dict(), "file": Path(t.path).name} for t in made]}
    # the record first (old captions kept as "previous", no key: not finished), then the
    # captions: files of an interrupted run are all recognised as this captioner's next time
    earlier = old.get("tiles", []) + old.get("previous", [])
    _write_record(tiles.folder, captioner.record_name, {**record, "key": None, "previous": earlier})
    for t in made:
        write_caption(t.path, t.caption)
    _remove_stale(tiles.folder, old, {p.name for p in paths})
    _write_record(tiles.folder, captioner.record_name, record)
    return CaptionResult(status="captioned", tiles=made, warnings=notes,
                         seconds=time.perf_counter() - t0, **base)


def caption_songs(captioner: Captioner, input, output, *, params: CodecParams | None = None,
                  artist: str = "", title: str = "", naming: str = "auto",
                  overwrite: bool = False, resume: bool = True, only=None, on_song=None,
                  progress: bool = True) -> CaptionBatch:
    """Caption every tile of a file or of every audio file under a folder.

    Parameters
    ----------
    captioner : Captioner
        Made once (e.g. :func:`make_captioner`); its model loads at the first song needing it.
    input, output : path-like
        Audio file or folder (recursive), and the root folder of the tiles:
        captions go to ``output/<song>/``, spans come from the manifest there
        (else are computed with ``params``, default ``CodecParams()``).
    params : CodecParams, optional
    artist, title : str
        Caption prefix ``"style of <artist>, <title>. "``; empty: from each file's tags.
    naming : str
        ``"auto"``: ``<song>_<index>.txt``, or ``<song>_<index><suffix>.txt``
        when another captioner's caption holds that name; ``"txt"``: the plain
        name (refused over another caption unless ``overwrite``); the suffix
        word (``"tags"``, ``"prose"``, ``"meta"``): always the suffix.
    overwrite : bool
        Re-caption up-to-date songs; with ``naming="txt"`` also replace other captions.
    resume : bool
        Skip songs whose captions are up to date.
    only : collection of path-like, optional
        Caption only these files of ``input`` (song ids stay those of all of ``input``).
    on_song : callable, optional
        Called after each song with its :class:`CaptionResult` (``None`` when it failed).
    progress : bool

    Returns
    -------
    CaptionBatch
        Per-song failures are collected, not raised; ``raise_if_failed()`` stops on them.

    Raises
    ------
    WeightsMissingError
        The model cannot be loaded (stops the run; one line says what to download).
    """
    from tqdm.auto import tqdm

    if naming not in captioner.namings:
        raise BadParameterError(f"naming must be one of {captioner.namings}, got {naming!r}")
    files = find_audio_files(resolve(input))
    ids = song_ids(files)
    if only is not None:
        wanted = {Path(f).resolve() for f in only}
        files = [f for f in files if f.resolve() in wanted]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    batch = CaptionBatch(captioner=captioner.name, model=captioner.model_name)
    bar = tqdm(total=len(files), desc=captioner.name, unit="song", disable=not progress)
    try:
        for f in files:
            bar.set_postfix_str(ids[f][:40])
            res = None
            try:
                res = caption_song(captioner, f, output, song=ids[f], params=params, artist=artist,
                                   title=title, naming=naming, overwrite=overwrite, resume=resume)
                batch.results.append(res)
            except WeightsMissingError:
                raise
            except Exception as exc:                 # one bad song never stops the batch
                msg = str(exc)
                batch.failures.append((str(f), msg if str(f) in msg
                                       else f"{f}: {type(exc).__name__}: {msg}"))
            if on_song is not None:
                on_song(res)
            bar.update(1)
    finally:
        bar.close()
    return batch
