"""Optimizers and learning-rate schedules built from plain config dicts."""
from __future__ import annotations

import copy
import inspect
import math
import warnings
from typing import Any, Iterable

import torch
from hydra.utils import get_class
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from genlab.errors import ConfigError
from genlab.training.sam import sharpness_aware

SCHEDULERS = ("none", "cosine", "step", "onecycle")
LR_SCALING = ("none", "linear", "sqrt")
SCALING_KEYS = ("lr_scaling", "base_batch_size")
IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")
# Lightning's MixedPrecision plugin refuses to clip the gradients of an optimizer that unscales them in its own step,
# which torch's fused optimizers do (lightning/pytorch/plugins/precision/amp.py, clip_gradients), under bf16 too.
MIXED_PRECISIONS = ("16-mixed", "bf16-mixed", "16", "bf16")  # with Lightning's aliases of the two


def scales_learning_rate(config: dict[str, Any]) -> bool:
    return config.get("lr_scaling", "none") != "none"


def scale_learning_rate(config: dict[str, Any], global_batch_size: int | None) -> dict[str, Any]:
    """The optimizer config with lr scaled for the global batch size (linear: Goyal et al. 2017) and the
    scaling keys removed, so what remains is what the optimizer is built with. The batch size is only read when
    `lr_scaling` is not none."""
    scaled = {k: v for k, v in config.items() if k not in SCALING_KEYS}
    if scales_learning_rate(config):
        ratio = global_batch_size / config.get("base_batch_size", global_batch_size)
        scaled["lr"] = config["lr"] * {"linear": ratio, "sqrt": math.sqrt(ratio)}[config["lr_scaling"]]
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
    implementation (see `implementation_flags`; decided for the parameters' current device), sam_rho and sam_adaptive
    (SAM/ASAM around it where sam_rho > 0, see genlab.training.sam), class kwargs."""
    kwargs = dict(config)
    optimizer_class = get_class(kwargs.pop("_target_"))
    implementation = kwargs.pop("implementation", "auto")
    rho, adaptive = kwargs.pop("sam_rho", 0.0), kwargs.pop("sam_adaptive", False)
    groups = parameter_groups(model, kwargs.pop("weight_decay", 0.0), kwargs.pop("decay_norm_and_bias", False))
    params = [p for group in groups for p in group["params"]]
    flags = implementation_flags(implementation, optimizer_class, params, clip_under_mixed_precision)
    optimizer = optimizer_class(groups, **kwargs, **flags)
    optimizer.register_load_state_dict_pre_hook(keep_built_implementation)
    return sharpness_aware(optimizer, model, rho, adaptive)


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


class KeepsOwnLength:
    """Mixin for a scheduler that a resumed run loads: the schedule's length (built from this run's
    trainer.max_epochs) stays this run's; only the position, the steps taken, comes from the checkpoint.

    torch's own load_state_dict restores the saved length too, so a run resumed with a larger trainer.max_epochs would
    train its extra epochs at the end of the old schedule (lr 0 for cosine). With the length unchanged, this loads
    exactly what torch's does, so exact resume is untouched.
    """

    LENGTH_KEYS: tuple[str, ...] = ()

    def saved_total_steps(self, state_dict: dict[str, Any]) -> int:
        raise NotImplementedError

    def own_total_steps(self) -> int:
        raise NotImplementedError

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        own = copy.deepcopy({key: self.__dict__[key] for key in self.LENGTH_KEYS})
        saved_total, saved_lrs = self.saved_total_steps(state_dict), list(state_dict.get("_last_lr") or [])
        super().load_state_dict(state_dict)
        self.__dict__.update(own)
        if self.last_epoch > self.own_total_steps():
            raise ConfigError("trainer.max_epochs", f"a length of {self.own_total_steps()} optimizer steps",
                              f"at least the {self.last_epoch} steps the checkpoint has already trained")
        # The optimizer's learning rates were restored as the checkpoint left them; set them from this run's schedule.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # get_lr outside step() warns that get_last_lr is the usual way to read it
            lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        if saved_total != self.own_total_steps():
            rank_zero_warn(f"trainer.max_epochs changed on resume: the learning-rate schedule is rebuilt for "
                           f"{self.own_total_steps()} steps (the checkpoint's had {saved_total}) and continues at step "
                           f"{self.last_epoch}; lr {_fmt(saved_lrs)} -> {_fmt(self._last_lr)}.")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{float(v):.3g}" for v in values) or "?"


class ResumableLambdaLR(KeepsOwnLength, torch.optim.lr_scheduler.LambdaLR):
    LENGTH_KEYS = ("lr_lambdas",)

    def saved_total_steps(self, state_dict: dict[str, Any]) -> int:
        return (state_dict["lr_lambdas"][0] or {}).get("total_steps", self.own_total_steps())

    def own_total_steps(self) -> int:
        return self.lr_lambdas[0].total_steps


class ResumableOneCycleLR(KeepsOwnLength, torch.optim.lr_scheduler.OneCycleLR):
    LENGTH_KEYS = ("total_steps", "_schedule_phases")

    def saved_total_steps(self, state_dict: dict[str, Any]) -> int:
        return state_dict["total_steps"]

    def own_total_steps(self) -> int:
        return self.total_steps


def build_scheduler(optimizer: torch.optim.Optimizer, config: dict[str, Any], total_steps: int, max_epochs: int):
    """A Lightning scheduler dict stepping every batch, or None for a constant learning rate."""
    kwargs = dict(config)
    name = kwargs.pop("name")
    if name == "none":
        return None
    steps_per_epoch = max(1, total_steps // max(1, max_epochs))
    if name == "onecycle":
        max_lrs = [group["lr"] for group in optimizer.param_groups]
        scheduler = ResumableOneCycleLR(optimizer, max_lr=max_lrs, total_steps=max(2, total_steps), **kwargs)
    elif name in ("cosine", "step"):
        rule = WarmupSchedule(name, total_steps, steps_per_epoch, **kwargs)
        scheduler = ResumableLambdaLR(optimizer, rule)
    else:
        raise ConfigError("scheduler.name", name, f"one of {list(SCHEDULERS)}")
    return {"scheduler": scheduler, "interval": "step"}
