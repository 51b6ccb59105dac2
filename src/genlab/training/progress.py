"""What a run shows while it trains: a bar in a terminal, one plain line per epoch in a log file."""
from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

# What a person watches, and where each value comes from in the trainer's metrics (the first one logged so far).
SHOWN = {"train/loss": ("train/loss_step", "train/loss_epoch"), "train/acc": ("train/acc",),
         "val/loss": ("val/loss",), "val/acc": ("val/acc",)}


def shown_metrics(trainer: L.Trainer, per_epoch: bool = False, with_val: bool = True) -> dict[str, float]:
    """train/loss (the newest logged step, or with `per_epoch` the last epoch's mean), train/acc (the last finished
    epoch), val/loss and val/acc (the last validation, unless not `with_val`); no v_num, no other metric. Values not
    logged yet are left out."""
    logged = trainer.callback_metrics
    shown = {}
    for name, sources in SHOWN.items():
        if name.startswith("val/") and not with_val:
            continue
        for source in (reversed(sources) if per_epoch else sources):
            if source in logged:
                shown[name] = float(logged[source])
                break
    return shown


class ValidatedEpoch:
    """Remembers the epoch of the last validation (not the sanity check): with trainer.check_val_every_n_epoch > 1,
    the trainer's val/* stay those of an earlier epoch, which a progress display must not show as the current ones."""

    validated_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self.validated_epoch = trainer.current_epoch


class MetricsBar(ValidatedEpoch, RichProgressBar):
    """Lightning's rich bar, showing only `shown_metrics`; val/* while they are the previous epoch's or this one's."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        recent = self.validated_epoch is not None and self.validated_epoch >= trainer.current_epoch - 1
        return shown_metrics(trainer, with_val=recent)


class EpochLines(ValidatedEpoch, ProgressBar):
    """One line per epoch for output that is not a terminal (SLURM, nohup, a pipe), where a bar keeps only its last
    state, cut at 80 columns: `epoch 3/29  train/loss 0.1234  train/acc 0.9512  val/loss 0.2001  val/acc 0.9333  4.1 s`.

    Epochs count from 0, as in metrics.csv, the checkpoint names and the run summary. An epoch's line is printed when the
    next one starts (or training ends): the LightningModule logs train/acc after the callbacks' epoch-end hooks. An
    epoch without validation (trainer.check_val_every_n_epoch) shows no val/*.
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._epoch: int | None = None
        self._started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_epoch(trainer)
        self._epoch, self._started = trainer.current_epoch, time.monotonic()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print_epoch(trainer)

    def _print_epoch(self, trainer: L.Trainer) -> None:
        if self._epoch is None or not self._enabled:
            return
        shown = shown_metrics(trainer, per_epoch=True, with_val=self.validated_epoch == self._epoch)
        values = "  ".join(f"{name} {value:.4f}" for name, value in shown.items())
        last = max(trainer.max_epochs - 1, self._epoch) if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        print(f"epoch {self._epoch}/{last}  {values}  {time.monotonic() - self._started:.1f} s", flush=True)
        self._epoch = None


def progress_bar(**bar_options: Any) -> ProgressBar:
    """The rich bar where the output is a terminal (or a notebook), else one line per epoch."""
    from rich.console import Console

    console = Console()
    if console.is_terminal or console.is_jupyter:
        return MetricsBar(**bar_options)
    return EpochLines()
