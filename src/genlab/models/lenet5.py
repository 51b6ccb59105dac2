"""LeNet-5 (LeCun et al. 1998): conv5x5(6) -> pool -> conv5x5(16) -> pool -> FC120 -> FC84 -> FC(classes).

The classic variant is tanh with average pooling, the modern one ReLU with max pooling; both are knobs. Simplified
as everyone does: C3 connects to all six S2 maps, pools have no trainable coefficients, the output is a linear
layer instead of RBF units, so a 1x32x32, 10-class LeNet-5 has 61,706 parameters.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from genlab.models.layers import Layers, check_choice, check_probability, init_weights
from genlab.models.registry import register_model

# The paper's input: 28x28 MNIST digits were centred in a 32x32 field so that stroke ends reach the centre of
# the top feature detectors' receptive fields.
INPUT_SIZE = 32
PADS = ("darkest", "mean")


class PadToField(nn.Module):
    """Centre each image in a `size` x `size` field, filled per image and channel with the image's darkest value
    (`darkest`) or with 0 (`mean`).

    The network only sees normalised inputs, where 0 is the data set's mean grey, not the black background of a digit;
    pixel 0 is -mean/std there, and the darkest value of an image with any background pixel is exactly that (every
    scikit-learn digit, and MNIST's, KMNIST's and Fashion-MNIST's black borders), with no normalisation statistics to
    pass in (image folders and synthetic data only get theirs when loaded).
    """

    def __init__(self, image_size: int, size: int, fill: str):
        super().__init__()
        extra = size - image_size
        self.top = self.left = extra // 2
        self.size, self.fill = size, fill

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        value = x.amin(dim=(2, 3), keepdim=True) if self.fill == "darkest" else x.new_zeros(n, c, 1, 1)
        field = value.expand(n, c, self.size, self.size).clone(memory_format=torch.contiguous_format)
        field[:, :, self.top:self.top + h, self.left:self.left + w] = x
        return field

    def extra_repr(self) -> str:
        return f"size={self.size}, fill={self.fill}"


def _input_padding(image_size: int, pad: str) -> nn.Module:
    """Pad inputs smaller than 32x32 to 32x32 (see PadToField); larger inputs are left alone."""
    return PadToField(image_size, INPUT_SIZE, pad) if image_size < INPUT_SIZE else nn.Identity()


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
    pad: str = "darkest",
) -> nn.Module:
    """LeNet-5 on inputs padded to at least 32x32; above 32x32 the first FC layer grows with the feature map."""
    check_probability("model.dropout", dropout)
    check_choice("model.pad", pad, PADS)
    layers = Layers(norm, activation, negative_slope, conv, dilation, pool)
    side = max(image_size, INPUT_SIZE)
    side = ((side - 4) // 2 - 4) // 2  # two valid 5x5 convs, each followed by a 2x2 pool
    net = nn.Sequential(
        _input_padding(image_size, pad),
        nn.Sequential(*layers.conv_norm_act(in_channels, 6, 5), layers.pool()),  # C1, S2
        nn.Sequential(*layers.conv_norm_act(6, 16, 5), layers.pool()),  # C3, S4
        nn.Flatten(),
        layers.classifier(16 * side * side, [120, 84], num_classes, dropout),  # C5, F6, output
    )
    init_weights(net, init, activation, negative_slope)
    return net
