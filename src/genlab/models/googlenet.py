"""GoogLeNet / Inception v1 (Szegedy et al. 2015) for small images.

Inception modules run 1x1, 1x1->3x3, 1x1->5x5 and pool->1x1 branches in parallel and concatenate them on channels;
nine of them (3a-3b, pool, 4a-4e, pool, 5a-5b) form the body. The CIFAR stem is one 3x3 conv to 192 channels (no
7x7/2 conv, no early pools), every conv is followed by `norm` (BN by default, which v1 predates). The two auxiliary
classifiers sit on 4a and 4d; in training the model returns their logits too (`LogitsWithAux`) and the training
loss adds them with `aux_weight`; in eval mode they are skipped. With `aux_weight: 0` they are not built. Each aux
head has its own dropout, `aux_dropout` (the paper's 0.7), apart from the main head's `dropout` (0.4).

`factorize_5x5` replaces each 5x5 conv by two 3x3 convs (Inception v2's factorisation). With it and without the aux
heads this is the widely used CIFAR GoogLeNet (~6.2 M parameters); the paper's 5x5 version has ~5.9 M.
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.models.layers import Layers, check_choice, check_image_size, check_positive, check_probability, init_weights, scaled
from genlab.models.registry import LogitsWithAux, register_model

STEM = 192
# name -> (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), Table 1 of the paper.
MODULES = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64), "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
POOL_AFTER = ("3b", "4e")  # the 3x3 stride-2 pools between the stages
AUX_ON = ("4a", "4d")
AUX_MAP, AUX_CONV, AUX_HIDDEN = 4, 128, 1024  # the paper's aux head: 4x4 map, 1x1 conv, FC 1024 (dropout 0.7)


class Inception(nn.Module):
    def __init__(self, layers: Layers, factorize_5x5: bool, in_ch: int, c1: int, c3r: int, c3: int, c5r: int, c5: int,
                 pool_proj: int):
        super().__init__()
        wide = ([*layers.conv_norm_act(c5r, c5, 3, padding=1), *layers.conv_norm_act(c5, c5, 3, padding=1)]
                if factorize_5x5 else layers.conv_norm_act(c5r, c5, 5, padding=2))
        self.branches = nn.ModuleList([
            layers.conv_norm_act(in_ch, c1, 1),
            nn.Sequential(*layers.conv_norm_act(in_ch, c3r, 1), *layers.conv_norm_act(c3r, c3, 3, padding=1)),
            nn.Sequential(*layers.conv_norm_act(in_ch, c5r, 1), *wide),
            nn.Sequential(layers.pool(3, 1, 1), *layers.conv_norm_act(in_ch, pool_proj, 1)),
        ])
        self.out_channels = c1 + c3 + c5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def aux_head(layers: Layers, in_ch: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(AUX_MAP),
        *layers.conv_norm_act(in_ch, AUX_CONV, 1),
        nn.Flatten(),
        *layers.classifier(AUX_CONV * AUX_MAP * AUX_MAP, [AUX_HIDDEN], num_classes, dropout),
    )


class GoogLeNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: float, layers: Layers, factorize_5x5: bool,
                 dropout: float, aux_weight: float, aux_dropout: float):
        super().__init__()
        self.aux_weight = aux_weight
        stem = scaled(STEM, width)
        self.stem = layers.conv_norm_act(in_channels, stem, 3, padding=1)
        self.inceptions, in_ch = nn.ModuleDict(), stem
        self.aux_heads = nn.ModuleDict()
        for name, channels in MODULES.items():
            self.inceptions[name] = module = Inception(layers, factorize_5x5, in_ch, *(scaled(c, width) for c in channels))
            in_ch = module.out_channels
            if aux_weight > 0 and name in AUX_ON:
                self.aux_heads[name] = aux_head(layers, in_ch, num_classes, aux_dropout)
        self.pool = layers.pool(3, 2, 1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_ch, num_classes))

    def forward(self, x: Tensor) -> Tensor | LogitsWithAux:
        x = self.stem(x)
        aux = []
        for name, module in self.inceptions.items():
            x = module(x)
            if self.training and name in self.aux_heads:
                aux.append(self.aux_heads[name](x))
            if name in POOL_AFTER:
                x = self.pool(x)
        logits = self.head(x)
        return LogitsWithAux(logits, tuple(aux), self.aux_weight) if aux else logits


@register_model("googlenet")
def googlenet(
    in_channels: int,
    num_classes: int,
    image_size: int,
    width: float = 1.0,
    aux_weight: float = 0.3,
    aux_dropout: float = 0.7,
    factorize_5x5: bool = False,
    dropout: float = 0.4,
    norm: str = "batch",
    activation: str = "relu",
    negative_slope: float = 0.01,
    pool: str = "max",
    init: str = "kaiming",
) -> nn.Module:
    """GoogLeNet with every channel count times `width`; aux classifiers in training when aux_weight > 0."""
    check_positive("model.width", width, integer=False)
    if not (isinstance(aux_weight, numbers.Real) and not isinstance(aux_weight, bool) and aux_weight >= 0):
        raise ConfigError("model.aux_weight", aux_weight, "a number >= 0 (0 removes the auxiliary classifiers)")
    check_choice("model.factorize_5x5", factorize_5x5, (True, False))
    check_probability("model.dropout", dropout)
    check_probability("model.aux_dropout", aux_dropout)
    check_image_size(image_size, 4, "googlenet")
    layers = Layers(norm, activation, negative_slope, pool_kind=pool)
    net = GoogLeNet(in_channels, num_classes, width, layers, factorize_5x5, dropout, float(aux_weight), aux_dropout)
    init_weights(net, init, activation, negative_slope)
    return net
