"""Tag captions from label scores: vocabularies, which labels a caption names, its text.

What :mod:`wavdiff_utils.captioning.muq` turns audio/text similarities into: labels of
AudioSet genres, moods, instruments and MagnaTagATune's top-50 tags
(:func:`load_vocabulary`), ranked per category (:func:`select_tags`), and one line of
text (:func:`format_caption`), ending with the tempo from :mod:`wavdiff_utils.captioning.tempo`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import BadParameterError
from .tempo import bpm_text

__all__ = ["CATEGORIES", "PROMPT_TEMPLATES", "Label", "Vocabulary", "load_vocabulary",
           "TagSettings", "select_tags", "format_caption", "check_templates", "label_prompts"]

#: Ranked categories, in caption order.
CATEGORIES = ("genre", "mood", "instruments", "descriptors")

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

_SMALL_WORDS = {"and", "of", "for", "the", "a", "an", "in", "on"}


# =========================================================================== vocabulary

@dataclass(frozen=True)
class Label:
    """One label: its ``category``, official ``name`` (AudioSet, MagnaTagATune), how captions
    write it (``display``) and how prompts use it (``prompt``)."""

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
            raise BadParameterError(f"vocabulary has no labels for categor{'y' if len(missing) == 1 else 'ies'} "
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
        JSON (or its content) with ``categories`` -> ``genre``, ``mood``, ``instruments``
        -> AudioSet label names, and optional ``display`` overrides
        (default ``wavdiff_utils/captioning/data/audioset_music.json``).
    descriptors : path-like or sequence of str, optional
        One tag per line, ``#`` comments, or the tags (default MagnaTagATune's top 50).

    Raises
    ------
    ValueError
        A malformed file, an empty category or a repeated label.
    """
    if isinstance(audioset, Mapping):
        data, where = dict(audioset), "audioset vocabulary"
    else:
        path = Path(audioset) if audioset is not None else AUDIOSET_FILE
        where = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadParameterError(f"{path}: cannot read the AudioSet vocabulary ({exc})") from None
    cats = data.get("categories")
    if not isinstance(cats, Mapping):
        raise BadParameterError(f"{where}: needs a 'categories' mapping with genre, mood and instruments")
    overrides = dict(data.get("display") or {})
    if descriptors is None or isinstance(descriptors, (str, os.PathLike)):
        dpath = Path(descriptors) if descriptors is not None else DESCRIPTORS_FILE
        try:
            lines = dpath.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise BadParameterError(f"{dpath}: cannot read the descriptor tags ({exc})") from None
        tags = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    else:
        tags = [str(t).strip() for t in descriptors if str(t).strip()]
    raw = {"genre": cats.get("genre") or [], "mood": cats.get("mood") or [],
           "instruments": cats.get("instruments") or [], "descriptors": tags}
    labels = {}
    for cat, names in raw.items():
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise BadParameterError(f"{where}: category {cat!r} must be a list of label names, got {names!r}")
        seen = set()
        out = []
        for n in names:
            n = str(n).strip()
            if n.lower() in seen:
                raise BadParameterError(f"{where}: label {n!r} appears twice in category {cat!r}")
            seen.add(n.lower())
            out.append(Label(cat, n, _display_form(n, cat, overrides),
                             n.lower() if cat == "descriptors" else _prompt_form(n)))
        labels[cat] = tuple(out)
    return Vocabulary(labels)


def check_templates(templates) -> dict[str, tuple[str, ...]]:
    templates = dict(PROMPT_TEMPLATES if templates is None else templates)
    for cat in CATEGORIES:
        t = templates.get(cat)
        if not t or isinstance(t, str):
            raise BadParameterError(f"templates[{cat!r}] must be a non-empty list of strings, got {t!r}")
        for one in t:
            if "{label}" not in one and "{name}" not in one:
                raise BadParameterError(f"template {one!r} for {cat!r} uses neither {{label}} nor {{name}}")
        templates[cat] = tuple(t)
    return templates


def label_prompts(label: Label, templates: Sequence[str]) -> list[str]:
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

    A label after the best (the best that is not redundant, always kept when
    the count is at least 1) is kept when ``(s - mean) >= threshold * (s_best -
    mean)``, scores measured within its category: 1 keeps only ties, 0 keeps
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
                    raise BadParameterError(f"{f.name} must be an integer >= 0, got {v!r}")
                object.__setattr__(self, f.name, int(v))
            else:
                if isinstance(v, bool) or not 0.0 <= float(v) <= 1.0:
                    raise BadParameterError(f"{f.name} must be in [0, 1], got {v!r}")
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

    ``scores`` maps each category to the tile's similarity to every label of it
    (in ``vocabulary`` order).  Returns category -> chosen labels, best first.
    Redundant labels are skipped and do not count: within a category, one whose
    words are a subset or superset of a chosen one's (``Singing`` after ``Male
    Singing``); among descriptors, one sharing a word with anything chosen so
    far (``"guitar"`` after Electric Guitar, ``"no vocals"`` after ``"vocal"``).
    """
    settings = settings or TagSettings()
    chosen: dict[str, list[Label]] = {}
    taken: set = set()
    for cat in CATEGORIES:
        s = np.asarray(scores[cat], dtype=np.float64)
        labels = vocabulary[cat]
        if s.shape != (len(labels),):
            raise BadParameterError(f"scores[{cat!r}] has shape {s.shape}, expected ({len(labels)},)")
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
    return (prefix or "") + " ".join(parts + [bpm_text(bpm)]).rstrip()
