"""Optimizers and learning-rate schedules built from plain config dicts."""
from __future__ import annotations

import math
from typing import Any

import torch
from hydra.utils import get_class
from torch import nn

from genlab.errors import ConfigError

SCHEDULERS = ("none", "cosine", "step", "onecycle")
LR_SCALING = ("none", "linear", "sqrt")
SCALING_KEYS = ("lr_scaling", "base_batch_size")


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


def build_optimizer(model: nn.Module, config: dict[str, Any]) -> torch.optim.Optimizer:
    """`config` is the optimizer group: `_target_` (a torch.optim class), lr, weight_decay, decay_norm_and_bias, class kwargs."""
    kwargs = dict(config)
    optimizer_class = get_class(kwargs.pop("_target_"))
    groups = parameter_groups(model, kwargs.pop("weight_decay", 0.0), kwargs.pop("decay_norm_and_bias", False))
    return optimizer_class(groups, **kwargs)


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
