"""Tiles back to audio: any folder of images, one file per song or per clip, with a report.

What is decoded as what
-----------------------
- Tiles made by the encoder (``<song>_<index>.png`` with wavdiff metadata, or a
  song folder with ``manifest.json``) are joined into one file per song, the
  padding of the last tile trimmed.  So are tiles that
  :func:`wavdiff_utils.dataset.write_tensor_tiles` wrote (they carry metadata
  with ``generated: true`` and consecutive indices).
- Images without wavdiff metadata (what most generators write, e.g.
  ``sample_0.png``, ``sample_1.png``, ...) are each a clip of their own by
  default (``join="auto"``), decoded with the codec parameters given (the run
  says what it assumed).  ``join="song"`` joins them instead, in natural name
  order (``x_2`` before ``x_10``), one song per folder or ``<song>_<index>``
  prefix; ``join="none"`` makes every image a clip.
- A song with side tiles (``<song>_<index>.side.png``) makes one stereo file, mid and side
  each decoded as below (:mod:`wavdiff_utils.jobs.decode_stereo`).

Phase
-----
``phase="auto"`` (the default) decodes the encoder's own tiles exactly (their
phase planes are the true phase) and sends everything else (generated,
8-bit or grey images) through :mod:`wavdiff_utils.phase.reconstruct`.  Every tile's
method, phase coherence and spectral convergence (the audio's consistency with the
image's own magnitude: not fidelity to any true audio) are in the result.  An image
without metadata whose size is not the codec's is read as a resized tile of the
codec's size (``resize="auto"``; :mod:`wavdiff_utils.jobs.decode_images`).

Level
-----
Rebuilt audio can exceed full scale.  ``peak="keep"`` writes the true values
(32-bit float WAV keeps them; FLAC and Ogg cannot, so they are limited there
with a warning), ``"limit"`` clips to [-1, 1] and ``"normalize"`` scales the
file to a -1 dBFS peak.  Out-of-range audio is always reported.

Damage and faults
-----------------
A tile whose wavdiff metadata is corrupt (not JSON, a field of the wrong type) is
refused, naming the file and the error, unless ``bad_metadata="defaults"`` asks to
decode it as an image without metadata.  Audio is written atomically
(:mod:`wavdiff_utils.jobs.decode_audio`); a full disk, a read-only folder or a missing
permission is one line naming the audio file, listed among :func:`decode_batch`'s failures.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..codec.params import CodecParams
from ..codec.threads import prefetched
from ..codec.transform import pixels_to_stft
from ..errors import BadParameterError, MissingInputError, OutputIsAFileError
from ..io.manifest import MANIFEST_NAME
from ..io.tiles import (CorruptMetadataError, TileImageError, is_side_tile, natural_key,
                        parse_tile_name, read_tile, read_tile_metadata, tile_name)
from ..paths import display_message, display_path
from ..phase.reconstruct import METHODS, PhaseSettings
from ..results import BatchResult, SongResult, failure_lines
from .decode_audio import level_warnings, write_decoded_audio
from .decode_images import (check_resize, codec_for, fit_to_codec, image_notes,
                            sequence_warnings, set_aside_metadata, wavdiff_metadata)
from .decode_stereo import (channel_audio, find_side_tiles, pair_sides, refuse_stray, side_channel,
                            tile_rows, write_stereo)

__all__ = ["DecodeResult", "DecodeBatch", "DecodeJob", "plan_decode", "decode_song", "decode_batch",
           "summary_markdown", "IMAGE_EXTENSIONS", "JOIN_MODES", "PEAK_MODES", "MISSING_MODES",
           "find_images", "DecodeOptions", "BAD_METADATA_MODES"]

#: Files looked at when a folder is decoded (non-PNG ones are reported, not decoded).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
JOIN_MODES = ("auto", "song", "none")
PEAK_MODES = ("keep", "limit", "normalize")
MISSING_MODES = ("error", "silence")
AUDIO_FORMATS = ("wav", "flac", "ogg")
#: What a tile whose metadata is corrupt gets: refused, or decoded as an image without metadata.
BAD_METADATA_MODES = ("error", "defaults")


@dataclass
class DecodeResult(SongResult):
    """One decoded song or clip.

    Attributes (beyond :class:`~wavdiff_utils.jobs.encode.SongResult`)
    ----------------------------------------------------------------
    phase : str
        The method asked for (``auto``, ``image``, ...).
    tiles : list of TileReport
        What the phase step did to each tile.
    peak : float
        Largest absolute sample before any limiting.
    clipped : int
        Samples beyond full scale (before any limiting).
    assumed : str
        The codec parameters used for images without metadata, or "".
    stereo : StereoFigures or None
        A stereo file's channels and width (``peak``, ``clipped``: both channels').
    """

    phase: str = "auto"
    tiles: list = field(default_factory=list)
    peak: float = 0.0
    clipped: int = 0
    assumed: str = ""
    stereo: object = None

    @property
    def peak_dbfs(self) -> float:
        return float(20 * np.log10(self.peak)) if self.peak > 0 else float("-inf")

    def methods(self) -> str:
        """The phase methods used, with tile counts: ``"image x3, fgla (image start) x1"``."""
        counts: dict[str, int] = {}
        for t in self.tiles:
            counts[t.method] = counts.get(t.method, 0) + 1
        return ", ".join(f"{m} x{n}" for m, n in counts.items())


class DecodeBatch(BatchResult):
    """Results of :func:`decode_batch`: songs and clips, failures, and a per-tile report.

    Tables show paths relative to ``root`` (the output folder), so a shared report holds no
    folders of the machine that made it.
    """

    root = None

    def summary(self) -> str:
        n = len([r for r in self.results if r.status != "skipped"])
        lines = [f"{n} file(s) decoded, {len(self.results) - n} already there (skipped), "
                 f"{len(self.failures)} failed"]
        by_text: dict[str, list[str]] = {}
        for r in self.results:
            for w in r.warnings:
                by_text.setdefault(w, []).append(r.song)
        for w, names in by_text.items():         # one line per warning, however many files share it
            who = names[0] if len(names) == 1 else (f"{len(names)} files ({', '.join(names[:3])}"
                                                    f"{', ...' if len(names) > 3 else ''})")
            lines.append(f"  WARNING {who}: {display_message(w, self.root)}")
        return "\n".join(lines + failure_lines([(display_path(p, self.root), display_message(m, self.root))
                                                 for p, m in self.failures]))

    def table(self):
        """One row per decoded file: method(s), coherence, consistency, peak.

        ``consistency dB (worst)`` is the SC of the audio against the image's own magnitude
        (worst tile): how well the audio fits the image, not how close it is to a true song.
        """
        import pandas as pd

        rows = []
        for r in self.results:
            coh = [t.coherence_db for t in r.tiles if t.coherence_db is not None]
            sc = [t.sc_db for t in r.tiles if t.sc_db == t.sc_db]
            rows.append({"file": r.song, "status": r.status, "tiles": r.n_tiles,
                         "seconds": round(r.duration, 2), "phase": r.methods() or r.phase,
                         "coherence dB (worst)": round(max(coh), 1) if coh else None,
                         "consistency dB (worst)": round(max(sc), 1) if sc else None,
                         "peak dBFS": round(r.peak_dbfs, 1) if r.peak else None,
                         "clipped samples": r.clipped, "warnings": len(r.warnings),
                         "output": display_path(r.output, self.root),
                         **(r.stereo.row() if r.stereo is not None else {})})
        rows += [{"file": Path(p).name, "status": "FAILED", "output": display_message(m, self.root)}
                 for p, m in self.failures]
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        """Returned last in a notebook cell: the summary's first line and :meth:`table`."""
        import html

        return (f"<p>{html.escape(self.summary().splitlines()[0])}</p>"
                + self.table().to_html(index=False, na_rep=""))

    def tile_table(self):
        """One row per tile: method chosen, image-phase coherence, and ``consistency_db``: the
        SC of the audio against the image's own magnitude (``TileReport.sc_db``).  Both SC
        columns are float, NaN where not measured (tiles decoded with their exact phase)."""
        import pandas as pd

        df = pd.DataFrame([row for r in self.results for row in tile_rows(r)]
                          ).rename(columns={"sc_db": "consistency_db"})
        sc = [c for c in ("coherence_db", "consistency_db") if c in df.columns]
        df[sc] = df[sc].astype(float)
        return df

# --------------------------------------------------------------------------- planning


@dataclass
class DecodeJob:
    """One output file: its name and the images that make it, in order (None = a missing tile)."""

    name: str
    tiles: list
    folder: Path | None = None          # a song folder with a manifest
    joined: bool = True
    sides: list | None = None           # stereo: each tile's side tile (decode_stereo)
    stray: list = field(default_factory=list)    # side tiles without their mid tile


def find_images(folder) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden files and side tiles skipped), in natural
    order.  Side tiles go with their mid tiles (:func:`plan_decode`)."""
    folder = Path(folder)
    found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
             and not is_side_tile(p)
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder)))


def _has_metadata(path: Path) -> bool:
    try:
        meta = read_tile_metadata(path, strict=True)
    except CorruptMetadataError:
        return True                  # ours, damaged: decoding it says so
    except TileImageError:
        return False                 # unreadable: decoding it says so
    # a wavdiff chunk that is not an object is ours too, so that reading it reports the damage
    return meta is not None and (not isinstance(meta, dict) or meta.get("format") == "wavdiff-tile")


def plan_decode(input, *, join: str = "auto") -> list[DecodeJob]:
    """Which output files ``input`` makes, and from which images.

    Parameters
    ----------
    input : path-like
        One image, a song folder, the encoder's output root, or any folder of images.
    join : {"auto", "song", "none"}
        See the module notes.

    Returns
    -------
    list of DecodeJob
        Output names are unique (a folder prefix is added where two would clash).  Side
        tiles are no jobs of their own: they go with their mid tiles (``sides``), or, without
        one, make their song's job fail (``stray``).
    """
    if join not in JOIN_MODES:
        raise BadParameterError(f"join must be one of {JOIN_MODES}, got {join!r}")
    inp = Path(input)
    if not inp.exists():
        raise MissingInputError(f"input {str(inp)!r} does not exist")
    if inp.is_file():
        parsed = parse_tile_name(inp.name)
        one = [] if is_side_tile(inp) else [DecodeJob(parsed[0] if parsed else inp.stem, [inp],
                                                      joined=False)]
        return one + pair_sides(one, find_side_tiles(inp), make=DecodeJob)
    images, sides = find_images(inp), find_side_tiles(inp)
    if not images and not sides:
        raise TileImageError(inp, "holds no images (.png) to decode")
    groups: dict[tuple, list[tuple[int, Path]]] = {}
    clips: list[Path] = []
    for k, p in enumerate(images):
        parsed = parse_tile_name(p.name)
        ours = p.suffix.lower() == ".png" and join != "none" and _has_metadata(p)
        if ours and parsed:
            groups.setdefault((p.parent, parsed[0]), []).append((parsed[1], p))
        elif join == "song" and p.suffix.lower() == ".png":
            key = (p.parent, parsed[0]) if parsed else (p.parent, None)
            groups.setdefault(key, []).append((parsed[1] if parsed else k, p))
        else:
            clips.append(p)
    jobs = []
    for (parent, song), members in groups.items():
        members.sort(key=lambda m: m[0])
        name = song if song is not None else (parent.name if parent != inp else inp.name)
        folder = parent if (parent / MANIFEST_NAME).is_file() else None
        if song is not None and len(members) > 1:
            have = {i: p for i, p in members}
            tiles = [have.get(i) for i in range(members[0][0], members[-1][0] + 1)]
        else:
            tiles = [p for _, p in members]
        jobs.append(DecodeJob(name, tiles, folder))
    jobs += [DecodeJob(p.stem, [p], joined=False) for p in clips]
    jobs += pair_sides(jobs, sides, make=DecodeJob)
    # unique names: prefix the folder where two outputs would collide
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.name] = counts.get(j.name, 0) + 1
    for j in jobs:
        first = next(t for t in j.tiles if t is not None)
        if counts[j.name] > 1 and first.parent != inp:
            rel = first.parent.relative_to(inp)
            j.name = "__".join(rel.parts + (j.name,))
    seen: dict[str, int] = {}
    for j in jobs:                           # still clashing (x.png next to x.jpg): number them
        if j.name in seen:
            seen[j.name] += 1
            j.name = f"{j.name}__{seen[j.name]}"
        else:
            seen[j.name] = 0
    return jobs

# --------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class DecodeOptions:
    """How every file of a decode is made (see :func:`decode_song`); checked when built."""

    params: CodecParams | None = None
    phase: str = "auto"
    n_iter: int = 64
    missing: str = "error"
    peak: str = "keep"
    settings: PhaseSettings | None = None
    bad_metadata: str = "error"
    resize: str | int = "auto"

    def __post_init__(self):
        for name, ok in (("phase", METHODS), ("peak", PEAK_MODES), ("missing", MISSING_MODES),
                         ("bad_metadata", BAD_METADATA_MODES)):
            if (value := getattr(self, name)) not in ok:
                raise BadParameterError(f"{name} must be one of {ok}, got {value!r}")
        object.__setattr__(self, "resize", check_resize(self.resize))


def decode_song(tiles, output, *, params: CodecParams | None = None, phase: str = "auto",
                n_iter: int = 64, missing: str = "error", song: str | None = None,
                peak: str = "keep", settings: PhaseSettings | None = None,
                bad_metadata: str = "error", resize: str | int = "auto",
                progress=None) -> DecodeResult:
    """Decode the tiles of one song (or one image) into one audio file, written atomically.

    Parameters
    ----------
    tiles : path-like, list of path-like, or DecodeJob
        A song folder, one image, or images in order (``None`` for a missing tile).
    output : path-like
        Audio file to write (.wav, .flac or .ogg).
    params : CodecParams, optional
        For images without wavdiff metadata; tiles with metadata, or a folder
        with a manifest, use their own.
    phase : {"auto", "image", "fgla", "griffinlim", "pghi"}
        See :mod:`wavdiff_utils.phase.reconstruct`.  On grey images (no phase planes) the
        method asked runs, and the warning names it and its start: ``fgla`` from zero
        phase, ``griffinlim`` from random phase, ``pghi`` and ``auto`` from PGHI;
        ``image`` alone, having nothing to use, runs ``auto``.
    n_iter : int
        Most fast Griffin-Lim iterations per tile.
    missing : {"error", "silence"}
        What to do about a gap in the tile numbering.
    song : str, optional
        Name in the result (default from the file names).
    peak : {"keep", "limit", "normalize"}
        What to do with audio beyond full scale (see the module notes).
    settings : PhaseSettings, optional
        Every phase setting; ``phase`` and ``n_iter`` are applied on top.
    bad_metadata : {"error", "defaults"}
        A tile whose wavdiff metadata is corrupt (not JSON, a field of the wrong
        type) is refused, or decoded as an image without metadata (with a warning).
    resize : "auto", "none" or int
        An image without metadata whose size is not the codec's: read as a codec tile
        resized (``auto``: any smaller square; an int: that size only), or refused
        (``none``); the run says which reading it took.  See
        :mod:`wavdiff_utils.jobs.decode_images`.
    progress : callable, optional
        Called with 1 after each tile.

    Returns
    -------
    DecodeResult

    Raises
    ------
    TileImageError
        An image that cannot be used (the message names it), a gap with
        ``missing="error"``, or corrupt metadata with ``bad_metadata="error"``.
    UnwritableOutputError
        ``output`` cannot be written (full disk, read-only, no permission); nothing
        is left under its name.
    """
    opts = DecodeOptions(params=params, phase=phase, n_iter=n_iter, missing=missing, peak=peak,
                         settings=settings, bad_metadata=bad_metadata, resize=resize)
    return _decode_file(tiles, output, opts, song=song, progress=progress)


def _decode_file(tiles, output, opts: DecodeOptions, *, song=None, progress) -> DecodeResult:
    """Decode one job with checked options: the body of :func:`decode_song`."""
    output = Path(output)
    if output.suffix.lower()[1:] not in AUDIO_FORMATS:
        raise BadParameterError(f"output {str(output)!r} must end in .wav, .flac or .ogg")
    t0 = time.perf_counter()
    job = _resolve_job(tiles, song)
    refuse_stray(job)
    song = song or job.name
    first, metas, warn = _read_tiles(job, song, opts)
    params, n_samples, assumed = codec_for(job, metas, opts.params)
    params = params.tile_codec()              # a stereo manifest's: each channel a mono tile's
    warn += ([assumed] if assumed else []) + sequence_warnings(job.tiles, metas)
    own = None not in job.tiles and all(m is not None and not m.get("generated") for m in metas)
    method = "image" if opts.phase == "auto" and own and first.bit_depth == 16 \
        and first.has_phase else opts.phase
    if method == "image" and not first.has_phase:
        method = "auto"                      # nothing to use: said by the grey image's warning
    st = replace(opts.settings or PhaseSettings(), method=method, n_iter=int(opts.n_iter))
    mid = _tile_stfts(job.tiles, params, warn, progress, opts, method)
    if job.sides is None:
        reports, peak_abs, clipped, n_written = _write_song(mid, params, st, output,
                                                            n_samples=n_samples, peak=opts.peak,
                                                            silent_end=not own)
        stereo, loud = None, reports
    else:                                     # checked before any audio is written
        side = side_channel(job, metas, params, opts, warn)
        reports, peak_abs, clipped, n_written, stereo = write_stereo(
            mid, _tile_stfts(side.tiles, side.params, warn, None, opts, side.method), params,
            (st, replace(st, method=side.method)), output, n_samples=n_samples, peak=opts.peak,
            silent_end=not own)
        loud = stereo.level_reports()
    warn += level_warnings(loud, peak_abs, clipped, output, opts.peak)
    return DecodeResult(song, str(first.path.parent), str(output), "decoded", len(job.tiles),
                        n_written, params.sample_rate, time.perf_counter() - t0, warnings=warn,
                        phase=opts.phase, tiles=reports, peak=peak_abs, clipped=clipped,
                        assumed=assumed, stereo=stereo)


def _resolve_job(tiles, song: str | None) -> DecodeJob:
    """The job ``tiles`` names: a DecodeJob as it is, a path planned, or a list of images."""
    if isinstance(tiles, DecodeJob):
        return tiles
    if isinstance(tiles, (str, os.PathLike)):
        jobs = plan_decode(tiles, join="auto")
        if len(jobs) > 1:
            what = f"{len(jobs)} songs or clips ({', '.join(j.name for j in jobs[:4])})"
            raise TileImageError(tiles, f"holds {what}; use decode_batch")
        return jobs[0]
    paths = [Path(t) if t is not None else None for t in tiles]
    if not any(paths):
        raise BadParameterError("no tiles given")
    job = DecodeJob(song or next(p for p in paths if p).stem, paths)
    pair_sides([job], [], make=DecodeJob)           # side tiles beside them: a stereo song
    return job


def _read_tiles(job: DecodeJob, song: str, opts: DecodeOptions) -> tuple:
    """Check gaps and read the first tile and every tile's metadata, before any output:
    (first tile, metadata per tile, warnings about metadata set aside)."""
    real = [t for t in job.tiles if t is not None]
    gaps = [i for i, t in enumerate(job.tiles) if t is None]
    if gaps and opts.missing == "error":
        head = parse_tile_name(real[0].name)
        names = ", ".join(tile_name(head[0], head[1] + i) if head else f"#{i}" for i in gaps[:5])
        raise TileImageError(real[0].parent, f"tile(s) missing from song {song!r}: {names}"
                                             f"{' ...' if len(gaps) > 5 else ''} (pass "
                                             f"missing='silence' to fill them with silence)")
    warn: list[str] = []
    try:
        loaded_first = read_tile(real[0], warn=False)
    except CorruptMetadataError as exc:
        set_aside_metadata(exc, opts.bad_metadata, warn)
        loaded_first = read_tile(real[0], warn=False, bad_metadata="ignore")
    metas = [loaded_first.metadata if t == real[0] else None for t in job.tiles]
    for i, t in enumerate(job.tiles):
        if t is not None and t != real[0]:
            metas[i] = wavdiff_metadata(t, opts.bad_metadata, warn)
    return loaded_first, metas, warn


def _tile_stfts(tiles: list, params: CodecParams, warn: list, progress, opts: DecodeOptions,
                method: str):
    """Yield ``(STFT, has phase)`` per tile, read ahead; silence for a gap; warn once a kind.

    An image without metadata of another size is brought to the codec's (``opts.resize``).
    """
    def loaded():        # runs in the read-ahead thread: file and PNG decode, pixels to STFT
        for t in tiles:
            tile = None if t is None else read_tile(t, warn=False, bad_metadata="ignore")
            if tile is not None:
                tile.pixels = fit_to_codec(tile.pixels, t, params, opts.resize, notes=warn,
                                           has_metadata=tile.metadata is not None)
            yield tile, None if tile is None else pixels_to_stft(tile.pixels, params)

    with prefetched(loaded()) as loaded_tiles:
        for tile, S in loaded_tiles:
            if tile is None:
                yield np.zeros((params.n_fft // 2 + 1, params.frames_per_tile), np.complex64), True
                continue
            for w in image_notes(depth=tile.bit_depth, grey=not tile.has_phase,
                                 asked=opts.phase, ran=method):
                if w not in warn:                # no file names: once per file, grouped per batch
                    warn.append(w)
            if progress:
                progress(1)
            yield S, tile.has_phase


def _write_song(stfts, params: CodecParams, st: PhaseSettings, output: Path, *, n_samples, peak,
                silent_end: bool):
    """Rebuild the phase and stream the audio to ``output``: (reports, peak, clipped, length)."""
    reports: list = []
    blocks = channel_audio(stfts, params, st, n_samples=n_samples, reports=reports,
                           silent_end=silent_end)
    return (reports, *write_decoded_audio(blocks, output, params.sample_rate, peak=peak))


# --------------------------------------------------------------------------- many files


def decode_batch(input, output, *, params: CodecParams | None = None, phase: str = "auto",
                 n_iter: int = 64, join: str = "auto", missing: str = "error", fmt: str = "wav",
                 peak: str = "keep", overwrite: bool = True, settings: PhaseSettings | None = None,
                 bad_metadata: str = "error", resize: str | int = "auto",
                 progress: bool = True) -> DecodeBatch:
    """Decode every song and clip found under ``input`` into ``output/<name>.<fmt>``.

    Parameters
    ----------
    input : path-like
        The encoder's output root, one song folder, any folder of images, or one image.
    output : path-like
        Folder (created); a name ending in .wav/.flac/.ogg names the file when
        ``input`` makes exactly one.
    params, phase, n_iter, missing, peak, settings, bad_metadata, resize
        As in :func:`decode_song`.
    join : {"auto", "song", "none"}
        How images become files (module notes).
    fmt : {"wav", "flac", "ogg"}
        Audio format of the files written into a folder.
    overwrite : bool
        Replace existing outputs (default) or skip them.
    progress : bool
        Show a progress bar over tiles.

    Returns
    -------
    DecodeBatch
        One bad image, or an output that cannot be written (full disk, read-only,
        no permission: the message names the audio file), fails only its own
        file; failures are listed, not raised.
    """
    from tqdm.auto import tqdm

    if fmt not in AUDIO_FORMATS:
        raise BadParameterError(f"fmt must be one of {AUDIO_FORMATS}, got {fmt!r}")
    opts = DecodeOptions(params=params, phase=phase, n_iter=n_iter, missing=missing, peak=peak,
                         settings=settings, bad_metadata=bad_metadata,
                         resize=resize)                                  # before any file is read
    jobs = plan_decode(input, join=join)
    out = Path(output)
    single_file = out.suffix.lower()[1:] in AUDIO_FORMATS
    if not single_file and out.exists() and not out.is_dir():
        raise OutputIsAFileError(f"output {str(out)!r} exists and is a file, not a folder")
    if single_file and len(jobs) > 1:
        raise BadParameterError(f"output {str(out)!r} names one file but {len(jobs)} songs or "
                                f"clips were found under {str(input)!r}; give a folder")
    batch = DecodeBatch()
    inp = Path(input)
    batch.root = (out.parent if single_file else out, inp if inp.is_dir() else inp.parent)
    bar = tqdm(total=sum(len(j.tiles) for j in jobs), desc="decode", unit="tile",
               disable=not progress)
    try:
        for job in jobs:
            target = out if single_file else out / f"{job.name}.{fmt}"
            first = next(t for t in job.tiles if t is not None)
            if target.exists() and not overwrite:
                batch.results.append(DecodeResult(job.name, str(first.parent), str(target),
                                                  "skipped"))
                bar.update(len(job.tiles))
                continue
            try:
                batch.results.append(_decode_file(job, target, opts, progress=bar.update))
            except (TileImageError, ValueError, OSError) as exc:
                where = first.parent if job.joined else first
                batch.failures.append((str(where), str(exc)))
    finally:
        bar.close()
    return batch

# --------------------------------------------------------------------------- reading the results


def summary_markdown(batch: DecodeBatch, output, scores=None) -> str:
    """Short Markdown summary of a decode: files, methods, fit, level warnings, failures."""
    lines = [f"- **{len(batch.results)}** file(s) decoded to `{display_path(output)}`"]
    for r in batch.results:
        sc = [t.sc_db for t in r.tiles if t.sc_db == t.sc_db]
        fit = f", worst tile's consistency with its image {max(sc):.1f} dB SC" if sc else ""
        lines.append(f"- `{r.song}`: {r.methods() or r.phase}{fit}, peak {r.peak_dbfs:+.1f} dBFS"
                     + (f"; {r.stereo.line()}" if r.stereo is not None else ""))
    if scores is not None and "SNR dB" in scores:
        for _, s in scores.dropna(subset=["SNR dB"]).iterrows():
            per = s.get("SNR L dB")                 # stereo: each channel's too
            lines.append(f"- `{s['file']}`: round trip **{s['SNR dB']:.1f} dB SNR**"
                         + (f" (left {per:.1f}, right {s['SNR R dB']:.1f})" if per == per and
                            per is not None else "") + f", LSD {s['LSD dB']:.3f} dB")
    by_text: dict[str, list[str]] = {}
    for r in batch.results:                  # one line per warning, however many files share it
        for w in r.warnings:
            by_text.setdefault(w, []).append(f"`{r.song}`")
    lines += [f"- WARNING {names[0] if len(names) == 1 else f'{len(names)} files'}: "
              f"{display_message(w, batch.root)}" for w, names in by_text.items()]
    lines += [f"- FAILED: {display_message(msg, batch.root)}" for _, msg in batch.failures]
    return "\n".join(lines)
