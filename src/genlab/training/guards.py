"""Callbacks that stop a run cleanly instead of letting it produce a silently wrong result."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from genlab.errors import NonFiniteLoss


class StopOnNonFiniteLoss(L.Callback):
    """Stop at the first NaN/inf training loss, before any checkpoint can hold the diverged weights.

    Checked every step: the last good checkpoint is then the last one written, and the message names the step.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            raise NonFiniteLoss(f"train/loss is {loss.item()} at step {trainer.global_step - 1} (epoch {trainer.current_epoch}, "
                                f"batch {batch_idx}); try a lower optimizer.lr or trainer.gradient_clip_val")


INTERRUPTED_CHECKPOINT = "interrupted.ckpt"
INTERRUPTIONS = (KeyboardInterrupt, SIGTERMException, SystemExit)  # Ctrl+C, SIGTERM (SLURM preemption), sys.exit


class CheckpointOnInterrupt(L.Callback):
    """On Ctrl+C, SIGTERM or a requested exit, save `interrupted.ckpt` next to the other checkpoints.

    `ckpt_path=last` (or `resume=true`) then continues from exactly there: it is the run's newest checkpoint.
    """

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        checkpoint = trainer.checkpoint_callback
        if isinstance(exception, INTERRUPTIONS) and checkpoint is not None and checkpoint.dirpath:
            trainer.save_checkpoint(Path(checkpoint.dirpath) / INTERRUPTED_CHECKPOINT)
