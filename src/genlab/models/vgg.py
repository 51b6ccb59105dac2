"""VGG-11/13/16/19 (Simonyan & Zisserman 2015): stacks of 3x3 convs, a 2x2 max-pool after each of five stages.

Small-image form: global average pooling then one linear layer (hidden: 0, the usual CIFAR head; VGG-16 with BN has
~14.7 M parameters), or the paper's FC(hidden) -> FC(hidden) -> FC(classes) head. Pools round up (ceil mode), so
28x28 maps go 14-7-4-2-1 and inputs smaller than 32x32 (8x8 digits) end with 1x1 maps instead of failing.
"""
from __future__ import annotations

from torch import nn

from genlab.errors import ConfigError
from genlab.models.layers import Layers, check_choice, check_positive, check_probability, init_weights
from genlab.models.registry import register_model

# depth -> conv layers per stage (configurations A, B, D, E); stage i has width * (1, 2, 4, 8, 8)[i] channels.
STAGES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
STAGE_MULTIPLES = (1, 2, 4, 8, 8)


@register_model("vgg")
def vgg(
    in_channels: int,
    num_classes: int,
    image_size: int,
    depth: int = 16,
    width: int = 64,
    hidden: int = 0,
    dropout: float = 0.0,
    norm: str = "batch",
    activation: str = "relu",
    negative_slope: float = 0.01,
    conv: str = "standard",
    dilation: int = 2,
    pool: str = "max",
    init: str = "kaiming",
) -> nn.Module:
    """Five conv stages then global average pooling and the head; `norm: none` is the original, `batch` VGG-BN."""
    check_choice("model.depth", depth, tuple(sorted(STAGES)))
    check_positive("model.width", width)
    if not (isinstance(hidden, int) and hidden >= 0):
        raise ConfigError("model.hidden", hidden, "0 (one linear layer) or the width >= 1 of the two hidden FC layers")
    check_probability("model.dropout", dropout)
    layers = Layers(norm, activation, negative_slope, conv, dilation, pool)
    stages, in_ch = [], in_channels
    for convs, multiple in zip(STAGES[depth], STAGE_MULTIPLES):
        modules = []
        for _ in range(convs):
            modules += layers.conv_norm_act(in_ch, width * multiple, 3, padding=1)
            in_ch = width * multiple
        stages.append(nn.Sequential(*modules, layers.pool(ceil_mode=True)))
    head = [nn.Dropout(dropout)] if hidden == 0 else []  # the paper's head drops its hidden layers' outputs instead
    net = nn.Sequential(
        *stages,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        *head,
        *layers.classifier(in_ch, [hidden, hidden] if hidden else [], num_classes, dropout),
    )
    init_weights(net, init, activation, negative_slope)
    return net
