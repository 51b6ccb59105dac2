"""The L1 penalty of the `loss.l1` knob. The strategy presets themselves are plain Hydra configs
(conf/regularization/): they set model/optimizer/loss/augmentation/callbacks keys by composition, so nothing rewrites
the config in Python and an explicit value always wins."""
from __future__ import annotations

import torch
from torch import nn


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over weights only: biases and norm parameters (all 1-d) are exempt, as with weight decay."""
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad and p.ndim > 1)
