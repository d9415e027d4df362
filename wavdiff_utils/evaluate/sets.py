"""The two sides of an evaluation: what a path holds, cut into samples, and their audio.

A side is one of

- a dataset made by the pipeline (a folder with ``metadata.jsonl``; ``split`` picks rows): its
  tiles, their captions (the rows' ``text``) and their sample spans;
- a folder of images (our tiles, or any generator's PNGs; captions from ``<stem>.txt``);
- a folder of audio files, or one file.  Audio is cut into clips of ``clip_seconds``
  (default: the tile length of the codec, 11.9 s for 1024 tiles at 44.1 kHz): a file at least
  that long gives ``floor(length / clip)`` clips from its start, a shorter one is one clip.

Each image is one sample, decoded with this project's decode
(:func:`wavdiff_utils.jobs.decode.decode_batch`, phase ``auto``, each image a clip of its
own); the decode report is kept.  A side of fewer than 2 samples, a folder with nothing to
evaluate, images and audio mixed, or samples at several sample rates stop with one line.
"""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..codec.params import CodecParams
from ..errors import BadAudioError, BadParameterError, BadTileError, MissingInputError
from ..io.audio import AudioStream, audio_info
from ..io.tiles import png_header, read_tile, read_tile_metadata
from ..jobs.decode import IMAGE_EXTENSIONS, DecodeBatch, decode_batch, find_images
from ..paths import AUDIO_EXTENSIONS, display_path, resolve
from .embeddings import MIN_CLIP_SECONDS, WINDOW_SECONDS

__all__ = ["MIN_SAMPLES", "SILENCE_DBFS", "THUMBNAIL", "Sample", "SampleSet", "scan_set",
           "check_rates", "iter_audio", "decode_images", "read_decoded", "magnitude_thumbnail",
           "scratch_folder", "sample_record", "describe_params"]

#: Fewest samples on a side.
MIN_SAMPLES = 2
#: A clip whose peak is below this level (dBFS) is silent.
SILENCE_DBFS = -60.0
#: Edge of the pooled magnitude plane kept per image for the memorization check.
THUMBNAIL = 64
_UNSAFE = re.compile(r"[^\w.\-]+")


@dataclass
class Sample:
    """One sample: an image (one clip once decoded) or a clip of an audio file.

    ``start``/``stop`` are the clip's samples at ``sample_rate`` (audio); ``length`` the real
    samples of a tile when its metadata says (its padding is cut after decoding).
    """

    name: str
    path: Path
    kind: str
    sample_rate: int
    start: int = 0
    stop: int = 0
    caption: str = ""
    tile_size: int = 0
    length: int = 0

    @property
    def safe_name(self) -> str:
        """File-name-safe form of :attr:`name` without its extension (decoded audio is written
        under it): ``songs/x_0003.png`` -> ``songs__x_0003``."""
        name, _, clip = self.name.partition("#")
        stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", name) + (f"_{clip}" if clip else "")
        return _UNSAFE.sub("_", stem.replace("/", "__")).strip("._") or "sample"


@dataclass
class SampleSet:
    """The samples of one side, as found: ``kind`` is ``"images"`` or ``"audio"``."""

    role: str
    root: Path
    kind: str
    samples: list[Sample]
    sample_rate: int
    params: CodecParams | None = None
    source: str = "folder"
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.role} {display_path(self.root)}"

    @property
    def has_captions(self) -> bool:
        return any(s.caption for s in self.samples)

    @property
    def tile_size(self) -> int:
        sizes = {s.tile_size for s in self.samples}
        return sizes.pop() if len(sizes) == 1 else 0

# --------------------------------------------------------------------------- scanning


def _sidecar_caption(path: Path) -> str:
    txt = path.with_suffix(".txt")
    try:
        return txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return ""


def _image_sample(path: Path, root: Path, params: CodecParams, *, caption=None, length=0) -> Sample:
    meta = read_tile_metadata(path) if path.suffix.lower() == ".png" else None
    codec = meta.get("codec") if isinstance(meta, dict) and meta.get("format") == "wavdiff-tile" else None
    rate = int(codec.get("sample_rate", params.sample_rate)) if isinstance(codec, dict) else params.sample_rate
    head = png_header(path) if path.suffix.lower() == ".png" else None
    size = int(codec.get("size", 0)) if isinstance(codec, dict) else int(head["height"]) if head else 0
    if not length and isinstance(codec, dict) and isinstance(meta.get("end"), int):
        length = int(meta["end"]) - int(meta.get("start", 0))
    rel = path.relative_to(root).as_posix() if path != root else path.name
    return Sample(rel, path, "image", rate, caption=_sidecar_caption(path) if caption is None else caption,
                  tile_size=size, length=int(length))


def _dataset_samples(root: Path, split: str | None, params: CodecParams) -> list[Sample]:
    from ..dataset.export import read_metadata

    rows = read_metadata(root)
    if split:
        have = sorted({str(r.get("split", "")) for r in rows})
        rows = [r for r in rows if str(r.get("split", "")) == split]
        if not rows:
            raise BadParameterError(f"{display_path(root)}: no rows of split {split!r} (its splits: "
                                    f"{', '.join(have) or 'none'})")
    out = []
    for r in rows:
        path = root / str(r.get("file_name", ""))
        if not path.is_file():
            raise MissingInputError(f"{display_path(root)}: metadata.jsonl lists "
                                    f"{r.get('file_name')!r}, which does not exist")
        length = int(r.get("end_sample", 0)) - int(r.get("start_sample", 0))
        out.append(_image_sample(path, root, params, caption=str(r.get("text") or ""),
                                 length=max(length, 0)))
    return out


def _audio_samples(files: list[Path], root: Path, clip_seconds: float) -> list[Sample]:
    out = []
    for f in files:
        info = audio_info(f)
        sr, frames = int(info["sample_rate"]), int(info["frames"])
        clip = int(round(clip_seconds * sr))
        rel = f.relative_to(root).as_posix() if f != root else f.name
        caption = _sidecar_caption(f)
        if frames < MIN_CLIP_SECONDS * sr:
            raise BadAudioError(f"{display_path(f)}: {frames / sr:.2f} s long, shorter than the "
                                f"{MIN_CLIP_SECONDS:g} s an embedding needs")
        spans = [(0, frames)] if frames < clip else [(k * clip, (k + 1) * clip) for k in range(frames // clip)]
        for k, (a, b) in enumerate(spans):
            name = rel if len(spans) == 1 else f"{rel}#{k}"
            out.append(Sample(name, f, "audio", sr, a, b, caption))
    return out


def _folder_files(folder: Path) -> tuple[list[Path], list[Path]]:
    images = find_images(folder)
    audio = sorted(f for f in folder.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS
                   and f.is_file() and not any(p.startswith(".") for p in f.relative_to(folder).parts))
    return images, audio


def scan_set(path, role: str, *, split: str | None = None, params: CodecParams | None = None,
             clip_seconds: float | None = None, minimum: int = MIN_SAMPLES) -> SampleSet:
    """The samples at ``path`` (see the module notes).

    Parameters
    ----------
    path : path-like
        A dataset folder, a folder of images or of audio, or one file.
    role : str
        ``"generated"`` or ``"reference"``: named in messages.
    split : str, optional
        For a dataset: only the rows of this split (e.g. ``"validation"``).
    params : CodecParams, optional
        Codec assumed for images without wavdiff metadata (default ``CodecParams()``).
    clip_seconds : float, optional
        Clip length for audio (default: the tile length of ``params``).
    minimum : int
        Fewest samples accepted (one line below it); 0 only counts them.
    """
    params = params or CodecParams()
    root = resolve(path)
    if not root.exists():
        raise MissingInputError(f"{role} {str(path)!r} does not exist")
    clip = float(clip_seconds) if clip_seconds else params.tile_seconds
    if clip < MIN_CLIP_SECONDS:
        raise BadParameterError(f"clip_seconds must be at least {MIN_CLIP_SECONDS:g} s, got {clip:g}")
    source, kind = "folder", "images"
    if root.is_dir() and (root / "metadata.jsonl").is_file():
        samples, source = _dataset_samples(root, split, params), "dataset"
    elif root.is_dir():
        images, audio = _folder_files(root)
        if images and audio:
            raise BadParameterError(f"{role} {display_path(root)}: holds both images ({len(images)}) "
                                    f"and audio files ({len(audio)}); point at a folder of one kind")
        if not images and not audio:
            raise MissingInputError(f"{role} {display_path(root)}: holds no images "
                                    f"({', '.join(IMAGE_EXTENSIONS[:3])}, ...) and no audio files "
                                    f"({', '.join(AUDIO_EXTENSIONS[:4])}, ...): nothing to evaluate")
        kind = "images" if images else "audio"
        samples = ([_image_sample(p, root, params) for p in images] if images
                   else _audio_samples(audio, root, clip))
    else:
        source = "file"
        if root.suffix.lower() in IMAGE_EXTENSIONS:
            samples = [_image_sample(root, root, params)]
        elif root.suffix.lower() in AUDIO_EXTENSIONS:
            samples, kind = _audio_samples([root], root, clip), "audio"
        else:
            raise BadParameterError(f"{role} {display_path(root)}: not an image or audio file")
    rate = _one_rate(samples, role, root)
    notes = []
    full = max((s.length for s in samples), default=0)
    short = [s for s in samples if 0 < s.length < min(WINDOW_SECONDS * s.sample_rate, full)]
    if short:                         # a song's last tile can hold less than a window of audio
        samples = [s for s in samples if s not in short]
        notes.append(f"{role}: {len(short)} tile(s) with less than a window of audio left out (a "
                     f"song's last tile): {', '.join(s.name for s in short[:3])}"
                     f"{', ...' if len(short) > 3 else ''}")
    if len(samples) < minimum:
        hint = ""
        if kind == "audio" and samples:
            hint = (f"; audio is cut into clips of {clip:.2f} s: a shorter "
                    f"clip_seconds (--clip-seconds) makes more")
        raise BadParameterError(f"{role} {display_path(root)}: {len(samples)} sample(s); a "
                                f"distribution needs at least {MIN_SAMPLES} a side (50 for "
                                f"FAD-inf){hint}")
    return SampleSet(role, root, kind, samples, rate, params if kind == "images" else None, source,
                     notes)


def _one_rate(samples: list[Sample], role: str, root: Path) -> int:
    rates: dict[int, list[str]] = {}
    for s in samples:
        rates.setdefault(s.sample_rate, []).append(s.name)
    if len(rates) > 1:
        parts = "; ".join(f"{r} Hz: {', '.join(n[:2])}{', ...' if len(n) > 2 else ''} ({len(n)})"
                          for r, n in sorted(rates.items()))
        raise BadAudioError(f"{role} {display_path(root)}: mixed sample rates ({parts}); resample "
                            f"them to one rate first (or encode the tiles with one codec)")
    return next(iter(rates)) if rates else 0


def check_rates(generated: SampleSet, reference: SampleSet) -> None:
    """Both sides at one sample rate, else one line: the metrics would measure the bandwidth."""
    if generated.sample_rate != reference.sample_rate:
        raise BadAudioError(f"{generated.label} is at {generated.sample_rate} Hz but "
                            f"{reference.label} at {reference.sample_rate} Hz: the distances would "
                            f"measure the difference in bandwidth; make both one rate")

# --------------------------------------------------------------------------- audio


def _clip_stream(path: Path, rate: int, spans: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    """The clips ``spans`` (sorted, in samples) of one file, read block by block."""
    buf, have, k = [], 0, 0
    with AudioStream(path, sample_rate=rate, mono=True) as stream:
        for block in stream:
            buf.append(block)
            have += len(block)
            while k < len(spans) and have >= spans[k][1]:
                joined = np.concatenate(buf)
                offset = have - len(joined)
                a, b = spans[k]
                yield joined[a - offset:b - offset].copy()
                keep = spans[k + 1][0] - offset if k + 1 < len(spans) else len(joined)
                buf, k = [joined[keep:]], k + 1
    while k < len(spans):                     # a file shorter than its header said: what is there
        joined = np.concatenate(buf) if buf else np.zeros(0, np.float32)
        offset = have - len(joined)
        a, b = spans[k]
        yield joined[max(a - offset, 0):max(b - offset, 0)].copy()
        k += 1


def iter_audio(samples: list[Sample]) -> Iterator[tuple[Sample, np.ndarray]]:
    """Each audio sample with its clip (mono float32 at its file's rate), a file read once."""
    by_file: dict[Path, list[Sample]] = {}
    for s in samples:
        by_file.setdefault(s.path, []).append(s)
    for path, group in by_file.items():
        group.sort(key=lambda s: s.start)
        for s, clip in zip(group, _clip_stream(path, group[0].sample_rate,
                                                [(s.start, s.stop) for s in group])):
            yield s, clip

# --------------------------------------------------------------------------- images


def decode_images(samples: list[Sample], folder: Path, *, params: CodecParams, phase: str = "auto",
                  n_iter: int = 64, used: set | None = None) -> tuple[DecodeBatch, dict[str, Path], dict]:
    """Decode each image to ``folder/<safe name>.wav`` (one clip per image, phase ``phase``).

    Returns the merged decode report and, per sample name, the audio written and its
    ``DecodeResult``; images that could not be decoded are in the report's failures.
    ``used`` holds the file names taken so far (shared by calls writing into one folder).
    """
    import soundfile as sf

    batch, written, results = DecodeBatch(), {}, {}
    used = set() if used is None else used
    batch.root = (folder, samples[0].path.parent if samples else folder)
    for s in samples:
        stem, k = s.safe_name, 1
        while stem in used:                           # x.png beside x.jpg
            k += 1
            stem = f"{s.safe_name}_{k}"
        used.add(stem)
        target = folder / f"{stem}.wav"
        one = decode_batch(s.path, target, params=params, phase=phase, n_iter=n_iter, join="none",
                           peak="keep", progress=False)
        batch.results += one.results
        batch.failures += one.failures
        if one.results:
            if s.length:
                y, sr = sf.read(str(target), dtype="float32")
                if len(y) > s.length:                   # the last tile of a song: cut its padding
                    sf.write(str(target), y[:s.length], sr, subtype="FLOAT")
            written[s.name], results[s.name] = target, one.results[0]
    return batch, written, results


def read_decoded(path: Path) -> tuple[np.ndarray, int]:
    """A decoded clip (mono float32) and its rate."""
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=False)
    return (y if y.ndim == 1 else y.mean(axis=1)).astype(np.float32), int(sr)


def magnitude_thumbnail(path: Path) -> np.ndarray | None:
    """The image's 16-bit magnitude plane (red, or grey) averaged down to ``THUMBNAIL`` squared,
    float32; None when the image cannot be read."""
    try:
        tile = read_tile(path, warn=False)
    except (BadTileError, OSError, ValueError):
        return None
    px = tile.pixels
    mag = (px[..., 0] if px.ndim == 3 else px).astype(np.float32)
    h, w = mag.shape
    fh, fw = max(1, h // THUMBNAIL), max(1, w // THUMBNAIL)
    mag = mag[:fh * (h // fh), :fw * (w // fw)]
    pooled = mag.reshape(h // fh, fh, w // fw, fw).mean(axis=(1, 3))
    if pooled.shape != (THUMBNAIL, THUMBNAIL):
        import cv2
        pooled = cv2.resize(pooled, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)
    return pooled.astype(np.float32)


def scratch_folder(parent: Path, prefix: str) -> Path:
    """A fresh hidden folder inside ``parent`` (removed by the caller)."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=parent))


def sample_record(s: Sample) -> dict:
    """JSON-ready description of a sample."""
    return {"name": s.name, "kind": s.kind, "sample_rate": s.sample_rate,
            **({"start": s.start, "stop": s.stop} if s.kind == "audio" else {}),
            **({"caption": s.caption} if s.caption else {})}


def describe_params(params: CodecParams | None) -> str:
    return json.dumps(params.to_dict(), sort_keys=True) if params is not None else ""
