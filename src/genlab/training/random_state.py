"""The global random streams in every checkpoint, so that a resumed run draws what the uninterrupted run would have."""
from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch

CHECKPOINT_KEY = "genlab_rng_states"


def random_states() -> dict[str, Any]:
    """The global streams as tensors and plain tuples: what torch.load(weights_only=True) accepts (no numpy arrays)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_random_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomStateInCheckpoint(L.Callback):
    """Save the Python, NumPy and torch (CPU and CUDA) random states with every checkpoint; on resume, restore them
    just before the first training batch.

    Restoring at the first batch rather than at load time skips whatever the resumed process draws in between (the
    sanity check, loader start-up), which the uninterrupted run never drew. Every rank starts from the same seed and
    makes the same draws, so rank zero's states, the ones saved, hold for all ranks.
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = random_states()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._to_restore = checkpoint.get(CHECKPOINT_KEY) if trainer.state.fn == "fit" else None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._to_restore is not None:
            set_random_states(self._to_restore)
            self._to_restore = None
