"""ResNets (He et al. 2016) for small images, and the matching plain nets (`residual: false`).

Depths 20/32/44/56/110 are the paper's CIFAR nets: three stages of 16/32/64 channels, basic blocks, and
parameter-free shortcuts (option A: subsample and zero-pad channels), so a residual net and its plain twin have
exactly the same parameters. Depths 18/34/50 are the ImageNet nets with the CIFAR stem (3x3 conv, no max-pool):
four stages of 64/128/256/512 channels and 1x1 projection shortcuts where the shape changes (option B).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.models.layers import (
    DropPath,
    Layers,
    check_choice,
    check_image_size,
    check_positive,
    check_probability,
    drop_path_rates,
    init_weights,
    zero_init_branches,
)
from genlab.models.registry import register_model


class ResidualBlock(nn.Module):
    """act(drop_path(branch(x)) + shortcut(x)); without a shortcut it is a plain block, act(branch(x))."""

    def __init__(self, branch: nn.Sequential, shortcut: nn.Module | None, act: nn.Module, drop_path: float):
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        out = self.drop_path(self.branch(x))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act(out)


class PadShortcut(nn.Module):
    """Option A: take every stride-th pixel and zero-pad the new channels; no parameters."""

    def __init__(self, extra_channels: int, stride: int):
        super().__init__()
        self.extra_channels, self.stride = extra_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra_channels))


def basic_branch(layers: Layers, in_ch: int, ch: int, stride: int) -> tuple[nn.Sequential, int]:
    branch = nn.Sequential(*layers.conv_norm_act(in_ch, ch, 3, stride, 1), layers.conv(ch, ch, 3, 1, 1), layers.norm_layer(ch))
    return branch, ch


def bottleneck_branch(layers: Layers, in_ch: int, ch: int, stride: int) -> tuple[nn.Sequential, int]:
    """1x1 reduce, 3x3 (carrying the stride, as in torchvision's "v1.5"), 1x1 expand by 4."""
    out = 4 * ch
    branch = nn.Sequential(*layers.conv_norm_act(in_ch, ch, 1), *layers.conv_norm_act(ch, ch, 3, stride, 1),
                           layers.conv(ch, out, 1), layers.norm_layer(out))
    return branch, out


def shortcut(kind: str, layers: Layers, in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """None for a plain net; identity when the shape is kept; else option A ('pad') or B ('projection')."""
    if kind == "none":
        return None
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    if kind == "pad":
        return PadShortcut(out_ch - in_ch, stride)
    return nn.Sequential(layers.conv(in_ch, out_ch, 1, stride), layers.norm_layer(out_ch))


# depth -> (branch, blocks per stage, first-stage channels, shortcut option)
CIFAR_DEPTHS = {d: (basic_branch, ((d - 2) // 6,) * 3, 16, "pad") for d in (20, 32, 44, 56, 110)}
IMAGENET_DEPTHS = {18: (basic_branch, (2, 2, 2, 2), 64, "projection"), 34: (basic_branch, (3, 4, 6, 3), 64, "projection"),
                   50: (bottleneck_branch, (3, 4, 6, 3), 64, "projection")}
DEPTHS = {**CIFAR_DEPTHS, **IMAGENET_DEPTHS}


class ResNet(nn.Module):
    """stem (3x3 conv) -> residual blocks, stages doubling channels and halving the map -> global pool -> linear."""

    def __init__(self, make_branch, blocks: tuple[int, ...], in_channels: int, num_classes: int, width: int,
                 layers: Layers, shortcut_kind: str, drop_path: float, dropout: float):
        super().__init__()
        self.stem = layers.conv_norm_act(in_channels, width, 3, 1, 1)
        rates = iter(drop_path_rates(drop_path, sum(blocks)))
        body, in_ch = [], width
        for i, count in enumerate(blocks):
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                branch, out_ch = make_branch(layers, in_ch, width * 2**i, stride)
                body.append(ResidualBlock(branch, shortcut(shortcut_kind, layers, in_ch, out_ch, stride), layers.act(), next(rates)))
                in_ch = out_ch
        self.blocks = nn.ModuleList(body)  # a list, not a Sequential: diagnostics report per block
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_ch, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


@register_model("resnet")
def resnet(
    in_channels: int,
    num_classes: int,
    image_size: int,
    depth: int = 18,
    width: int | None = None,
    residual: bool = True,
    zero_init_residual: bool = False,
    drop_path: float = 0.0,
    dropout: float = 0.0,
    norm: str = "batch",
    activation: str = "relu",
    negative_slope: float = 0.01,
    init: str = "kaiming",
) -> nn.Module:
    """ResNet-`depth` (or its plain twin); `width` = channels of the first stage, None = the paper's (16 or 64)."""
    check_choice("model.depth", depth, tuple(sorted(DEPTHS)))
    if width is not None:
        check_positive("model.width", width)
    check_choice("model.residual", residual, (True, False))
    check_choice("model.zero_init_residual", zero_init_residual, (True, False))
    check_probability("model.drop_path", drop_path)
    check_probability("model.dropout", dropout)
    if not residual and drop_path > 0:
        raise ConfigError("model.drop_path", drop_path, "0 when model.residual is false (a plain net has no skip to fall back on)")
    make_branch, blocks, base, shortcut_kind = DEPTHS[depth]
    check_image_size(image_size, 2 ** (len(blocks) - 1), f"resnet{depth}")
    layers = Layers(norm, activation, negative_slope)
    net = ResNet(make_branch, blocks, in_channels, num_classes, width or base, layers,
                 shortcut_kind if residual else "none", drop_path, dropout)
    init_weights(net, init, activation, negative_slope)
    if zero_init_residual:
        zero_init_branches(net.blocks)
    return net
