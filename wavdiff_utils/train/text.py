"""The frozen text encoder of caption conditioning: captions -> per-token states for cross-attention.

The default is T5-base's encoder (``google-t5/t5-base``, 110 M parameters,
768-wide states): the text encoder that MusicGen and Stable Audio Open condition
music generation on, so its states are known to carry what music captions say
(genre, instruments, mood, tempo words), and it runs on a CPU.  Any encoder
that ``transformers`` loads works: T5-family checkpoints load their encoder
only (``T5EncoderModel``), CLIP its text tower, anything else through
``AutoModel`` (its encoder where it has one).

Weights come from a local folder, or a hub id through ``huggingface_hub`` (the
local cache first; ``HF_HUB_OFFLINE=1`` never downloads), as the captioners'
do; ``$WAVDIFF_TEXT_ENCODER`` replaces the default id.  Without weights one line
says how to fetch them and where to point ``text_encoder``.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from ..captioning.weights import Unavailable, hub_folder, local_folder, model_name
from ..errors import WeightsMissingError
from .config import DEFAULT_TEXT_ENCODER, TEXT_ENCODER_ENV

__all__ = ["TextEncoder", "text_encoder_folder", "FETCH_COMMAND"]

#: How to get the default encoder's weights (about 0.9 GB: the checkpoint holds T5's decoder too).
FETCH_COMMAND = ("hf download google-t5/t5-base --include '*.json' spiece.model model.safetensors "
                 "--local-dir models/t5-base")
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
            "pytorch_model.bin.index.json")


def text_encoder_folder(name: str, *, local_files_only: bool | None = None) -> Path:
    """The folder holding ``name``'s weights (a local folder, or the hub's snapshot).

    Raises
    ------
    WeightsMissingError
        One line: the model, why, the download command, the parameter to set.
    """
    name = model_name(name, default=DEFAULT_TEXT_ENCODER, env=TEXT_ENCODER_ENV)
    try:
        folder = local_folder(name)
        if folder is None:
            patterns = ["*.json", "*.model", "*.txt", "*.safetensors"]
            folder = hub_folder(name, local_files_only=local_files_only, allow_patterns=patterns)
            if not any((folder / w).is_file() for w in _WEIGHTS):
                folder = hub_folder(name, local_files_only=local_files_only,
                                    allow_patterns=patterns + ["pytorch_model*.bin"])
        if not (folder / "config.json").is_file():
            raise Unavailable(f"{folder} has no config.json")
        if not any((folder / w).is_file() for w in _WEIGHTS):
            raise Unavailable(f"{folder} has no weights (model.safetensors or pytorch_model.bin)")
    except Unavailable as exc:
        raise WeightsMissingError(
            f"text encoder weights for text_encoder={name!r} are not available: {exc}; get them "
            f"with `{FETCH_COMMAND}`, then set text_encoder to that folder (notebook "
            f"`-p text_encoder models/t5-base`, or {TEXT_ENCODER_ENV}=models/t5-base)") from None
    return folder


@contextlib.contextmanager
def _quiet_transformers():
    """Loading an encoder from a whole T5 checkpoint lists the decoder weights it leaves out."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


class TextEncoder:
    """A frozen text encoder with its tokenizer.

    Parameters
    ----------
    name : str
        Hub id or local folder (see the module notes).
    device : str or torch.device
    max_tokens : int
        Captions are cut to this many tokens; shorter ones are padded (and masked).

    Attributes
    ----------
    dim : int
        Width of the states (the UNet's ``cross_attention_dim``).
    name : str
        ``name`` as given.
    """

    def __init__(self, name: str = DEFAULT_TEXT_ENCODER, *, device="cpu", max_tokens: int = 64,
                 local_files_only: bool | None = None):
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = text_encoder_folder(name, local_files_only=local_files_only)
        config = AutoConfig.from_pretrained(folder)
        kind = getattr(config, "model_type", "")
        with _quiet_transformers():
            if kind in ("t5", "mt5", "umt5"):
                from transformers import T5EncoderModel as cls
            elif kind in ("clip", "clip_text_model"):
                from transformers import CLIPTextModel as cls
            else:
                cls = AutoModel
            model = cls.from_pretrained(folder)
        if cls is AutoModel and hasattr(model, "get_encoder") and kind not in ("bert", "roberta"):
            model = model.get_encoder()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.max_tokens = int(max_tokens)
        self.name = name
        cfg = getattr(config, "text_config", config)
        self.dim = int(getattr(cfg, "d_model", None) or getattr(cfg, "hidden_size"))
        self._null = None

    def encode(self, captions):
        """States ``(B, L, dim)`` and attention mask ``(B, L)`` for a list of captions."""
        import torch

        tokens = self.tokenizer(list(captions), padding="max_length", truncation=True,
                                max_length=self.max_tokens, return_tensors="pt")
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        with torch.no_grad():
            states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return states.float(), mask

    def null(self, n: int):
        """The empty caption's states, ``n`` times (the unconditional branch of guidance)."""
        if self._null is None:
            self._null = self.encode([""])
        states, mask = self._null
        return states.expand(n, -1, -1), mask.expand(n, -1)
