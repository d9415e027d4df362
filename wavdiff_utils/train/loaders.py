"""Data loaders of a training run, and the loss at fixed timesteps that probes and validation use.

An error while a batch is read reaches the user as one line (:func:`batches`): torch
re-raises an error of a loader worker process with the worker's traceback as its
message, which is cut back to the original line.
"""
from __future__ import annotations

import re

from ..errors import WavdiffError, first_line, one_line
from .config import TrainConfig
from .data import EpochSampler, TrainTiles, collate, shard_tiles
from .scan import TileSource, TrainDataError

__all__ = ["make_loader", "probe_batch", "validation_loader", "fixed_loss", "PROBE_TILES",
           "batches", "data_error"]

#: Training tiles in the fixed probe batch (each at every fixed timestep).
PROBE_TILES = 4


class _Epochs:
    """Sets the epoch of every part of a loader whose order or crops depend on it."""

    def __init__(self, *parts):
        self.parts = [p for p in parts if p is not None]

    def use_epoch(self, epoch: int) -> None:
        for p in self.parts:
            p.use_epoch(epoch)


def _dataset(config: TrainConfig, source: TileSource, split: str, width: int, *, fixed: bool,
             limit: int = 0):
    crop = width if width < source.width else 0
    if source.kind == "shards":
        return shard_tiles(source, split, planes=config.planes, crop=crop, seed=config.seed,
                           fixed=fixed, limit=limit)
    return TrainTiles(source, split, planes=config.planes, crop=crop, seed=config.seed,
                      fixed=fixed, limit=limit)


def make_loader(config: TrainConfig, source: TileSource, width: int):
    """The training loader and the object whose ``use_epoch(e)`` selects epoch ``e``'s order and crops."""
    from torch.utils.data import DataLoader

    data = _dataset(config, source, "train", width, fixed=False)
    if source.kind == "shards":
        loader = DataLoader(data, batch_size=config.batch_size, collate_fn=collate,
                            num_workers=config.num_workers)
        return loader, _Epochs(data)
    sampler = EpochSampler(len(data), seed=config.seed)
    loader = DataLoader(data, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=config.num_workers, drop_last=False)
    return loader, _Epochs(data, sampler)


def probe_batch(config: TrainConfig, source: TileSource, width: int) -> dict:
    """A fixed batch of the first training tiles (centre crops) for the probe loss."""
    data = _dataset(config, source, "train", width, fixed=True, limit=PROBE_TILES)
    items = [data[i] for i in range(len(data))] if isinstance(data, TrainTiles) else list(data)
    return collate(items)


def validation_loader(config: TrainConfig, source: TileSource, width: int):
    """Batches of the validation split (centre crops, at most ``val_max_tiles``), or ``None``."""
    from torch.utils.data import DataLoader

    if source.kind == "imagefolder" and not source.rows.get("validation"):
        return None
    data = _dataset(config, source, "validation", width, fixed=True, limit=config.val_max_tiles)
    return DataLoader(data, batch_size=config.batch_size, collate_fn=collate, shuffle=False)


def fixed_loss(model_out, target_of, schedule, batches, timesteps, device, *, seed: int) -> float:
    """Mean loss over every tile of ``batches`` at every one of ``timesteps``, with fixed noise.

    The noise is drawn from a CPU generator seeded by ``seed`` in a fixed order, so
    the same model gives the same value on every call.  Returns NaN for no tiles.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(int(seed) + 2)
    total, count = 0.0, 0
    for batch in batches:
        x0 = batch["pixel_values"].to(device)
        b = x0.shape[0]
        for t in timesteps.tolist():
            eps = torch.randn(x0.shape, generator=gen).to(device, x0.dtype)
            tt = torch.full((b,), int(t), device=device, dtype=torch.long)
            pred = model_out(schedule.add_noise(x0, eps, tt), tt, batch["text"])
            loss = F.mse_loss(pred.float(), target_of(x0, eps, tt).float(), reduction="sum")
            total += float(loss) / x0[0].numel()
            count += b
    return total / count if count else float("nan")


def _worker_message(text: str) -> tuple[str, str]:
    """``(class name, message)`` of an error that torch re-raised from a loader worker, whose
    text is the worker's traceback: what follows its last frame."""
    lines = text.splitlines()
    frames = [i for i, ln in enumerate(lines) if ln.lstrip().startswith('File "')]
    rest = lines[frames[-1] + 1:] if frames else lines[-1:]
    while rest and (rest[0].startswith("    ") or not rest[0].strip()):
        rest = rest[1:]                            # the frame's code line and its carets
    rest = rest or lines[-1:]
    head, sep, first = rest[0].partition(": ")
    if sep and re.fullmatch(r"[\w.]+", head):
        return head.rsplit(".", 1)[-1], "\n".join([first, *rest[1:]]).strip()
    return "", "\n".join(rest).strip()


def data_error(exc: Exception, *, data: str) -> Exception:
    """What to raise for ``exc``, raised while a batch of the dataset ``data`` was read.

    A wavdiff error of a loader worker as itself (its one line, not the worker's
    traceback); an unreadable file, or any other error of a worker, as one
    :class:`TrainDataError` line; anything else is ``exc`` itself.
    """
    text = str(exc)
    if "Original Traceback" in text and "DataLoader worker" in text:
        _, msg = _worker_message(text)
        if isinstance(exc, WavdiffError):
            msg = one_line(msg)
            try:
                again = type(exc)(msg)
            except Exception:                      # noqa: BLE001 - another signature
                again = None
            if again is not None and one_line(again) == msg:
                return again
        return TrainDataError(f"{data}: reading the training data failed in a loader worker "
                              f"({first_line(msg)})")
    if isinstance(exc, OSError) and not isinstance(exc, WavdiffError):
        return TrainDataError(f"{exc.filename or data}: cannot be read "
                              f"({exc.strerror or 'read error'})")
    return exc


def batches(loader, *, data: str):
    """The batches of ``loader``; an error while one is read is raised as one line
    (:func:`data_error`)."""
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except Exception as exc:
            error = data_error(exc, data=data)
            if error is exc:
                raise
            raise error from None
        yield batch
