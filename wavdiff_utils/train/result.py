"""What a training run did: its state (saved in every checkpoint), its result, its loss files."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import atomic_path, display_path, writing
from .config import TrainConfig
from .plots import plot_losses

__all__ = ["TrainState", "TrainResult", "write_losses", "loss_drop", "summary_markdown"]


class TrainState:
    """Where a run is: step, epoch, batch within the epoch, losses so far, time spent.

    Registered with ``accelerate`` for checkpointing, so a resumed run goes on
    from the same place with its whole loss history.
    """

    FIELDS = ("step", "epoch", "batch", "history", "probes", "val", "seconds", "last_checkpoint")

    def __init__(self):
        self.step = 0              # optimizer steps done
        self.epoch = 0
        self.batch = 0             # micro-batches done in this epoch
        self.history = []          # [step, training loss, learning rate]
        self.probes = []           # [step, loss at fixed timesteps on the probe batch]
        self.val = []              # [step, validation loss]
        self.seconds = 0.0         # training time over all sessions, up to the last checkpoint
        self.last_checkpoint = -1

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    def load_state_dict(self, state: dict) -> None:
        for k in self.FIELDS:
            if k in state:
                setattr(self, k, state[k])


def loss_drop(probes, share: float = 0.1) -> float:
    """Mean probe loss of the last ``share`` of the records over that of the first ``share``
    (below 1: the model learned).  NaN with fewer than two records."""
    values = [v for _, v in probes]
    if len(values) < 2:
        return float("nan")
    k = max(1, int(round(len(values) * share)))
    first = sum(values[:k]) / k
    return (sum(values[-k:]) / k) / first if first else float("nan")


@dataclass
class TrainResult:
    """What :func:`wavdiff_utils.train.train` did.

    Attributes
    ----------
    output : Path
        The run folder.
    model_dir : Path
        The saved model (``output/model``).
    config : TrainConfig
    source : TileSource
        The dataset as checked.
    state : TrainState
        Steps, epochs and every loss recorded (all sessions of the run).
    start_step : int
        Step this session started from (0 unless resumed).
    resumed_from : str or None
        Checkpoint this session resumed from.
    notes : list of str
    device, precision : str
    parameters : int
        Trainable parameters of the UNet.
    """

    output: Path
    model_dir: Path
    config: TrainConfig
    source: object
    state: TrainState
    start_step: int = 0
    resumed_from: str | None = None
    notes: list = field(default_factory=list)
    device: str = "cpu"
    precision: str = "no"
    parameters: int = 0

    @property
    def steps(self) -> int:
        return self.state.step

    @property
    def nothing_left(self) -> bool:
        """True when this session resumed a run that had already taken all its steps."""
        return bool(self.resumed_from) and self.start_step >= self.state.step

    def nothing_left_line(self) -> str:
        """What a finished run's re-run did, in words, before its (earlier) figures."""
        return (f"nothing left to train: this run had already taken its {self.steps} step(s) "
                f"(resumed from {self.resumed_from}); its model and results were written again, "
                f"and the figures below are from the earlier session(s). To train anew, use "
                f"resume='restart' or another output; to go on, raise steps")

    @property
    def seconds_per_step(self) -> float:
        return self.state.seconds / self.state.step if self.state.step else float("nan")

    @property
    def val_loss(self) -> float:
        """The last validation loss (NaN without a validation split)."""
        return self.state.val[-1][1] if self.state.val else float("nan")

    @property
    def loss_drop(self) -> float:
        """Probe loss of the last 10% of the records over the first 10% (see :func:`loss_drop`)."""
        return loss_drop(self.state.probes)

    def losses(self):
        """One row per step: training loss, learning rate, probe and validation losses."""
        import pandas as pd

        rows = {s: {"step": s, "loss": l, "lr": lr} for s, l, lr in self.state.history}
        for key, records in (("probe_loss", self.state.probes), ("val_loss", self.state.val)):
            for s, v in records:
                rows.setdefault(s, {"step": s})[key] = v
        return pd.DataFrame([rows[s] for s in sorted(rows)],
                            columns=["step", "loss", "lr", "probe_loss", "val_loss"])

    def summary(self) -> str:
        """A few lines: what was trained, how long, the losses."""
        c = self.config
        resumed = f", resumed from {self.resumed_from}" if self.resumed_from else ""
        lines = [self.nothing_left_line()] if self.nothing_left else []
        lines += [f"trained {self.steps} step(s) on {self.source.summary()}{resumed}",
                 f"  {c.describe()}; {self.parameters:,} parameters; {self.device}, mixed precision "
                 f"{self.precision}; {self.seconds_per_step:.2f} s/step"]
        if self.state.history:
            lines.append(f"  training loss {self.state.history[-1][1]:.4f} (last step)")
        if self.state.probes:
            lines.append(f"  probe loss (fixed timesteps) {self.state.probes[0][1]:.4f} -> "
                         f"{self.state.probes[-1][1]:.4f}; last 10% / first 10% = {self.loss_drop:.2f}")
        lines.append(f"  validation loss {self.val_loss:.4f}" if self.state.val else
                     "  no validation loss (no validation split)")

        lines.append(f"  model: {display_path(self.model_dir)}")
        lines += [f"  note: {n}" for n in self.notes + list(self.source.notes)]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def num(v):
            return None if isinstance(v, float) and math.isnan(v) else v

        return {"output": str(self.output), "model": str(self.model_dir), "steps": self.steps,
                "seconds": round(self.state.seconds, 2),
                "seconds_per_step": num(round(self.seconds_per_step, 4)),
                "device": self.device, "precision": self.precision, "parameters": self.parameters,
                "resumed_from": self.resumed_from, "start_step": self.start_step,
                "final_loss": self.state.history[-1][1] if self.state.history else None,
                "val_loss": num(self.val_loss), "loss_drop": num(self.loss_drop),
                "dataset": self.source.summary(), "config": self.config.to_dict(),
                "notes": self.notes + list(self.source.notes)}

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(self.summary()) + "</pre>"


def write_losses(result: TrainResult) -> None:
    """Write ``losses.csv``, ``train_summary.json`` and (with matplotlib) ``loss_curve.png``;
    a full disk or a read-only folder is one :class:`UnwritableOutputError` line naming the file."""
    out = Path(result.output)
    buf = io.StringIO()
    table = result.losses()
    writer = csv.writer(buf)
    writer.writerow(table.columns)
    for row in table.itertuples(index=False):
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])
    with writing(out / "losses.csv"), atomic_path(out / "losses.csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    with writing(out / "train_summary.json"), atomic_path(out / "train_summary.json") as tmp:
        tmp.write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    try:
        import matplotlib.pyplot as plt
    except ImportError:                       # the train extra without the notebooks extra
        return

    fig = plot_losses(result)
    try:
        with writing(out / "loss_curve.png"), atomic_path(out / "loss_curve.png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def summary_markdown(result: TrainResult, samples=None, decoded=None) -> str:
    """The closing summary of ``07_train``: the run, its losses, the samples and their decode."""

    r = result
    lines = [f"**Nothing left to train.** {r.nothing_left_line()[len('nothing left to train: '):]}."
             ] if r.nothing_left else []
    lines += [f"**Trained** {r.steps} steps ({r.seconds_per_step:.2f} s/step on {r.device}, "
             f"mixed precision {r.precision}) on {r.source.summary()}.",
             f"- model: {r.config.describe()}, {r.parameters:,} parameters, saved in "
             f"`{display_path(r.model_dir)}`"]
    if r.state.probes:
        lines.append(f"- probe loss at fixed timesteps {r.state.probes[0][1]:.3f} -> "
                     f"{r.state.probes[-1][1]:.3f} (last 10% / first 10% of the records: "
                     f"{r.loss_drop:.2f})")
    lines.append(f"- validation loss {r.val_loss:.3f}" if r.state.val else
                 "- no validation loss: the dataset has no validation split")
    if r.resumed_from:
        lines.append(f"- resumed from `{r.resumed_from}`")
    if samples is not None:
        lines.append(f"- {samples.summary()}")
    if decoded is not None:
        lines.append(f"- decoded: {decoded.summary().splitlines()[0]}")
    lines += [f"- note: {n}" for n in r.notes + list(r.source.notes)]
    return "\n".join(lines)
