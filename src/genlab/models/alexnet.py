"""AlexNet (Krizhevsky et al. 2012) adapted to small images: five convs, three max-pools, three FC layers with dropout.

The adaptation: stride-1 5x5/5x5/3x3/3x3/3x3 convs instead of the 11x11-stride-4 stem, 2x2 pools instead of 3x3
stride-2 ones, no local response normalisation (the `norm` knob stands in), and a 4x4 adaptive average pool before
the classifier (the map a 32x32 input has after three pools), so the head does not depend on the image size.
"""
from __future__ import annotations

from torch import nn

from genlab.models.layers import Layers, check_image_size, check_positive, check_probability, init_weights
from genlab.models.registry import register_model

# (kernel size, channels as a multiple of `width`, pool after it) for the five conv layers: 64-192-384-256-256.
CONVS = ((5, 1, True), (5, 3, True), (3, 6, False), (3, 4, False), (3, 4, True))
HEAD_MAP = 4


@register_model("alexnet")
def alexnet(
    in_channels: int,
    num_classes: int,
    image_size: int,
    width: int = 64,
    hidden: int = 4096,
    dropout: float = 0.5,
    norm: str = "none",
    activation: str = "relu",
    negative_slope: float = 0.01,
    pool: str = "max",
    init: str = "kaiming",
) -> nn.Module:
    """conv(w) pool conv(3w) pool conv(6w) conv(4w) conv(4w) pool -> FC(hidden) -> FC(hidden) -> FC(classes)."""
    check_positive("model.width", width)
    check_positive("model.hidden", hidden)
    check_probability("model.dropout", dropout)
    check_image_size(image_size, 8, "alexnet")
    layers = Layers(norm, activation, negative_slope, pool_kind=pool)
    features, in_ch = [], in_channels
    for kernel_size, multiple, pooled in CONVS:
        out_ch = width * multiple
        features.append(nn.Sequential(*layers.conv_norm_act(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
                                      *([layers.pool()] if pooled else [])))
        in_ch = out_ch
    net = nn.Sequential(
        *features,
        nn.AdaptiveAvgPool2d(HEAD_MAP),
        nn.Flatten(),
        # the paper drops the outputs of the two hidden FC layers
        *layers.classifier(in_ch * HEAD_MAP * HEAD_MAP, [hidden, hidden], num_classes, dropout),
    )
    init_weights(net, init, activation, negative_slope)
    return net
