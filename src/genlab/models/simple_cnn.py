"""Two stacked conv layers (conv -> act -> pool, twice) and a small classifier: the baseline network."""
from __future__ import annotations

from torch import nn

from genlab.errors import ConfigError
from genlab.models.layers import Layers, check_image_size, check_positive, check_probability, init_weights
from genlab.models.registry import register_model


def _stage(layers: Layers, in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(*layers.conv_norm_act(in_ch, out_ch, kernel_size, padding=kernel_size // 2), layers.pool())


@register_model("simple_cnn")
def simple_cnn(
    in_channels: int,
    num_classes: int,
    image_size: int,
    width: int = 32,
    kernel_size: int = 3,
    hidden: int = 128,
    dropout: float = 0.0,
    norm: str = "none",
    activation: str = "relu",
    negative_slope: float = 0.01,
    conv: str = "standard",
    dilation: int = 2,
    pool: str = "max",
    init: str = "pytorch",
) -> nn.Module:
    """conv(width) -> conv(2*width), each followed by norm, activation and a 2x2 pool; then FC(hidden) -> FC(classes)."""
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError("model.kernel_size", kernel_size, "an odd integer >= 1 (keeps the spatial size)")
    check_positive("model.width", width)
    check_positive("model.hidden", hidden)
    check_probability("model.dropout", dropout)
    check_image_size(image_size, 4, "simple_cnn")
    layers = Layers(norm, activation, negative_slope, conv, dilation, pool)
    side = image_size // 4
    net = nn.Sequential(
        _stage(layers, in_channels, width, kernel_size),
        _stage(layers, width, 2 * width, kernel_size),
        nn.Flatten(),
        *layers.classifier(2 * width * side * side, [hidden], num_classes, dropout),
    )
    init_weights(net, init, activation, negative_slope)
    return net
