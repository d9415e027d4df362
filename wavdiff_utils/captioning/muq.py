"""Tag captions from MuQ-MuLan, one per tile, on the shared interface (:mod:`wavdiff_utils.captioning`).

Each tile's audio is embedded with the MuQ-MuLan audio tower and compared with
text embeddings of label prompts (labels and text: :mod:`wavdiff_utils.captioning.labels`)::

    style of Artist. A Sad Rock track featuring Electric Guitar. Characterized as loud. 120 BPM.

``model`` is a hub id or a folder (default :data:`DEFAULT_MODEL`, which
``$WAVDIFF_MUQ_MODEL`` replaces).  Its ``config.json`` names two sub-towers
(``OpenMuQ/MuQ-large-msd-iter``, ``xlm-roberta-base``) that must be there too:
each is looked up as a folder (absolute, or relative to the model folder), as
``<model folder>/<last part of the name>``, then in the Hugging Face cache and
hub.  muq picks a tower's code from its name (``muq`` / ``xlm-roberta``), so
folders named otherwise go through a renamed link; the MuQ-MuLan checkpoint is
loaded last.  muq 0.1.0 fails with transformers >= 5.16 (checked up front);
building MuQ reseeds the global random generators (their states are restored).

>>> from wavdiff_utils.captioning import caption_songs  # doctest: +SKIP
>>> caption_songs(MuQCaptioner("models/MuQ-MuLan-large"), "song.mp3", "outputs/encode")  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .labels import (CATEGORIES, TagSettings, Vocabulary, check_templates, format_caption,
                     label_prompts, load_vocabulary, select_tags)
from .weights import Unavailable, hub_folder, local_folder, looks_local, model_name, weights_missing
from .results import TileCaption
from .interface import Captioner, pick_device, positive_int
from ..errors import BadParameterError, WeightsMissingError
from ..paths import atomic_path, resolve
from .tempo import estimate_bpm

__all__ = ["DEFAULT_MODEL", "MODEL_ENV", "NAMINGS", "TAGS_SUFFIX", "SIDECAR_NAME",
           "ModelWeightsMissing", "MuQMuLanModel", "MuQCaptioner", "resolve_model",
           "load_muq_mulan", "text_embeddings", "tile_clips"]

#: The model used when none is given.
DEFAULT_MODEL = "OpenMuQ/MuQ-MuLan-large"
#: Environment variable that replaces :data:`DEFAULT_MODEL` (and only it).
MODEL_ENV = "WAVDIFF_MUQ_MODEL"
#: Per-song record of what was captioned, beside the tiles.
SIDECAR_NAME = "captions_muq.json"
#: Suffix before ``.txt`` of a tag caption written beside another captioner's caption.
TAGS_SUFFIX = ".tags"
#: ``naming`` choices (see :func:`wavdiff_utils.captioning.caption_songs`).
NAMINGS = ("auto", "txt", "tags")
#: The missing-weights error (an alias kept for callers of older versions).
ModelWeightsMissing = WeightsMissingError

_CACHE_FORMAT = 1
_TF_BROKEN = (5, 16)          # muq 0.1.0 breaks from this transformers version on
#: Sub-towers: config key, the word muq needs in the folder name, files, download options.
_TOWERS = {
    "audio": ("audio_model", "muq", "OpenMuQ/MuQ-large-msd-iter", ""),
    "text": ("text_model", "xlm-roberta", "xlm-roberta-base",
             ' --include "*.json" "*.model" "*.safetensors"'),
}
_ALIASES: list = []   # temporary folders holding renamed links; removed at exit


# =========================================================================== model files

def resolve_model(model=DEFAULT_MODEL) -> str:
    """The model actually used: ``$WAVDIFF_MUQ_MODEL`` when ``model`` is the default id and it is set."""
    return model_name(model, default=DEFAULT_MODEL, env=MODEL_ENV)


def _weights_file(folder: Path) -> Path | None:
    return next((folder / n for n in ("model.safetensors", "pytorch_model.bin")
                 if (folder / n).is_file()), None)


def _weights_key(path: Path) -> str:
    """The weights file's identity in cache keys: path, size, modification time."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _missing_in(folder: Path, kind: str) -> str | None:
    """What ``folder`` lacks to be the model (``kind="model"``) or one of its towers, or ``None``."""
    if not (folder / "config.json").is_file():
        return "no config.json"
    if kind == "audio" and not (folder / "model.safetensors").is_file():
        return "no model.safetensors"
    if kind != "audio" and _weights_file(folder) is None:
        return "no model.safetensors or pytorch_model.bin"
    if kind == "text" and not any((folder / n).is_file()
                                  for n in ("tokenizer.json", "sentencepiece.bpe.model")):
        return "no tokenizer.json or sentencepiece.bpe.model"
    return None


def _find(name: str, kind: str, base: Path | None, **hub) -> Path:
    """The folder holding the model or a tower, or :class:`Unavailable` saying why not."""
    p = Path(os.path.expanduser(name))
    if base is not None and not p.is_absolute():
        folder = next((c for c in (base / name, base / p.name) if c.is_dir()), None)
    else:
        folder = local_folder(name)
    if folder is None and (p.is_absolute() or looks_local(name)):
        raise Unavailable(f"folder {name} does not exist")
    patterns = ["*.json", "*.safetensors"] + {"model": ["*.bin"], "text": ["*.model"]}.get(kind, [])
    folder = folder or hub_folder(name, allow_patterns=patterns, **hub)
    missing = _missing_in(folder, kind)
    if missing:
        raise Unavailable(f"{folder} has {missing}")
    return folder


def _alias(path: Path, needs: str) -> str:
    """A path to ``path`` whose text contains ``needs`` (muq picks a tower's code from its name)."""
    if needs in str(path).lower():
        return str(path)
    import atexit
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="wavdiff-muq-"))
    link = tmp / f"{needs}-{path.name}"
    try:
        link.symlink_to(path, target_is_directory=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadParameterError(f"tower folder {str(path)!r} must have {needs!r} in its name for "
                                f"muq to load it, and a renamed link could not be made ({exc}); "
                                f"rename the folder") from None
    if not _ALIASES:
        atexit.register(lambda: [shutil.rmtree(t, ignore_errors=True) for t in _ALIASES])
    _ALIASES.append(tmp)
    return str(link)


def _resolve_files(name: str, *, cache_dir=None, local_files_only=None) -> tuple[Path, dict, dict]:
    """The model folder, its config and the tower folders; one-line error when anything is missing."""
    hub = dict(cache_dir=cache_dir, local_files_only=local_files_only)
    problems, folder, config = [], None, None
    try:
        is_hub = local_folder(name) is None
    except Unavailable:
        is_hub = False
    try:
        folder = _find(name, "model", None, **hub)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        for k in ("mulan", "audio_model", "text_model", "audio_transformer", "text_transformer"):
            if not isinstance(config.get(k), dict):
                raise BadParameterError(f"{folder / 'config.json'}: not a MuQ-MuLan config "
                                        f"(no {k!r} section)")
    except Unavailable as exc:
        problems.append(f"{name}: {exc}")
    except ValueError as exc:
        raise BadParameterError(f"{folder / 'config.json'}: not a MuQ-MuLan config ({exc})") from None
    names = {k: (str(config[key].get("name") or "") if config else default)
             for k, (key, _, default, _) in _TOWERS.items()}
    towers = {}
    for kind, (key, _, _, _) in _TOWERS.items():
        try:
            if config is not None:
                towers[kind] = _find(names[kind], kind, None if is_hub else folder, **hub)
        except Unavailable as exc:
            problems.append(f"{names[kind] or key} ({kind} tower): {exc}")
    if not problems:
        return folder, config, towers
    target = f"models/{name.rstrip('/').split('/')[-1]}" if is_hub else str(folder or name)
    downloads = [f"hf download {name if is_hub else DEFAULT_MODEL} --local-dir {target}"] \
        if (is_hub or config is None) else []
    downloads += [f"hf download {names[k]}{_TOWERS[k][3]} --local-dir {target}/{names[k].split('/')[-1]}"
                  for k in _TOWERS if names[k] and not looks_local(names[k])
                  and (is_hub or k not in towers)]
    raise weights_missing("MuQ-MuLan", name, "; ".join(problems), downloads=downloads,
                          folder=target, env=MODEL_ENV)


# =========================================================================== the model

@dataclass
class MuQMuLanModel:
    """A loaded MuQ-MuLan (``model``, float32, eval mode), ready to embed tiles and prompts.

    ``key`` identifies the ``weights`` file (path, size, time) in cache keys; the
    audio tower takes ``clip_seconds`` clips at ``sample_rate``; ``towers`` maps
    ``"audio"`` / ``"text"`` to the sub-tower folders.
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
        tower averages over padding too, so padding would change an embedding.
        """
        import torch

        texts = [str(t) for t in texts]
        tok = self.model.mulan_module.text.tokenizer
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(texts):
            groups.setdefault(len(tok(t)["input_ids"]), []).append(i)
        out = [None] * len(texts)
        with torch.inference_mode():
            for idx in groups.values():
                for b in range(0, len(idx), batch_size):
                    part = idx[b:b + batch_size]
                    emb = self.model.extract_text_latents([texts[i] for i in part]).float().cpu()
                    for i, e in zip(part, emb.numpy()):
                        out[i] = e
        return _normalize(np.stack(out).astype(np.float32)) if out else np.zeros((0, 0), np.float32)

    def embed_clips(self, clips: np.ndarray) -> np.ndarray:
        """Embeddings of equal-length clips ``(n, clip_samples)`` at :attr:`sample_rate`."""
        import torch

        x = torch.as_tensor(np.ascontiguousarray(clips, dtype=np.float32), device=self.device)
        with torch.inference_mode():
            return self.model.mulan_module.get_audio_latents(x).float().cpu().numpy()

    def embed_tiles(self, tiles: Sequence[np.ndarray], *, batch_size: int = 8) -> np.ndarray:
        """One L2-normalised embedding per tile (the mean over its clips, see :func:`tile_clips`)."""
        batch_size = positive_int("batch_size", batch_size)
        out = []
        for b in range(0, len(tiles), batch_size):
            part = [tile_clips(t, self.clip_samples) for t in tiles[b:b + batch_size]]
            emb = self.embed_clips(np.concatenate(part, axis=0))
            ends = np.cumsum([len(c) for c in part])
            out += [emb[e - len(c):e].mean(axis=0) for c, e in zip(part, ends)]
        return _normalize(np.stack(out).astype(np.float32)) if out else np.zeros((0, 0), np.float32)


def _normalize(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


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
        raise BadParameterError("a tile without samples cannot be embedded")
    n_full, rest = divmod(len(a), clip_samples)
    clips = [a[i * clip_samples:(i + 1) * clip_samples] for i in range(n_full)]
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

    parts = [re.match(r"\d*", p).group() for p in transformers.__version__.split(".")[:2]]
    if tuple(int(p or 0) for p in parts) >= _TF_BROKEN:
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


def _build(name: str, folder: Path, config: dict, towers: dict, device: str) -> MuQMuLanModel:
    """Build MuQ-MuLan from resolved files and load its checkpoint last."""
    from muq import MuQMuLan

    weights = _weights_file(folder)
    cfg = json.loads(json.dumps(config))
    for kind, (key, needs, _, _) in _TOWERS.items():
        cfg[key]["name"] = _alias(towers[kind], needs)
    with _quiet_and_seed_safe():
        net = MuQMuLan(cfg)
    result = net.load_state_dict(_load_state_dict(weights), strict=False)
    head_missing = [k for k in result.missing_keys
                    if not k.startswith(("mulan.audio.model.", "mulan.text.model."))]
    if head_missing:
        raise BadParameterError(f"{weights}: does not fit {folder / 'config.json'}: "
                                f"{len(head_missing)} weights missing (e.g. "
                                f"{', '.join(head_missing[:3])}); the file is damaged or belongs "
                                f"to another model")
    for keys, what in ((result.missing_keys, "sub-tower weights are not in the checkpoint and "
                        "keep the values of the sub-tower files"),
                       (result.unexpected_keys, "weights not used by the model")):
        if keys:
            warnings.warn(f"{weights}: {len(keys)} {what} (e.g. {', '.join(keys[:3])})", stacklevel=3)
    return MuQMuLanModel(net.float().to(device).eval(), name, folder, weights, device,
                         _weights_key(weights), int(net.sr), float(net.clip_secs), towers)


def load_muq_mulan(model=DEFAULT_MODEL, *, device: str = "auto", cache_dir=None,
                   local_files_only: bool | None = None) -> MuQMuLanModel:
    """Load MuQ-MuLan from a folder, the Hugging Face cache or the hub (see :class:`MuQCaptioner`).

    Raises
    ------
    WeightsMissingError
        Model or sub-tower files are missing (one line: what to download, where to point ``model``).
    RuntimeError
        The installed transformers cannot run muq.
    BadParameterError
        A bad device, or weights that do not fit the model's ``config.json``.
    """
    cap = MuQCaptioner(model, device=device, cache_dir=cache_dir, local_files_only=local_files_only)
    cap.load()
    return cap.mulan


# =========================================================================== text embeddings

def _default_cache() -> Path:
    env = os.environ.get("WAVDIFF_CACHE", "").strip()
    return Path(env) / "muq-text" if env else resolve("outputs/cache/muq-text")


def text_embeddings(mulan: MuQMuLanModel, vocabulary: Vocabulary | None = None, *,
                    templates=None, cache_dir=None) -> dict[str, np.ndarray]:
    """Category -> ``(n_labels, dim)`` L2-normalised text embeddings (mean over each label's prompts).

    Kept on ``mulan`` and cached on disk in ``cache_dir`` (default
    ``$WAVDIFF_CACHE/muq-text`` or ``outputs/cache/muq-text``; ``False``: no
    disk cache), keyed by the weights, the vocabulary and the ``templates``.
    """
    vocabulary = vocabulary or load_vocabulary()
    templates = check_templates(templates)
    key_data = {"format": _CACHE_FORMAT, "model": mulan.key, "vocabulary": vocabulary.digest(),
                "templates": {c: list(templates[c]) for c in CATEGORIES}}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:20]
    path = None if cache_dir is False else \
        Path(cache_dir if cache_dir is not None else _default_cache()) / f"{key}.npz"
    emb = mulan._text_memo.get(key)
    if emb is None and path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if json.loads(str(z["meta"])) == key_data:
                    emb = {c: z[c].astype(np.float32) for c in CATEGORIES}
        except (OSError, ValueError, KeyError):
            pass    # unreadable cache: recompute and overwrite
        if emb is not None and any(len(emb[c]) != len(vocabulary[c]) for c in CATEGORIES):
            emb = None
    if emb is None:
        prompts, owners = [], []
        for c in CATEGORIES:
            for i, lab in enumerate(vocabulary[c]):
                for p in label_prompts(lab, templates[c]):
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
    mulan._text_memo[key] = emb
    if path is not None and not path.is_file():
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(key_data, sort_keys=True)), **emb)
        except OSError as exc:
            warnings.warn(f"text-embedding cache {path} not written ({exc})", stacklevel=2)
    return emb


# =========================================================================== the captioner

class MuQCaptioner(Captioner):
    """MuQ-MuLan tag captions on the shared interface (:class:`wavdiff_utils.captioning.Captioner`).

    The weights are resolved when it is made (a missing file raises
    :class:`~wavdiff_utils.errors.WeightsMissingError` at once) and loaded
    before the first song that needs captioning.

    Parameters
    ----------
    model : str, path-like or MuQMuLanModel
        Hub id, local folder (see the module notes) or a loaded model.
    device : str
        ``"auto"`` (cuda, mps, cpu), ``"cpu"``, ``"cuda[:N]"`` or ``"mps"``.
    settings : TagSettings, optional
        Labels named per category, and their thresholds.
    vocabulary, templates
        Override the label vocabularies / prompt templates.
    batch_size : int
        Tiles embedded per forward pass.
    bpm, bpm_tolerance
        End captions with the tempo (the song's; a tile's own when it differs by more
        than ``bpm_tolerance``, relative).
    silence_db : float or None
        Tiles peaking below this (dBFS) are captioned ``"Silence."``; ``None`` disables.
    text_cache : path-like or False, optional
        See :func:`text_embeddings`.
    cache_dir, local_files_only
        Hugging Face cache folder; never download.
    top_k : int
        Best scores kept per category (``TileCaption.top``).
    """

    name = "muq"
    suffix = TAGS_SUFFIX
    record_name = SIDECAR_NAME

    def __init__(self, model=DEFAULT_MODEL, *, device: str = "auto", settings: TagSettings | None = None,
                 vocabulary: Vocabulary | None = None, templates=None, batch_size: int = 8,
                 bpm: bool = True, bpm_tolerance: float = 0.08, silence_db: float | None = -60.0,
                 text_cache=None, cache_dir=None, local_files_only: bool | None = None,
                 top_k: int = 5):
        self.settings = settings or TagSettings()
        self.vocabulary = vocabulary or load_vocabulary()
        self.templates = check_templates(templates)
        self.batch_size = positive_int("batch_size", batch_size)
        self.bpm, self.bpm_tolerance, self.silence_db = bool(bpm), float(bpm_tolerance), silence_db
        self.text_cache, self.top_k = text_cache, int(top_k)
        if isinstance(model, MuQMuLanModel):
            self.mulan, self.model_name, self._key = model, model.name, model.key
            return
        self.mulan, self.model_name = None, resolve_model(model)
        # the weights are looked up before torch and transformers are imported (5-7 s here):
        # without them the metadata captioner stands in at once
        self._files = _resolve_files(self.model_name, cache_dir=cache_dir,
                                     local_files_only=local_files_only)
        _check_transformers()
        self._device = pick_device(device)
        self._key = _weights_key(_weights_file(self._files[0]))

    def identity(self) -> dict:
        return {"model": self._key, "vocabulary": self.vocabulary.digest(),
                "templates": {c: list(self.templates[c]) for c in CATEGORIES},
                "settings": dataclasses.asdict(self.settings), "bpm": self.bpm,
                "bpm_tolerance": self.bpm_tolerance, "silence_db": self.silence_db}

    def load(self) -> None:
        if self.mulan is None:
            self.mulan = _build(self.model_name, *self._files, self._device)

    def caption_tiles(self, tiles, *, prefix: str) -> list[TileCaption]:
        sr, mulan = tiles.params.sample_rate, self.mulan
        tile_bpm = (estimate_bpm(tiles.audio, sr, tiles.spans, tolerance=self.bpm_tolerance)[1]
                    if self.bpm else [None] * len(tiles.spans))
        y = tiles.audio
        if sr != mulan.sample_rate:
            import soxr
            y = soxr.resample(y, sr, mulan.sample_rate, quality="HQ").astype(np.float32)
        scale = mulan.sample_rate / sr
        pieces = {}
        for s in tiles.spans:
            seg = tiles.tile_audio(s.index)
            peak = float(np.max(np.abs(seg))) if len(seg) else 0.0
            if self.silence_db is None or (peak > 0 and 20 * np.log10(peak) >= self.silence_db):
                a = int(round(s.start * scale))
                pieces[s.index] = y[a:max(int(round(s.end * scale)), a + 1)]
        emb = dict(zip(pieces, mulan.embed_tiles(list(pieces.values()), batch_size=self.batch_size)))
        text = text_embeddings(mulan, self.vocabulary, templates=self.templates,
                               cache_dir=self.text_cache)
        out = []
        for s, tb in zip(tiles.spans, tile_bpm):
            if s.index not in emb:
                out.append(TileCaption(s.index, s.start, s.end, f"{prefix}Silence.", silent=True))
                continue
            scores = {c: text[c] @ emb[s.index] for c in CATEGORIES}
            chosen = select_tags(scores, self.vocabulary, self.settings)
            top = {c: [(self.vocabulary[c][i].display, round(float(scores[c][i]), 5))
                       for i in np.argsort(-scores[c], kind="stable")[:self.top_k]]
                   for c in CATEGORIES}
            out.append(TileCaption(s.index, s.start, s.end,
                                   format_caption(chosen, prefix=prefix, bpm=tb), bpm=tb,
                                   tags={c: [lab.display for lab in chosen[c]] for c in CATEGORIES},
                                   top=top))
        return out
