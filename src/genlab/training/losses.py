"""Training objectives: cross-entropy and focal loss, both with label smoothing and optional class weights."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("cross_entropy", "focal")


class Objective(nn.Module):
    """loss(logits, targets) for training, targets being labels (N,) or soft targets (N, C) such as mixup's;
    `class_weights` rescale each sample's loss by its true class (by its targets' classes, for soft targets)."""

    def __init__(self, name: str = "cross_entropy", label_smoothing: float = 0.0, gamma: float = 0.0,
                 class_weights: torch.Tensor | None = None, logit_adjustment: float = 0.0,
                 class_priors: torch.Tensor | None = None):
        super().__init__()
        self.name, self.label_smoothing, self.gamma = name, label_smoothing, gamma
        self.register_buffer("class_weights", class_weights, persistent=False)
        # Menon et al. 2021: the loss sees logits + tau * log(pi), so the plain logits learn the balanced posterior.
        offsets = logit_adjustment * class_priors.log() if logit_adjustment and class_priors is not None else None
        self.register_buffer("logit_offsets", offsets, persistent=False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.logit_offsets is not None:
            logits = logits + self.logit_offsets
        if self.name == "cross_entropy":
            return F.cross_entropy(logits, targets, weight=self.class_weights, label_smoothing=self.label_smoothing)
        return self._focal(logits, targets)

    def _focal(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        num_classes = logits.shape[1]
        soft = targets.float() if targets.ndim == 2 else F.one_hot(targets, num_classes).float()
        smoothed = soft * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        per_sample = -(smoothed * (1 - log_p.exp()) ** self.gamma * log_p).sum(1)
        if self.class_weights is None:
            return per_sample.mean()
        weights = soft @ self.class_weights  # for labels: the weight of each sample's class
        return (per_sample * weights).sum() / weights.sum()  # the same normalisation as weighted cross_entropy
