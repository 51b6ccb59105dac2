"""Regularization strategies: forwarding the `regularization` group's knobs, and the L1 penalty."""
from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from genlab.errors import ConfigError
from genlab.models import model_knobs

# regularization knob -> the config key it sets (when not null)
FORWARDED = {
    "dropout": "model.dropout",
    "drop_path": "model.drop_path",
    "norm": "model.norm",
    "weight_decay": "optimizer.weight_decay",
    "max_grad_norm": "trainer.gradient_clip_val",
    "label_smoothing": "loss.label_smoothing",
    "l1": "loss.l1",
    "mixup_alpha": "augmentation.mixup_alpha",
    "cutmix_alpha": "augmentation.cutmix_alpha",
}
OFF_VALUES = (0, 0.0, "none")


def apply_regularization(cfg: DictConfig) -> None:
    """Write the non-null strategy knobs into the model/optimizer/trainer/callbacks sections they control.

    A knob a model does not have is rejected, unless the knob asks for "off" (e.g. dropout 0 on a model without
    dropout), which that model already is.
    """
    reg = cfg.get("regularization")
    if reg is None:
        return
    knobs = model_knobs(cfg.model.name)
    with open_dict(cfg):
        for knob, target in FORWARDED.items():
            value = reg.get(knob)
            if value is None:
                continue
            section, key = target.split(".")
            if section == "model" and key not in knobs:
                if value in OFF_VALUES:
                    continue
                raise ConfigError(f"regularization.{knob}", value, f"null for model={cfg.model.name}, which has no {key} knob")
            OmegaConf.update(cfg, target, value)
        if reg.get("early_stopping") is not None:
            cfg.callbacks.early_stopping.enabled = bool(reg.early_stopping)
            if reg.early_stopping:
                cfg.callbacks.early_stopping.patience = reg.early_stopping


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over weights only: biases and norm parameters (all 1-d) are exempt, as with weight decay."""
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad and p.ndim > 1)
