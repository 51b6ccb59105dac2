"""Optimizers and learning-rate schedules built from plain config dicts."""
from __future__ import annotations

import inspect
import math
from typing import Any, Iterable

import torch
from hydra.utils import get_class
from torch import nn

from genlab.errors import ConfigError

SCHEDULERS = ("none", "cosine", "step", "onecycle")
LR_SCALING = ("none", "linear", "sqrt")
SCALING_KEYS = ("lr_scaling", "base_batch_size")
IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")
# Lightning's MixedPrecision plugin refuses to clip the gradients of an optimizer that unscales them in its own step,
# which torch's fused optimizers do (lightning/pytorch/plugins/precision/amp.py, clip_gradients), under bf16 too.
MIXED_PRECISIONS = ("16-mixed", "bf16-mixed")


def scale_learning_rate(config: dict[str, Any], global_batch_size: int) -> dict[str, Any]:
    """The optimizer config with lr scaled for the global batch size (linear: Goyal et al. 2017) and the
    scaling keys removed, so what remains is what the optimizer is built with."""
    scaled = {k: v for k, v in config.items() if k not in SCALING_KEYS}
    rule, base = config.get("lr_scaling", "none"), config.get("base_batch_size", global_batch_size)
    ratio = global_batch_size / base
    scaled["lr"] = config["lr"] * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]
    return scaled


def parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool) -> list[dict[str, Any]]:
    """Split parameters so weight decay hits weights only: biases and norm scales/shifts (all 1-d) are exempt."""
    if decay_norm_and_bias or weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, exempt = [], []
    for p in model.parameters():
        if p.requires_grad:
            (exempt if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


def clips_under_mixed_precision(precision: str | int, gradient_clip_val: float | None) -> bool:
    """True where the Trainer clips gradients under mixed precision, which Lightning refuses for fused optimizers."""
    return str(precision) in MIXED_PRECISIONS and bool(gradient_clip_val)


def check_implementation(implementation: str, optimizer_class: type, clip_under_mixed_precision: bool) -> None:
    """Refuse an implementation the optimizer class does not have, and fused where Lightning would refuse it."""
    if implementation not in IMPLEMENTATIONS:
        raise ConfigError("optimizer.implementation", implementation, f"one of {list(IMPLEMENTATIONS)}")
    flag = {"fused": "fused", "foreach": "foreach", "for_loop": "foreach"}.get(implementation)
    if flag and flag not in inspect.signature(optimizer_class).parameters:
        raise ConfigError("optimizer.implementation", implementation, f"auto: {optimizer_class.__name__} has no {flag} flag")
    if implementation == "fused" and clip_under_mixed_precision:
        raise ConfigError("optimizer.implementation", implementation, "auto, foreach or for_loop: under mixed precision "
                          "Lightning does not clip a fused optimizer's gradients (trainer.gradient_clip_val is set)")


def fused_kernel_for(optimizer_class: type, params: Iterable[torch.Tensor]) -> bool:
    """True where torch has a fused step for this class on every parameter's device and dtype (torch's own test)."""
    # The device list is torch's, read where its optimizers read it; no public API says which devices have kernels.
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    devices = _get_fused_kernels_supported_devices()
    return "fused" in inspect.signature(optimizer_class).parameters and all(
        p.device.type in devices and torch.is_floating_point(p) for p in params)


def implementation_flags(implementation: str, optimizer_class: type, params: list[torch.Tensor],
                         clip_under_mixed_precision: bool) -> dict[str, bool]:
    """The optimizer's fused/foreach arguments: auto = fused where torch has it and Lightning allows it, else torch's
    default (foreach on CUDA, the for-loop elsewhere)."""
    check_implementation(implementation, optimizer_class, clip_under_mixed_precision)
    if implementation == "for_loop":
        return {"foreach": False}
    if implementation == "foreach":
        return {"foreach": True}
    fused = fused_kernel_for(optimizer_class, params)
    if implementation == "fused" and not fused:
        devices = sorted({p.device.type for p in params})
        raise ConfigError("optimizer.implementation", implementation, f"auto, foreach or for_loop: torch has no fused "
                          f"{optimizer_class.__name__} for parameters on {devices}")
    return {"fused": True} if fused and not clip_under_mixed_precision else {}


def keep_built_implementation(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Load pre-hook: a saved state's param groups carry the fused/foreach flags of the run that saved it; a resumed run
    keeps the ones it was built with. GradScaler and Lightning decide who unscales gradients when the optimizer is
    built, so a fused optimizer resumed as the for-loop from an older checkpoint would fail under 16-mixed."""
    flags = {key: optimizer.defaults[key] for key in ("fused", "foreach") if key in optimizer.defaults}
    return {**state_dict, "param_groups": [{**group, **flags} for group in state_dict["param_groups"]]}


def build_optimizer(model: nn.Module, config: dict[str, Any],
                    clip_under_mixed_precision: bool = False) -> torch.optim.Optimizer:
    """`config` is the optimizer group: `_target_` (a torch.optim class), lr, weight_decay, decay_norm_and_bias,
    implementation (see `implementation_flags`; decided for the parameters' current device), class kwargs."""
    kwargs = dict(config)
    optimizer_class = get_class(kwargs.pop("_target_"))
    implementation = kwargs.pop("implementation", "auto")
    groups = parameter_groups(model, kwargs.pop("weight_decay", 0.0), kwargs.pop("decay_norm_and_bias", False))
    params = [p for group in groups for p in group["params"]]
    flags = implementation_flags(implementation, optimizer_class, params, clip_under_mixed_precision)
    optimizer = optimizer_class(groups, **kwargs, **flags)
    optimizer.register_load_state_dict_pre_hook(keep_built_implementation)
    return optimizer


class WarmupSchedule:
    """LR multiplier per optimizer step: linear warmup, then cosine decay or step decay (a picklable LambdaLR rule)."""

    def __init__(self, kind: str, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 0, step_size: int = 30,
                 gamma: float = 0.1, min_lr_ratio: float = 0.0):
        self.kind, self.total_steps, self.steps_per_epoch = kind, max(1, total_steps), max(1, steps_per_epoch)
        self.warmup_steps = int(round(warmup_epochs * self.steps_per_epoch))
        self.step_size, self.gamma, self.min_lr_ratio = step_size, gamma, min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "step":
            return self.gamma ** ((step // self.steps_per_epoch) // self.step_size)
        return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: dict[str, Any], total_steps: int, max_epochs: int):
    """A Lightning scheduler dict stepping every batch, or None for a constant learning rate."""
    kwargs = dict(config)
    name = kwargs.pop("name")
    if name == "none":
        return None
    steps_per_epoch = max(1, total_steps // max(1, max_epochs))
    if name == "onecycle":
        max_lrs = [group["lr"] for group in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=max(2, total_steps), **kwargs)
    elif name in ("cosine", "step"):
        rule = WarmupSchedule(name, total_steps, steps_per_epoch, **kwargs)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, rule)
    else:
        raise ConfigError("scheduler.name", name, f"one of {list(SCHEDULERS)}")
    return {"scheduler": scheduler, "interval": "step"}
