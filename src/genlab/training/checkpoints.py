"""Checkpoint files whose names mean what they say, written whole or not at all, and read without running code."""
from __future__ import annotations

import contextlib
import io
import pickle
import re
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from genlab.errors import ConfigError
from genlab.records import write_atomic
from genlab.resume import corrupt_member

# Everything genlab saves in a checkpoint is tensors and plain values (dicts, lists, tuples, str, numbers, None; the
# random states are kept as tensors and tuples for this reason), which torch.load(weights_only=True) reads without an
# allow-list. Numbers that NumPy made (an np.float64 in a hyperparameter) are the one thing more a checkpoint may hold:
# NumPy's scalar rebuilds a number from its dtype and bytes, and runs nothing.
CHECKPOINT_GLOBALS = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64)),
                      type(np.dtype(np.int32)), type(np.dtype(np.bool_)), np.int64(0).__reduce__()[0]]


@contextlib.contextmanager
def checkpoint_globals() -> Iterator[None]:
    """torch.load(weights_only=True) inside accepts what genlab's checkpoints hold, and nothing that runs code."""
    with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
        yield


# What torch's weights-only unpickler raises on a pickle that is well formed zip-wise but not pickle-wise (a crafted
# or damaged data.pkl that a CRC-32 does not catch: one written so, or a legacy, non-zip checkpoint).
MALFORMED_PICKLE = (KeyError, IndexError, TypeError, AttributeError, OverflowError, MemoryError)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's contents, loaded with weights_only=True: a file that would run code when unpickled (a crafted
    checkpoint), is cut short or corrupted, or is not a Lightning checkpoint is refused in one line."""
    corrupt = corrupt_member(Path(path))
    if corrupt is not None:
        raise ConfigError("ckpt_path", str(path), f"a readable checkpoint: the file is corrupt ({corrupt} fails its "
                          "CRC-32 check: bytes changed on disk or in a copy since it was saved)")
    try:
        with checkpoint_globals():
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL (\S+)", str(err))
        if named:
            raise ConfigError("ckpt_path", str(path), f"a checkpoint of tensors and plain values, as genlab saves: this "
                              f"file would call {named.group(1)} when loaded, so it is not loaded") from err
        raise ConfigError("ckpt_path", str(path), "a readable checkpoint: the file is corrupt or not a checkpoint") from err
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise ConfigError("ckpt_path", str(path), "a readable checkpoint: the file is truncated (a full disk or a kill "
                          "while saving) or not a checkpoint") from err
    except MALFORMED_PICKLE as err:
        raise ConfigError("ckpt_path", str(path), "a readable checkpoint: the file is corrupt or not a checkpoint") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError("ckpt_path", str(path), "a checkpoint saved by train.py (this file has no state_dict)")
    return checkpoint


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, but a checkpoint is written to a temp file and renamed into place (a full disk or a
    kill while saving leaves the previous file whole, never a truncated one), with the user's umask, and read with
    weights_only=True and genlab's allow-list, whatever the caller asks for."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getbuffer())

    def load_checkpoint(self, path: Any, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            with checkpoint_globals():
                return super().load_checkpoint(path, map_location, weights_only=True)
        return read_checkpoint(path, map_location)


def save_and_load_checkpoints_safely(trainer: L.Trainer) -> None:
    """Have the trainer write and read its checkpoints through SafeCheckpointIO (unless a plugin of the config's own
    handles them)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = SafeCheckpointIO()


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
