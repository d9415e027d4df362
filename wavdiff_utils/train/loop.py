"""Train a diffusion model on a dataset of tiles (``07_train``), after diffusers' unconditional example.

The loop follows diffusers' ``examples/unconditional_image_generation/train_unconditional.py``:
``accelerate`` for the device, mixed precision and gradient accumulation; a
DDPM noise schedule; AdamW with a warm-up; ``EMAModel`` for the weights kept;
``save_state`` checkpoints; progress bar.  What differs:

- **Data** is our 16-bit tiles (:mod:`wavdiff_utils.train.data`): never resized,
  cropped along time at full height, split by the dataset's ``split`` column; with
  ``stereo`` a stereo dataset's mid and side tiles together (6 planes, or 2 magnitudes).
- **Exact resume.**  Data order and crops are functions of ``(seed, epoch,
  index)``, the noise comes from a generator saved in every checkpoint with
  the step, epoch and batch reached, and a resumed run skips the batches of
  the epoch already seen (``accelerate.skip_first_batches``).  A run stopped
  after a checkpoint and started again ends with the same weights as an
  uninterrupted one (tested on the CPU).
- **Losses that show learning.**  Besides the training loss (random
  timesteps, noisy), a probe loss on a fixed batch of training tiles at fixed
  timesteps with fixed noise is measured every ``probe_every`` steps, and a
  validation loss the same way on the ``validation`` split every ``eval_every``.
- **Caption conditioning** (``conditioning="caption"``): a frozen text encoder
  (:mod:`wavdiff_utils.train.text`), captions dropped to the empty one at
  ``caption_dropout`` so that sampling can use classifier-free guidance.

A run folder holds ``checkpoints/checkpoint-<step>/`` (written whole or not at all, and
checked before a resume: :mod:`wavdiff_utils.train.checkpoints`), ``model/`` (see
:mod:`wavdiff_utils.train.model`), ``losses.csv``, ``train_config.json`` and
``train_summary.json``.  One run at a time per folder (a lock, as the pipeline's).  Settings
that multiply memory are checked before torch is even imported
(:mod:`wavdiff_utils.train.guards`); errors reach the user as one line, those of
data-loading worker processes included.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..codec.params import load_yaml_params
from ..errors import BadParameterError, WavdiffError, one_line
from ..io.locking import output_lock
from ..paths import atomic_path, output_dir, resolve, writing
from .checkpoints import (checkpoint_folders, latest_checkpoint, load_checkpoint,
                          named_checkpoint, pick_checkpoint, remove_checkpoints, remove_leftovers,
                          save_checkpoint)
from .config import (CONFIG_NAME, TrainConfig, check_resumable, check_setting_names,
                     read_saved_config, require_training)
from .scan import TileSource, TrainDataError, scan_dataset
from .guards import check_geometry, check_training, device_memory, out_of_memory
from .loaders import batches, fixed_loss, make_loader, probe_batch, validation_loader
from .model import build_unet, noise_scheduler, save_model
from .result import TrainResult, TrainState, write_losses
from .sample import sample_tiles
from .text import TextEncoder

__all__ = ["train", "main"]


class _NoiseSource:
    """The generator of training noise, timesteps and caption dropout; saved in checkpoints."""

    def __init__(self, device, seed: int):
        import torch

        self.generator = torch.Generator(device=device).manual_seed(int(seed) + 1)

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])


def _fresh_accelerate_state() -> None:
    """Forget the precision and accumulation of an earlier run in this process (a notebook
    kernel training twice), which accelerate keeps in shared state and refuses to change."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def _precision(config: TrainConfig, cuda: bool) -> str:
    import torch

    if config.mixed_precision != "auto":
        if config.mixed_precision == "fp16" and not cuda:
            raise BadParameterError("mixed_precision='fp16' needs a GPU; use 'bf16' or 'no' on "
                                    "the CPU")
        return config.mixed_precision
    if not cuda:
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _fixed_timesteps(config: TrainConfig):
    """``eval_timesteps`` timesteps at the middles of equal shares of the schedule."""
    import torch

    n, t = config.eval_timesteps, config.train_timesteps
    return ((torch.arange(n, dtype=torch.float64) + 0.5) * t / n).long().clamp(0, t - 1)


def train(config: TrainConfig | None = None, *, progress: bool = True, callback=None,
          log=print, **changes) -> TrainResult:
    """Train (or go on training) a diffusion model on a dataset of tiles.

    Parameters
    ----------
    config : TrainConfig, optional
        The run's settings (default: ``TrainConfig()``, the quick CPU run).
    progress : bool
        Show a progress bar over steps.
    callback : callable, optional
        ``callback(step, record)`` after every step (``record``: loss, lr, probe
        and validation losses when measured); raising in it stops the run like Ctrl-C.
    log : callable or None
        Receives one-line notes (resumed from, changed settings, checkpoints).
    **changes
        Settings that replace those of ``config`` (``train(steps=100)``).

    Returns
    -------
    TrainResult

    Raises
    ------
    MissingExtraError
        diffusers, accelerate or torch is not installed (the message names the extra).
    MissingInputError, TrainDataError, BadShardError
        The dataset folder is missing, empty, 8-bit, of mixed tile sizes, a damaged shard, ...
    BadParameterError
        A setting that cannot be used, or that needs more memory than the device has (checked
        before anything is allocated); ``resume`` that names no checkpoint.
    BadCheckpointError
        ``resume`` names a damaged checkpoint, or none of the run's checkpoints is intact (a
        damaged newest one is moved aside and the run resumes from the previous one, saying so).
    OutputConflictError
        ``output`` holds a run with another model.
    UnwritableOutputError
        ``output`` cannot be written (full disk, read-only, no permission).
    KeyboardInterrupt
        Passed on; the newest checkpoint stays, and the same call resumes from it.
    """
    config = (config or TrainConfig()).replace(**changes) if changes else (config or TrainConfig())
    say = log or (lambda *_: None)
    source = scan_dataset(resolve(config.data), stereo=config.stereo)
    width = check_geometry(config, source)
    check_training(config, source.height, width, device_memory(config))   # before torch loads
    require_training()
    if config.conditioning == "caption" and source.captioned("train") == 0:
        which = (f"none of the first {source.looked['train'][0]} training samples has a caption"
                 if source.kind == "shards" else "no training tile has a caption")
        raise TrainDataError(f"{source.root}: conditioning='caption' but {which}; caption the "
                             f"dataset (python -m wavdiff_utils --captioner ...) or use "
                             f"conditioning='none'")
    with writing(resolve(config.output)):
        out = output_dir(config.output)
    with output_lock(out):
        return _train_locked(config, source, out, width, progress=progress, callback=callback,
                             say=say)


def _resume_point(config: TrainConfig, out: Path, codec: dict, say) -> tuple[Path | None, list]:
    """The checkpoint to load (checked: or None) and notes about it and changed settings; a
    damaged newest checkpoint is said and moved aside (see :func:`pick_checkpoint`)."""
    custom = 3 if config.use_ema else 2            # the run's state, the noise, the EMA
    if config.resume == "restart":
        remove_checkpoints(out)
        for name in ("model", "losses.csv", "train_summary.json", "loss_curve.png", CONFIG_NAME):
            target = out / name
            with writing(target):
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        return None, []
    remove_leftovers(out)
    saved = read_saved_config(out)
    notes = []
    if config.resume != "auto" or checkpoint_folders(out):
        notes = check_resumable(saved or {}, config, out, codec=codec)
    if config.resume == "auto":
        ckpt, damaged = pick_checkpoint(out, custom_states=custom)
    else:
        ckpt, damaged = named_checkpoint(config.resume, resolve(config.resume),
                                         custom_states=custom), []
    if ckpt is None:
        if saved is not None and (out / "model").exists():
            say(f"{out}: no checkpoint to resume from; starting over")
        return None, []
    return ckpt, damaged + notes


class _Clock:
    """Training time of this session, counted in laps between checkpoints."""

    def __init__(self):
        self.start = time.perf_counter()

    def lap(self) -> float:
        """Seconds since the last lap (or the start); the next lap starts now."""
        elapsed = time.perf_counter() - self.start
        self.start = time.perf_counter()
        return elapsed


@dataclass(frozen=True)
class _Run:
    """What a training session works with: accelerator, prepared model and data, saved state."""

    config: TrainConfig
    out: Path
    accelerator: object
    unet: object
    optimizer: object
    lr_schedule: object
    loader: object
    data: object
    schedule: object
    encoder: TextEncoder | None
    ema: object
    state: TrainState
    noise: _NoiseSource

    @property
    def device(self):
        """The accelerator's device."""
        return self.accelerator.device

    def model_out(self, x, t, texts):
        """The UNet's output for noisy ``x`` at timesteps ``t`` (given ``texts`` if captioned)."""
        if self.encoder is None:
            return self.unet(x, t).sample
        states, mask = self.encoder.encode(texts)
        return self.unet(x, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample

    def target_of(self, x0, eps, t):
        """What the UNet learns to predict (``prediction_type``) for ``x0`` noised with ``eps``."""
        if self.config.prediction_type == "epsilon":
            return eps
        return x0 if self.config.prediction_type == "sample" else self.schedule.get_velocity(
            x0, eps, t)


@dataclass(frozen=True)
class _Checks:
    """The fixed losses' inputs: timesteps, the probe batch, the validation loader."""

    timesteps: object
    probe: dict | None
    val_loader: object


def _use_cuda(config: TrainConfig) -> bool:
    """Whether the run trains on the GPU; raises for ``device='cuda'`` without one."""
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise BadParameterError("device='cuda' but torch sees no GPU; use device='auto' or 'cpu'")
    return config.device != "cpu" and torch.cuda.is_available()


def _prepare_run(config: TrainConfig, source: TileSource, out: Path, width: int, *,
                 precision: str, cuda: bool) -> _Run:
    """Build accelerator, encoder, UNet, optimizer, loader and EMA (this order fixes the RNG)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    _fresh_accelerate_state()
    accelerator = Accelerator(mixed_precision=precision, cpu=not cuda,
                              gradient_accumulation_steps=config.grad_accum,
                              project_config=ProjectConfiguration(project_dir=str(out)))
    device = accelerator.device
    set_seed(config.seed)
    encoder = None
    if config.conditioning == "caption":
        encoder = TextEncoder(config.text_encoder, device=device,
                              max_tokens=config.max_text_tokens)
    unet = build_unet(config, channels_in=config.model_planes, height=source.height, width=width,
                      cross_attention_dim=encoder.dim if encoder is not None else None)
    schedule = noise_scheduler(config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate, betas=(0.95, 0.999),
                                  weight_decay=config.weight_decay, eps=1e-8)
    lr_schedule = get_scheduler(config.lr_schedule, optimizer=optimizer,
                                num_warmup_steps=config.lr_warmup_steps,
                                num_training_steps=config.steps)
    loader, data = make_loader(config, source, width)
    unet, optimizer, loader, lr_schedule = accelerator.prepare(unet, optimizer, loader,
                                                               lr_schedule)
    ema = None
    if config.use_ema:
        ema = EMAModel(accelerator.unwrap_model(unet).parameters(), decay=config.ema_decay,
                       use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
        ema.to(device)
    state = TrainState()
    noise = _NoiseSource(device, config.seed)
    accelerator.register_for_checkpointing(state, noise)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    return _Run(config, out, accelerator, unet, optimizer, lr_schedule, loader, data, schedule,
                encoder, ema, state, noise)


def _write_config(config: TrainConfig, source: TileSource, out: Path) -> None:
    """Write the run's settings and the tiles' codec to ``train_config.json``."""
    saved = {**config.to_dict(), "codec": source.params.to_dict()}
    with writing(out / CONFIG_NAME), atomic_path(out / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(saved, indent=1), encoding="utf-8")


def _make_checks(config: TrainConfig, source: TileSource, width: int) -> _Checks:
    """The fixed timesteps, probe batch and validation loader of the fixed losses."""
    probe = probe_batch(config, source, width) if config.probe_every else None
    return _Checks(_fixed_timesteps(config), probe, validation_loader(config, source, width))


def _measure(run: _Run, checks: _Checks, batches) -> float:
    """The fixed loss of the model on ``batches`` (in eval mode, without gradients)."""
    import torch

    run.unet.eval()
    try:
        with torch.no_grad(), run.accelerator.autocast():
            value = fixed_loss(run.model_out, run.target_of, run.schedule, batches,
                               checks.timesteps, run.device, seed=run.config.seed)
    finally:
        run.unet.train()
    return value


def _evaluate(run: _Run, checks: _Checks, record: dict) -> None:
    """Add the probe and validation losses due at this step to ``record`` and the state."""
    state, config = run.state, run.config
    if checks.probe is not None and (state.step % config.probe_every == 0
                                     or state.step == config.steps):
        record["probe_loss"] = _measure(run, checks, [checks.probe])
        state.probes.append([state.step, record["probe_loss"]])
    if checks.val_loader is not None and state.step and (state.step == config.steps or (
            config.eval_every and state.step % config.eval_every == 0)):
        value = _measure(run, checks, checks.val_loader)
        if value == value:               # NaN: a shard folder without validation samples
            record["val_loss"] = value
            state.val.append([state.step, value])


def _save_checkpoint(run: _Run, clock: _Clock) -> None:
    """Save the state as ``checkpoint-<step>`` (whole or not at all) and drop the oldest ones."""
    state = run.state
    state.seconds += clock.lap()
    save_checkpoint(run.accelerator, run.out, state.step, kept=run.config.checkpoints_kept)
    state.last_checkpoint = state.step


def _train_batch(run: _Run, batch: dict) -> float:
    """Train on one micro-batch (noise, timesteps, caption dropout, backward); its loss."""
    import torch
    import torch.nn.functional as F

    config, device, accelerator = run.config, run.device, run.accelerator
    x0 = batch["pixel_values"]
    with accelerator.accumulate(run.unet):
        g = run.noise.generator
        eps = torch.randn(x0.shape, generator=g, device=device, dtype=x0.dtype)
        t = torch.randint(0, config.train_timesteps, (x0.shape[0],), generator=g, device=device)
        texts = batch["text"]
        if run.encoder is not None:
            drop = torch.rand(len(texts), generator=g, device=device) < config.caption_dropout
            texts = ["" if d else s for d, s in zip(drop.tolist(), texts)]
        pred = run.model_out(run.schedule.add_noise(x0, eps, t), t, texts)
        loss = F.mse_loss(pred.float(), run.target_of(x0, eps, t).float())
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(run.unet.parameters(), 1.0)
        run.optimizer.step()
        run.lr_schedule.step()
        run.optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _end_step(run: _Run, checks: _Checks, clock: _Clock, micro: list, bar, callback) -> None:
    """Close an optimizer step: EMA, losses, checkpoint, progress bar and callback."""
    state, config = run.state, run.config
    if run.ema is not None:
        run.ema.step(run.accelerator.unwrap_model(run.unet).parameters())
    state.step += 1
    record = {"loss": sum(micro) / len(micro), "lr": run.lr_schedule.get_last_lr()[0]}
    state.history.append([state.step, record["loss"], record["lr"]])
    _evaluate(run, checks, record)
    if config.checkpoint_every and state.step % config.checkpoint_every == 0:
        _save_checkpoint(run, clock)
    bar.update(1)
    bar.set_postfix(loss=f"{record['loss']:.4f}", **(
        {"probe": f"{record['probe_loss']:.4f}"} if "probe_loss" in record else {}))
    if callback is not None:
        callback(state.step, record)


def _train_epochs(run: _Run, checks: _Checks, clock: _Clock, bar, callback) -> None:
    """Train up to ``steps``, epoch by epoch (a resumed epoch skips the batches seen)."""
    from accelerate import skip_first_batches

    state, config = run.state, run.config
    micro = []
    while state.step < config.steps:
        run.data.use_epoch(state.epoch)
        epoch_loader = skip_first_batches(run.loader, state.batch) if state.batch else run.loader
        for batch in batches(epoch_loader, data=config.data):
            loss = _train_batch(run, batch)
            state.batch += 1
            micro.append(loss)
            if not run.accelerator.sync_gradients:
                continue
            _end_step(run, checks, clock, micro, bar, callback)
            micro = []
            if state.step >= config.steps:
                break
        else:
            state.epoch += 1
            state.batch = 0
    if state.last_checkpoint != state.step:
        _save_checkpoint(run, clock)


def _run_steps(run: _Run, checks: _Checks, clock: _Clock, *, progress, callback, say) -> None:
    """Train with a progress bar; on Ctrl-C, say which checkpoint a new run resumes from."""
    from tqdm.auto import tqdm

    state, config = run.state, run.config
    bar = tqdm(total=config.steps, initial=min(state.step, config.steps), desc="train",
               unit="step", disable=not progress)
    try:
        _train_epochs(run, checks, clock, bar, callback)
    except KeyboardInterrupt:
        bar.close()
        last = latest_checkpoint(run.out)
        say(f"interrupted at step {state.step}; " + (
            f"the newest checkpoint is {last.name}: run the same command again to resume from it"
            if last is not None else "no checkpoint was written yet"))
        raise
    bar.close()


def _save_weights(run: _Run, checks: _Checks, source: TileSource, width: int):
    """Measure the last validation loss if due, save the (EMA) model; the unwrapped UNet."""
    state = run.state
    if checks.val_loader is not None and (not state.val or state.val[-1][0] != state.step):
        value = _measure(run, checks, checks.val_loader)
        if value == value:
            state.val.append([state.step, value])
    base = run.accelerator.unwrap_model(run.unet)
    if run.ema is not None:
        run.ema.store(base.parameters())
        run.ema.copy_to(base.parameters())
    model_dir = save_model(run.out / "model", base, run.schedule, config=run.config,
                           params=source.params, train_size=(source.height, width),
                           steps=state.step, ema=run.ema is not None)
    if run.ema is not None:
        run.ema.restore(base.parameters())
    return base, model_dir


def _train_locked(config: TrainConfig, source: TileSource, out: Path, width: int, *, progress,
                  callback, say) -> TrainResult:
    """Train with ``out`` locked: set up, resume, take the steps, save the model and losses."""
    cuda = _use_cuda(config)
    precision = _precision(config, cuda)
    if cuda:                                        # the GPU's free memory, as torch sees it
        check_training(config, source.height, width, device_memory(config, cuda=True))
    ckpt, notes = _resume_point(config, out, source.params.to_dict(), say)
    run = _prepare_run(config, source, out, width, precision=precision, cuda=cuda)
    if ckpt is not None:
        load_checkpoint(run.accelerator, ckpt)
        if run.state.step >= config.steps:           # said first, in words
            say(f"nothing left to train: {ckpt.name} is step {run.state.step} of "
                f"{config.steps}; writing its model and results again (resume='restart' "
                f"trains anew)")
        say(f"resumed from {ckpt.name} (step {run.state.step}, epoch {run.state.epoch})")
        for n in notes:
            say(n)
    _write_config(config, source, out)
    checks = _make_checks(config, source, width)
    start_step = run.state.step
    clock = _Clock()
    run.unet.train()
    if run.state.step == 0 and not run.state.probes:
        _evaluate(run, checks, {})           # the untrained model: where the curves start
    try:
        _run_steps(run, checks, clock, progress=progress, callback=callback, say=say)
    except MemoryError:
        raise out_of_memory(config, source.height, width, "in this machine") from None
    except RuntimeError as exc:                     # torch's OutOfMemoryError is one
        if cuda and "out of memory" in str(exc):
            raise out_of_memory(config, source.height, width, "on the GPU") from None
        raise
    run.state.seconds += clock.lap()
    base, model_dir = _save_weights(run, checks, source, width)
    result = TrainResult(out, model_dir, config, source, run.state, start_step=start_step,
                         resumed_from=ckpt.name if ckpt is not None else None, notes=notes,
                         device=str(run.device), precision=precision,
                         parameters=sum(p.numel() for p in base.parameters()))
    write_losses(result)
    run.accelerator.end_training()
    return result


def main(argv=None) -> int:
    """``python -m wavdiff_utils.train [-f params/train_gpu.yaml] [--set NAME VALUE ...]``: train
    from the command line (e.g. on a GPU machine without Jupyter), then sample a few tiles."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m wavdiff_utils.train", description=main.__doc__)
    ap.add_argument("-f", "--file", help="YAML settings (params/train_gpu.yaml)")
    ap.add_argument("--set", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="one setting, YAML value (e.g. --set steps 2000 --set channels '[64, 128]')")
    ap.add_argument("--samples", type=int, default=None, help="tiles to sample after training "
                    "(into <output>/samples; default the file's num_samples, else 4; 0 = none)")
    args = ap.parse_args(argv)
    try:
        values = _settings(args.file, args.set)
    except (WavdiffError, OSError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        result = train(TrainConfig.from_mapping(values))
        print(result.summary())
        n = args.samples if args.samples is not None else int(values.get("num_samples", 4))
        if n:

            samples = sample_tiles(result.model_dir, Path(result.output) / "samples", n=n,
                                   steps=int(values.get("sample_steps", 50)),
                                   guidance_scale=float(values.get("guidance_scale", 3.0)),
                                   prompts=values.get("prompts"), seed=result.config.seed,
                                   device=result.config.device)
            print(samples.summary())
    except WavdiffError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _number(name: str, value):
    """A string that YAML left unread but is a number (``1e-4``: YAML 1.1 wants ``1.0e-4``) as a
    float, unless the setting ``name`` is a text one (a folder may be called ``2024``)."""
    import dataclasses
    import re

    text_fields = {f.name for f in dataclasses.fields(TrainConfig) if isinstance(f.default, str)}
    if (isinstance(value, str) and name not in text_fields
            and re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", value)):
        return float(value)
    return value


def _settings(file, pairs) -> dict:
    """The settings of ``-f FILE`` and ``--set NAME VALUE`` pairs (values read as YAML); raises
    ValueError (one line naming the file or value) for unreadable YAML or unknown names."""
    import yaml

    values = {}
    if file:
        try:
            values = load_yaml_params(file)
        except yaml.YAMLError as exc:
            raise BadParameterError(f"{file}: not valid YAML ({one_line(exc)})") from None
        check_setting_names(values, where=str(file))
        values = {k: _number(k, v) for k, v in values.items()}
    for name, text in pairs:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise BadParameterError(f"--set {name} {text!r}: not a YAML value "
                                    f"({one_line(exc)})") from None
        check_setting_names([name], where="--set")
        values[name] = _number(name, value)
    return values

if __name__ == "__main__":
    raise SystemExit(main())
