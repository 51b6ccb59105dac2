"""Pre-activation ResNet (He et al. 2016, "Identity mappings in deep residual networks"), CIFAR stem.

Each block computes norm -> act -> conv -> norm -> act -> conv and adds the untouched input, so the identity path
runs from the stem to the final norm; the wide ResNet (wide_resnet.py) is built from the same blocks.
"""
from __future__ import annotations

from torch import Tensor, nn

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


class PreActBlock(nn.Module):
    """x + branch(act(norm(x))); where the shape changes, a 1x1 conv of the pre-activated input is the shortcut."""

    def __init__(self, layers: Layers, in_ch: int, ch: int, stride: int, block_dropout: float, drop_path: float):
        super().__init__()
        self.preact = nn.Sequential(layers.norm_layer(in_ch), layers.act())
        self.branch = nn.Sequential(layers.conv(in_ch, ch, 3, stride, 1), layers.norm_layer(ch), layers.act(),
                                    nn.Dropout(block_dropout), layers.conv(ch, ch, 3, 1, 1))
        self.shortcut = None if stride == 1 and in_ch == ch else layers.conv(in_ch, ch, 1, stride)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.preact(x)
        skip = x if self.shortcut is None else self.shortcut(out)
        return self.drop_path(self.branch(out)) + skip


class PreActResNet(nn.Module):
    """3x3 stem -> pre-activation blocks (stride 2 entering every stage but the first) -> norm, act, pool, linear."""

    def __init__(self, in_channels: int, num_classes: int, stem: int, channels: tuple[int, ...], blocks: tuple[int, ...],
                 layers: Layers, block_dropout: float, drop_path: float, dropout: float):
        super().__init__()
        self.stem = layers.conv(in_channels, stem, 3, 1, 1)
        rates = iter(drop_path_rates(drop_path, sum(blocks)))
        body, in_ch = [], stem
        for i, (ch, count) in enumerate(zip(channels, blocks)):
            for j in range(count):
                body.append(PreActBlock(layers, in_ch, ch, 2 if i > 0 and j == 0 else 1, block_dropout, next(rates)))
                in_ch = ch
        self.blocks = nn.ModuleList(body)  # a list, not a Sequential: diagnostics report per block
        self.head = nn.Sequential(layers.norm_layer(in_ch), layers.act(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Dropout(dropout), nn.Linear(in_ch, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def build_preact(in_channels: int, num_classes: int, image_size: int, family: str, stem: int, channels: tuple[int, ...],
                 blocks: tuple[int, ...], block_dropout: float, zero_init_residual: bool, drop_path: float,
                 dropout: float, norm: str, activation: str, negative_slope: float, init: str) -> PreActResNet:
    """The checks, body and init shared by preact_resnet and wide_resnet."""
    check_choice("model.zero_init_residual", zero_init_residual, (True, False))
    check_probability("model.drop_path", drop_path)
    check_probability("model.dropout", dropout)
    check_image_size(image_size, 2 ** (len(blocks) - 1), family)
    layers = Layers(norm, activation, negative_slope)
    net = PreActResNet(in_channels, num_classes, stem, channels, blocks, layers, block_dropout, drop_path, dropout)
    init_weights(net, init, activation, negative_slope)
    if zero_init_residual:
        zero_init_branches(net.blocks)
    return net


# depth -> blocks per stage (basic blocks, four stages of 64/128/256/512 channels times width/64)
DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


@register_model("preact_resnet")
def preact_resnet(
    in_channels: int,
    num_classes: int,
    image_size: int,
    depth: int = 18,
    width: int = 64,
    zero_init_residual: bool = False,
    drop_path: float = 0.0,
    dropout: float = 0.0,
    norm: str = "batch",
    activation: str = "relu",
    negative_slope: float = 0.01,
    init: str = "kaiming",
) -> nn.Module:
    """Pre-activation ResNet-18/34; `width` = channels of the stem and first stage."""
    check_choice("model.depth", depth, tuple(sorted(DEPTHS)))
    check_positive("model.width", width)
    return build_preact(in_channels, num_classes, image_size, f"preact_resnet{depth}", width,
                        tuple(width * 2**i for i in range(4)), DEPTHS[depth], 0.0, zero_init_residual, drop_path,
                        dropout, norm, activation, negative_slope, init)
