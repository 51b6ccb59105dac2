"""Two stacked conv layers (conv -> act -> pool, twice) and a small classifier: the baseline network."""
from __future__ import annotations

from torch import nn

from genlab.errors import ConfigError
from genlab.models.layers import check_image_size, make_act, make_norm, make_pool
from genlab.models.registry import register_model


def _stage(in_ch: int, out_ch: int, kernel_size: int, norm: str, activation: str, pool: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=norm == "none"),
        make_norm(norm, out_ch),
        make_act(activation),
        make_pool(pool),
    )


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
    pool: str = "max",
) -> nn.Module:
    """conv(width) -> conv(2*width), each followed by norm, activation and a 2x2 pool; then FC(hidden) -> FC(classes)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError("model.kernel_size", kernel_size, "an odd integer >= 1 (keeps the spatial size)")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError("model.dropout", dropout, "a probability in [0, 1)")
    check_image_size(image_size, 4, "simple_cnn")
    side = image_size // 4
    return nn.Sequential(
        _stage(in_channels, width, kernel_size, norm, activation, pool),
        _stage(width, 2 * width, kernel_size, norm, activation, pool),
        nn.Flatten(),
        nn.Linear(2 * width * side * side, hidden),
        make_act(activation),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )
