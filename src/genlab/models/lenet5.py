"""LeNet-5 (LeCun et al. 1998): conv5x5(6) -> pool -> conv5x5(16) -> pool -> FC120 -> FC84 -> FC(classes).

The classic variant is tanh with average pooling, the modern one ReLU with max pooling; both are knobs. Simplified
as everyone does: C3 connects to all six S2 maps, pools have no trainable coefficients, the output is a linear
layer instead of RBF units, so a 1x32x32, 10-class LeNet-5 has 61,706 parameters.
"""
from __future__ import annotations

from torch import nn

from genlab.models.layers import Layers, check_probability, init_weights
from genlab.models.registry import register_model

# The paper's input: 28x28 MNIST digits were centred in a 32x32 field so that stroke ends reach the centre of
# the top feature detectors' receptive fields.
INPUT_SIZE = 32


def _input_padding(image_size: int) -> nn.Module:
    """Zero padding (in normalised units, i.e. the data set's mean) up to 32x32; larger inputs are left alone."""
    if image_size >= INPUT_SIZE:
        return nn.Identity()
    extra = INPUT_SIZE - image_size
    return nn.ZeroPad2d((extra // 2, extra - extra // 2, extra // 2, extra - extra // 2))


@register_model("lenet5")
def lenet5(
    in_channels: int,
    num_classes: int,
    image_size: int,
    dropout: float = 0.0,
    norm: str = "none",
    activation: str = "tanh",
    negative_slope: float = 0.01,
    conv: str = "standard",
    dilation: int = 2,
    pool: str = "avg",
    init: str = "xavier",
) -> nn.Module:
    """LeNet-5 on inputs padded to at least 32x32; above 32x32 the first FC layer grows with the feature map."""
    check_probability("model.dropout", dropout)
    layers = Layers(norm, activation, negative_slope, conv, dilation, pool)
    side = max(image_size, INPUT_SIZE)
    side = ((side - 4) // 2 - 4) // 2  # two valid 5x5 convs, each followed by a 2x2 pool
    net = nn.Sequential(
        _input_padding(image_size),
        nn.Sequential(*layers.conv_norm_act(in_channels, 6, 5), layers.pool()),  # C1, S2
        nn.Sequential(*layers.conv_norm_act(6, 16, 5), layers.pool()),  # C3, S4
        nn.Flatten(),
        layers.classifier(16 * side * side, [120, 84], num_classes, dropout),  # C5, F6, output
    )
    init_weights(net, init, activation, negative_slope)
    return net
