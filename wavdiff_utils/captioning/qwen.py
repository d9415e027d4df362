"""Prose descriptions of each tile with Qwen2-Audio-7B-Instruct, on the shared interface.

Each tile's exact span (:mod:`wavdiff_utils.captioning`) is resampled to 16 kHz
and described in one paragraph (``.prose.txt`` beside another captioner's
caption).  Generation is greedy whatever the checkpoint's sampling settings,
and only the generated tokens are decoded, so nothing is echoed.  The model
keeps only the first 30 s of a clip, so longer tiles are **refused, not split**.

>>> from wavdiff_utils.captioning import caption_songs  # doctest: +SKIP
>>> caption_songs(QwenCaptioner("models/Qwen2-Audio-7B-Instruct"), "song.mp3", "tiles/")  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import importlib.util
import os
import re
import warnings

import numpy as np

from .weights import Unavailable, fingerprint, hub_folder, local_folder, model_name, weights_missing
from .results import TileCaption
from .interface import Captioner, pick_device, positive_int
from ..errors import BadParameterError, WeightsMissingError, first_line

__all__ = ["DEFAULT_MODEL", "MODEL_ENV", "DEFAULT_PROMPT", "NAMINGS", "PROSE_SUFFIX",
           "MAX_AUDIO_SECONDS", "RECORD_NAME", "QwenWeightsError", "TileTooLongError",
           "QwenCaptioner", "resolve_model", "load_qwen", "clean_description"]

#: Hugging Face id of the model the captioner is made for.
DEFAULT_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"
#: Environment variable naming a model folder used when ``model`` is left at :data:`DEFAULT_MODEL`.
MODEL_ENV = "WAVDIFF_QWEN_MODEL"
#: What a music model should learn from one clip, in one paragraph.
DEFAULT_PROMPT = (
    "Describe this music clip in one paragraph of plain prose, as a caption for training a "
    "music generation model. Say what genre and style it is, which instruments and voices "
    "you hear and what each plays, the mood, the tempo and rhythmic feel, how the clip "
    "develops from its start to its end, and the production (mix, space, effects, sound "
    "quality). Describe only what is audible; do not name the artist or the song, and do "
    "not use lists or headings.")
#: ``naming`` choices (see :func:`wavdiff_utils.captioning.caption_songs`).
NAMINGS = ("auto", "txt", "prose")
#: Suffix before ``.txt`` of a description written beside another captioner's caption.
PROSE_SUFFIX = ".prose"
#: Longest clip Qwen2-Audio hears, in seconds (its feature extractor's window).
MAX_AUDIO_SECONDS = 30.0
#: Per-song record of what was written (model, prompt, spans, texts); allows resuming.
RECORD_NAME = "qwen_descriptions.json"
#: The missing-weights error (an alias kept for callers of older versions).
QwenWeightsError = WeightsMissingError

_DTYPES = {"float32": "float32", "fp32": "float32", "float": "float32", "bfloat16": "bfloat16",
           "bf16": "bfloat16", "float16": "float16", "fp16": "float16", "half": "float16"}
_NEEDED = ("config.json", "preprocessor_config.json")


class TileTooLongError(BadParameterError):
    """A clip is longer than the model hears; the message says how long and what to change."""


# --------------------------------------------------------------------------- weights

def resolve_model(model: str = DEFAULT_MODEL) -> str:
    """The folder the weights load from: ``model`` as a folder (absolute, or relative to the
    launch folder or the repository), else its Hugging Face snapshot (cache first, then the hub
    unless offline).  ``$WAVDIFF_QWEN_MODEL`` replaces :data:`DEFAULT_MODEL`, and only it.
    Raises :class:`WeightsMissingError` (one line) for a missing or incomplete folder or id."""
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise BadParameterError(f"model must be a Hugging Face id or a folder, got {model!r}")
    name = model_name(model, default=DEFAULT_MODEL, env=MODEL_ENV)
    label = name if name == str(model).strip() else f"{name} (from {MODEL_ENV})"
    try:
        folder = local_folder(name) or hub_folder(name)
        missing = [n for n in _NEEDED if not (folder / n).is_file()]
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
            missing.append("*.safetensors weights")
        if not any((folder / n).is_file() for n in ("tokenizer.json", "vocab.json")):
            missing.append("tokenizer.json or vocab.json")
        if missing:
            raise Unavailable(f"the folder {str(folder)!r} lacks {', '.join(missing)}")
    except Unavailable as exc:
        raise weights_missing("Qwen2-Audio", label, str(exc), folder="models/Qwen2-Audio-7B-Instruct",
                              downloads=[f"hf download {DEFAULT_MODEL} --local-dir "
                                         f"models/Qwen2-Audio-7B-Instruct` (about 16 GB"],
                              env=MODEL_ENV) from None
    return str(folder)


def _torch_dtype(dtype: str, device: str):
    import torch
    name = (dtype or "auto").strip().lower()
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32
    if name not in _DTYPES:
        raise BadParameterError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', "
                                f"got {dtype!r}")
    return getattr(torch, _DTYPES[name])


_ROLE_ECHO = re.compile(r"^\s*(?:<\|im_start\|>)?\s*assistant\s*[:\n]\s*", re.IGNORECASE)


def clean_description(text: str) -> str:
    """One clean paragraph: no role marker or chat tokens, whitespace runs made single spaces."""
    text = _ROLE_ECHO.sub("", re.sub(r"<\|[^|>]*\|>", " ", str(text)))
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------- the captioner

class QwenCaptioner(Captioner):
    """Qwen2-Audio prose on the shared interface; also describes clips directly (:meth:`describe`).

    ``model`` (hub id or folder, see :func:`resolve_model`) is resolved now and loaded by
    :meth:`load`.  ``device``: ``"auto"`` (cuda, mps, cpu), ``"cpu"``, ``"mps"`` or
    ``"cuda[:N]"``; ``dtype``: ``"auto"`` (bf16 or fp16 on a GPU, fp32 on CPU), ``"float32"``,
    ``"bfloat16"`` or ``"float16"``; ``load_in_4bit``: NF4 weights (bitsandbytes, CUDA) for
    cards under 16 GB.  ``prompt`` is given with every tile (empty: :data:`DEFAULT_PROMPT`),
    ``max_new_tokens`` limits each description, ``batch_size`` tiles are described together
    (0: from free GPU memory, 4 off CUDA).
    """

    name = "qwen"
    label = "Qwen2-Audio"
    suffix = PROSE_SUFFIX
    record_name = RECORD_NAME
    max_seconds = MAX_AUDIO_SECONDS

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
                 load_in_4bit: bool = False, prompt: str = DEFAULT_PROMPT,
                 max_new_tokens: int = 256, batch_size: int = 0):
        self.device = pick_device(device)
        self.dtype = _torch_dtype(dtype, self.device)
        if load_in_4bit and not self.device.startswith("cuda"):
            raise BadParameterError(f"load_in_4bit needs a CUDA GPU (bitsandbytes), but device is "
                                    f"{self.device!r}")
        self.quantized = bool(load_in_4bit)
        self.source = self.model_name = resolve_model(model)
        self.model = self.processor = None
        self.configure(prompt=prompt, max_new_tokens=max_new_tokens, batch_size=batch_size)

    def configure(self, *, prompt: str = DEFAULT_PROMPT, max_new_tokens: int = 256,
                  batch_size: int = 0) -> "QwenCaptioner":
        """Set the generation options (checked); returns ``self``."""
        self.prompt = str(prompt or "").strip() or DEFAULT_PROMPT
        self.max_new_tokens = positive_int("max_new_tokens", max_new_tokens)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 0:
            raise BadParameterError(f"batch_size must be 0 (automatic) or a positive integer, "
                                    f"got {batch_size!r}")
        self.batch_size = int(batch_size)
        return self

    def __repr__(self):
        return (f"QwenCaptioner(source={self.source!r}, device={self.device!r}, "
                f"dtype={str(self.dtype).replace('torch.', '')}, quantized={self.quantized})")

    def identity(self) -> dict:
        return {"model": self.source, "weights": fingerprint(self.source), "prompt": self.prompt,
                "max_new_tokens": self.max_new_tokens}

    def load(self) -> None:
        """Load the model and processor (once)."""
        if self.model is not None:
            return
        from transformers import AutoConfig, AutoProcessor, Qwen2AudioForConditionalGeneration

        kwargs = {"dtype": self.dtype, "local_files_only": True}
        has = {m: importlib.util.find_spec(m) is not None for m in ("bitsandbytes", "accelerate")}
        if self.quantized:
            if not (has["bitsandbytes"] and has["accelerate"]):
                raise ImportError("load_in_4bit=True needs bitsandbytes and accelerate: "
                                  "pip install bitsandbytes accelerate")
            from transformers import BitsAndBytesConfig
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=self.dtype)
        if has["accelerate"]:            # straight onto the device, no CPU copy
            kwargs["device_map"] = {"": self.device}
        config = AutoConfig.from_pretrained(self.source, local_files_only=True)
        if getattr(config, "model_type", None) != "qwen2_audio":
            raise BadParameterError(f"model={self.source!r} holds a "
                                    f"{getattr(config, 'model_type', '?')!r} model, not "
                                    f"Qwen2-Audio (model_type 'qwen2_audio')")
        try:
            processor = AutoProcessor.from_pretrained(self.source, local_files_only=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = Qwen2AudioForConditionalGeneration.from_pretrained(self.source, **kwargs)
        except (OSError, ValueError) as exc:
            raise weights_missing("Qwen2-Audio", self.source, f"loading failed ({type(exc).__name__}: "
                                  f"{first_line(exc)})", folder=self.source, env=MODEL_ENV,
                                  downloads=[f"hf download {DEFAULT_MODEL} --local-dir {self.source}"]
                                  ) from None
        self.model = (net if has["accelerate"] else net.to(self.device)).eval()
        self.processor = processor
        fe = processor.feature_extractor
        self.sampling_rate = int(fe.sampling_rate)
        self.max_samples = int(getattr(fe, "n_samples", MAX_AUDIO_SECONDS * self.sampling_rate))
        self.max_seconds = self.max_samples / self.sampling_rate
        tok = processor.tokenizer
        tok.padding_side = "left"          # batched generation continues every row at its end
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token

    def prompt_text(self, prompt: str) -> str:
        """The chat-formatted text for one clip and ``prompt`` (what the model reads besides audio)."""
        self.load()
        conversation = [{"role": "user", "content": [{"type": "audio", "audio_url": "tile"},
                                                     {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True,
                                                  tokenize=False)

    def _generation_config(self, max_new_tokens: int):
        gen = copy.deepcopy(self.model.generation_config)
        gen.do_sample, gen.num_beams, gen.max_length = False, 1, None
        gen.temperature = gen.top_p = gen.top_k = None
        gen.max_new_tokens = int(max_new_tokens)
        if gen.pad_token_id is None:
            gen.pad_token_id = self.processor.tokenizer.pad_token_id
        return gen

    def describe(self, clips, *, sample_rate: int, prompt: str = DEFAULT_PROMPT,
                 max_new_tokens: int = 256) -> list[str]:
        """Describe each mono clip (at ``sample_rate``, resampled to the model's) in one paragraph,
        greedily: the same clip gives the same text.  A clip longer than the model hears raises
        :class:`TileTooLongError`; ``max_new_tokens`` does not count the audio tokens."""
        import torch
        self.load()
        if isinstance(clips, np.ndarray) and clips.ndim == 1:
            clips = [clips]
        if not len(clips):
            return []
        max_new_tokens = positive_int("max_new_tokens", max_new_tokens)
        if not str(prompt or "").strip():
            raise BadParameterError("prompt is empty; pass an instruction or leave it at the default")
        audio = []
        for i, clip in enumerate(clips):
            clip = np.asarray(clip, dtype=np.float32)
            if clip.ndim != 1 or not len(clip):
                raise BadParameterError(f"clip {i} must be a non-empty mono 1-D array, got shape "
                                        f"{clip.shape}")
            if len(clip) / sample_rate > self.max_seconds + 1e-9:
                raise TileTooLongError(f"clip {i} lasts {len(clip) / sample_rate:.2f} s, but "
                                       f"Qwen2-Audio hears only the first {self.max_seconds:g} s "
                                       f"of a clip")
            if int(sample_rate) != self.sampling_rate:
                import soxr
                clip = soxr.resample(clip, int(sample_rate), self.sampling_rate, quality="HQ")
            audio.append(np.asarray(clip, dtype=np.float32)[:self.max_samples])
        inputs = self.processor(text=[self.prompt_text(prompt)] * len(audio), audio=audio,
                                sampling_rate=self.sampling_rate, return_tensors="pt", padding=True)
        inputs.pop("token_type_ids", None)
        inputs = inputs.to(self.model.device)
        if "input_features" in inputs and not self.quantized:
            inputs["input_features"] = inputs["input_features"].to(self.dtype)
        with torch.inference_mode():
            # generate() refills a given config's default-valued fields (do_sample=False is one)
            # from the checkpoint's sampling config: switch that off, and say greedy twice
            out = self.model.generate(**inputs, generation_config=self._generation_config(max_new_tokens),
                                      use_model_defaults=False, do_sample=False, num_beams=1,
                                      max_new_tokens=max_new_tokens)
        ids = inputs["input_ids"]
        n = ids.shape[1]
        # generate() returns prompt + answer; keep only the answer so nothing is echoed
        if out.shape[1] >= n and torch.equal(out[:, :n].to(ids.device), ids):
            out = out[:, n:]
        texts = self.processor.batch_decode(out, skip_special_tokens=True,
                                            clean_up_tokenization_spaces=True)
        return [clean_description(t) for t in texts]

    def _auto_batch_size(self) -> int:
        """Tiles per batch that fit in the free GPU memory (4 off CUDA, where memory is ample)."""
        if not str(self.device).startswith("cuda"):
            return 4
        import torch
        try:
            free, _total = torch.cuda.mem_get_info(torch.device(self.device))
        except Exception:
            return 1
        text = self.model.config.text_config
        heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        itemsize = torch.finfo(self.dtype).bits // 8 if self.dtype.is_floating_point else 2
        tokens = self.max_seconds * self.sampling_rate / 640 + 200 + self.max_new_tokens
        per_clip = 2 * text.num_hidden_layers * heads * head_dim * itemsize * tokens + 256 * 2 ** 20
        return int(max(1, min(16, (0.6 * free) // per_clip)))

    def caption_tiles(self, tiles, *, prefix: str) -> list[TileCaption]:
        """Describe the tiles in batches; a CUDA out-of-memory error halves the batch and retries."""
        import torch
        clips = [tiles.tile_audio(s.index) for s in tiles.spans]
        texts: list[str] = []
        size = self.batch_size or self._auto_batch_size()
        while len(texts) < len(clips):
            chunk = clips[len(texts):len(texts) + size]
            try:
                texts += self.describe(chunk, sample_rate=tiles.params.sample_rate,
                                       prompt=self.prompt, max_new_tokens=self.max_new_tokens)
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise
                torch.cuda.empty_cache()
                size = max(1, size // 2)
        for i, t in enumerate(texts):
            if not t:
                warnings.warn(f"tile {i}: the model wrote an empty description", stacklevel=2)
        return [TileCaption(s.index, s.start, s.end, (prefix + t).strip())
                for s, t in zip(tiles.spans, texts)]


def load_qwen(model: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "auto",
              load_in_4bit: bool = False) -> QwenCaptioner:
    """A :class:`QwenCaptioner` with its weights loaded; raises :class:`WeightsMissingError` (one
    line) or :class:`BadParameterError` (bad device or dtype, 4-bit off CUDA, another kind of model)."""
    cap = QwenCaptioner(model, device=device, dtype=dtype, load_in_4bit=load_in_4bit)
    cap.load()
    return cap
