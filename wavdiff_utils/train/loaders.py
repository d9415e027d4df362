"""Data loaders of a training run, and the loss at fixed timesteps that probes and validation use."""
from __future__ import annotations

from .config import TrainConfig
from .data import EpochSampler, TileSource, TrainTiles, collate, shard_tiles

__all__ = ["make_loader", "probe_batch", "validation_loader", "fixed_loss", "PROBE_TILES"]

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
