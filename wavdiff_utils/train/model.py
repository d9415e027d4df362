"""The diffusion model of a run: a diffusers UNet and its noise schedule, saved with what it learned on.

Unconditional runs use ``UNet2DModel``; caption-conditioned ones
``UNet2DConditionModel`` with cross-attention on the text encoder's states
(in the mid block, and in each resolution whose ``attention`` flag is set).
The model learns 3 planes (magnitude, cos, sin) or 1 (magnitude), of the mid tile alone, or
in stereo of the mid and the side tile (6 or 2: the mid's first).

A saved model is a folder::

    unet/                 diffusers save_pretrained (the EMA weights when the run kept them)
    scheduler/            the DDPM noise schedule it was trained with
    wavdiff_model.json    codec, planes, stereo, conditioning, text encoder, training size, steps

A model saved before stereo existed has no ``stereo`` and is mono.

:func:`load_model` reads it back for :func:`wavdiff_utils.train.sample.sample_tiles`.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadParameterError, MissingInputError
from ..codec.params import CodecParams
from ..paths import atomic_path
from .checkpoints import saving
from .config import PLANES, TrainConfig, model_planes

__all__ = ["build_unet", "noise_scheduler", "save_model", "load_model", "TrainedModel",
           "MODEL_META", "MODEL_FORMAT"]

MODEL_META = "wavdiff_model.json"
MODEL_FORMAT = "wavdiff-diffusion-model"


def build_unet(config: TrainConfig, *, channels_in: int, height: int, width: int,
               cross_attention_dim: int | None = None):
    """A fresh UNet for ``config`` (weights from torch's current random state).

    Parameters
    ----------
    config : TrainConfig
    channels_in : int
        3 (magnitude, cos, sin) or 1 (magnitude); 6 or 2 in stereo (mid, then side).
    height, width : int
        Training size (the tile's height, the crop's width); recorded as ``sample_size``.
    cross_attention_dim : int, optional
        Text states' width: makes a conditioned ``UNet2DConditionModel``.
    """
    widths = tuple(config.channels)
    common = dict(sample_size=(height, width), in_channels=channels_in, out_channels=channels_in,
                  block_out_channels=widths, layers_per_block=config.layers_per_block,
                  norm_num_groups=config.norm_groups)
    if cross_attention_dim is None:
        from diffusers import UNet2DModel

        down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in config.attention)
        up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention))
        return UNet2DModel(down_block_types=down, up_block_types=up,
                           attention_head_dim=min(8, widths[-1]), **common)
    from diffusers import UNet2DConditionModel

    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention))
    # diffusers' legacy naming: attention_head_dim here is the number of heads per block
    heads = tuple(max(1, w // 32) for w in widths)
    return UNet2DConditionModel(down_block_types=down, up_block_types=up,
                                mid_block_type="UNetMidBlock2DCrossAttn",
                                cross_attention_dim=int(cross_attention_dim),
                                attention_head_dim=heads, **common)


def noise_scheduler(config: TrainConfig):
    """The DDPM noise schedule of training (sampling uses DDIM on the same schedule)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=config.train_timesteps,
                         beta_schedule=config.noise_schedule,
                         prediction_type=config.prediction_type, clip_sample=False)


@dataclass
class TrainedModel:
    """A loaded model: the UNet, its noise schedule and what it was trained on.

    Attributes
    ----------
    folder : Path
    unet : diffusers model, in eval mode
    scheduler_config : dict
    params : CodecParams
        Codec of the training tiles (samples are written with it).
    planes : {"all", "magnitude"}
    conditioning : {"none", "caption"}
    text_encoder : str
        Name of the text encoder (caption conditioning).
    max_text_tokens : int
    meta : dict
        Everything in ``wavdiff_model.json``.
    stereo : bool
        Learned mid and side tiles together (its samples are stereo).
    """

    folder: Path
    unet: object
    scheduler_config: dict
    params: CodecParams
    planes: str
    conditioning: str
    text_encoder: str
    max_text_tokens: int
    meta: dict = field(default_factory=dict)
    stereo: bool = False

    @property
    def channels(self) -> int:
        """Planes the UNet takes and makes (:func:`~wavdiff_utils.train.config.model_planes`)."""
        return model_planes(self.planes, self.stereo)

    def describe(self) -> str:
        cond = f"caption-conditioned ({self.text_encoder})" if self.conditioning == "caption" \
            else "unconditional"
        return (f"{cond} model of {self.params.size}x{self.params.size} tiles "
                f"({'magnitude only' if self.planes == 'magnitude' else 'magnitude, cos, sin'}"
                f"{' of mid and side, stereo' if self.stereo else ''}), "
                f"trained {self.meta.get('steps', '?')} steps on {self.meta.get('train_size')}")


def save_model(folder, unet, scheduler, *, config: TrainConfig, params: CodecParams,
               train_size: tuple, steps: int, ema: bool) -> Path:
    """Write a model folder (see the module notes), replacing an older one only once complete."""
    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.partial"
    meta = {"format": MODEL_FORMAT, "version": 1, "unet_class": type(unet).__name__,
            "codec": params.to_dict(), "planes": config.planes, "stereo": bool(config.stereo),
            "conditioning": config.conditioning,
            "text_encoder": config.text_encoder if config.conditioning == "caption" else None,
            "max_text_tokens": config.max_text_tokens, "train_size": list(train_size),
            "steps": int(steps), "ema": bool(ema), "config": config.to_dict()}
    with saving(folder, partial=tmp):          # a full disk: one line naming the model folder
        shutil.rmtree(tmp, ignore_errors=True)
        unet.save_pretrained(str(tmp / "unet"))
        scheduler.save_pretrained(str(tmp / "scheduler"))
        with atomic_path(tmp / MODEL_META) as t:
            t.write_text(json.dumps(meta, indent=1), encoding="utf-8")
        old = folder.parent / f".{folder.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    return folder


def load_model(folder, *, device="cpu") -> TrainedModel:
    """Read a model folder written by :func:`save_model` (a run's ``model/``, or the run folder).

    Raises
    ------
    MissingInputError
        No model there; the message says how one is made.
    BadParameterError
        The model's files are damaged or not ours (the message names the file).
    """
    folder = Path(folder)
    if (folder / "model" / MODEL_META).is_file():
        folder = folder / "model"
    path = folder / MODEL_META
    if not path.is_file():
        raise MissingInputError(f"{folder}: holds no trained model ({MODEL_META}); train one "
                                f"first (07_train, or wavdiff_utils.train.train)")
    meta, codec = _model_meta(path)
    import diffusers

    cls = getattr(diffusers, meta["unet_class"], None)
    if cls is None:
        raise BadParameterError(f"{path}: names an unknown model class {meta['unet_class']!r}; "
                                f"the model folder is damaged: train again or restore it")
    try:
        unet = cls.from_pretrained(str(folder / "unet")).eval().requires_grad_(False).to(device)
        sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise BadParameterError(f"{folder}: the model's weights or scheduler cannot be read "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); train "
                                f"again or restore the folder") from None
    model = TrainedModel(folder, unet, sched, codec, meta["planes"],
                         meta["conditioning"], meta.get("text_encoder") or "",
                         int(meta.get("max_text_tokens", 64)), meta, stereo=meta["stereo"])
    taken = getattr(unet.config, "in_channels", model.channels)
    if taken != model.channels:
        raise BadParameterError(f"{path}: says planes={model.planes!r}, stereo={model.stereo} "
                                f"({model.channels} planes) but its UNet takes {taken}; the "
                                f"model folder is damaged: train again or restore it")
    return model


def _model_meta(path: Path) -> tuple[dict, CodecParams]:
    """The model's ``wavdiff_model.json``, checked, and the codec it records."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadParameterError(f"{path}: unreadable ({exc}); the model folder is damaged: "
                                f"train again or restore it") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise BadParameterError(f"{path}: not a wavdiff model (format={got!r})")
    missing = [k for k in ("unet_class", "codec", "planes", "conditioning") if k not in meta]
    if missing or not isinstance(meta["codec"], dict):
        raise BadParameterError(f"{path}: lacks {missing or ['codec']}; the model folder is "
                                f"damaged: train again or restore it")
    meta.setdefault("stereo", False)                     # saved before stereo existed
    if not isinstance(meta["stereo"], bool) or meta["planes"] not in PLANES:
        raise BadParameterError(f"{path}: stereo={meta['stereo']!r}, planes={meta['planes']!r} "
                                f"cannot be used; the model folder is damaged: train again or "
                                f"restore it")
    try:
        return meta, CodecParams.from_dict(meta["codec"])
    except (TypeError, ValueError) as exc:
        raise BadParameterError(f"{path}: its codec cannot be used ({exc})") from None
