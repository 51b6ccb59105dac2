"""The shared knobs every family builds from: norm, activation, conv, pool, drop-path and init factories.

A family validates its shared knobs once by making a `Layers` and then asks it for layers; nothing here reads config.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from torch import Tensor, nn

from genlab.errors import ConfigError

NORMS = ("batch", "group", "layer", "none")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")
CONVS = ("standard", "dilated", "separable")
POOLS = ("max", "avg")
INITS = ("kaiming", "xavier", "pytorch")
GROUP_NORM_GROUPS = 32


def check_choice(key: str, value: object, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"one of {list(allowed)}")


def check_probability(key: str, value: object) -> None:
    """A drop probability: a number in [0, 1)."""
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value < 1.0):
        raise ConfigError(key, value, "a probability in [0, 1)")


def check_positive(key: str, value: object, integer: bool = True) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if not (isinstance(value, kind) and not isinstance(value, bool) and value > 0):
        raise ConfigError(key, value, "an integer >= 1" if integer else "a number > 0")


def check_image_size(image_size: int, downsampling: int, family: str) -> None:
    """Reject inputs that the family's pooling stages would shrink below one pixel."""
    if image_size < downsampling:
        raise ConfigError("data.image_size", image_size, f">= {downsampling} for {family}, which downsamples by {downsampling}")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-d normalisation layer; 'layer' normalises over (C, H, W) per sample, 'group' over channel groups."""
    check_choice("model.norm", kind, NORMS)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(GROUP_NORM_GROUPS, channels), channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def make_act(kind: str, negative_slope: float = 0.01) -> nn.Module:
    check_choice("model.activation", kind, ACTIVATIONS)
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "leaky_relu":
        return nn.LeakyReLU(negative_slope, inplace=True)
    return {"elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[kind]()


def make_pool(kind: str, kernel_size: int = 2, stride: int | None = None, padding: int = 0, ceil_mode: bool = False) -> nn.Module:
    check_choice("model.pool", kind, POOLS)
    pool = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    return pool(kernel_size, stride, padding, ceil_mode=ceil_mode)


def make_conv(kind: str, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
              bias: bool = True, dilation: int = 2) -> nn.Module:
    """A k x k convolution whose output has the size a standard conv with `padding` would give.

    'dilated' spreads the kernel (`dilation`) and pads the extra reach; 'separable' is a depthwise k x k conv
    followed by a pointwise 1 x 1 conv (Xception/MobileNet), with nothing in between.
    """
    check_choice("model.conv", kind, CONVS)
    if kind == "dilated":
        return nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding + (dilation - 1) * (kernel_size - 1) // 2,
                         dilation=dilation, bias=bias)
    if kind == "separable":
        return nn.Sequential(nn.Conv2d(in_ch, in_ch, kernel_size, stride, padding, groups=in_ch, bias=False),
                             nn.Conv2d(in_ch, out_ch, 1, bias=bias))
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, bias=bias)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, drop a residual branch per sample with probability p."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_rates(drop_path: float, blocks: int) -> list[float]:
    """The linear rule of the stochastic-depth paper: 0 for the first block rising to `drop_path` for the last."""
    return [drop_path * i / max(blocks - 1, 1) for i in range(blocks)]


@dataclass(frozen=True)
class Layers:
    """The shared knobs of one network, validated once; families ask it for layers instead of building them."""

    norm: str = "batch"
    activation: str = "relu"
    negative_slope: float = 0.01
    conv_kind: str = "standard"
    dilation: int = 2
    pool_kind: str = "max"

    def __post_init__(self):
        check_choice("model.norm", self.norm, NORMS)
        check_choice("model.activation", self.activation, ACTIVATIONS)
        check_choice("model.conv", self.conv_kind, CONVS)
        check_choice("model.pool", self.pool_kind, POOLS)
        if not (isinstance(self.negative_slope, numbers.Real) and not isinstance(self.negative_slope, bool)
                and self.negative_slope >= 0):
            raise ConfigError("model.negative_slope", self.negative_slope, "a number >= 0 (leaky_relu's slope for x < 0)")
        check_positive("model.dilation", self.dilation)

    def conv(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0) -> nn.Module:
        """A conv of the chosen kind; it has a bias only when no norm layer follows it."""
        return make_conv(self.conv_kind, in_ch, out_ch, kernel_size, stride, padding, self.norm == "none", self.dilation)

    def conv_norm_act(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
        return nn.Sequential(self.conv(in_ch, out_ch, kernel_size, stride, padding), self.norm_layer(out_ch), self.act())

    def norm_layer(self, channels: int) -> nn.Module:
        return make_norm(self.norm, channels)

    def act(self) -> nn.Module:
        return make_act(self.activation, self.negative_slope)

    def classifier(self, in_features: int, hidden: list[int], num_classes: int, dropout: float) -> nn.Sequential:
        """Fully connected layers: (linear -> activation -> dropout) per hidden width, then the output layer."""
        modules, width = [], in_features
        for units in hidden:
            modules += [nn.Linear(width, units), self.act(), nn.Dropout(dropout)]
            width = units
        return nn.Sequential(*modules, nn.Linear(width, num_classes))

    def pool(self, kernel_size: int = 2, stride: int | None = None, padding: int = 0, ceil_mode: bool = False) -> nn.Module:
        return make_pool(self.pool_kind, kernel_size, stride, padding, ceil_mode)


def init_weights(model: nn.Module, scheme: str, activation: str, negative_slope: float = 0.01) -> None:
    """Initialise convs and linears by `scheme`, norms to the identity.

    kaiming: He normal (fan_out for convs as in ResNet, fan_in for linears) with the activation's gain;
    xavier: Glorot uniform with the activation's gain (the classic choice for tanh/sigmoid nets);
    pytorch: PyTorch's own defaults. Biases start at zero except under 'pytorch'.
    """
    check_choice("model.init", scheme, INITS)
    nonlinearity, param = {"leaky_relu": ("leaky_relu", negative_slope), "tanh": ("tanh", None),
                           "sigmoid": ("sigmoid", None)}.get(activation, ("relu", None))
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and scheme != "pytorch":
            if scheme == "kaiming":
                mode = "fan_out" if isinstance(m, nn.Conv2d) else "fan_in"
                nn.init.kaiming_normal_(m.weight, a=param or 0, mode=mode, nonlinearity=nonlinearity)
            else:
                nn.init.xavier_uniform_(m.weight, gain=nn.init.calculate_gain(nonlinearity, param))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def zero_init_branches(blocks: nn.ModuleList) -> None:
    """Make every residual block start as the identity (Goyal et al. 2017): zero the scale of the last norm in its
    `branch`, or, where no norm ends it (norm 'none', pre-activation blocks), the weights of its last conv."""
    for block in blocks:
        for m in reversed(list(block.branch.modules())):
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.Conv2d)):
                nn.init.zeros_(m.weight)
                break


def scaled(channels: int, multiplier: float) -> int:
    """channels * multiplier, rounded, never below one."""
    return max(1, int(round(channels * multiplier)))
