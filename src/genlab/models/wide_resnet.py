"""Wide ResNet (Zagoruyko & Komodakis 2016): WRN-depth-k, pre-activation blocks widened k times, dropout inside.

WRN-28-10: 16-channel stem, three stages of 4 blocks with 160/320/640 channels, dropout 0.3 between each block's
two convs; ~36.5 M parameters for CIFAR-10.
"""
from __future__ import annotations

from torch import nn

from genlab.errors import ConfigError
from genlab.models.layers import check_positive, check_probability, scaled
from genlab.models.preact_resnet import build_preact
from genlab.models.registry import register_model

STEM = 16
STAGES = (16, 32, 64)


@register_model("wide_resnet")
def wide_resnet(
    in_channels: int,
    num_classes: int,
    image_size: int,
    depth: int = 28,
    width: float = 10,
    block_dropout: float = 0.3,
    zero_init_residual: bool = False,
    drop_path: float = 0.0,
    dropout: float = 0.0,
    norm: str = "batch",
    activation: str = "relu",
    negative_slope: float = 0.01,
    init: str = "kaiming",
) -> nn.Module:
    """WRN-`depth`-`width`: (depth - 4) / 6 blocks per stage, stage channels 16k/32k/64k for k = `width`."""
    if not (isinstance(depth, int) and depth >= 10 and (depth - 4) % 6 == 0):
        raise ConfigError("model.depth", depth, "6n + 4 for n >= 1 blocks per stage (10, 16, 22, 28, 40, ...)")
    check_positive("model.width", width, integer=False)
    check_probability("model.block_dropout", block_dropout)
    channels = tuple(scaled(c, width) for c in STAGES)
    return build_preact(in_channels, num_classes, image_size, f"wide_resnet{depth}", STEM, channels,
                        ((depth - 4) // 6,) * 3, block_dropout, zero_init_residual, drop_path, dropout, norm,
                        activation, negative_slope, init)
