"""Captioning songs: a caption per tile, in sync with the tiles, resumable.

A :class:`~wavdiff_utils.captioning.Captioner` only says how to caption the tiles of one
song; the rest lives here once: file names and ``naming``, a per-song record that lets a
re-run skip up-to-date songs and never overwrite another captioner's files, failures
collected per song (:func:`caption_songs`), and the model loaded once, only when a song
needs it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import time
import warnings
from dataclasses import fields
from pathlib import Path

from ..io.audio import find_audio_files
from .interface import (Captioner, SongTiles, caption_path, caption_prefix, check_tile_length,
                        song_tiles, tags_from_file, title_from_name, write_caption)
from .registry import CAPTIONER_CLASSES
from .results import CaptionBatch, CaptionResult, TileCaption
from ..errors import BadParameterError, OutputConflictError, WeightsMissingError
from ..codec.params import CodecParams
from ..paths import atomic_path, resolve, song_ids

__all__ = ["caption_song", "caption_songs", "recorded_captions"]

_RECORD_FORMAT = "wavdiff-captions"
_LEGACY_FORMATS = ("wavdiff-captions-muq", "wavdiff-qwen-descriptions")


def recorded_captions(folder) -> dict[str, dict]:
    """Caption file name -> ``{"caption", "caption_source"}`` from every captioner record in ``folder``."""
    out = {}
    for cls in CAPTIONER_CLASSES:
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
                            (title or "").strip() or tags["title"]
                            or (title_from_name(path) if captioner.title_from_file else ""))
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
