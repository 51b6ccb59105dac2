"""Checkpoint files whose names mean what they say."""
from __future__ import annotations

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastEpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, with `last.ckpt` (save_last=true) rewritten every time Lightning checks for a new best.

    Lightning 2.6 writes last.ckpt only in a step where it also saves a top-k checkpoint, so once the monitored metric
    stops improving, last.ckpt falls behind: a 30-epoch run's was epoch 19, and `eval.py` or `ckpt_path=last` after a
    hard kill then used stale weights. Here it is always the newest epoch's.
    """

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def _keep_last_current(self, trainer: L.Trainer) -> None:
        # In the hook where Lightning saves its own checkpoints (at the epoch's end after the module's hooks, or after
        # validation when it runs several times an epoch or not every epoch), so the state saved is the one exact
        # resume expects. Skipped where this step is already saved (a new best brings last.ckpt with it), in sanity
        # checks and in fast_dev_run, as Lightning skips its own saves.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
