"""Settings of a training run: one frozen object, checked when it is made, saved with the run.

:class:`TrainConfig` holds what :func:`wavdiff_utils.train.train` needs; its
defaults are the quick CPU run that ``07_train`` and CI make (a tiny UNet on
time crops of small tiles, a few dozen steps: it proves the loop, not the
quality).  ``params/train_gpu.yaml`` holds a real run on one GPU.  The same
names are the notebook's parameters, so ``papermill -f params/train_gpu.yaml``
and ``TrainConfig.from_mapping(load_yaml_params("params/train_gpu.yaml"))``
give the same run.

A run folder keeps the settings it was started with (``train_config.json``).
Resuming with settings that change the model (its shape, the planes, the
conditioning, the noise schedule) is refused with one line; settings that only
change the schedule of the run (steps, checkpoint and evaluation intervals) may
change between sessions.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ..codec.resources import check_at_most
from ..errors import BadParameterError, OutputConflictError, WavdiffError

__all__ = ["TrainConfig", "PLANES", "CONDITIONING", "DEFAULT_TEXT_ENCODER", "TEXT_ENCODER_ENV",
           "CONFIG_NAME", "DEMO_DATA", "check_resumable", "read_saved_config", "MissingExtraError",
           "require_training", "EXTRA_KEYS", "RECORDED_KEYS", "check_setting_names", "model_planes"]

#: What the model learns: all three planes, or the magnitude alone (phase rebuilt on decode).
PLANES = ("all", "magnitude")
#: Unconditional, or conditioned on each tile's caption through a frozen text encoder.
CONDITIONING = ("none", "caption")
#: The text encoder of caption conditioning (see the README: Training).
DEFAULT_TEXT_ENCODER = "google-t5/t5-base"
#: Replaces :data:`DEFAULT_TEXT_ENCODER` when ``text_encoder`` is left at it (tests point it at a
#: tiny local model, as the captioners' variables do).
TEXT_ENCODER_ENV = "WAVDIFF_TEXT_ENCODER"
#: The settings file in a run folder.
CONFIG_NAME = "train_config.json"
#: Where ``07_train`` builds its demo dataset from the bundled sample.
DEMO_DATA = "outputs/train_demo/dataset"

_PRECISIONS = ("auto", "no", "fp16", "bf16")
_DEVICES = ("auto", "cpu", "cuda")
_PREDICTIONS = ("epsilon", "v_prediction", "sample")
_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
_LR_SCHEDULES = ("constant", "constant_with_warmup", "cosine", "linear")
#: Settings that shape the model or what it learns: a checkpoint only resumes with the same ones.
MODEL_KEYS = ("planes", "stereo", "conditioning", "text_encoder", "max_text_tokens", "channels",
              "attention", "layers_per_block", "norm_groups", "prediction_type", "noise_schedule",
              "train_timesteps", "use_ema")


#: Hard maxima of settings that multiply memory or time where no estimate fits (the memory a
#: run needs is checked against the machine by :mod:`wavdiff_utils.train.guards`).
MAX_WIDTH = 4096             # widest UNet block (Stable Diffusion's is 1280)
MAX_GRAD_ACCUM = 1024        # micro-batches per optimizer step
MAX_TRAIN_TIMESTEPS = 100_000
MAX_EVAL_TIMESTEPS = 1000    # forward passes per probe tile and validation tile
MAX_TEXT_TOKENS = 4096


#: Names a settings file (or ``--set``) may hold besides the :class:`TrainConfig` fields: what
#: ``07_train`` does after training (sampling, decoding), and its demo dataset (``demo_*``).
EXTRA_KEYS = ("num_samples", "sample_steps", "guidance_scale", "prompts", "phase", "peak")
_EXTRA_PREFIXES = ("demo_",)
#: What a run folder's ``train_config.json`` records beside the settings (the dataset's codec):
#: accepted, and left out, when that file is given back with ``-f``.
RECORDED_KEYS = ("codec",)


def model_planes(planes: str, stereo: bool) -> int:
    """Planes a model learns and makes: 3 (magnitude, cos, sin) or 1 (magnitude) per tile, for
    the mid tile alone or, in stereo, the mid and the side tile (6 or 2)."""
    return (1 if planes == "magnitude" else 3) * (2 if stereo else 1)


def check_setting_names(names, *, where: str = "settings") -> None:
    """Raise :class:`BadParameterError` (one line naming the first unknown name and the close
    matches) unless every name is a :class:`TrainConfig` field or one of :data:`EXTRA_KEYS`
    (or ``demo_*``, or :data:`RECORDED_KEYS`): a typo must not train with the defaults."""
    import difflib

    known = [f.name for f in dataclasses.fields(TrainConfig)] + list(EXTRA_KEYS + RECORDED_KEYS)
    for name in names:
        if name in known or str(name).startswith(_EXTRA_PREFIXES):
            continue
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else "see TrainConfig for the names"
        raise BadParameterError(f"{where}: unknown setting {name!r}; {hint}")


class MissingExtraError(WavdiffError, ImportError):
    """A package that a feature needs is not installed; names the extra that installs it."""


def require_training() -> None:
    """Raise :class:`MissingExtraError` (one line: what is missing, what to install) unless
    torch, diffusers and accelerate can be imported."""
    import importlib

    missing = []
    for module in ("torch", "diffusers", "accelerate"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtraError(
            f"training needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed: pip install -e '.[train]' (or pip install -r requirements.txt)")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs (defaults: the quick CPU run of ``07_train``).

    Parameters
    ----------
    data : str
        Dataset folder: the pipeline's export (``metadata.jsonl`` with a
        ``split`` column) or WebDataset shards (``shards.json``).
    output : str
        Run folder: ``checkpoints/``, ``model/``, ``losses.csv``, ``loss_curve.png``.
    planes : {"all", "magnitude"}
        Learn magnitude, cos and sin (``"all"``), or the magnitude alone; its
        samples then get their phase from the decode (``phase="auto"``).
    stereo : bool
        Learn a stereo dataset's (``channels: stereo``) mid and side tiles together:
        6 planes (the mid's, then the side's), or the two magnitudes with
        ``planes="magnitude"``; samples are written as mid and side tiles and decode
        to stereo files.  False: the mid tiles alone (a mono dataset, or a stereo
        one's mono mix).  A mono dataset refuses True.
    crop_frames : int
        Train on crops of this many STFT frames along time at full height (a
        tile is never resized: that would shift its bins' frequencies); 0 =
        whole tiles.  Samples are whole tiles either way (the UNet is convolutional).
    conditioning : {"none", "caption"}
        Unconditional, or on each tile's caption through a frozen text encoder,
        with classifier-free guidance at sampling.
    text_encoder : str
        Hub id or local folder of the text encoder (T5, CLIP or any encoder
        ``transformers`` loads); ``$WAVDIFF_TEXT_ENCODER`` replaces the default id.
    max_text_tokens : int
        Captions are cut to this many tokens.
    caption_dropout : float
        Share of training captions replaced by the empty one (what guidance needs).
    channels : tuple of int
        UNet block widths, one per resolution (each halves the tile).
    attention : tuple of bool, or bool
        Self-attention (cross-attention when conditioned) in each resolution's blocks;
        one bool applies to all.  The lowest resolution (mid block) always attends.
    layers_per_block : int
    norm_groups : int
        Group-norm groups; must divide every width.
    steps : int
        Optimizer steps of the whole run (a resumed run goes on to this number).
    batch_size : int
        Tiles (or crops) per micro-batch; ``grad_accum`` micro-batches make one step.
    grad_accum : int
    learning_rate, weight_decay : float
    lr_schedule : {"constant", "constant_with_warmup", "cosine", "linear"}
    lr_warmup_steps : int
    prediction_type : {"epsilon", "v_prediction", "sample"}
        What the UNet predicts: the noise, the velocity, or the clean tile.
    noise_schedule : {"squaredcos_cap_v2", "linear", "scaled_linear"}
    train_timesteps : int
    mixed_precision : {"auto", "no", "fp16", "bf16"}
        ``"auto"``: bf16 on a GPU that has it, else fp16 on a GPU, none on the CPU.
    device : {"auto", "cpu", "cuda"}
    use_ema : bool
        Keep an exponential moving average of the weights (diffusers' ``EMAModel``);
        the saved model is the average.
    ema_decay : float
        Highest decay of the average (it warms up towards it).
    checkpoint_every : int
        Steps between checkpoints (and one at the end); 0 = at the end only.
    checkpoints_kept : int
        Newest checkpoints kept.
    eval_every : int
        Steps between validation losses (and one at the end); 0 = at the end only.
    probe_every : int
        Steps between losses at fixed timesteps on a fixed batch of training
        tiles (the smooth curve that shows learning); 0 = never.
    eval_timesteps : int
        Fixed timesteps (evenly spread) of the probe and validation losses.
    val_max_tiles : int
        Validation tiles looked at, at most (0 = all).
    num_workers : int
        Data-loading worker processes.
    seed : int
        Data order, crops, noise and the model's first weights.
    resume : str
        ``"auto"``: go on from the newest intact checkpoint in ``output`` (a
        finished run just writes its results again; a damaged newest one is
        said, moved aside and the previous one used); ``"restart"``: delete the
        checkpoints there and start over; or a checkpoint folder (checked:
        anything else is refused in one line).
    """

    data: str = DEMO_DATA
    output: str = "outputs/train"
    planes: str = "all"
    stereo: bool = False
    crop_frames: int = 32
    conditioning: str = "none"
    text_encoder: str = DEFAULT_TEXT_ENCODER
    max_text_tokens: int = 64
    caption_dropout: float = 0.1
    channels: tuple = (16, 32, 64)
    attention: tuple = False
    layers_per_block: int = 1
    norm_groups: int = 8
    steps: int = 40
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-3
    weight_decay: float = 1e-6
    lr_schedule: str = "constant_with_warmup"
    lr_warmup_steps: int = 4
    prediction_type: str = "v_prediction"
    noise_schedule: str = "squaredcos_cap_v2"
    train_timesteps: int = 1000
    mixed_precision: str = "auto"
    device: str = "auto"
    use_ema: bool = True
    ema_decay: float = 0.999
    checkpoint_every: int = 20
    checkpoints_kept: int = 2
    eval_every: int = 20
    probe_every: int = 1
    eval_timesteps: int = 8
    val_max_tiles: int = 64
    num_workers: int = 0
    seed: int = 0
    resume: str = "auto"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        for key in ("data", "output", "text_encoder", "resume"):
            if not isinstance(getattr(self, key), (str, Path)) or not str(getattr(self, key)).strip():
                raise BadParameterError(f"{key} must be a non-empty path or name, got "
                                        f"{getattr(self, key)!r}")
            set_(key, str(getattr(self, key)))
        for key, allowed in (("planes", PLANES), ("conditioning", CONDITIONING),
                             ("mixed_precision", _PRECISIONS), ("device", _DEVICES),
                             ("prediction_type", _PREDICTIONS), ("noise_schedule", _SCHEDULES),
                             ("lr_schedule", _LR_SCHEDULES)):
            if getattr(self, key) not in allowed:
                raise BadParameterError(f"{key} must be one of {', '.join(allowed)}; got "
                                        f"{getattr(self, key)!r}")
        for key, low in (("crop_frames", 0), ("max_text_tokens", 1), ("layers_per_block", 1),
                         ("norm_groups", 1), ("steps", 1), ("batch_size", 1), ("grad_accum", 1),
                         ("lr_warmup_steps", 0), ("train_timesteps", 2), ("checkpoint_every", 0),
                         ("checkpoints_kept", 1), ("eval_every", 0), ("probe_every", 0),
                         ("eval_timesteps", 1), ("val_max_tiles", 0), ("num_workers", 0),
                         ("seed", 0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < low:
                raise BadParameterError(f"{key} must be an integer >= {low}, got {v!r}")
            set_(key, int(v))
        for key, low, high in (("caption_dropout", 0.0, 1.0), ("ema_decay", 0.0, 1.0),
                               ("learning_rate", 1e-12, 10.0), ("weight_decay", 0.0, 10.0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
                raise BadParameterError(f"{key} must be a number in [{low:g}, {high:g}], got {v!r}")
            set_(key, float(v))
        set_("use_ema", bool(self.use_ema))
        if not isinstance(self.stereo, bool) and self.stereo not in (0, 1):
            raise BadParameterError(f"stereo must be true or false, got {self.stereo!r}")
        set_("stereo", bool(self.stereo))
        channels = tuple(self.channels) if isinstance(self.channels, (list, tuple)) else ()
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            hint = ("; a stereo dataset is learnt with stereo=True"
                    if self.channels in ("stereo", "mono", "mid") else "")
            raise BadParameterError(f"channels must be a list of positive integers (one UNet width "
                                    f"per resolution), got {self.channels!r}{hint}")
        attention = self.attention
        if isinstance(attention, bool):
            attention = (attention,) * len(channels)
        attention = tuple(bool(a) for a in attention) if isinstance(attention, (list, tuple)) else ()
        if len(attention) != len(channels):
            raise BadParameterError(f"attention must hold one true/false per entry of channels "
                                    f"({len(channels)}), got {self.attention!r}")
        bad = [c for c in channels if c % self.norm_groups]
        if bad:
            raise BadParameterError(f"norm_groups={self.norm_groups} must divide every entry of "
                                    f"channels; {bad[0]} is not a multiple of it")
        set_("channels", channels)
        set_("attention", attention)
        self._check_maxima()

    def _check_maxima(self) -> None:
        """Refuse settings above the hard maxima (one line naming the setting and the limit)."""
        check_at_most("channels", max(self.channels), MAX_WIDTH, "the widest UNet block; "
                      "parameters grow with the square of the widths")
        check_at_most("grad_accum", self.grad_accum, MAX_GRAD_ACCUM, "micro-batches per "
                      "optimizer step; raise batch_size instead where memory allows")
        check_at_most("train_timesteps", self.train_timesteps, MAX_TRAIN_TIMESTEPS,
                      "noise levels of the schedule")
        check_at_most("eval_timesteps", self.eval_timesteps,
                      min(MAX_EVAL_TIMESTEPS, self.train_timesteps), "fixed timesteps of the "
                      "probe and validation losses, each a pass over their tiles; at most "
                      "train_timesteps")
        check_at_most("max_text_tokens", self.max_text_tokens, MAX_TEXT_TOKENS,
                      "caption tokens the text encoder reads")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_mapping(cls, values, **overrides) -> "TrainConfig":
        """The settings named in ``values`` (a dict, a YAML file's content, or a notebook's
        ``globals()``); other names are ignored, ``overrides`` win."""
        names = {f.name for f in dataclasses.fields(cls)}
        picked = {k: v for k, v in dict(values).items() if k in names}
        picked.update(overrides)
        return cls(**picked)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"], d["attention"] = list(self.channels), list(self.attention)
        return d

    @property
    def model_planes(self) -> int:
        """Planes the model learns (:func:`model_planes`): 3 or 1, doubled in stereo."""
        return model_planes(self.planes, self.stereo)

    @property
    def down_factor(self) -> int:
        """How much the UNet shrinks a tile: tile height and crop width must be multiples of it."""
        return 2 ** (len(self.channels) - 1)

    def describe(self) -> str:
        """One line: model, data, steps."""
        what = "magnitude only" if self.planes == "magnitude" else "magnitude, cos, sin"
        what += " of mid and side (stereo)" if self.stereo else ""
        cond = (f"caption-conditioned ({self.text_encoder})" if self.conditioning == "caption"
                else "unconditional")
        crop = f"crops of {self.crop_frames} frames" if self.crop_frames else "whole tiles"
        return (f"{cond} UNet {list(self.channels)} on {what}, {crop}; {self.steps} steps of "
                f"{self.batch_size}x{self.grad_accum}, lr {self.learning_rate:g}, "
                f"{self.prediction_type}, seed {self.seed}")


def check_resumable(saved: dict, config: TrainConfig, folder, *, codec: dict | None = None) -> list[str]:
    """Compare a run folder's saved settings (and the codec of its tiles) with ``config``.

    Returns
    -------
    list of str
        Notes on settings that changed but allow resuming (the run is then no
        longer the same as an uninterrupted one).

    Raises
    ------
    OutputConflictError
        A setting that shapes the model, or the tiles' codec, changed; the message names it
        and how to start over.
    """
    now = config.to_dict()
    was = saved.get("stereo", False if "codec" in saved else None)   # older runs: mono
    if was is not None and was != config.stereo:
        raise OutputConflictError(
            f"{folder}: holds a run made with stereo={was!r}, not {config.stereo!r} (a model of "
            f"{model_planes(config.planes, was)} planes); choose another output folder, or "
            f"resume='restart' to start it over")
    if codec is not None and saved.get("codec") not in (None, codec):
        old, new = saved["codec"], codec
        diff = next((k for k in new if old.get(k) != new[k]), "codec")
        raise OutputConflictError(
            f"{folder}: holds a run trained on tiles with {diff}={old.get(diff)!r}, but the "
            f"dataset's tiles have {diff}={new.get(diff)!r}; choose another output folder, or "
            f"resume='restart' to start it over")
    for key in MODEL_KEYS:
        if key in saved and saved[key] != now[key]:
            raise OutputConflictError(
                f"{folder}: holds a run made with {key}={saved[key]!r}, not {now[key]!r}; "
                f"choose another output folder, or resume='restart' to start it over")
    notes = []
    for key in ("data", "crop_frames", "batch_size", "grad_accum", "learning_rate", "lr_schedule",
                "lr_warmup_steps", "seed", "caption_dropout", "weight_decay", "ema_decay"):
        if key in saved and saved[key] != now[key]:
            notes.append(f"{key} changed from {saved[key]!r} to {now[key]!r} since the checkpoint; "
                         f"resumed anyway")
    return notes


def read_saved_config(folder) -> dict | None:
    """The settings a run folder was started with, or ``None``."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
