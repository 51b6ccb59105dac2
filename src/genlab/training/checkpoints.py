"""Checkpoint files whose names mean what they say."""
from __future__ import annotations

from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastEpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, with `last.ckpt` (save_last=true) rewritten every time Lightning checks for a new best.

    Lightning 2.6 writes last.ckpt only in a step where it also saves a top-k checkpoint, so once the monitored metric
    stops improving, last.ckpt falls behind: a 30-epoch run's was epoch 19, and `eval.py` or `ckpt_path=last` after a
    hard kill then used stale weights. Here it is always the newest epoch's.

    It also remembers the epoch of each checkpoint it keeps, so a run can say which epoch its best checkpoint is.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.saved_epochs: dict[str, int] = {}  # checkpoint path -> the epoch it holds

    def epoch_of(self, path: str | None) -> int | None:
        return self.saved_epochs.get(path) if path else None

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self.saved_epochs[filepath] = trainer.current_epoch  # before saving: the callback's state goes into the file
        kept = {self.best_model_path, self.last_model_path, filepath, *self.best_k_models}
        self.saved_epochs = {path: epoch for path, epoch in self.saved_epochs.items() if path in kept}
        super()._save_checkpoint(trainer, filepath)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "saved_epochs": dict(self.saved_epochs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.saved_epochs.update(state_dict.get("saved_epochs", {}))

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
