"""Weight averaging (SWA, EMA) through Lightning's WeightAveraging callback: validation, the checkpoints and the end of
training hold the averaged weights, whose batch-norm statistics are recomputed (torch.optim.swa_utils.update_bn)
before each use, and the callback says what was averaged for results.json's `tested`."""
from __future__ import annotations

import math
from typing import Any, Iterator

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import update_bn

AVERAGING_KINDS = ("swa", "ema")
BN_BATCH_SIZE = 512  # images per forward pass while the statistics are recomputed (no gradients: memory is small)


class EMAWithWarmup:
    """avg_fn of an exponential moving average whose decay ramps up, min(decay, (1 + n) / (10 + n)) at the n-th update
    (TensorFlow's ExponentialMovingAverage with num_updates, timm's ModelEmaV3 warm-up): with a fixed 0.999 a run of a
    few hundred steps would still be mostly its initial weights. A class, not a closure, so it pickles."""

    def __init__(self, decay: float):
        self.decay = decay

    def decay_at(self, updates: int) -> float:
        """The decay of the update that follows `updates` earlier ones (the first update copies the weights)."""
        return min(self.decay, (1 + updates) / (10 + updates))

    def __call__(self, averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        decay = self.decay_at(int(updates))
        return averaged * decay + current * (1 - decay)


def has_batch_norm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in module.modules())


def training_images(datamodule: Any, device: torch.device) -> Iterator[torch.Tensor]:
    """The training split's images, unaugmented and normalised as the network sees them at test time, in batches.

    Unaugmented on purpose: the recomputed statistics are those of the inputs the averaged weights are validated and
    tested on, and drawing augmentations here would consume nothing of the training run's own (seeded) draws either.
    Every process reads the whole split, so under DDP each computes the same statistics without communicating.
    """
    images = datamodule.train_set.images
    for start in range(0, len(images), BN_BATCH_SIZE):
        yield datamodule.normalize(torch.from_numpy(images[start:start + BN_BATCH_SIZE]).to(device))


class AveragedWeights(WeightAveraging):
    """Lightning's WeightAveraging with three corrections for a study's runs:

    - batch-norm statistics of the averaged weights are recomputed on the training images whenever those weights are
      used (each validation, the end of training); the running statistics are not averaged (use_buffers=False);
    - until the first average exists (SWA before its start epoch), validation, checkpoints and the end of training use
      the current weights, not the untrained copy the averaged model starts as;
    - testing a checkpoint scores the averaged weights it holds: Lightning's hook would load the current weights the
      checkpoint keeps beside them for resuming.
    """

    def __init__(self, kind: str, **kwargs: Any):
        super().__init__(use_buffers=False, **kwargs)
        self.kind = kind
        self.updates = 0  # averages taken so far (checkpointed, so a resumed run counts on)
        self.batch_norm_recomputed = False
        self.updates_at_validation: dict[int, int] = {}  # epoch -> averages in the weights its validation scored
        self._swapped = False
        self._resuming = False

    def counted(self, update: bool) -> bool:
        """should_update's answer, counted: Lightning updates the average exactly when it is True."""
        self.updates += int(update)
        return update

    def recompute_batch_norm(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """update_bn on the module's current weights (the averaged ones wherever this is called)."""
        if has_batch_norm(pl_module):
            # Validation runs under inference mode; update_bn's forward passes need none of it and no gradients.
            with torch.inference_mode(False), torch.no_grad():
                update_bn(training_images(trainer.datamodule, pl_module.device), pl_module)
            self.batch_norm_recomputed = True

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swapped = self.updates > 0
        if self._swapped:
            self.updates_at_validation[trainer.current_epoch] = self.updates
            super().on_validation_epoch_start(trainer, pl_module)
            self.recompute_batch_norm(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._swapped:
            super().on_validation_epoch_end(trainer, pl_module)
            self._swapped = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.updates > 0:
            super().on_train_end(trainer, pl_module)
            # The last updates may postdate the last validation's recomputation.
            self.recompute_batch_norm(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.updates > 0:  # before that the checkpoint keeps the current weights, as without averaging
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Lightning restores callback states when it tests a checkpoint too; only a resumed fit continues from them.
        self._resuming = trainer.state.fn == "fit"
        if not self._resuming:
            return  # test or validate: the averaged weights loaded from state_dict are the ones to score
        saved = (checkpoint.get("callbacks") or {}).get(self.state_key, {})
        if saved.get("updates", 0) > 0:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "updates": self.updates}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._resuming:  # (on_load_checkpoint comes first)
            super().load_state_dict(state_dict)
            self.updates = state_dict.get("updates", 0)

    def record(self, epoch: int | None = None) -> dict[str, Any]:
        """What results.json's `tested` says about the averaged weights: those at the end of training, or those a
        checkpoint saved at `epoch`'s validation holds (updates null where this process did not see that epoch)."""
        updates = self.updates if epoch is None else self.updates_at_validation.get(epoch)
        return {"kind": self.kind, "updates": updates,
                "batch_norm": "recomputed with torch.optim.swa_utils.update_bn on the unaugmented training images"
                if self.batch_norm_recomputed else "none in the network: nothing to recompute"}


class StochasticWeightAveraging(AveragedWeights):
    """SWA (Izmailov et al. 2018): the equal average of the weights at the end of each epoch from `start_epoch` on
    (epochs count from 0)."""

    def __init__(self, start_epoch: int):
        super().__init__("swa")
        self.start_epoch = start_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return self.counted(epoch_idx is not None and epoch_idx >= self.start_epoch)

    def averages_epoch(self, epoch: int) -> bool:
        """Whether a checkpoint saved at `epoch`'s validation holds averaged weights (averages follow the epoch end)."""
        return epoch > self.start_epoch

    def record(self, epoch: int | None = None) -> dict[str, Any]:
        return {**super().record(epoch), "start_epoch": self.start_epoch}


class ExponentialWeightAveraging(AveragedWeights):
    """EMA of the weights after every optimizer step, decay `decay` after a warm-up (see EMAWithWarmup)."""

    def __init__(self, decay: float):
        super().__init__("ema", avg_fn=EMAWithWarmup(decay))
        self.decay = decay

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return self.counted(step_idx is not None)

    def averages_epoch(self, epoch: int) -> bool:
        return True

    def record(self, epoch: int | None = None) -> dict[str, Any]:
        return {**super().record(epoch), "decay": self.decay}


def swa_start_epoch(start: float, max_epochs: int) -> int:
    """The first averaged epoch (from 0) for a start given as a fraction of the epochs."""
    return min(max_epochs - 1, math.floor(start * max_epochs))


def weight_averaging(kind: str, swa_start: float, ema_decay: float, max_epochs: int) -> AveragedWeights:
    """The callback of callbacks.weight_averaging (kind is checked by genlab.config before anything runs)."""
    if kind == "swa":
        return StochasticWeightAveraging(swa_start_epoch(swa_start, max_epochs))
    return ExponentialWeightAveraging(ema_decay)
