"""ResNets for small images (He et al. 2016) with the CIFAR stem: a 3x3 conv, no initial max-pool."""
from __future__ import annotations

from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.models.layers import check_image_size, make_act, make_norm
from genlab.models.registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int, norm: str, activation: str):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(in_ch, ch, 3, stride, 1, bias=False),
            make_norm(norm, ch),
            make_act(activation),
            nn.Conv2d(ch, ch, 3, 1, 1, bias=False),
            make_norm(norm, ch),
        )
        self.shortcut = _projection(in_ch, ch * self.expansion, stride, norm)
        self.act = make_act(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int, norm: str, activation: str):
        super().__init__()
        out = ch * self.expansion
        self.branch = nn.Sequential(
            nn.Conv2d(in_ch, ch, 1, bias=False),
            make_norm(norm, ch),
            make_act(activation),
            nn.Conv2d(ch, ch, 3, stride, 1, bias=False),
            make_norm(norm, ch),
            make_act(activation),
            nn.Conv2d(ch, out, 1, bias=False),
            make_norm(norm, out),
        )
        self.shortcut = _projection(in_ch, out, stride, norm)
        self.act = make_act(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


def _projection(in_ch: int, out_ch: int, stride: int, norm: str) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), make_norm(norm, out_ch))


# depth -> (block, blocks per stage); four stages of 64/128/256/512 channels (times `width`).
DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    def __init__(self, block, blocks: tuple[int, ...], in_channels: int, num_classes: int, base: int, norm: str, activation: str):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, base, 3, 1, 1, bias=False), make_norm(norm, base), make_act(activation))
        stages, in_ch = [], base
        for i, count in enumerate(blocks):
            ch = base * 2**i
            for j in range(count):
                stages.append(block(in_ch, ch, 2 if i > 0 and j == 0 else 1, norm, activation))
                in_ch = ch * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_ch, num_classes))
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)))


def _init_weights(model: nn.Module) -> None:
    # Kaiming (fan_out) for convs feeding ReLU-family activations, unit/zero for norms: the ResNet paper's init.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@register_model("resnet")
def resnet(
    in_channels: int,
    num_classes: int,
    image_size: int,
    depth: int = 18,
    width: int = 64,
    norm: str = "batch",
    activation: str = "relu",
) -> nn.Module:
    """CIFAR-style ResNet-18/34/50: 3x3 stem, four stages (stride 1, 2, 2, 2), global average pool, linear head."""
    if depth not in DEPTHS:
        raise ConfigError("model.depth", depth, f"one of {sorted(DEPTHS)}")
    if width < 1:
        raise ConfigError("model.width", width, "an integer >= 1 (channels of the first stage)")
    check_image_size(image_size, 8, f"resnet{depth}")
    block, blocks = DEPTHS[depth]
    return ResNet(block, blocks, in_channels, num_classes, width, norm, activation)
