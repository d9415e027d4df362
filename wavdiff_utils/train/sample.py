"""Tiles from a trained model: DDIM sampling, classifier-free guidance, 16-bit tiles for the decode.

Samples are whole tiles of the codec's ``size`` even when the model trained on
crops along time (the UNet is convolutional, so it runs at any width that the
resolutions divide).  They are written by
:func:`wavdiff_utils.dataset.write_tensor_tiles` with the training tiles' codec
parameters, named as a generator names its output (``sample_0000.png``,
``sample_0001.png``, ...; with the prompt beside a conditioned sample in
``sample_0000.txt``), and decoded by ``03_decode`` / :func:`decode_batch`, one
clip per sample with ``join="none"``.  A stereo model's samples are 6-plane tensors
written as a mid tile and its side tile (``sample_0000.side.png``, with the side codec),
which decode to one stereo file per sample.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..codec.params import CodecParams
from ..codec.resources import check_at_most, check_memory
from ..dataset.tensors import write_tensor_tiles
from ..errors import BadParameterError
from ..paths import display_path
from .config import require_training
from .data import model_to_tile
from .model import TrainedModel, load_model
from .text import TextEncoder

__all__ = ["SampleResult", "sample_tiles", "pick_device"]


def pick_device(device: str = "auto"):
    """``"auto"``: the GPU when there is one, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise BadParameterError(f"device={device!r} but torch sees no GPU; use device='auto' or 'cpu'")
    return torch.device(device)


@dataclass
class SampleResult:
    """What :func:`sample_tiles` wrote.

    Attributes
    ----------
    folder : Path
    paths : list of Path
        ``sample_<index:04d>.png``, 16-bit tiles with codec metadata (stereo: the mid
        tiles, each with ``sample_<index:04d>.side.png`` beside it).
    params : CodecParams
        The model's codec (``params.stereo`` for stereo samples).
    prompts : list of str
        Caption of each sample (empty when unconditional).
    steps : int
        DDIM steps.
    guidance_scale : float
    seconds : float
    """

    folder: Path
    paths: list = field(default_factory=list)
    params: CodecParams | None = None
    prompts: list = field(default_factory=list)
    steps: int = 0
    guidance_scale: float = 0.0
    seconds: float = 0.0

    def summary(self) -> str:

        guided = f", guidance {self.guidance_scale:g}" if any(self.prompts) else ""
        what = "stereo sample(s) (mid and side tiles)" if self.params.stereo else "sample tile(s)"
        return (f"{len(self.paths)} {what} of {self.params.tile_seconds:.2f} s in "
                f"{display_path(self.folder)} ({self.steps} DDIM steps{guided}, {self.seconds:.1f} s)")


def sample_tiles(model, output, *, n: int = 2, steps: int = 50, guidance_scale: float = 3.0,
                 prompts=None, seed: int = 0, batch_size: int = 4, device: str = "auto",
                 song: str = "sample", progress: bool = True) -> SampleResult:
    """Sample ``n`` tiles from a trained model and write them as 16-bit PNGs into ``output``.

    Parameters
    ----------
    model : TrainedModel or path-like
        A loaded model, a run's ``model/`` folder, or the run folder.
    output : path-like
        Folder (created); earlier ``<song>_*.png`` there are replaced.
    n : int
        Number of tiles.
    steps : int
        DDIM steps (deterministic: eta 0).
    guidance_scale : float
        Classifier-free guidance of a caption-conditioned model (1 = none).
    prompts : str or list of str, optional
        Captions for a conditioned model, cycled over the samples (default: the
        empty caption, i.e. unconditional samples from the same model).
    seed : int
        Starting noise (made on the CPU: the same on every device).
    batch_size : int
    device : str
    song : str
        File-name prefix.
    progress : bool

    Returns
    -------
    SampleResult
    """

    require_training()
    import torch
    from tqdm.auto import tqdm

    if int(n) < 1 or int(steps) < 1 or int(batch_size) < 1:
        raise BadParameterError(f"n, steps and batch_size must be >= 1, got {n}, {steps}, "
                                f"{batch_size}")
    dev = pick_device(device)
    if not isinstance(model, TrainedModel):
        model = load_model(model, device=dev)
    p = replace(model.params, channels="stereo" if model.stereo else "mono")
    _check_sizes(model, p, n=int(n), steps=int(steps))
    unet = model.unet.to(dev)
    _check_resolutions(unet, p.size)
    texts = _cycle_prompts(prompts, int(n))
    sampler = _make_sampler(model, unet, dev, steps=int(steps), guidance_scale=guidance_scale)
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(int(n), model.channels, p.size, p.size, generator=gen)
    t0 = time.perf_counter()
    done = []
    bar = tqdm(total=int(n) * int(steps), desc="sample", unit="step", disable=not progress)
    try:
        for start in range(0, int(n), int(batch_size)):
            x = noise[start:start + int(batch_size)].to(dev)
            done.append(_denoise(sampler, x, texts[start:start + len(x)], bar))
    finally:
        bar.close()
    tiles = model_to_tile(torch.cat(done), model.planes)
    paths = _write_samples(tiles, texts, Path(output), song=song, params=p)
    return SampleResult(Path(output), paths, p, texts, int(steps), float(guidance_scale),
                        time.perf_counter() - t0)


@dataclass(frozen=True)
class _Sampler:
    """What the denoising needs: the UNet on its device, the text encoder, the DDIM schedule."""

    unet: object
    encoder: TextEncoder | None
    scheduler: object
    guidance_scale: float


def _check_sizes(model: TrainedModel, p: CodecParams, *, n: int, steps: int) -> None:
    """Refuse more samples than the memory holds (noise, results and tiles of all of them are
    kept at once), and more DDIM steps than the model has noise levels."""
    tiles = 2 if model.stereo else 1             # uint16 RGB tiles per sample: 6 bytes a pixel
    check_memory("n", n, lambda k: k * p.size * p.size * (model.channels * 8 + 6 * tiles))
    levels = int(model.scheduler_config.get("num_train_timesteps", 1000))
    check_at_most("steps", steps, levels, "DDIM steps: one per noise level the model was "
                                          "trained with, at most")


def _check_resolutions(unet, size: int) -> None:
    """Raise when the tile size is not a multiple of the UNet's downsampling."""
    down = 2 ** (len(unet.config.block_out_channels) - 1)
    if size % down:
        raise BadParameterError(f"tile size {size} is not a multiple of {down}, which the UNet's "
                                f"resolutions need")


def _cycle_prompts(prompts, n: int) -> list:
    """The caption of each of ``n`` samples: ``prompts`` cycled (empty captions without any)."""
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts or [])
    return [prompts[k % len(prompts)] if prompts else "" for k in range(n)]


def _make_sampler(model: TrainedModel, unet, dev, *, steps: int, guidance_scale) -> _Sampler:
    """Load the text encoder of a captioned model and set the DDIM schedule to ``steps``."""
    from diffusers import DDIMScheduler

    encoder = None
    if model.conditioning == "caption":
        encoder = TextEncoder(model.text_encoder, device=dev, max_tokens=model.max_text_tokens)
    scheduler = DDIMScheduler.from_config(model.scheduler_config)
    scheduler.set_timesteps(steps)
    return _Sampler(unet, encoder, scheduler, float(guidance_scale))


def _denoise(sampler: _Sampler, x, texts: list, bar):
    """Run the DDIM steps from noise ``x`` (guided by ``texts``); the clamped tiles on the CPU."""
    import torch

    cond = None
    if sampler.encoder is not None:
        states, mask = sampler.encoder.encode(texts)
        null_s, null_m = sampler.encoder.null(len(x))
        cond = (torch.cat([null_s, states]), torch.cat([null_m, mask]))
    for t in sampler.scheduler.timesteps:
        with torch.no_grad():
            if cond is None:
                pred = sampler.unet(x, t).sample
            else:
                both = sampler.unet(torch.cat([x, x]), t, encoder_hidden_states=cond[0],
                                    encoder_attention_mask=cond[1]).sample
                uncond, conditioned = both.chunk(2)
                pred = uncond + sampler.guidance_scale * (conditioned - uncond)
        x = sampler.scheduler.step(pred, t, x).prev_sample
        bar.update(len(x))
    return x.clamp(-1, 1).float().cpu()


def _write_samples(tiles, texts: list, folder: Path, *, song: str, params: CodecParams) -> list:
    """Replace earlier ``<song>_*`` files in ``folder`` with the tiles and their prompts."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in list(folder.glob(f"{song}_*.png")) + list(folder.glob(f"{song}_*.txt")):
        old.unlink()
    paths = write_tensor_tiles(tiles, folder, song=song, params=params)
    for path, text in zip(paths, texts):
        if text:
            path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    return paths
