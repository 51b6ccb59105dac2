"""Sharpness-aware minimization (Foret et al. 2021) and its adaptive form ASAM (Kwon et al. 2021) around any torch
optimizer, for Lightning's automatic optimization.

Written after davda54/sam (MIT), not taken from it or from pytorch-optimizer's SAM (Apache-2.0), because both expect
the first pass's gradients to exist before step() and call the closure once: Lightning's automatic optimization hands
step() a closure that has not run yet, so this step runs it twice. It also keeps batch-norm running statistics of the
first pass only (the second pass's are put back), and its state is the base optimizer's own, so checkpoints hold the
momentum or Adam moments (davda54's state_dict leaves them out) and resume checks read them as the base optimizer's.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

EPSILON = 1e-12  # keeps the ascent finite when the gradient is zero


class SharpnessAware(torch.optim.Optimizer):
    """Each step: gradient g at w (first closure call); ascend to w + e with e = rho * g / ||g|| (SAM) or
    e = rho * w^2 g / ||w g|| (ASAM, davda54's form: elementwise, no eta); gradient at w + e (second call, batch-norm
    running statistics restored afterwards); back to w; the base optimizer steps with the second gradient.

    `perturbed` is true during the second call, so the training step can reuse the first call's inputs and skip its
    bookkeeping. The parameter groups (learning rates, schedules) and the state are the base optimizer's.
    """

    def __init__(self, base: torch.optim.Optimizer, model: nn.Module, rho: float, adaptive: bool):
        super().__init__(base.param_groups, {**base.defaults, "rho": rho, "adaptive": adaptive})
        self.base, self.rho, self.adaptive = base, rho, adaptive
        self.batch_norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        self.perturbed = False
        self._link_base()  # the groups torch just copied are replaced by the base's own: one set of learning rates

    def _link_base(self) -> None:
        self.param_groups, self.state = self.base.param_groups, self.base.state

    def __repr__(self) -> str:
        return f"SharpnessAware({'ASAM' if self.adaptive else 'SAM'}, rho={self.rho}, base={self.base!r})"

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, state_dict) -> None:
        self.base.load_state_dict(state_dict)
        self._link_base()  # torch replaces the base's groups and state with new objects

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none)

    def _params_with_grad(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def ascent(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """e(w) for each parameter, from the gradients now in .grad."""
        scaled = [(p.abs() * p.grad) if self.adaptive else p.grad for p in params]
        device = params[0].device
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s).to(device) for s in scaled]))
        scale = self.rho / (norm + EPSILON)
        return [(p.abs() * s if self.adaptive else s) * scale.to(p.device) for p, s in zip(params, scaled)]

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        if closure is None:
            raise RuntimeError("SharpnessAware.step needs a closure that computes the loss and its gradients "
                               "(it evaluates it twice)")
        with torch.enable_grad():
            loss = closure()
        params = self._params_with_grad()
        if loss is None or not params:  # the training step skipped the batch: nothing to step
            return loss
        ascent = self.ascent(params)
        weights = [p.clone() for p in params]  # w itself: w + e - e would differ from it by rounding
        statistics = [[b.clone() for b in m.buffers()] for m in self.batch_norms]
        torch._foreach_add_(params, ascent)
        self.perturbed = True
        try:
            with torch.enable_grad():
                closure()
        finally:
            self.perturbed = False
            torch._foreach_copy_(params, weights)
            for module, saved in zip(self.batch_norms, statistics):
                for buffer, value in zip(module.buffers(), saved):
                    buffer.copy_(value)
        self.base.step()
        return loss


def sharpness_aware(base: torch.optim.Optimizer, model: nn.Module, rho: float, adaptive: bool) -> torch.optim.Optimizer:
    """The base optimizer, wrapped in SAM/ASAM where rho > 0."""
    return SharpnessAware(base, model, rho, adaptive) if rho > 0 else base
