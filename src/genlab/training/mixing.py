"""Batch-level mixing: mixup (Zhang et al. 2018) and cutmix (Yun et al. 2019) on normalised image batches.

Both return soft targets (rows sum to 1); the loss is cross-entropy against them, accuracy stays on the hard labels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def mixup(images: torch.Tensor, targets: torch.Tensor, lam: float, partner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """lam * each sample + (1 - lam) * its partner (`partner` is a permutation of the batch), images and targets alike."""
    return lam * images + (1 - lam) * images[partner], lam * targets + (1 - lam) * targets[partner]


def cutmix_box(height: int, width: int, lam: float, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box of area ~ (1 - lam) of the image, centred uniformly, clipped at the edges."""
    side = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * side), int(width * side)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    return (max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height), max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width))


def cutmix(images: torch.Tensor, targets: torch.Tensor, box: tuple[int, int, int, int],
           partner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste `box` of each partner into each image (N, C, H, W); the targets mix by the pasted area actually kept."""
    top, bottom, left, right = box
    mixed = images.clone()
    mixed[:, :, top:bottom, left:right] = images[partner, :, top:bottom, left:right]
    kept = 1.0 - (bottom - top) * (right - left) / (images.shape[-2] * images.shape[-1])
    return mixed, kept * targets + (1 - kept) * targets[partner]


@dataclass(frozen=True)
class BatchMixing:
    """Per batch: with probability `mix_prob`, mixup or cutmix (cutmix with `switch_prob` when both alphas are > 0)."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 1.0
    switch_prob: float = 0.5

    @property
    def enabled(self) -> bool:
        return self.mix_prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, soft targets (N, num_classes)); an unmixed batch gets one-hot targets."""
        targets = F.one_hot(labels, num_classes).to(images.dtype)
        if not self.enabled or float(torch.rand((), generator=generator)) >= self.mix_prob:
            return images, targets
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or float(torch.rand((), generator=generator)) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        partner = torch.randperm(len(labels), generator=generator).to(images.device)
        if use_cutmix:
            return cutmix(images, targets, cutmix_box(images.shape[-2], images.shape[-1], lam, generator), partner)
        return mixup(images, targets, lam, partner)
