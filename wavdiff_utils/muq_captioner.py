"""Tag captions from MuQ-MuLan: one caption per tile, describing exactly the audio of that tile.

Each tile's audio (the exact sample span ``01_encode`` gave it, see
:func:`wavdiff_utils.captioning.song_tiles`) is embedded with the MuQ-MuLan
audio tower and compared with text embeddings of prompts built from label
vocabularies: AudioSet genres, moods and instruments, and the MagnaTagATune
top-50 tags as texture descriptors.  Each category is ranked on its own and the
winners are written as a terse caption beside the tile::

    style of Artist. A Sad Rock track featuring Electric Guitar, Drum Kit and Bass Guitar.
    Characterized as loud, metal. 120 BPM.

(on one line), in ``<output>/<song>/<song>_<index:04d>.txt`` (``.tags.txt``
when another tool's caption holds that name, see :data:`NAMINGS`), with a
record of scores and settings in ``<output>/<song>/captions_muq.json``.

Model resolution
----------------
``model`` is a Hugging Face hub id or a local folder.  The default is
:data:`DEFAULT_MODEL` (``"OpenMuQ/MuQ-MuLan-large"``).  **Only when ``model`` is
exactly that default id** and the environment variable ``WAVDIFF_MUQ_MODEL``
(:data:`MODEL_ENV`) is set, the variable's value (a folder or another id) is
used instead; any other ``model`` value ignores the variable.  The test suite
sets it (``conftest.py``) so that notebooks run under nbval/papermill use a
tiny random model while their default parameter stays the real id.

MuQ-MuLan builds its two sub-towers from the names in its ``config.json``
(``audio_model.name``, e.g. ``OpenMuQ/MuQ-large-msd-iter``, and
``text_model.name``, e.g. ``xlm-roberta-base``) *before* loading its own
weights, so those must be available too.  Each tower name is looked up, in
order, as a folder (absolute, or relative to the model folder), as
``<model folder>/<last part of the name>``, in the Hugging Face cache
(``HF_HOME`` / ``HF_HUB_CACHE`` or ``cache_dir``), and on the hub.  A
self-contained local folder therefore looks like::

    MuQ-MuLan-large/
        config.json
        pytorch_model.bin  (or model.safetensors)
        MuQ-large-msd-iter/   config.json, model.safetensors
        xlm-roberta-base/     config.json, model.safetensors, tokenizer files

muq picks a tower's code from its name (``muq`` / ``xlm-roberta`` must appear
in it); tower folders named otherwise are passed through a renamed link.  The
weights of the sub-towers are then overwritten by the MuQ-MuLan checkpoint
itself (loaded last; weights it lacks outside the sub-towers are an error).
Nothing is ever downloaded when the files are in the cache already, and nothing
at all when ``HF_HUB_OFFLINE=1`` or ``local_files_only``.
When something is missing, :class:`ModelWeightsMissing` says in one message
what to download and which parameter to point at it.

Other facts handled here: muq 0.1.0 fails with transformers >= 5.16 (checked
up front); building MuQ reseeds torch's and Python's global random generators
(their states are restored); the model always runs in float32 (float16 is
reported to give NaNs); ``device="auto"`` picks cuda, then mps, then cpu.

Examples
--------
>>> from wavdiff_utils.muq_captioner import caption_songs  # doctest: +SKIP
>>> batch = caption_songs("song.mp3", "outputs/encode",  # doctest: +SKIP
...                       model="models/MuQ-MuLan-large")
>>> print(batch.summary())  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import random
import re
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .audio_io import AudioError, find_audio_files
from .captioning import (caption_path, caption_prefix, pick_device, song_tiles, tags_from_file,
                         write_caption)
from .params import CodecParams
from .pipeline import BatchResult, SongResult, song_ids
from .paths import REPO_ROOT, atomic_path

__all__ = [
    "DEFAULT_MODEL", "MODEL_ENV", "NAMINGS", "TAGS_SUFFIX", "CATEGORIES", "PROMPT_TEMPLATES",
    "ModelWeightsMissing",
    "Label", "Vocabulary", "load_vocabulary", "TagSettings", "MuQMuLanModel", "resolve_model",
    "load_muq_mulan", "text_embeddings", "tile_clips", "select_tags", "format_caption",
    "estimate_bpm", "TileCaption", "CaptionResult", "CaptionBatch", "caption_song",
    "caption_songs", "score_table", "plot_tiles_with_captions", "plot_scores",
]

#: The model used when none is given.
DEFAULT_MODEL = "OpenMuQ/MuQ-MuLan-large"
#: Environment variable that replaces :data:`DEFAULT_MODEL` (and only it).
MODEL_ENV = "WAVDIFF_MUQ_MODEL"
#: Ranked categories, in caption order.
CATEGORIES = ("genre", "mood", "instruments", "descriptors")
#: Per-song record of what was captioned, beside the tiles.
SIDECAR_NAME = "captions_muq.json"
#: ``naming`` choices: ``"auto"`` writes ``<song>_<index>.txt`` unless another
#: tool's caption is there (then ``<song>_<index>.tags.txt``), ``"txt"`` always
#: ``.txt`` (a song whose tiles hold another caption fails unless ``overwrite``),
#: ``"tags"`` always ``.tags.txt``.  The same convention as the Qwen captioner's.
NAMINGS = ("auto", "txt", "tags")
#: Suffix before ``.txt`` of a tag caption written beside another tool's caption.
TAGS_SUFFIX = ".tags"
_SIDECAR_FORMAT = "wavdiff-captions-muq"

DATA_DIR = Path(__file__).resolve().parent / "data"
AUDIOSET_FILE = DATA_DIR / "audioset_music.json"
DESCRIPTORS_FILE = DATA_DIR / "magnatagatune_top50.txt"

#: Prompt templates per category; every label's text embedding is the mean of its
#: prompts.  ``{label}`` is the label as named in its vocabulary (lower case,
#: first alternative, no parentheses), ``{name}`` the caption word in lower case.
PROMPT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "genre": ("{label}", "a {name} song", "this is a {name} track", "music in the style of {name}"),
    "mood": ("{label}", "a {name} song", "this music sounds {name}", "the mood of this track is {name}"),
    "instruments": ("{label}", "the sound of {label}", "a track featuring {label}",
                    "a recording of {label}"),
    "descriptors": ("{label}", "{label} music", "this music is {label}",
                    "a track described as {label}"),
}

_CACHE_FORMAT = 1
_SMALL_WORDS = {"and", "of", "for", "the", "a", "an", "in", "on"}
_TF_BROKEN = (5, 16)          # muq 0.1.0 breaks from this transformers version on


class ModelWeightsMissing(FileNotFoundError):
    """The model, or one of its sub-towers, is not available; the message says what to download."""


# =========================================================================== vocabulary

@dataclass(frozen=True)
class Label:
    """One label of a category.

    Attributes
    ----------
    category : str
        One of :data:`CATEGORIES`.
    name : str
        Official name (AudioSet display name, MagnaTagATune tag), unchanged.
    display : str
        How the label is written in captions.
    prompt : str
        How the label is put into prompt templates.
    """

    category: str
    name: str
    display: str
    prompt: str


@dataclass(frozen=True)
class Vocabulary:
    """Labels per category (see :func:`load_vocabulary`)."""

    labels: Mapping[str, tuple]

    def __post_init__(self):
        missing = [c for c in CATEGORIES if not self.labels.get(c)]
        if missing:
            raise ValueError(f"vocabulary has no labels for categor{'y' if len(missing) == 1 else 'ies'} "
                             f"{', '.join(missing)}")

    def __getitem__(self, category: str) -> tuple:
        return self.labels[category]

    def digest(self) -> str:
        """Hash of every label and its caption/prompt forms (part of the text-embedding cache key)."""
        data = {c: [(lab.name, lab.display, lab.prompt) for lab in self.labels[c]] for c in CATEGORIES}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _prompt_form(name: str) -> str:
    s = name.split(", ")[0]
    s = re.sub(r"\s*\([^)]*\)", "", s).strip()
    return s.lower()


def _display_form(name: str, category: str, overrides: Mapping[str, str]) -> str:
    """Caption word(s) of a label: override, else first alternative without parentheses,
    without a trailing " music" for genres and moods, capitalised (descriptors stay lower case)."""
    if name in overrides:
        return overrides[name]
    if category == "descriptors":
        return name.strip().lower()
    s = re.sub(r"\s*\([^)]*\)", "", name.split(", ")[0]).strip()
    if category in ("genre", "mood") and s.lower().endswith(" music") and len(s) > len(" music"):
        s = s[: -len(" music")]
    return " ".join(w if (i and w.lower() in _SMALL_WORDS) else w[:1].upper() + w[1:]
                    for i, w in enumerate(s.split()))


def load_vocabulary(*, audioset=None, descriptors=None) -> Vocabulary:
    """Read the label vocabularies kept as data files in the package.

    Parameters
    ----------
    audioset : path-like or dict, optional
        JSON file (or its parsed content) with ``categories`` -> ``genre``,
        ``mood``, ``instruments`` -> lists of official AudioSet label names, and
        optional ``display`` overrides.  Default ``wavdiff_utils/data/audioset_music.json``.
    descriptors : path-like or sequence of str, optional
        Text file with one tag per line (``#`` starts a comment), or the tags.
        Default ``wavdiff_utils/data/magnatagatune_top50.txt``.

    Returns
    -------
    Vocabulary

    Raises
    ------
    ValueError
        If a file is malformed, a category is empty or a label repeats.
    """
    if isinstance(audioset, Mapping):
        data, where = dict(audioset), "audioset vocabulary"
    else:
        path = Path(audioset) if audioset is not None else AUDIOSET_FILE
        where = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read the AudioSet vocabulary ({exc})") from None
    cats = data.get("categories")
    if not isinstance(cats, Mapping):
        raise ValueError(f"{where}: needs a 'categories' mapping with genre, mood and instruments")
    overrides = dict(data.get("display") or {})
    if descriptors is None or isinstance(descriptors, (str, os.PathLike)):
        dpath = Path(descriptors) if descriptors is not None else DESCRIPTORS_FILE
        try:
            lines = dpath.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"{dpath}: cannot read the descriptor tags ({exc})") from None
        tags = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    else:
        tags = [str(t).strip() for t in descriptors if str(t).strip()]
    raw = {"genre": cats.get("genre") or [], "mood": cats.get("mood") or [],
           "instruments": cats.get("instruments") or [], "descriptors": tags}
    labels = {}
    for cat, names in raw.items():
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise ValueError(f"{where}: category {cat!r} must be a list of label names, got {names!r}")
        seen = set()
        out = []
        for n in names:
            n = str(n).strip()
            if n.lower() in seen:
                raise ValueError(f"{where}: label {n!r} appears twice in category {cat!r}")
            seen.add(n.lower())
            out.append(Label(cat, n, _display_form(n, cat, overrides),
                             n.lower() if cat == "descriptors" else _prompt_form(n)))
        labels[cat] = tuple(out)
    return Vocabulary(labels)


def _check_templates(templates) -> dict[str, tuple[str, ...]]:
    templates = dict(PROMPT_TEMPLATES if templates is None else templates)
    for cat in CATEGORIES:
        t = templates.get(cat)
        if not t or isinstance(t, str):
            raise ValueError(f"templates[{cat!r}] must be a non-empty list of strings, got {t!r}")
        for one in t:
            if "{label}" not in one and "{name}" not in one:
                raise ValueError(f"template {one!r} for {cat!r} uses neither {{label}} nor {{name}}")
        templates[cat] = tuple(t)
    return templates


def _prompts(label: Label, templates: Sequence[str]) -> list[str]:
    out = []
    for t in templates:
        p = t.format(label=label.prompt, name=label.display.lower())
        if p not in out:
            out.append(p)
    return out


# =========================================================================== selection

@dataclass(frozen=True)
class TagSettings:
    """How many labels of each category a caption names, and how close to the best they must be.

    A label other than the best of its category is kept when its score, measured
    above the category's mean score, reaches ``threshold`` times the best one's
    (``(s - mean) >= threshold * (s_best - mean)``); the best is always kept
    when the count is at least 1.  Redundant labels (see :func:`select_tags`)
    are passed over; the best label that is not redundant is the reference.
    Thresholds are in [0, 1]: 1 keeps only ties with the best, 0 keeps
    everything above the mean.
    """

    max_genres: int = 1
    max_moods: int = 1
    max_instruments: int = 3
    max_descriptors: int = 2
    genre_threshold: float = 0.9
    mood_threshold: float = 0.9
    instrument_threshold: float = 0.6
    descriptor_threshold: float = 0.6

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("max_"):
                if isinstance(v, bool) or not float(v).is_integer() or v < 0:
                    raise ValueError(f"{f.name} must be an integer >= 0, got {v!r}")
                object.__setattr__(self, f.name, int(v))
            else:
                if isinstance(v, bool) or not 0.0 <= float(v) <= 1.0:
                    raise ValueError(f"{f.name} must be in [0, 1], got {v!r}")
                object.__setattr__(self, f.name, float(v))

    def count(self, category: str) -> int:
        return getattr(self, "max_" + {"genre": "genres", "mood": "moods"}.get(category, category))

    def threshold(self, category: str) -> float:
        key = {"genre": "genre", "mood": "mood", "instruments": "instrument",
               "descriptors": "descriptor"}[category]
        return getattr(self, key + "_threshold")


_STOP = {"no", "and", "of", "the", "a", "an", "for", "in", "on"}


def _words(text: str) -> frozenset:
    """Content words of a label, lower case, plural ``s`` dropped (``"Drums"`` ~ ``"drum"``)."""
    return frozenset(w[:-1] if w.endswith("s") and len(w) > 3 else w
                     for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP)


def select_tags(scores: Mapping[str, np.ndarray], vocabulary: Vocabulary,
                settings: TagSettings | None = None) -> dict[str, list[Label]]:
    """Pick each category's labels from its own ranking.

    Parameters
    ----------
    scores : mapping
        Category -> similarity of the tile to each label of that category
        (same order as ``vocabulary[category]``).
    vocabulary : Vocabulary
    settings : TagSettings, optional

    Returns
    -------
    dict
        Category -> chosen labels, best first.  Redundant labels are skipped
        (and do not count): within a category, one whose words are a subset or
        superset of a chosen one's (``Singing`` after ``Male Singing``); among
        descriptors, one sharing a word with anything chosen so far
        (``"guitar"`` after Electric Guitar, ``"no vocals"`` after ``"vocal"``).
    """
    settings = settings or TagSettings()
    chosen: dict[str, list[Label]] = {}
    taken: set = set()
    for cat in CATEGORIES:
        s = np.asarray(scores[cat], dtype=np.float64)
        labels = vocabulary[cat]
        if s.shape != (len(labels),):
            raise ValueError(f"scores[{cat!r}] has shape {s.shape}, expected ({len(labels)},)")
        order = np.argsort(-s, kind="stable")
        above = s - s.mean()
        out: list[Label] = []
        ref = None                       # the best label that is not redundant
        for rank, i in enumerate(order):
            if len(out) >= settings.count(cat):
                break
            if ref is None and rank and above[i] <= 0:
                break                    # nothing above the category's average is left
            if ref is not None and not (ref > 0 and above[i] >= settings.threshold(cat) * ref):
                break
            words = _words(labels[i].display)
            if any(words <= _words(o.display) or words >= _words(o.display) for o in out):
                continue
            if cat == "descriptors" and words & taken:
                continue
            out.append(labels[i])
            ref = above[i] if ref is None else ref
        chosen[cat] = out
        for o in out:
            taken |= _words(o.display)
    return chosen


def _join(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def format_caption(tags: Mapping[str, Sequence[Label]], *, prefix: str = "",
                   bpm: float | None = None) -> str:
    """The caption text, one line.

    ``[prefix]A <Mood> <Genre> track featuring <Instruments>. Characterized as <descriptors>. <BPM> BPM.``

    Parts without labels are left out; ``bpm`` ``None`` (or not positive) leaves out the tempo.

    Examples
    --------
    >>> def lab(c, d):
    ...     return Label(c, d, d, d.lower())
    >>> format_caption({"genre": [lab("genre", "Rock")], "mood": [lab("mood", "Angry")],
    ...                 "instruments": [lab("instruments", "Electric Guitar")],
    ...                 "descriptors": [lab("descriptors", "heavy")]}, bpm=119.6)
    'An Angry Rock track featuring Electric Guitar. Characterized as heavy. 120 BPM.'
    """
    head = " ".join(_join([lab.display for lab in tags.get(c, [])]) for c in ("mood", "genre")
                    if tags.get(c))
    head = f"{head} track" if head else "track"
    article = "An" if head[0].lower() in "aeiou" else "A"
    parts = [f"{article} {head}"]
    inst = [lab.display for lab in tags.get("instruments", [])]
    if inst:
        parts[0] += f" featuring {_join(inst)}"
    parts[0] += "."
    desc = [lab.display for lab in tags.get("descriptors", [])]
    if desc:
        parts.append(f"Characterized as {', '.join(desc)}.")
    if bpm is not None and np.isfinite(bpm) and bpm > 0:
        parts.append(f"{int(round(bpm))} BPM.")
    return (prefix or "") + " ".join(parts)


# =========================================================================== tempo

def _tempo(env: np.ndarray, fps: float, *, prior_bpm: float = 120.0, std_octaves: float = 1.0,
           min_bpm: float = 30.0, max_bpm: float = 320.0) -> float | None:
    """Tempo of an onset envelope: the autocorrelation peak under a log-normal tempo prior
    (as librosa's estimator), refined between lags by a parabola.  ``None`` without a peak."""
    import librosa

    env = np.asarray(env, dtype=np.float64)
    env = env - env.mean()
    max_lag = int(np.ceil(fps * 60.0 / min_bpm)) + 2
    if len(env) < 4 or not np.any(env):
        return None
    ac = librosa.autocorrelate(env, max_size=min(max_lag, len(env)))
    lags = np.arange(len(ac), dtype=np.float64)
    with np.errstate(divide="ignore"):
        bpms = np.where(lags > 0, 60.0 * fps / np.maximum(lags, 1e-9), np.inf)
    ok = (bpms >= min_bpm) & (bpms <= max_bpm)
    ok[:1] = ok[-1:] = False                     # a peak needs both neighbours
    if not np.any(ok & (ac > 0)):
        return None
    # peaks between integer lags are smeared over two lags, exact ones are not: smooth a
    # little and compare peak heights at their interpolated tops, so octaves compete fairly
    ac = np.convolve(ac, [0.25, 0.5, 0.25], mode="same")
    weight = np.exp(-0.5 * (np.log2(np.where(ok, bpms, prior_bpm) / prior_bpm) / std_octaves) ** 2)
    best, best_lag = -np.inf, None
    for k in np.flatnonzero(ok):
        a, b, c = ac[k - 1], ac[k], ac[k + 1]
        if not (b >= a and b >= c and b > 0):
            continue
        den = a - 2 * b + c
        shift = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0
        top = b - 0.25 * (a - c) * shift
        if top * weight[k] > best:
            best, best_lag = top * weight[k], k + shift
    if best_lag is None:
        return None
    return float(60.0 * fps / best_lag)


def estimate_bpm(y: np.ndarray, sample_rate: int, spans=(), *, tolerance: float = 0.08,
                 min_seconds: float = 5.0, hop_length: int = 512) -> tuple[float | None, list]:
    """Tempo of the whole song, and the tempo to report for each tile.

    The onset envelope comes from ``librosa.onset.onset_strength``; the tempo
    is the strongest periodicity of the envelope (its autocorrelation) under
    librosa's log-normal prior around 120 BPM, measured over the whole song.
    A tile gets its own estimate (the same, on its part of the envelope) only
    when it holds at least ``min_seconds`` of audio and the
    estimate differs from the song's by more than ``tolerance`` (relative),
    half and double tempo (octave errors) not counting as different.
    Values are rounded to whole BPM.  Memory grows linearly with the song.

    Returns
    -------
    song_bpm : float or None
        ``None`` when no tempo can be found (silence, too short).
    tile_bpm : list of float or None
        One per span.
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if len(y) < 4 * hop_length or not np.any(y):
        return None, [None] * len(spans)
    env = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=hop_length)
    fps = sample_rate / hop_length
    song = _tempo(env, fps)
    if song is None:
        return None, [None] * len(spans)
    song = float(round(song))
    out = []
    for s in spans:
        bpm = song
        if (s.end - s.start) >= min_seconds * sample_rate:
            local = _tempo(env[s.start // hop_length: -(-s.end // hop_length)], fps)
            if local is not None:
                ratio = local / song
                if all(abs(ratio / k - 1) > tolerance for k in (0.5, 1.0, 2.0)):
                    bpm = float(round(local))
        out.append(bpm)
    return song, out


# =========================================================================== model loading

def resolve_model(model=DEFAULT_MODEL) -> str:
    """The model actually used: ``$WAVDIFF_MUQ_MODEL`` when ``model`` is the default id and it is set."""
    name = str(model).strip() if model is not None else ""
    if not name:
        raise ValueError("model is empty; give a Hugging Face id such as "
                         f"{DEFAULT_MODEL!r} or a local model folder")
    if name == DEFAULT_MODEL:
        env = os.environ.get(MODEL_ENV, "").strip()
        if env:
            return env
    return name


def _looks_local(name: str) -> bool:
    """True for names that can only be paths (hub ids are ``name`` or ``owner/name``)."""
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1
            or name.endswith("/") or (len(name) > 1 and name[1] == ":"))


def _as_folder(name: str) -> Path | None:
    """``name`` as an existing folder (absolute, relative to the working folder or the repository)."""
    from .paths import resolve

    p = resolve(name)
    return p if p.is_dir() else None


def _weights_file(folder: Path) -> Path | None:
    for n in ("model.safetensors", "pytorch_model.bin"):
        if (folder / n).is_file():
            return folder / n
    return None


def _hub_offline(local_files_only: bool | None) -> tuple[bool, str]:
    """Whether to stay off the network, and why (for the error message)."""
    from huggingface_hub import constants

    if local_files_only:
        return True, "local_files_only=True"
    if constants.HF_HUB_OFFLINE:
        return True, "offline mode (HF_HUB_OFFLINE=1)"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False, ""
    host = re.sub(r"^https?://", "", constants.ENDPOINT).split("/")[0]
    port = 443
    if ":" in host:
        host, port = host.rsplit(":", 1)[0], int(host.rsplit(":", 1)[1])
    try:   # fail in a second instead of after minutes of retries
        socket.create_connection((host, port), timeout=3).close()
        return False, ""
    except OSError:
        return True, f"the Hugging Face hub ({constants.ENDPOINT}) cannot be reached"


class _Missing(Exception):
    def __init__(self, what: str):
        self.what = what


def _hub_file(repo: str, filename: str, *, cache_dir, offline: bool, optional: bool = False):
    """Path of ``repo/filename`` from the cache, downloading it unless offline.

    Returns ``None`` for an optional file the repository does not have; raises
    :class:`_Missing` when a needed file cannot be had.
    """
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError)

    cached = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
    if isinstance(cached, str) and os.path.isfile(cached):
        return Path(cached)
    if offline:
        if optional:
            return None
        raise _Missing("not in the local cache")
    try:
        return Path(hf_hub_download(repo, filename, cache_dir=cache_dir))
    except (RepositoryNotFoundError, GatedRepoError) as exc:   # before their HTTP base class
        if optional:
            return None
        raise _Missing(f"repository not found or not accessible on the hub ({type(exc).__name__})")
    except LocalEntryNotFoundError as exc:                      # a subclass of EntryNotFoundError
        if optional:
            return None
        raise _Missing(f"download failed ({str(exc).splitlines()[0][:160]})")
    except EntryNotFoundError:
        if optional:
            return None
        raise _Missing(f"the repository has no {filename}")
    except (HfHubHTTPError, OSError) as exc:
        if optional:
            return None
        raise _Missing(f"download failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")


def _hub_repo_files(repo: str, needed: Sequence[Sequence[str]], optional: Sequence[str], *,
                    cache_dir, offline: bool) -> Path:
    """Fetch a repository's files into the cache; return the snapshot folder holding them.

    ``needed`` lists alternatives: for each group the first file the repository
    has is taken (``("model.safetensors", "pytorch_model.bin")``).
    """
    folder = None
    for group in needed:
        got = None
        reasons = []
        for name in group:
            try:
                got = _hub_file(repo, name, cache_dir=cache_dir, offline=offline,
                                optional=name != group[-1])
            except _Missing as m:
                reasons.append(m.what)
            if got is not None:
                break
        if got is None:
            raise _Missing(reasons[-1] if reasons else "not found")
        folder = got.parent
    for name in optional:
        _hub_file(repo, name, cache_dir=cache_dir, offline=offline, optional=True)
    return folder


_TOWERS = {
    "audio": {"key": "audio_model", "needs": "muq", "role": "its audio tower",
              "files": [("config.json",), ("model.safetensors",)], "optional": [],
              "hint": ""},
    "text": {"key": "text_model", "needs": "xlm-roberta", "role": "its text tower",
             "files": [("config.json",), ("model.safetensors", "pytorch_model.bin")],
             "optional": ["tokenizer.json", "sentencepiece.bpe.model", "tokenizer_config.json",
                          "special_tokens_map.json"],
             "hint": ' --include "*.json" "*.model" "*.safetensors"'},
}
_ALIASES: list = []   # temporary folders holding renamed links; removed at exit


def _alias(path: Path, needs: str) -> str:
    """A path to ``path`` whose text contains ``needs`` (muq picks a tower's code from its name)."""
    if needs in str(path) or (needs == "muq" and "muq" in str(path).lower()):
        return str(path)
    import atexit
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="wavdiff-muq-"))
    link = tmp / f"{needs}-{path.name}"
    try:
        link.symlink_to(path, target_is_directory=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"tower folder {str(path)!r} must have {needs!r} in its name for muq to "
                         f"load it, and a renamed link could not be made ({exc}); rename the "
                         f"folder") from None
    if not _ALIASES:
        atexit.register(lambda: [shutil.rmtree(t, ignore_errors=True) for t in _ALIASES])
    _ALIASES.append(tmp)
    return str(link)


def _tower_ok(folder: Path, kind: str) -> str | None:
    """``None`` when ``folder`` holds what the tower needs, else what is missing."""
    if not (folder / "config.json").is_file():
        return "config.json"
    if kind == "audio" and not (folder / "model.safetensors").is_file():
        return "model.safetensors"
    if kind == "text":
        if _weights_file(folder) is None:
            return "model.safetensors or pytorch_model.bin"
        if not any((folder / n).is_file() for n in ("tokenizer.json", "sentencepiece.bpe.model")):
            return "tokenizer.json or sentencepiece.bpe.model"
    return None


def _resolve_tower(name: str, kind: str, base: Path | None, *, cache_dir, offline) -> Path:
    """Local folder holding a sub-tower, or raise :class:`_Missing`.

    ``offline`` is a callable (evaluated only when the hub is needed).
    """
    if not name:
        raise _Missing("config.json gives no name for it")
    p = Path(os.path.expanduser(name))
    candidates = [p] if p.is_absolute() else ([base / name, base / p.name] if base else [])
    for c in candidates:
        if c.is_dir():
            missing = _tower_ok(c, kind)
            if missing:
                raise _Missing(f"folder {c} has no {missing}")
            return c
    if p.is_absolute() or _looks_local(name):
        raise _Missing(f"folder {name} does not exist")
    spec = _TOWERS[kind]
    folder = _hub_repo_files(name, spec["files"], spec["optional"], cache_dir=cache_dir,
                             offline=offline())
    missing = _tower_ok(folder, kind)
    if missing:
        raise _Missing(f"the hub repository has no {missing}")
    return folder


def _missing_message(model: str, problems: list, *, local: Path | None, reason: str, cache_dir,
                     towers: Mapping[str, str]) -> str:
    """One message: what is missing, what to download, where to point ``model``.

    ``problems`` holds ``(repo or folder, role, why)``; ``towers`` the sub-tower
    names from the model's config (or the defaults when it could not be read).
    """
    from huggingface_hub import constants

    if local is not None:
        lines = [f"MuQ-MuLan model folder {str(local)!r} (model={model!r}) is incomplete:"]
        folder = str(local)
    else:
        cache = cache_dir or constants.HF_HUB_CACHE
        lines = [f"MuQ-MuLan weights for model={model!r} are not available: "
                 f"{reason or 'they could not be fetched'}, and they are not complete in the "
                 f"local Hugging Face cache ({cache})."]
        folder = model.rstrip("/").split("/")[-1]
    lines += [f"  - {what} ({role}): {why}" for what, role, why in problems]
    plan = []
    if local is None:                       # hub id: make one self-contained folder
        plan.append(f"hf download {model} --local-dir {folder}")
    failed = {role for _, role, _ in problems}
    for kind, spec in _TOWERS.items():
        tname = towers.get(kind, "")
        if tname and not _looks_local(tname) and (local is None or spec["role"] in failed):
            plan.append(f"hf download {tname}{spec['hint']} --local-dir "
                        f"{folder}/{tname.split('/')[-1]}")
    if plan:
        lines.append("Download them on a machine with internet access (pip install huggingface_hub):")
        lines += [f"  {c}" for c in plan]
    lines.append(f"then pass that folder as the `model` parameter: notebook `-p model {folder}`, "
                 f"Python `caption_songs(..., model={folder!r})`, or set {MODEL_ENV}={folder}.")
    return "\n".join(lines)


@dataclass
class MuQMuLanModel:
    """A loaded MuQ-MuLan model, ready to embed tiles and prompts.

    Attributes
    ----------
    model : muq.MuQMuLan
        The torch module (float32, eval mode).
    name : str
        ``model`` as resolved by :func:`resolve_model`.
    folder : Path
        Folder the model's ``config.json`` was read from (a local folder or a hub snapshot).
    weights : Path
        The MuQ-MuLan weights file that was loaded.
    device : str
    key : str
        Identity of the weights (path, size, modification time): part of cache keys.
    sample_rate : int
        Audio rate the model takes (24000).
    clip_seconds : float
        Length of the clips the audio tower embeds (10 s); longer audio is
        cut into clips whose embeddings are averaged.
    """

    model: Any
    name: str
    folder: Path
    weights: Path
    device: str
    key: str
    sample_rate: int
    clip_seconds: float
    towers: dict = field(default_factory=dict)
    _text_memo: dict = field(default_factory=dict, repr=False)

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    def embed_texts(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """L2-normalised text embeddings, one row per text.

        Texts are batched only with texts of the same token length: the text
        tower averages over padding too, so padding would change a prompt's
        embedding with the company it keeps.
        """
        import torch

        texts = [str(t) for t in texts]
        tok = self.model.mulan_module.text.tokenizer
        lengths = [len(tok(t)["input_ids"]) for t in texts]
        out = [None] * len(texts)
        groups: dict[int, list[int]] = {}
        for i, n in enumerate(lengths):
            groups.setdefault(n, []).append(i)
        with torch.inference_mode():
            for idx in groups.values():
                for b in range(0, len(idx), batch_size):
                    part = idx[b:b + batch_size]
                    emb = self.model.extract_text_latents([texts[i] for i in part])
                    emb = emb.float().cpu().numpy()
                    for i, e in zip(part, emb):
                        out[i] = e
        arr = np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
        return _normalize(arr)

    def embed_clips(self, clips: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings of equal-length clips ``(n, clip_samples)`` at :attr:`sample_rate`."""
        import torch

        x = torch.as_tensor(np.ascontiguousarray(clips, dtype=np.float32), device=self.device)
        with torch.inference_mode():
            emb = self.model.mulan_module.get_audio_latents(x)
        return emb.float().cpu().numpy()

    def embed_tiles(self, tiles: Sequence[np.ndarray], *, batch_size: int = 8) -> np.ndarray:
        """One L2-normalised embedding per tile (tiles at :attr:`sample_rate`), ``batch_size`` tiles per pass.

        Each tile is cut into clips as MuQ-MuLan does (see :func:`tile_clips`)
        and the clip embeddings are averaged.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        out = []
        for b in range(0, len(tiles), int(batch_size)):
            part = [tile_clips(t, self.clip_samples) for t in tiles[b:b + int(batch_size)]]
            emb = self.embed_clips(np.concatenate(part, axis=0))
            i = 0
            for clips in part:
                out.append(emb[i:i + len(clips)].mean(axis=0))
                i += len(clips)
        if not out:
            return np.zeros((0, 0), np.float32)
        return _normalize(np.stack(out).astype(np.float32))


def _normalize(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.maximum(n, 1e-12)


def tile_clips(audio: np.ndarray, clip_samples: int) -> np.ndarray:
    """Cut one tile's audio into clips of ``clip_samples``, as MuQ-MuLan does.

    Full clips are taken from the start; a remainder is completed with audio
    from the tile's own start (repeated cyclically when the tile is shorter
    than a clip), so no clip holds audio from outside the tile.

    Returns
    -------
    ndarray, shape (n_clips, clip_samples)
    """
    a = np.asarray(audio, dtype=np.float32).reshape(-1)
    if len(a) == 0:
        raise ValueError("a tile without samples cannot be embedded")
    n_full = len(a) // clip_samples
    clips = [a[i * clip_samples:(i + 1) * clip_samples] for i in range(n_full)]
    rest = len(a) - n_full * clip_samples
    if rest:
        clips.append(np.concatenate([a[n_full * clip_samples:], np.resize(a, clip_samples - rest)]))
    return np.stack(clips)


@contextlib.contextmanager
def _quiet_and_seed_safe():
    """Keep the global random states (torch, Python) and silence muq's prints while building."""
    import torch
    from transformers.utils import logging as tlog

    py_state = random.getstate()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    level = tlog.get_verbosity()
    tlog.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=devices), contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        random.setstate(py_state)
        tlog.set_verbosity(level)


def _check_transformers():
    import transformers

    parts = []
    for p in transformers.__version__.split(".")[:2]:
        m = re.match(r"\d+", p)
        parts.append(int(m.group()) if m else 0)
    if tuple(parts) >= _TF_BROKEN:
        raise RuntimeError(
            f"muq 0.1.0 cannot run with transformers {transformers.__version__}: from 5.16 on its "
            f"audio tower fails at the first forward pass ('EasyDict' object has no attribute "
            f"'_attn_implementation'). Install a working version: pip install "
            f"'transformers>=4.57,<5.16' (requirements.txt pins 4.57.6).")


def _load_state_dict(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path), device="cpu")
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_muq_mulan(model=DEFAULT_MODEL, *, device: str = "auto", cache_dir=None,
                   local_files_only: bool | None = None) -> MuQMuLanModel:
    """Load MuQ-MuLan from the hub (cache first) or from a local folder.

    Parameters
    ----------
    model : str or path-like
        Hub id (default :data:`DEFAULT_MODEL`; replaced by ``$WAVDIFF_MUQ_MODEL``
        when that is set, see the module notes) or a local folder with
        ``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``.
    device : str
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    cache_dir : path-like, optional
        Hugging Face cache folder; default the usual one (``HF_HUB_CACHE`` / ``HF_HOME``).
    local_files_only : bool, optional
        Never use the network.  Default: only when ``HF_HUB_OFFLINE`` is set or
        the hub cannot be reached.

    Returns
    -------
    MuQMuLanModel

    Raises
    ------
    ModelWeightsMissing
        Model or sub-tower files are missing; the message says what to
        download and which parameter to point at it.
    RuntimeError
        The installed transformers cannot run muq.
    ValueError
        The weights file does not fit the model's ``config.json``.
    """
    _check_transformers()
    name = resolve_model(model)
    device = pick_device(device)
    cache_dir = str(cache_dir) if cache_dir is not None else None
    state = {}

    def offline() -> bool:              # network state, looked up once and only when needed
        if "offline" not in state:
            state["offline"], state["reason"] = _hub_offline(local_files_only)
        return state["offline"]

    local = _as_folder(name)
    defaults = {"audio": "OpenMuQ/MuQ-large-msd-iter", "text": "xlm-roberta-base"}
    if local is None and _looks_local(name):
        raise ModelWeightsMissing(_missing_message(
            name, [(name, "the captioning model", "folder does not exist")], local=Path(name),
            reason="", cache_dir=cache_dir, towers={}))
    problems = []
    folder = None
    if local is not None:
        folder = local
        if not (local / "config.json").is_file():
            problems.append((str(local), "the captioning model", "no config.json"))
        if _weights_file(local) is None:
            problems.append((str(local), "the captioning model",
                             "no model.safetensors or pytorch_model.bin"))
    else:
        try:
            folder = _hub_repo_files(name, [("config.json",), ("model.safetensors", "pytorch_model.bin")],
                                     [], cache_dir=cache_dir, offline=offline())
        except _Missing as m:
            problems.append((name, "the captioning model", m.what))
    config = None
    if folder is not None and (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            for k in ("mulan", "audio_model", "text_model", "audio_transformer", "text_transformer"):
                if not isinstance(config.get(k), dict):
                    raise ValueError(f"no {k!r} section")
        except ValueError as exc:
            raise ValueError(f"{folder / 'config.json'}: not a MuQ-MuLan config ({exc})") from None
    names = ({k: str(config[s["key"]].get("name") or "") for k, s in _TOWERS.items()}
             if config else (defaults if name == DEFAULT_MODEL or local is None else {}))
    towers = {}
    if config is not None:
        for kind, spec in _TOWERS.items():
            try:
                towers[kind] = _resolve_tower(names[kind], kind, local, cache_dir=cache_dir,
                                              offline=offline)
            except _Missing as m:
                problems.append((names[kind] or spec["key"], spec["role"], m.what))
    if problems:
        raise ModelWeightsMissing(_missing_message(name, problems, local=local,
                                                   reason=state.get("reason", ""),
                                                   cache_dir=cache_dir, towers=names))
    weights = _weights_file(folder)

    from muq import MuQMuLan

    cfg = json.loads(json.dumps(config))
    for kind, spec in _TOWERS.items():
        cfg[spec["key"]]["name"] = _alias(towers[kind], spec["needs"])
    with _quiet_and_seed_safe():
        net = MuQMuLan(cfg)
    result = net.load_state_dict(_load_state_dict(weights), strict=False)
    tower_prefixes = ("mulan.audio.model.", "mulan.text.model.")
    head_missing = [k for k in result.missing_keys if not k.startswith(tower_prefixes)]
    if head_missing:
        raise ValueError(f"{weights}: does not fit {folder / 'config.json'}: {len(head_missing)} "
                         f"weights missing (e.g. {', '.join(head_missing[:3])}); the file is "
                         f"damaged or belongs to another model")
    if result.missing_keys:
        warnings.warn(f"{weights}: {len(result.missing_keys)} sub-tower weights are not in the "
                      f"checkpoint and keep the values of the sub-tower files "
                      f"(e.g. {', '.join(result.missing_keys[:3])})", stacklevel=2)
    if result.unexpected_keys:
        warnings.warn(f"{weights}: {len(result.unexpected_keys)} weights not used by the model "
                      f"(e.g. {', '.join(result.unexpected_keys[:3])})", stacklevel=2)
    net = net.float().to(device).eval()
    st = weights.stat()
    key = f"{weights.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return MuQMuLanModel(net, name, folder, weights, device, key, int(net.sr),
                         float(net.clip_secs), towers)


# =========================================================================== text embeddings

def _default_cache() -> Path:
    env = os.environ.get("WAVDIFF_CACHE", "").strip()
    return Path(env) / "muq-text" if env else REPO_ROOT / "outputs" / "cache" / "muq-text"


def text_embeddings(mulan: MuQMuLanModel, vocabulary: Vocabulary | None = None, *,
                    templates=None, cache_dir=None) -> dict[str, np.ndarray]:
    """One L2-normalised text embedding per label and category (mean over its prompt templates).

    Computed once per run (kept on ``mulan``) and cached on disk, keyed by the
    model's weights, the vocabulary and the templates.

    Parameters
    ----------
    mulan : MuQMuLanModel
    vocabulary : Vocabulary, optional
        Default :func:`load_vocabulary`.
    templates : mapping, optional
        Category -> prompt templates; default :data:`PROMPT_TEMPLATES`.
    cache_dir : path-like or False, optional
        Where the cache files go (default ``$WAVDIFF_CACHE/muq-text`` or
        ``outputs/cache/muq-text``); ``False`` disables the disk cache.

    Returns
    -------
    dict
        Category -> array ``(n_labels, dim)``.
    """
    vocabulary = vocabulary or load_vocabulary()
    templates = _check_templates(templates)
    key_data = {"format": _CACHE_FORMAT, "model": mulan.key, "vocabulary": vocabulary.digest(),
                "templates": {c: list(templates[c]) for c in CATEGORIES}}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:20]
    path = None
    if cache_dir is not False:
        path = Path(cache_dir if cache_dir is not None else _default_cache()) / f"{key}.npz"
    if key in mulan._text_memo:
        emb = mulan._text_memo[key]
        if path is not None and not path.is_file():
            _save_text_cache(path, key_data, emb)
        return emb
    if path is not None:
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    meta = json.loads(str(z["meta"]))
                    if meta == key_data:
                        emb = {c: z[c].astype(np.float32) for c in CATEGORIES}
                        if all(len(emb[c]) == len(vocabulary[c]) for c in CATEGORIES):
                            mulan._text_memo[key] = emb
                            return emb
            except (OSError, ValueError, KeyError):
                pass    # unreadable cache: recompute and overwrite
    prompts, owners = [], []
    for c in CATEGORIES:
        for i, lab in enumerate(vocabulary[c]):
            for p in _prompts(lab, templates[c]):
                prompts.append(p)
                owners.append((c, i))
    flat = mulan.embed_texts(prompts)
    emb = {}
    for c in CATEGORIES:
        acc = np.zeros((len(vocabulary[c]), flat.shape[1]), np.float64)
        cnt = np.zeros(len(vocabulary[c]))
        for (oc, i), e in zip(owners, flat):
            if oc == c:
                acc[i] += e
                cnt[i] += 1
        emb[c] = _normalize((acc / cnt[:, None]).astype(np.float32))
    if path is not None:
        _save_text_cache(path, key_data, emb)
    mulan._text_memo[key] = emb
    return emb


def _save_text_cache(path: Path, key_data: dict, emb: dict):
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(key_data, sort_keys=True)), **emb)
    except OSError as exc:
        warnings.warn(f"text-embedding cache {path} not written ({exc})", stacklevel=3)


# =========================================================================== captioning

@dataclass
class TileCaption:
    """The caption of one tile and how it was chosen."""

    index: int
    start: int
    end: int
    caption: str
    path: str
    bpm: float | None = None
    silent: bool = False
    tags: dict = field(default_factory=dict)       # category -> chosen label names (display)
    top: dict = field(default_factory=dict)        # category -> [(display, score), ...] best first

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class CaptionResult(SongResult):
    """What happened to one song (``status`` is "captioned" or "skipped")."""

    from_manifest: bool = False
    bpm: float | None = None
    prefix: str = ""
    tiles: list = field(default_factory=list)


class CaptionBatch(BatchResult):
    """Captioned songs and failures (``summary()``, ``raise_if_failed()``, ``table()``)."""

    def table(self):
        """One row per tile (song, tile, span, caption); failures as rows with status FAILED."""
        import pandas as pd
        rows = []
        for r in self.results:
            for t in r.tiles:
                rows.append({"song": r.song, "tile": t.index, "start s": round(t.start / r.sample_rate, 2),
                             "end s": round(t.end / r.sample_rate, 2), "status": r.status,
                             "caption": t.caption})
        rows += [{"song": Path(p).name, "status": "FAILED", "caption": m} for p, m in self.failures]
        return pd.DataFrame(rows)


def _settings_key(model_key: str, vocabulary: Vocabulary, templates, settings: TagSettings,
                  prefix: str, spans, params: CodecParams, extra: dict) -> str:
    data = {"model": model_key, "vocabulary": vocabulary.digest(),
            "templates": {c: list(templates[c]) for c in CATEGORIES},
            "settings": dataclasses.asdict(settings), "prefix": prefix,
            "spans": [(s.start, s.end) for s in spans], "codec": params.to_dict(), **extra}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]


def _resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return np.asarray(y, dtype=np.float32)
    import soxr
    return soxr.resample(np.asarray(y, dtype=np.float32), sr_in, sr_out, quality="HQ").astype(np.float32)


def _read_sidecar(folder: Path) -> dict:
    try:
        data = json.loads((folder / SIDECAR_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == _SIDECAR_FORMAT else {}


def _mine(path: Path, record: dict) -> bool:
    """True when ``path`` holds exactly the caption this captioner recorded for it."""
    want = {Path(t.get("path", "")).name: t.get("caption") for t in record.get("tiles", [])}
    if path.name not in want:
        return False
    try:
        return path.read_text(encoding="utf-8").strip() == str(want[path.name]).strip()
    except OSError:
        return False


def _remove_stale_captions(folder: Path, old: dict, keep: set[str]):
    """Delete captions this captioner wrote before (per its old record) that are not in ``keep``:
    tiles a re-encoded song no longer has, or files of a naming no longer used."""
    for t in old.get("tiles", []):
        p = folder / Path(t.get("path", "")).name
        if p.name and p.name not in keep and p.is_file() and _mine(p, old):
            p.unlink()


def _suffix_for(folder: Path, song: str, spans, naming: str, old: dict, overwrite: bool) -> str:
    """``""`` or :data:`TAGS_SUFFIX`, never overwriting another tool's caption unless asked."""
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")
    if naming == "tags":
        return TAGS_SUFFIX
    plain = [caption_path(folder, song, s.index) for s in spans]
    foreign = [p for p in plain if p.exists() and not _mine(p, old)]
    if not foreign or (naming == "txt" and overwrite):
        return ""
    if naming == "auto":
        return TAGS_SUFFIX
    raise FileExistsError(
        f"{foreign[0]} holds a caption this captioner did not write (e.g. a Qwen description or "
        f"an edited file{'' if len(foreign) == 1 else f'; {len(foreign)} such files'}); pass "
        f"overwrite=True to replace them, or naming='auto' / 'tags' to write "
        f"<song>_<index>{TAGS_SUFFIX}.txt beside them")


def caption_song(path, output, *, mulan: MuQMuLanModel, song: str | None = None,
                 params: CodecParams | None = None, artist: str = "", title: str = "",
                 settings: TagSettings | None = None, vocabulary: Vocabulary | None = None,
                 templates=None, batch_size: int = 8, bpm: bool = True,
                 bpm_tolerance: float = 0.08, silence_db: float | None = -60.0,
                 naming: str = "auto", overwrite: bool = False, text_cache=None,
                 top_k: int = 5) -> CaptionResult:
    """Caption every tile of one song (see :func:`caption_songs` for the parameters).

    Returns
    -------
    CaptionResult
        ``status="skipped"`` when the song's captions exist and were made with
        the same model, vocabulary, settings, prefix and spans.
    """
    t0 = time.perf_counter()
    settings = settings or TagSettings()
    vocabulary = vocabulary or load_vocabulary()
    templates = _check_templates(templates)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st = song_tiles(path, output, params=params, song=song)
    notes = [str(w.message) for w in caught]
    for n in notes:
        warnings.warn(n, stacklevel=2)
    tags = tags_from_file(path)
    prefix = caption_prefix((artist or "").strip() or tags["artist"],
                            (title or "").strip() or tags["title"])
    extra = {"bpm": bool(bpm), "bpm_tolerance": float(bpm_tolerance), "silence_db": silence_db,
             "batch": "v1"}
    key = _settings_key(mulan.key, vocabulary, templates, settings, prefix, st.spans, st.params,
                        extra)
    sidecar = st.folder / SIDECAR_NAME
    base = dict(song=st.song, source=str(path), output=str(st.folder), n_tiles=len(st.spans),
                n_samples=len(st.audio), sample_rate=st.params.sample_rate,
                from_manifest=st.from_manifest, prefix=prefix, warnings=notes)
    old = _read_sidecar(st.folder)
    suffix = _suffix_for(st.folder, st.song, st.spans, naming, old, overwrite)
    paths = [caption_path(st.folder, st.song, s.index, suffix=suffix) for s in st.spans]
    if not overwrite and old.get("key") == key and all(_mine(p, old) for p in paths):
        tiles = [TileCaption(**t) for t in old.get("tiles", [])]
        return CaptionResult(status="skipped", bpm=old.get("bpm"), tiles=tiles,
                             seconds=time.perf_counter() - t0, **base)

    sr = st.params.sample_rate
    song_bpm, tile_bpm = (estimate_bpm(st.audio, sr, st.spans, tolerance=bpm_tolerance)
                          if bpm else (None, [None] * len(st.spans)))
    y_model = _resample(st.audio, sr, mulan.sample_rate)
    scale = mulan.sample_rate / sr
    silent = []
    pieces = []
    for s in st.spans:
        seg = st.audio[s.start:s.end]
        peak = float(np.max(np.abs(seg))) if len(seg) else 0.0
        is_silent = silence_db is not None and (peak <= 0 or 20 * np.log10(peak) < silence_db)
        silent.append(is_silent)
        a, b = int(round(s.start * scale)), max(int(round(s.end * scale)), int(round(s.start * scale)) + 1)
        pieces.append(y_model[a:b] if not is_silent else None)
    loud = [i for i, p in enumerate(pieces) if p is not None]
    emb = mulan.embed_tiles([pieces[i] for i in loud], batch_size=batch_size) if loud else None
    row = {i: r for r, i in enumerate(loud)}
    text = text_embeddings(mulan, vocabulary, templates=templates, cache_dir=text_cache)
    tiles = []
    for s, cpath, is_silent, tb in zip(st.spans, paths, silent, tile_bpm):
        if is_silent:
            tc = TileCaption(s.index, s.start, s.end, f"{prefix}Silence.", str(cpath), None, True)
        else:
            e = emb[row[s.index]]
            scores = {c: text[c] @ e for c in CATEGORIES}
            chosen = select_tags(scores, vocabulary, settings)
            top = {}
            for c in CATEGORIES:
                order = np.argsort(-scores[c], kind="stable")[:top_k]
                top[c] = [(vocabulary[c][i].display, round(float(scores[c][i]), 5)) for i in order]
            tc = TileCaption(s.index, s.start, s.end, format_caption(chosen, prefix=prefix, bpm=tb),
                             str(cpath), tb, False,
                             {c: [lab.display for lab in chosen[c]] for c in CATEGORIES}, top)
        tiles.append(tc)
    # the record first, then the captions: an interrupted run leaves only files it can recognise
    record = {"format": _SIDECAR_FORMAT, "version": 1, "key": key, "model": mulan.name,
              "song": st.song, "source": str(path), "prefix": prefix, "bpm": song_bpm,
              "from_manifest": st.from_manifest, "settings": dataclasses.asdict(settings),
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "tiles": [t.to_dict() for t in tiles]}
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    for t in tiles:
        write_caption(t.path, t.caption)
    _remove_stale_captions(st.folder, old, {p.name for p in paths})
    return CaptionResult(status="captioned", bpm=song_bpm, tiles=tiles,
                         seconds=time.perf_counter() - t0, **base)


def caption_songs(input, output, *, model=DEFAULT_MODEL, device: str = "auto", artist: str = "",
                  title: str = "", params: CodecParams | None = None, batch_size: int = 8,
                  max_genres: int = 1, max_moods: int = 1, max_instruments: int = 3,
                  max_descriptors: int = 2, genre_threshold: float = 0.9,
                  mood_threshold: float = 0.9, instrument_threshold: float = 0.6,
                  descriptor_threshold: float = 0.6, bpm: bool = True, bpm_tolerance: float = 0.08,
                  silence_db: float | None = -60.0, vocabulary: Vocabulary | None = None,
                  templates=None, naming: str = "auto", overwrite: bool = False, cache_dir=None,
                  text_cache=None,
                  local_files_only: bool | None = None, progress: bool = True) -> CaptionBatch:
    """Write one MuQ-MuLan tag caption per tile for a file or every audio file under a folder.

    Parameters
    ----------
    input : path-like
        Audio file or folder (recursive), as for ``01_encode``.
    output : path-like
        Root folder of ``01_encode``'s tiles, or any folder.  Captions go to
        ``output/<song>/<song>_<index:04d>.txt``; the spans are read from the
        song's manifest (or tile metadata) there, else computed with ``params``.
    model : str, path-like or MuQMuLanModel
        Hub id, local folder (see the module notes, ``$WAVDIFF_MUQ_MODEL``) or
        an already loaded model.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    artist, title : str
        Caption prefix (``"style of <artist>, <title>. "``); empty: read from
        each file's tags (tinytag).  Given values apply to every song.
    params : CodecParams, optional
        Tiling when a song has no tiles yet (default ``CodecParams()``).
    batch_size : int
        Tiles embedded per forward pass.
    max_genres, max_moods, max_instruments, max_descriptors : int
        Most labels named per category.
    genre_threshold, mood_threshold, instrument_threshold, descriptor_threshold : float
        Relative thresholds in [0, 1] (see :class:`TagSettings`).
    bpm : bool
        Add the librosa tempo (song-wide; a tile's own when it differs clearly).
    bpm_tolerance : float
        Relative difference above which a tile reports its own tempo.
    silence_db : float or None
        Tiles whose peak is below this (dBFS) are captioned ``"Silence."``; ``None`` disables.
    vocabulary, templates
        Override the label vocabularies / prompt templates.
    naming : {"auto", "txt", "tags"}
        File names: ``<song>_<index>.txt``; ``"auto"`` switches to
        ``<song>_<index>.tags.txt`` when another tool's caption (e.g. a Qwen
        description) holds the ``.txt`` already (see :data:`NAMINGS`).
    overwrite : bool
        Re-caption songs whose captions are up to date; with ``naming="txt"``
        also replace captions another tool wrote.
    cache_dir : path-like, optional
        Hugging Face cache folder.
    text_cache : path-like or False, optional
        Text-embedding cache folder (see :func:`text_embeddings`).
    local_files_only : bool, optional
        Never download.
    progress : bool
        Show a progress bar.

    Returns
    -------
    CaptionBatch
        Per-song failures are collected, not raised; ``raise_if_failed()`` stops on them.

    Raises
    ------
    ModelWeightsMissing
        The model cannot be loaded (one message says what to download).
    """
    from tqdm.auto import tqdm

    settings = TagSettings(max_genres, max_moods, max_instruments, max_descriptors, genre_threshold,
                           mood_threshold, instrument_threshold, descriptor_threshold)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")
    vocabulary = vocabulary or load_vocabulary()
    templates = _check_templates(templates)
    files = find_audio_files(input)
    ids = song_ids(files)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    mulan = model if isinstance(model, MuQMuLanModel) else load_muq_mulan(
        model, device=device, cache_dir=cache_dir, local_files_only=local_files_only)
    batch = CaptionBatch()
    bar = tqdm(total=len(files), desc="caption", unit="song", disable=not progress)
    try:
        for f in files:
            bar.set_postfix_str(f.name[:40])
            try:
                res = caption_song(f, output, mulan=mulan, song=ids[f], params=params, artist=artist,
                                   title=title, settings=settings, vocabulary=vocabulary,
                                   templates=templates, batch_size=batch_size, bpm=bpm,
                                   bpm_tolerance=bpm_tolerance, silence_db=silence_db,
                                   naming=naming, overwrite=overwrite, text_cache=text_cache)
                batch.results.append(res)
            except (AudioError, ValueError, OSError, RuntimeError) as exc:
                batch.failures.append((str(f), str(exc)))
            bar.update(1)
    finally:
        bar.close()
    return batch


# =========================================================================== display

def score_table(result: CaptionResult, *, tile: int | None = None):
    """Top scores per category as a DataFrame (rows: tile, category, rank, label, score)."""
    import pandas as pd
    rows = []
    for t in result.tiles:
        if tile is not None and t.index != tile:
            continue
        for c in CATEGORIES:
            for rank, (lab, sc) in enumerate(t.top.get(c, []), 1):
                rows.append({"tile": t.index, "category": c, "rank": rank, "label": lab,
                             "score": sc, "chosen": lab in t.tags.get(c, [])})
    return pd.DataFrame(rows)


def _tile_image(result: CaptionResult, t: TileCaption):
    from .tile_io import read_tile, tile_name
    png = Path(result.output) / tile_name(result.song, t.index)
    if png.is_file():
        px = read_tile(png, warn=False).pixels
        return (px[..., 0] if px.ndim == 3 else px), "tile PNG (red = dB)"
    return None, "no tile PNG yet"


def plot_tiles_with_captions(result: CaptionResult, *, max_tiles: int = 4, audio=None):
    """Figure: each tile's image (or the spectrogram of its span when not encoded) beside its caption."""
    import matplotlib.pyplot as plt

    tiles = result.tiles[:max_tiles]
    fig, axes = plt.subplots(len(tiles), 2, figsize=(12, 2.6 * max(len(tiles), 1)),
                             gridspec_kw={"width_ratios": [1, 1.6]}, squeeze=False)
    y = None
    for row, t in zip(axes, tiles):
        img, what = _tile_image(result, t)
        if img is None:
            if y is None:
                from .audio_io import load_audio
                y = audio if audio is not None else load_audio(result.source,
                                                               sample_rate=result.sample_rate)
            import librosa
            seg = y[t.start:t.end]
            S = librosa.amplitude_to_db(np.abs(librosa.stft(seg, n_fft=1024, hop_length=256)) + 1e-9,
                                        ref=np.max)
            img, what = S[::-1], "spectrogram of the span (dB)"
        row[0].imshow(img, aspect="auto", cmap="magma")
        row[0].set_title(f"{result.song} tile {t.index}: {t.start / result.sample_rate:.2f}-"
                         f"{t.end / result.sample_rate:.2f} s, {what}", fontsize=8)
        row[0].axis("off")
        row[1].axis("off")
        import textwrap
        row[1].text(0, 0.5, "\n".join(textwrap.wrap(t.caption, 60)), va="center", fontsize=10,
                    family="monospace")
    fig.tight_layout()
    return fig


def plot_scores(result: CaptionResult, *, tile: int = 0, top: int = 5):
    """Bar charts of the best scores per category for one tile; chosen labels are highlighted."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    t = next((x for x in result.tiles if x.index == tile), None)
    if t is None:
        raise ValueError(f"song {result.song!r} has no tile {tile} (it has {len(result.tiles)})")
    fig, axes = plt.subplots(1, len(CATEGORIES), figsize=(16, 2.8))
    for ax, c in zip(axes, CATEGORIES):
        items = t.top.get(c, [])[:top][::-1]
        if not items:
            ax.set_title(f"{c}: (silent tile)", fontsize=9)
            ax.axis("off")
            continue
        labs = [lab for lab, _ in items]
        vals = np.array([v for _, v in items])
        colors = ["tab:orange" if lab in t.tags.get(c, []) else "tab:blue" for lab in labs]
        span = float(vals.max() - vals.min()) or 1e-3
        base = float(vals.min()) - 0.25 * span     # bars grow with the score, negative or not
        ax.barh(labs, vals - base, left=base, color=colors)
        ax.set_xlim(base, float(vals.max()) + 0.05 * span)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.set_title(c, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"{result.song} tile {tile}: cosine similarity, chosen in orange", fontsize=10)
    fig.tight_layout()
    return fig
