"""Training objectives: cross-entropy and focal loss, both with label smoothing and optional class weights."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("cross_entropy", "focal")


class Objective(nn.Module):
    """loss(logits, labels) for training; `class_weights` rescale each sample's loss by its true class."""

    def __init__(self, name: str = "cross_entropy", label_smoothing: float = 0.0, gamma: float = 0.0,
                 class_weights: torch.Tensor | None = None):
        super().__init__()
        self.name, self.label_smoothing, self.gamma = name, label_smoothing, gamma
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.name == "cross_entropy":
            return F.cross_entropy(logits, labels, weight=self.class_weights, label_smoothing=self.label_smoothing)
        return self._focal(logits, labels)

    def _focal(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        num_classes = logits.shape[1]
        targets = torch.full_like(log_p, self.label_smoothing / num_classes)
        targets.scatter_(1, labels[:, None], 1.0 - self.label_smoothing + self.label_smoothing / num_classes)
        per_sample = -(targets * (1 - log_p.exp()) ** self.gamma * log_p).sum(1)
        if self.class_weights is None:
            return per_sample.mean()
        weights = self.class_weights[labels]
        return (per_sample * weights).sum() / weights.sum()  # the same normalisation as weighted cross_entropy
