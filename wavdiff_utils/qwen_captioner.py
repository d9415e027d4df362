"""Prose descriptions of each tile with Qwen2-Audio-7B-Instruct, in sync with the tiles.

For every song, each tile's exact sample span (from ``01_encode``'s manifest,
or computed by the same :func:`wavdiff_utils.tiling.tile_spans`) is resampled
to the model's 16 kHz and described in one paragraph of prose; the paragraph
is written beside the tile as ``<song>_<index:04d>.txt`` or, when a tag
caption already sits there, as ``<song>_<index:04d>.prose.txt`` (``naming``
picks).  ``<song>/qwen_descriptions.json`` records what was written (model,
prompt, spans, texts): a re-run skips finished songs and recognises its own
files, so another captioner's are never overwritten.

Generation is greedy (``do_sample=False`` whatever the checkpoint's own
sampling settings), limited by ``max_new_tokens``, and only the generated
tokens are decoded, so neither the chat template nor the prompt is echoed.

Over-long tiles
---------------
Qwen2-Audio's Whisper feature extractor keeps only the first 30 s of a clip
and drops the rest without a word.  A tile longer than that (a low sample
rate, a large ``size`` or ``hop_length``) is **refused**, not split: its song
fails with a message saying how long the tiles are and how to make them
shorter.  A split description would need stitching into one caption that no
longer matches one look at the image, so refusing keeps every caption honest.

Examples
--------
>>> from wavdiff_utils.qwen_captioner import describe_songs  # doctest: +SKIP
>>> result = describe_songs("song.mp3", "outputs/encode",
...                         model="models/Qwen2-Audio-7B-Instruct")  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio_io import find_audio_files
from .captioning import caption_path, caption_prefix, pick_device, song_tiles, tags_from_file, \
    write_caption
from .params import CodecParams
from .paths import atomic_path, resolve
from .pipeline import failure_lines, song_ids

__all__ = ["DEFAULT_MODEL", "MODEL_ENV", "DEFAULT_PROMPT", "NAMINGS", "PROSE_SUFFIX",
           "MAX_AUDIO_SECONDS", "RECORD_NAME", "QwenWeightsError", "TileTooLongError",
           "QwenCaptioner", "resolve_model", "load_qwen", "clean_description",
           "check_tile_length", "SongDescriptions", "DescribeResult", "describe_songs",
           "plot_descriptions"]

#: Hugging Face id of the model the captioner is made for.
DEFAULT_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"

#: Environment variable naming a local model folder used when ``model`` is left at
#: :data:`DEFAULT_MODEL` (the tests point it at a tiny model they build).
MODEL_ENV = "WAVDIFF_QWEN_MODEL"

#: What a music model should learn from one clip, in one paragraph.
DEFAULT_PROMPT = (
    "Describe this music clip in one paragraph of plain prose, as a caption for training a "
    "music generation model. Say what genre and style it is, which instruments and voices "
    "you hear and what each plays, the mood, the tempo and rhythmic feel, how the clip "
    "develops from its start to its end, and the production (mix, space, effects, sound "
    "quality). Describe only what is audible; do not name the artist or the song, and do "
    "not use lists or headings.")

#: ``naming`` choices: ``"auto"`` writes ``.txt`` unless another captioner's
#: caption is there (then ``.prose.txt``), ``"txt"`` always ``.txt`` (a song
#: whose tiles already have another caption fails rather than overwrite it),
#: ``"prose"`` always ``.prose.txt``.
NAMINGS = ("auto", "txt", "prose")

#: Suffix before ``.txt`` of a description written beside a tag caption.
PROSE_SUFFIX = ".prose"

#: Longest clip Qwen2-Audio hears, in seconds (its feature extractor's window).
MAX_AUDIO_SECONDS = 30.0

#: Per-song record of what was written (model, prompt, spans, texts); allows resuming.
RECORD_NAME = "qwen_descriptions.json"
_RECORD_FORMAT = "wavdiff-qwen-descriptions"

_DTYPES = {"float32": "float32", "fp32": "float32", "float": "float32",
           "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "half": "float16"}


class QwenWeightsError(FileNotFoundError):
    """The Qwen2-Audio weights cannot be found or loaded; the message says where to get them."""


class TileTooLongError(ValueError):
    """A tile is longer than the model hears; the message says how long and what to change."""


# --------------------------------------------------------------------------- model loading

def _weights_message(model: str, why: str) -> str:
    return (f"Qwen2-Audio weights not found for model={model!r}: {why}. "
            f"Download them once where the Hugging Face hub is reachable, e.g. "
            f"`huggingface-cli download {DEFAULT_MODEL} --local-dir models/Qwen2-Audio-7B-Instruct` "
            f"(about 16 GB), then pass model='models/Qwen2-Audio-7B-Instruct' or set "
            f"{MODEL_ENV} to that folder.")


def _looks_like_path(model: str) -> bool:
    s = str(model)
    return (os.path.isabs(os.path.expanduser(s)) or s.startswith((".", "~")) or "\\" in s
            or s.count("/") != 1)


def _check_folder(folder: Path, model: str) -> Path:
    if not folder.is_dir():
        raise QwenWeightsError(_weights_message(model, f"the folder {str(folder)!r} does not exist"))
    missing = [name for name in ("config.json", "preprocessor_config.json")
               if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        missing.append("*.safetensors weights")
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
        missing.append("tokenizer.json or vocab.json")
    if missing:
        raise QwenWeightsError(_weights_message(
            model, f"the folder {str(folder)!r} lacks {', '.join(missing)}"))
    return folder


def _offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    if any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags):
        return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except Exception:
        return False


def resolve_model(model: str = DEFAULT_MODEL) -> str:
    """Where the weights will be loaded from: a local folder, or a hub id to download.

    Parameters
    ----------
    model : str
        A local folder (absolute, or relative to the current folder or the
        repository root) or a Hugging Face id.  When it equals
        :data:`DEFAULT_MODEL` and the environment variable :data:`MODEL_ENV`
        is set, that variable's folder is used instead.

    Returns
    -------
    str
        An absolute folder path when the weights are on disk (a hub id found
        in the local Hugging Face cache resolves to its snapshot folder), or
        the hub id itself when it has to be downloaded.

    Raises
    ------
    QwenWeightsError
        The folder is missing or incomplete, or the hub id is not cached and
        the hub is switched off (``HF_HUB_OFFLINE``).
    """
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise ValueError(f"model must be a Hugging Face id or a folder, got {model!r}")
    model = str(model).strip()
    env = os.environ.get(MODEL_ENV, "").strip()
    if model == DEFAULT_MODEL and env:
        return str(_check_folder(resolve(env), f"{env} (from {MODEL_ENV})"))
    local = resolve(model)
    if local.exists() or _looks_like_path(model):
        return str(_check_folder(local, model))
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(model, local_files_only=True)
    except Exception:
        pass
    not_here = "it is neither a local folder nor in the local Hugging Face cache"
    if _offline():
        raise QwenWeightsError(_weights_message(
            model, f"{not_here}, and the hub is switched off (HF_HUB_OFFLINE)"))
    # one quick look at the hub, so a machine without it gets this message at once,
    # not after the download's retries
    try:
        from huggingface_hub import HfApi
        HfApi().model_info(model, timeout=10)
    except Exception as exc:
        raise QwenWeightsError(_weights_message(model, f"{not_here}, and {_hub_problem(exc)}")) from None
    return model


def _hub_problem(exc: BaseException) -> str:
    """What went wrong asking the hub, in a few words."""
    name = type(exc).__name__
    if "Gated" in name:
        return "the hub says the model is gated (accept its licence and log in first)"
    if "RepositoryNotFound" in name:
        return "the hub has no model of that name (or it is private)"
    if "Connection" in name or "Timeout" in name or "Resolution" in str(exc):
        return "the hub cannot be reached from this machine"
    return f"the hub did not give it ({name}: {_first_line(exc)[:120]})"


def _torch_dtype(dtype: str, device: str):
    import torch
    name = (dtype or "auto").strip().lower()
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {dtype!r}")
    return getattr(torch, _DTYPES[name])


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def load_qwen(model: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
              load_in_4bit: bool = False) -> "QwenCaptioner":
    """Load Qwen2-Audio and its processor, ready to describe clips.

    Parameters
    ----------
    model : str
        Hugging Face id or local folder (see :func:`resolve_model`).
    device : str
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"mps"`` or ``"cuda[:N]"``.
    dtype : str
        ``"auto"`` (bfloat16 on a GPU that has it, else float16; float32 on
        CPU), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    load_in_4bit : bool
        Quantise the weights to 4 bits (NF4) with ``bitsandbytes`` while
        loading, for CUDA cards under 16 GB.  ``dtype`` is then the compute type.

    Returns
    -------
    QwenCaptioner

    Raises
    ------
    QwenWeightsError
        The weights cannot be found or loaded (one message saying where to get them).
    ImportError
        ``load_in_4bit`` without ``bitsandbytes`` installed.
    ValueError
        A bad ``device`` or ``dtype``, ``load_in_4bit`` off CUDA, or a folder
        that holds another kind of model.
    """
    source = resolve_model(model)
    device = pick_device(device)
    torch_dtype = _torch_dtype(dtype, device)
    from transformers import AutoConfig, AutoProcessor, Qwen2AudioForConditionalGeneration

    kwargs = {"dtype": torch_dtype}
    local = os.path.isdir(source)
    if local:
        kwargs["local_files_only"] = True
    if load_in_4bit:
        if not device.startswith("cuda"):
            raise ValueError(f"load_in_4bit needs a CUDA GPU (bitsandbytes), but device is {device!r}")
        if not _has("bitsandbytes"):
            raise ImportError("load_in_4bit=True needs the bitsandbytes package: "
                              "pip install bitsandbytes")
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype)
    # device_map loads the weights straight onto the device (no CPU copy) but needs accelerate
    use_map = _has("accelerate")
    if use_map:
        kwargs["device_map"] = {"": device}
    elif load_in_4bit:
        raise ImportError("load_in_4bit=True needs the accelerate package: pip install accelerate")

    where = f"the folder {source!r}" if local else f"the hub id {source!r}"
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError) as exc:
        raise QwenWeightsError(_weights_message(model, f"{where} could not be read "
                                                       f"({type(exc).__name__}: {_first_line(exc)})")) from None
    if getattr(config, "model_type", None) != "qwen2_audio":
        raise ValueError(f"model={model!r} holds a {getattr(config, 'model_type', '?')!r} model, "
                         f"not Qwen2-Audio (model_type 'qwen2_audio')")
    try:
        processor = AutoProcessor.from_pretrained(source, local_files_only=local)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = Qwen2AudioForConditionalGeneration.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise QwenWeightsError(_weights_message(model, f"loading from {where} failed "
                                                       f"({type(exc).__name__}: {_first_line(exc)})")) from None
    if not use_map:
        net = net.to(device)
    net.eval()
    return QwenCaptioner(net, processor, device=device, dtype=torch_dtype, source=source,
                         quantized=bool(load_in_4bit))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- describing clips

_ROLE_ECHO = re.compile(r"^\s*(?:<\|im_start\|>)?\s*assistant\s*[:\n]\s*", re.IGNORECASE)


def clean_description(text: str) -> str:
    """One clean paragraph: no role marker or chat tokens, whitespace runs made single spaces."""
    text = re.sub(r"<\|[^|>]*\|>", " ", str(text))
    text = _ROLE_ECHO.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


class QwenCaptioner:
    """A loaded Qwen2-Audio model with its processor; describes clips of audio.

    Made by :func:`load_qwen`.

    Attributes
    ----------
    model, processor
        The transformers objects.
    device : str
    dtype : torch.dtype
    source : str
        The folder or hub id the weights came from.
    sampling_rate : int
        Rate the model hears (16000 for Qwen2-Audio).
    max_seconds : float
        Longest clip the model hears whole.
    """

    def __init__(self, model, processor, *, device: str, dtype, source: str, quantized: bool = False):
        self.model = model
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.source = source
        self.quantized = quantized
        fe = processor.feature_extractor
        self.sampling_rate = int(fe.sampling_rate)
        self.max_samples = int(getattr(fe, "n_samples", MAX_AUDIO_SECONDS * self.sampling_rate))
        self.max_seconds = self.max_samples / self.sampling_rate
        tok = processor.tokenizer
        tok.padding_side = "left"          # batched generation continues every row at its end
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token

    def __repr__(self):
        return (f"QwenCaptioner(source={self.source!r}, device={self.device!r}, "
                f"dtype={str(self.dtype).replace('torch.', '')}, quantized={self.quantized})")

    def prompt_text(self, prompt: str) -> str:
        """The chat-formatted text for one clip and ``prompt`` (what the model reads besides audio)."""
        conversation = [{"role": "user", "content": [
            {"type": "audio", "audio_url": "tile"},
            {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True,
                                                  tokenize=False)

    def to_model_rate(self, clip: np.ndarray, sample_rate: int) -> np.ndarray:
        """Resample one mono clip to the model's rate (soxr, high quality)."""
        clip = np.asarray(clip, dtype=np.float32)
        if clip.ndim != 1:
            raise ValueError(f"clips must be mono 1-D arrays, got shape {clip.shape}")
        if int(sample_rate) == self.sampling_rate:
            return clip
        import soxr
        return soxr.resample(clip, int(sample_rate), self.sampling_rate, quality="HQ").astype(np.float32)

    def _generation_config(self, max_new_tokens: int):
        gen = copy.deepcopy(self.model.generation_config)
        gen.do_sample = False
        gen.num_beams = 1
        gen.temperature = None
        gen.top_p = None
        gen.top_k = None
        gen.max_length = None
        gen.max_new_tokens = int(max_new_tokens)
        if gen.pad_token_id is None:
            gen.pad_token_id = self.processor.tokenizer.pad_token_id
        return gen

    def describe(self, clips, *, sample_rate: int, prompt: str = DEFAULT_PROMPT,
                 max_new_tokens: int = 256) -> list[str]:
        """Describe each clip in one paragraph (greedy decoding: the same clip gives the same text).

        Parameters
        ----------
        clips : list of ndarray
            Mono float clips at ``sample_rate``; described together in one batch.
        sample_rate : int
            Their sample rate; they are resampled to :attr:`sampling_rate`.
        prompt : str
            The instruction given with every clip.
        max_new_tokens : int
            Most tokens written per description (the ~750 audio tokens of the
            input are not counted).

        Raises
        ------
        TileTooLongError
            A clip is longer than :attr:`max_seconds`.
        """
        import torch
        if isinstance(clips, np.ndarray) and clips.ndim == 1:
            clips = [clips]
        if not len(clips):
            return []
        max_new_tokens = _positive_int("max_new_tokens", max_new_tokens)
        if not str(prompt or "").strip():
            raise ValueError("prompt is empty; pass an instruction or leave it at the default")
        audio = []
        for i, clip in enumerate(clips):
            seconds = len(clip) / sample_rate
            if seconds > self.max_seconds + 1e-9:
                raise TileTooLongError(f"clip {i} lasts {seconds:.2f} s, but Qwen2-Audio hears only "
                                       f"the first {self.max_seconds:g} s of a clip")
            y = self.to_model_rate(clip, sample_rate)[: self.max_samples]   # rounding: <= 1 sample
            if not len(y):
                raise ValueError(f"clip {i} is empty")
            audio.append(y)
        text = [self.prompt_text(prompt)] * len(audio)
        inputs = self.processor(text=text, audio=audio, sampling_rate=self.sampling_rate,
                                return_tensors="pt", padding=True)
        inputs.pop("token_type_ids", None)
        inputs = inputs.to(self.model.device)
        if "input_features" in inputs and not self.quantized:
            inputs["input_features"] = inputs["input_features"].to(self.dtype)
        with torch.inference_mode():
            # by default generate() refills a given config's default-valued fields (do_sample=False
            # is one) from the checkpoint's sampling config: switch that off, and say greedy twice
            out = self.model.generate(**inputs, generation_config=self._generation_config(max_new_tokens),
                                      use_model_defaults=False, do_sample=False, num_beams=1,
                                      max_new_tokens=max_new_tokens)
        ids = inputs["input_ids"]
        n = ids.shape[1]
        # generate() returns prompt + answer; keep only the answer so no template or prompt is echoed
        if out.shape[1] >= n and torch.equal(out[:, :n].to(ids.device), ids):
            out = out[:, n:]
        texts = self.processor.batch_decode(out, skip_special_tokens=True,
                                            clean_up_tokenization_spaces=True)
        return [clean_description(t) for t in texts]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_tile_length(tiles, *, max_seconds: float = MAX_AUDIO_SECONDS) -> None:
    """Refuse a song whose tiles are longer than the model hears.

    Parameters
    ----------
    tiles : wavdiff_utils.captioning.SongTiles
    max_seconds : float

    Raises
    ------
    TileTooLongError
        With the tile length, the codec parameters behind it and what to change.
    """
    p = tiles.params
    longest = max((s.n_samples for s in tiles.spans), default=0) / p.sample_rate
    if longest <= max_seconds + 1e-9:
        return
    where = "from its manifest" if tiles.from_manifest else "computed"
    raise TileTooLongError(
        f"{tiles.source}: its tiles ({where}) last {longest:.2f} s ({p.frames_per_tile} frames x "
        f"hop {p.hop_length} at {p.sample_rate} Hz), but Qwen2-Audio hears at most "
        f"{max_seconds:g} s per clip and silently drops the rest. Tiles over {max_seconds:g} s "
        f"are refused, not split: make them shorter (a smaller size or hop_length, or a higher "
        f"sample_rate) and encode again.")


# --------------------------------------------------------------------------- songs

@dataclass
class SongDescriptions:
    """What was written for one song.

    Attributes
    ----------
    song : str
    source : str
        Audio file.
    folder : str
        Song folder holding tiles and descriptions.
    status : str
        ``"described"`` or ``"skipped"`` (already described with the same settings).
    files : list of str
        One description file per tile, in tile order.
    texts : list of str
        What each file holds.
    spans : list of (float, float)
        Start and end of each tile's real audio, in seconds.
    params : CodecParams
    from_manifest : bool
        Spans read from ``01_encode``'s manifest (else computed).
    seconds : float
        Wall time.
    warnings : list of str
    """

    song: str
    source: str
    folder: str
    status: str
    files: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    spans: list = field(default_factory=list)
    params: CodecParams | None = None
    from_manifest: bool = False
    seconds: float = 0.0
    warnings: list = field(default_factory=list)


@dataclass
class DescribeResult:
    """All songs of a :func:`describe_songs` run, and failures with their reasons."""

    songs: list = field(default_factory=list)
    failures: list = field(default_factory=list)     # (path, message)
    model: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def n_files(self) -> int:
        return sum(len(s.files) for s in self.songs)

    def summary(self) -> str:
        """Human-readable summary, failures last."""
        done = [s for s in self.songs if s.status != "skipped"]
        skipped = [s for s in self.songs if s.status == "skipped"]
        lines = [f"{len(done)} song(s) described ({sum(len(s.files) for s in done)} tiles), "
                 f"{len(skipped)} already done (skipped), {len(self.failures)} failed"]
        for s in self.songs:
            for w in s.warnings:
                lines.append(f"  warning {s.song}: {w}")
        return "\n".join(lines + failure_lines(self.failures))

    def raise_if_failed(self):
        """Raise ``RuntimeError`` listing every failure, if any."""
        if self.failures:
            raise RuntimeError(self.summary())

    def table(self):
        """One row per tile (song, index, seconds, file, description) as a pandas DataFrame."""
        import pandas as pd
        rows = []
        for s in self.songs:
            for i, (f, t, (a, b)) in enumerate(zip(s.files, s.texts, s.spans)):
                rows.append({"song": s.song, "tile": i, "start s": round(a, 2), "end s": round(b, 2),
                             "file": Path(f).name, "description": t})
        return pd.DataFrame(rows)


def _read_record(folder: Path) -> dict | None:
    path = folder / RECORD_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == _RECORD_FORMAT else None


def _write_record(folder: Path, data: dict) -> None:
    with atomic_path(folder / RECORD_NAME) as tmp:
        tmp.write_text(json.dumps({"format": _RECORD_FORMAT, "version": 1, **data}, indent=1),
                       encoding="utf-8")


def _ours(path: Path, record: dict | None, index: int) -> bool:
    """True when ``path`` holds exactly what this captioner wrote there last time."""
    if record is None:
        return False
    # "pending": texts of a run that was writing when it stopped (see describe_songs)
    texts = [str(t.get("text", "")).strip() for t in record.get("tiles", []) + record.get("pending", [])
             if t.get("index") == index and t.get("file") == path.name]
    if not texts:
        return False
    try:
        return path.read_text(encoding="utf-8").strip() in texts
    except OSError:
        return False


def _suffix_for(tiles, naming: str, record: dict | None) -> str:
    """``""`` or :data:`PROSE_SUFFIX` for this song, never overwriting another captioner's file."""
    if naming == "prose":
        return PROSE_SUFFIX
    foreign = [caption_path(tiles.folder, tiles.song, s.index) for s in tiles.spans]
    foreign = [p for p, s in zip(foreign, tiles.spans) if p.exists() and not _ours(p, record, s.index)]
    if not foreign:
        return ""
    if naming == "auto":
        return PROSE_SUFFIX
    raise FileExistsError(f"{foreign[0]} holds another caption (e.g. MuQ tags); naming='txt' would "
                          f"overwrite it. Use naming='auto' or 'prose' to write "
                          f"<song>_<index>{PROSE_SUFFIX}.txt beside it, or delete the old captions.")


def _weights_fingerprint(source: str) -> str:
    """Names, sizes and times of a local model folder's weight and config files, hashed.

    Tells a re-run that the weights under the same path changed (a rebuilt or
    updated checkpoint); ``""`` for a hub id (its snapshot path already names the commit).
    """
    folder = Path(source)
    if not folder.is_dir():
        return ""
    import hashlib
    h = hashlib.sha1()
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".bin", ".json") and f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _settings(source: str, prompt: str, max_new_tokens: int, prefix: str) -> dict:
    return {"model": source, "weights": _weights_fingerprint(source), "prompt": prompt,
            "max_new_tokens": int(max_new_tokens), "prefix": prefix}


def _already_done(tiles, record: dict | None, settings: dict, suffix: str) -> bool:
    if record is None or record.get("settings") != settings:
        return False
    if record.get("codec") != tiles.params.to_dict():
        return False
    rec = record.get("tiles", [])
    if len(rec) != len(tiles.spans):
        return False
    for t, s in zip(rec, tiles.spans):
        path = caption_path(tiles.folder, tiles.song, s.index, suffix=suffix)
        if (t.get("index"), t.get("start"), t.get("end")) != (s.index, s.start, s.end):
            return False
        if t.get("file") != path.name or not _ours(path, record, s.index):
            return False
    return True


def _remove_stale(folder: Path, record: dict | None, keep: set[str]) -> None:
    """Delete files this captioner wrote last time that the new run does not write again.

    Only files still holding exactly the recorded text go (e.g. tiles beyond a
    re-encoded song's new end, or ``.txt`` files after a switch to ``naming="prose"``).
    """
    if record is None:
        return
    for t in record.get("tiles", []):
        name = str(t.get("file", ""))
        path = folder / name
        if name and name not in keep and Path(name).name == name and path.is_file() \
                and _ours(path, record, t.get("index")):
            path.unlink()


def _auto_batch_size(captioner: QwenCaptioner, max_new_tokens: int) -> int:
    """Tiles per batch that fit in the free GPU memory (4 off CUDA, where host memory is ample)."""
    if not str(captioner.device).startswith("cuda"):
        return 4
    import torch
    try:
        free, _total = torch.cuda.mem_get_info(torch.device(captioner.device))
    except Exception:
        return 1
    text = captioner.model.config.text_config
    heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    itemsize = torch.finfo(captioner.dtype).bits // 8 if captioner.dtype.is_floating_point else 2
    tokens = captioner.max_seconds * captioner.sampling_rate / 640 + 200 + max_new_tokens
    kv = 2 * text.num_hidden_layers * heads * head_dim * itemsize * tokens
    per_clip = kv + 256 * 2 ** 20            # + audio encoder and logits working memory
    return int(max(1, min(16, (0.6 * free) // per_clip)))


def _describe_tiles(captioner, clips, *, sample_rate, prompt, max_new_tokens, batch_size, bar):
    """Describe clips in batches; a CUDA out-of-memory error halves the batch and retries."""
    import torch
    texts: list[str] = []
    i, size = 0, batch_size
    while i < len(clips):
        chunk = clips[i:i + size]
        try:
            texts += captioner.describe(chunk, sample_rate=sample_rate, prompt=prompt,
                                        max_new_tokens=max_new_tokens)
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            torch.cuda.empty_cache()
            size = max(1, size // 2)
            continue
        i += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return texts


def describe_songs(input, output, *, model=DEFAULT_MODEL, device: str = "auto",
                   dtype: str = "auto", load_in_4bit: bool = False, prompt: str = DEFAULT_PROMPT,
                   max_new_tokens: int = 256, artist: str = "", title: str = "",
                   params: CodecParams | None = None, naming: str = "auto",
                   batch_size: int = 0, resume: bool = True, progress: bool = True) -> DescribeResult:
    """Write one prose description per tile for every song under ``input``.

    Parameters
    ----------
    input : path-like
        An audio file or a folder of them (searched recursively).
    output : path-like
        Root folder of the tiles (``01_encode``'s ``output``); descriptions go
        to ``output/<song>/``.  Songs without tiles there are described with
        computed spans (the same spans ``01_encode`` would make with ``params``).
    model : str or QwenCaptioner
        Hugging Face id or local folder (see :func:`resolve_model`), or an
        already loaded :class:`QwenCaptioner`.  Weights are loaded only when
        a song needs describing.
    device, dtype, load_in_4bit
        Passed to :func:`load_qwen` when ``model`` is not loaded yet.
    prompt : str
        Instruction given with every tile; empty means :data:`DEFAULT_PROMPT`.
    max_new_tokens : int
        Most tokens per description.
    artist, title : str
        Prepended as ``"style of <artist>, <title>. "``; empty means "read
        from the file's tags" (nothing is added when the tags are empty too).
    params : CodecParams, optional
        Tiling parameters for songs without a manifest (default ``CodecParams()``).
    naming : {"auto", "txt", "prose"}
        File names, see :data:`NAMINGS`.
    batch_size : int
        Tiles described together; 0 picks from free GPU memory (4 on CPU or MPS).
    resume : bool
        Skip songs already described with the same model, prompt, settings
        and spans whose files are untouched.
    progress : bool
        Show tqdm progress bars: songs, and the tiles of the song being described.

    Returns
    -------
    DescribeResult
        Per-song results; a song that fails (unreadable audio, over-long
        tiles, another caption in the way) is collected in ``failures`` and
        the others go on.

    Raises
    ------
    QwenWeightsError
        The model cannot be found or loaded (this stops the whole run).
    FileNotFoundError
        ``input`` does not exist.
    ValueError
        A bad option (the message names it).
    """
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")
    max_new_tokens = _positive_int("max_new_tokens", max_new_tokens)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 0:
        raise ValueError(f"batch_size must be 0 (automatic) or a positive integer, got {batch_size!r}")
    prompt = str(prompt or "").strip() or DEFAULT_PROMPT
    params = params if params is not None else CodecParams()
    files = find_audio_files(resolve(input))
    ids = song_ids(files)
    out_root = Path(resolve(output))

    captioner = model if isinstance(model, QwenCaptioner) else None
    source = captioner.source if captioner is not None else resolve_model(model)

    def loaded() -> QwenCaptioner:
        nonlocal captioner
        if captioner is None:
            captioner = load_qwen(model, device=device, dtype=dtype, load_in_4bit=load_in_4bit)
        return captioner

    from tqdm.auto import tqdm
    result = DescribeResult(model=source)
    songs_bar = tqdm(total=len(files), unit="song", desc="songs", disable=not progress)
    try:
        for path in files:
            t0 = time.perf_counter()
            songs_bar.set_postfix_str(ids[path])
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    tiles = song_tiles(path, out_root, params=params, song=ids[path])
                notes = [str(w.message) for w in caught]
                for note in notes:
                    warnings.warn(note, stacklevel=2)
                check_tile_length(tiles, max_seconds=captioner.max_seconds if captioner else
                                  MAX_AUDIO_SECONDS)
                tags = tags_from_file(path) if not (artist and title) else {}
                prefix = caption_prefix(artist or tags.get("artist", ""),
                                        title or tags.get("title", ""))
                record = _read_record(tiles.folder)
                suffix = _suffix_for(tiles, naming, record)
                settings = _settings(source, prompt, max_new_tokens, prefix)
                spans_s = [s.seconds(tiles.params.sample_rate) for s in tiles.spans]
                names = [caption_path(tiles.folder, tiles.song, s.index, suffix=suffix)
                         for s in tiles.spans]
                if resume and _already_done(tiles, record, settings, suffix):
                    texts = [t["text"] for t in record["tiles"]]
                    result.songs.append(SongDescriptions(
                        tiles.song, str(path), str(tiles.folder), "skipped", [str(n) for n in names],
                        texts, spans_s, tiles.params, tiles.from_manifest,
                        time.perf_counter() - t0, notes))
                    continue
                cap = loaded()
                check_tile_length(tiles, max_seconds=cap.max_seconds)
                size = int(batch_size) or _auto_batch_size(cap, max_new_tokens)
                clips = [tiles.tile_audio(s.index) for s in tiles.spans]
                with tqdm(total=len(clips), unit="tile", desc=tiles.song, leave=False,
                          disable=not progress) as bar:
                    described = _describe_tiles(cap, clips, sample_rate=tiles.params.sample_rate,
                                                prompt=prompt, max_new_tokens=max_new_tokens,
                                                batch_size=size, bar=bar)
                notes += [f"tile {i}: the model wrote an empty description"
                          for i, d in enumerate(described) if not d]
                texts = [(prefix + d).strip() for d in described]
                entries = [{"index": s.index, "start": s.start, "end": s.end, "file": n.name,
                            "text": t} for s, n, t in zip(tiles.spans, names, texts)]
                # announce the new texts first, so files of an interrupted run still count as ours
                _write_record(tiles.folder, {**(record or {}), "pending": entries})
                for name, text in zip(names, texts):
                    write_caption(name, text)
                _remove_stale(tiles.folder, record, {n.name for n in names})
                _write_record(tiles.folder, {
                    "settings": settings, "source": path.name, "codec": tiles.params.to_dict(),
                    "from_manifest": tiles.from_manifest, "suffix": suffix, "tiles": entries})
                result.songs.append(SongDescriptions(
                    tiles.song, str(path), str(tiles.folder), "described", [str(n) for n in names],
                    texts, spans_s, tiles.params, tiles.from_manifest, time.perf_counter() - t0,
                    notes))
            except QwenWeightsError:
                raise
            except Exception as exc:  # one bad song never stops the batch
                msg = str(exc)
                if str(path) not in msg:
                    msg = f"{path}: {type(exc).__name__}: {msg}"
                result.failures.append((str(path), msg))
            finally:
                songs_bar.update(1)
    finally:
        songs_bar.close()
    return result


# --------------------------------------------------------------------------- display

def plot_descriptions(song: SongDescriptions, *, max_tiles: int = 8, width: int = 90,
                      max_lines: int = 16, cmap: str = "magma"):
    """Each tile's image beside its description (the PNG when ``01_encode`` made it, else computed).

    Parameters
    ----------
    song : SongDescriptions
        One entry of :attr:`DescribeResult.songs`.
    max_tiles : int
        Tiles shown, from the first.
    width : int
        Characters per line of the wrapped description.
    max_lines : int
        Lines shown per description; a longer one is cut with an ellipsis (the file is whole).
    cmap : str
        Colormap of the magnitude.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import textwrap

    import matplotlib.pyplot as plt

    from .plots import plot_tile
    from .tile_io import read_tile, tile_name

    n = min(len(song.files), int(max_tiles))
    if n == 0:
        raise ValueError(f"song {song.song!r} has no descriptions to show")
    folder = Path(song.folder)
    pngs = [folder / tile_name(song.song, i) for i in range(n)]
    if all(p.is_file() for p in pngs):
        pixels = [read_tile(p, warn=False).pixels for p in pngs]
    else:
        from .codec import encode_array
        tiles = song_tiles(song.source, folder.parent, params=song.params)
        pixels = [t.pixels for t in encode_array(tiles.audio, tiles.params)[:n]]
    wrapped = []
    for text in song.texts[:n]:
        lines = textwrap.wrap(text, width) or ["(empty)"]
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            lines[-1] += " ..."
        wrapped.append("\n".join(lines))
    heights = [max(2.4, 0.17 * (w.count("\n") + 1) + 0.7) for w in wrapped]
    fig, axes = plt.subplots(n, 2, figsize=(13, sum(heights)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.6], "height_ratios": heights})
    for i in range(n):
        a, b = song.spans[i]
        plot_tile(pixels[i], song.params, ax=axes[i, 0], title=f"tile {i}: {a:.1f}-{b:.1f} s",
                  cmap=cmap)
        axes[i, 1].axis("off")
        axes[i, 1].set_title(Path(song.files[i]).name, loc="left", fontsize=9)
        axes[i, 1].text(0, 1, wrapped[i], va="top", ha="left", fontsize=8.5, family="serif",
                        transform=axes[i, 1].transAxes)
    fig.tight_layout()
    return fig
