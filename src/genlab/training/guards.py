"""Callbacks that stop a run cleanly instead of letting it produce a silently wrong result."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
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

    A stop during the validation of a fit is saved as that validation not yet begun, so the resume validates the
    epoch whole. Lightning 2.6 saves how far it got, and its resume then skipped the rest of the validation (a SIGTERM,
    which it raises between two batches: that epoch had no val row, no best-checkpoint or early-stopping check) or ran
    only as many batches as were left, from the loader's first (Ctrl+C inside a step: a val/loss of part of the set;
    the batches already seen were not in the checkpoint's metric states either). Validating changes no weight and
    draws no random number, so the whole validation again is the one the uninterrupted run had.
    """

    def __init__(self) -> None:
        self._validation_cut_short = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        checkpoint = trainer.checkpoint_callback
        if isinstance(exception, INTERRUPTIONS) and checkpoint is not None and checkpoint.dirpath:
            self._validation_cut_short = trainer.state.fn == TrainerFn.FITTING and trainer.validating
            try:
                trainer.save_checkpoint(Path(checkpoint.dirpath) / INTERRUPTED_CHECKPOINT)
            finally:
                self._validation_cut_short = False

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self._validation_cut_short:
            validate_again_from_the_first_batch(checkpoint["loops"]["fit_loop"][VALIDATION_PROGRESS])


VALIDATION_PROGRESS = "epoch_loop.val_loop.batch_progress"  # the fit's validation batches, in the checkpoint's loops


def validate_again_from_the_first_batch(progress: dict) -> None:
    """Set a saved validation's batch counters to the state Lightning's resume reads as "stopped inside the step of
    its first batch" (one batch started, none processed), which it restarts from the beginning of the loader."""
    before = progress["total"]["completed"] - progress["current"]["completed"]  # earlier validations' batches
    progress["total"] = {"ready": before + 1, "started": before + 1, "processed": before, "completed": before}
    progress["current"] = {"ready": 1, "started": 1, "processed": 0, "completed": 0}
    progress["is_last_batch"] = False
