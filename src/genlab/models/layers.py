"""The shared knobs every family builds from: normalisation, activation and pooling factories."""
from __future__ import annotations

import math

from torch import nn

from genlab.errors import ConfigError

NORMS = ("batch", "group", "layer", "none")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")
POOLS = ("max", "avg")
GROUP_NORM_GROUPS = 32


def check_choice(key: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"one of {list(allowed)}")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-d normalisation layer; 'layer' normalises over (C, H, W) per sample, 'group' over channel groups."""
    check_choice("model.norm", kind, NORMS)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(GROUP_NORM_GROUPS, channels), channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def make_act(kind: str, negative_slope: float = 0.01) -> nn.Module:
    check_choice("model.activation", kind, ACTIVATIONS)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky_relu":
        return nn.LeakyReLU(negative_slope, inplace=True)
    return {"elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind]()


def make_pool(kind: str, kernel_size: int = 2, stride: int | None = None) -> nn.Module:
    check_choice("model.pool", kind, POOLS)
    pool = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    return pool(kernel_size, stride)


def check_image_size(image_size: int, downsampling: int, family: str) -> None:
    """Reject inputs that the family's pooling stages would shrink below one pixel."""
    if image_size < downsampling:
        raise ConfigError("data.image_size", image_size, f">= {downsampling} for {family}, which downsamples by {downsampling}")
