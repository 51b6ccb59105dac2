"""1-D loss landscapes of the compared weights (analysis.landscape=true): the training loss on the train_eval subset
along the line from the run's initial weights to them (Goodfellow et al. 2015) and along one filter-normalised random
direction through them (Li et al. 2018)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from genlab.analysis.measures import Subset

INIT_LINE = tuple(round(-0.25 + 0.125 * i, 3) for i in range(13))  # 0 = the initial weights, 1 = the compared ones
RANDOM_LINE = tuple(round(-1.0 + 0.2 * i, 3) for i in range(11))  # 0 = the compared weights


def filter_normalised_direction(net: nn.Module, seed: int) -> list[torch.Tensor]:
    """A seeded Gaussian direction, each filter (a weight's slice for one output unit) rescaled to the norm of the same
    filter of `net` (Li et al.'s filter normalisation); a filter of zeros gets a zero direction, and 1-d parameters
    (biases, norm scales) none, as Li et al. leave them."""
    generator = torch.Generator().manual_seed(seed)
    direction = []
    for p in net.parameters():
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        if p.dim() <= 1:
            direction.append(torch.zeros_like(p))
            continue
        weight_norms = p.detach().reshape(p.shape[0], -1).norm(dim=1)
        d_norms = d.reshape(d.shape[0], -1).norm(dim=1)
        scale = weight_norms / d_norms.clamp_min(torch.finfo(d.dtype).tiny)  # zero-norm filters: scale 0, no NaN
        direction.append(d * scale.reshape(-1, *[1] * (p.dim() - 1)))
    return direction


@torch.no_grad()
def mean_loss(net: nn.Module, subset: Subset) -> float:
    total = sum(float(F.cross_entropy(net(x), y, reduction="sum")) for x, y in subset.batches())
    return total / len(subset.labels)


@torch.no_grad()
def loss_along(net: nn.Module, subset: Subset, origin: list[torch.Tensor], direction: list[torch.Tensor],
               alphas: tuple[float, ...]) -> list[float]:
    """The mean cross-entropy of `net` with its parameters at origin + alpha * direction, for each alpha, in eval
    mode (batch norm keeps the compared weights' statistics); `net`'s parameters are restored."""
    params = list(net.parameters())
    saved = [p.detach().clone() for p in params]
    net.eval()
    losses = []
    try:
        for alpha in alphas:
            for p, o, d in zip(params, origin, direction):
                p.copy_(o + alpha * d)
            losses.append(mean_loss(net, subset))
    finally:
        for p, w in zip(params, saved):
            p.copy_(w)
    return losses


def landscapes(net: nn.Module, initial: nn.Module | None, subset: Subset, seed: int) -> dict[str, dict[str, list]]:
    """{"init_line": …, "random_direction": …}, each {"alpha": [...], "loss": [...]}; no init line without the
    initial weights."""
    weights = [p.detach().clone() for p in net.parameters()]
    curves = {}
    if initial is not None:
        start = [p.detach().clone() for p in initial.parameters()]
        towards = [w - s for w, s in zip(weights, start)]
        curves["init_line"] = {"alpha": list(INIT_LINE), "loss": loss_along(net, subset, start, towards, INIT_LINE)}
    direction = filter_normalised_direction(net, seed)
    curves["random_direction"] = {"alpha": list(RANDOM_LINE),
                                  "loss": loss_along(net, subset, weights, direction, RANDOM_LINE)}
    return curves
