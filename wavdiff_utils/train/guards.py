"""Resource guards of a training run: settings that multiply memory or time are checked
before anything is allocated (and before torch is imported), in one line that names the
setting, the estimate and the limit.

- ``channels`` (the UNet's widths: parameters grow with their squares), ``crop_frames``
  times the tile height, and ``batch_size`` against the memory of the device that trains
  (the GPU's free memory as ``nvidia-smi`` reports it, else half of this machine's
  available memory), with :func:`wavdiff_utils.codec.resources.check_memory`;
- ``num_workers`` against the cores and the memory of this machine;
- hard maxima where no estimate fits (:data:`MAX_WIDTH`, :data:`MAX_GRAD_ACCUM`, ...), in
  :class:`~wavdiff_utils.train.config.TrainConfig` itself.

The estimate (:func:`training_bytes`) counts the weights, their gradients, AdamW's two
moments and the weights' average (20 bytes a parameter), and the activations kept for
the backward pass: about 9 values per channel and pixel in each ResNet layer, 7 more
where a block attends (calibrated on the CPU: within 15% of the measured peak for small
UNets, and 3.1 GB against the 3.2 GB measured for one 1024x256 crop in the UNet of
``params/train_gpu.yaml``).  Activations count 4 bytes each on the CPU or without mixed
precision, else 2.  A GPU that runs out of memory anyway is reported the same way
(:func:`out_of_memory`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from ..codec.resources import MEMORY_SHARE, available_memory, check_at_most, check_memory, gb
from ..codec.threads import usable_cores
from ..errors import BadParameterError
from .config import TrainConfig

__all__ = ["check_geometry", "training_bytes", "unet_parameters", "Memory", "device_memory", "check_training",
           "check_workers", "out_of_memory", "WORKER_BYTES"]

#: Memory of one data-loading worker process besides the batches it prepares.
WORKER_BYTES = 200_000_000
#: Share of a GPU's free memory a run may plan to use (the GPU is the run's own).
GPU_SHARE = 0.9


def check_geometry(config: TrainConfig, source) -> int:
    """The training width (``crop_frames``, or the tiles' width); raises
    :class:`BadParameterError` when the UNet cannot take the tiles of ``source``."""
    f = config.down_factor
    width = config.crop_frames or source.width
    if config.crop_frames > source.width:
        raise BadParameterError(f"crop_frames={config.crop_frames} is wider than the tiles "
                                f"({source.width} frames); use 0 for whole tiles")
    for what, v in (("tile height", source.height), ("training width (crop_frames or tile width)",
                                                     width), ("tile width", source.width)):
        if v % f:
            raise BadParameterError(f"{what} {v} is not a multiple of {f}, which a UNet with "
                                    f"{len(config.channels)} resolutions needs; change crop_frames "
                                    f"or channels")
    return width


def unet_parameters(channels, *, layers: int, attention, channels_in: int = 3) -> int:
    """About how many parameters a UNet of these widths has (within a few percent)."""
    widths = list(channels)
    total = 2 * 9 * channels_in * widths[0] + 2 * (4 * widths[0]) ** 2      # convs in/out, time
    previous = widths[0]
    for c, attends in zip(widths, attention):
        down = layers * 18 * c * c + 9 * previous * c
        up = (layers + 1) * 27 * c * c + 9 * c * c
        attn = (2 * layers + 1) * 4 * c * c if attends else 0
        total += down + up + attn
        previous = c
    return int(total + 40 * widths[-1] ** 2)                                  # the mid block


def _activation_values(config: TrainConfig, height: int, width: int, channels) -> float:
    """Values one sample keeps for the backward pass (see the module notes)."""
    layers, total = config.layers_per_block, 3.0 * channels[0] * height * width
    pixels = float(height) * width
    for c, attends in zip(channels, config.attention):
        per = 9 * (2 * layers + 1) + (7 * (2 * layers + 1) if attends else 0)
        total += pixels * c * per
        pixels /= 4
    return total + pixels * 4 * channels[-1] * 25                             # the mid block


def training_bytes(config: TrainConfig, height: int, width: int, *, batch_size: int | None = None,
                   widest: int | None = None, act_bytes: int = 4, channels_in: int = 3) -> float:
    """Estimated peak memory of training ``config`` on ``height`` x ``width`` crops.

    ``batch_size`` and ``widest`` (the widest UNet block; the others scale with it) replace
    the config's, so that a guard can look for the largest value that fits.
    """
    widths = list(config.channels)
    if widest is not None:
        scale = widest / max(widths)
        widths = [max(1, int(round(c * scale))) for c in widths]
    n = config.batch_size if batch_size is None else batch_size
    params = unet_parameters(widths, layers=config.layers_per_block, attention=config.attention,
                             channels_in=channels_in)
    per_param = 20 if config.use_ema else 16
    data = 2 * n * channels_in * height * width * 4                      # the batch, twice
    return (params * per_param + n * act_bytes * _activation_values(config, height, width, widths)
            + data)


@dataclass(frozen=True)
class Memory:
    """Memory a run may plan with: bytes available, the share it may use, and where it is."""

    available: int
    share: float
    where: str
    act_bytes: int = 4


def gpu_free_memory() -> int | None:
    """Free bytes of the first visible GPU as ``nvidia-smi`` says (None without one or it)."""
    exe = shutil.which("nvidia-smi")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    first = visible.split(",")[0].strip() if visible is not None else "0"
    if exe is None or not first or first.startswith("-"):
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits",
                              "-i", first], capture_output=True, text=True, timeout=15,
                             stdin=subprocess.DEVNULL)
        return int(out.stdout.split()[0]) << 20 if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def device_memory(config: TrainConfig, *, cuda: bool | None = None) -> Memory | None:
    """The memory the run will train in: the GPU's free memory, or this machine's.

    ``cuda``: whether torch trains on the GPU, when known; else guessed from ``device`` and
    ``nvidia-smi`` without importing torch.  None when a GPU is asked for but not found
    here (torch says so later, in one line).
    """
    mixed = config.mixed_precision != "no"
    if cuda is None:
        free = gpu_free_memory() if config.device != "cpu" else None
        if free is None and config.device == "cuda":
            return None
    elif cuda:
        import torch

        free = int(torch.cuda.mem_get_info()[0])
    else:
        free = None
    if free is not None:
        return Memory(free, GPU_SHARE, "free on the GPU", 2 if mixed else 4)
    return Memory(available_memory(), MEMORY_SHARE, "of this machine's memory", 4)


def _check(name: str, value: int, need_for, memory: Memory, hint: str, unit: str = "") -> None:
    try:
        check_memory(name, value, need_for, available=memory.available, share=memory.share,
                     unit=unit)
    except BadParameterError as exc:
        raise BadParameterError(f"{exc} ({memory.where}); {hint}") from None


def check_training(config: TrainConfig, height: int, width: int, memory: Memory | None) -> None:
    """Refuse ``channels``, ``crop_frames`` and ``batch_size`` when the run would not fit
    ``memory``, in that order (the weights alone, one sample, the batch), then ``num_workers``.

    Raises
    ------
    BadParameterError
        One line: the setting, its value, the estimate, the memory and the largest value
        that fits.
    """
    if memory is None:
        check_workers(config, height, width)
        return
    est = dict(act_bytes=memory.act_bytes, channels_in=config.model_planes)
    _check("channels (widest block)", max(config.channels),        # the weights alone
           lambda w: training_bytes(config, height, width, batch_size=0, widest=w, **est), memory,
           "narrow the UNet")
    crop = "crop_frames" if config.crop_frames else "crop_frames 0: whole tiles of"
    _check(crop, width, lambda w: training_bytes(config, height, w, batch_size=1, **est), memory,
           f"tiles are {height} px high: train on narrower crops", unit=" frames")
    _check("batch_size", config.batch_size,
           lambda b: training_bytes(config, height, width, batch_size=b, **est), memory,
           "lower batch_size and raise grad_accum for the same effective batch")
    check_workers(config, height, width)


def check_workers(config: TrainConfig, height: int, width: int) -> None:
    """Refuse more data-loading workers than four per core (at least 8), or than fit in half
    of this machine's memory (each a process holding two batches)."""
    n = config.num_workers
    if not n:
        return
    cores = usable_cores()
    check_at_most("num_workers", n, max(8, 4 * cores), f"this machine gives this run {cores} "
                  f"core(s); each worker is a process")
    batch = config.batch_size * max(3, config.model_planes) * height * width * 4
    check_memory("num_workers", n, lambda k: k * (WORKER_BYTES + 2 * batch))   # prefetch: 2


def out_of_memory(config: TrainConfig, height: int, width: int, where: str) -> BadParameterError:
    """The one line for a run that ran out of memory anyway (the estimate was short)."""
    return BadParameterError(
        f"batch_size {config.batch_size}: out of memory {where} while training on {height} x "
        f"{width} crops with channels {list(config.channels)} (about "
        f"{gb(training_bytes(config, height, width, channels_in=max(3, config.model_planes)))} "
        f"estimated); lower batch_size or "
        f"crop_frames, and raise grad_accum for the same effective batch")
