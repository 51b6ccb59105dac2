"""Named presets: a family plus the knobs that differ from its conf/model YAML, and the table of all of them.

A preset is not a config file: `resnet56` is `model=resnet model.depth=56` on the command line, so every value
stays in its one YAML and the table shows the override that reaches it.
"""
from __future__ import annotations

import torch

from genlab.models.registry import build_model, count_flops, count_parameters, format_flops

PRESETS: dict[str, tuple[str, dict[str, object]]] = {
    "simple_cnn": ("simple_cnn", {}),
    "lenet5": ("lenet5", {}),
    "lenet5_modern": ("lenet5", {"activation": "relu", "pool": "max", "init": "kaiming"}),
    "alexnet": ("alexnet", {}),
    **{f"vgg{d}": ("vgg", {"depth": d, "norm": "none"}) for d in (11, 13, 16, 19)},
    **{f"vgg{d}_bn": ("vgg", {"depth": d}) for d in (11, 13, 16, 19)},
    "googlenet": ("googlenet", {}),
    "googlenet_cifar": ("googlenet", {"factorize_5x5": True, "aux_weight": 0}),
    **{f"resnet{d}": ("resnet", {"depth": d}) for d in (20, 32, 44, 56, 110, 18, 34, 50)},
    **{f"plain{d}": ("resnet", {"depth": d, "residual": False}) for d in (20, 56, 110)},
    "preact_resnet18": ("preact_resnet", {}),
    "wrn28_10": ("wide_resnet", {}),
}
TABLE_INPUT = (3, 32, 10)  # channels, image size, classes: CIFAR-10


def preset_command(name: str) -> str:
    """The train.py overrides that select preset `name`."""
    family, knobs = PRESETS[name]
    return " ".join([f"model={family}", *(f"model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in knobs.items())])


def preset_table(channels: int = TABLE_INPUT[0], size: int = TABLE_INPUT[1], classes: int = TABLE_INPUT[2]) -> str:
    """A Markdown table of every preset: parameters and FLOPs for a channels x size x size input and `classes`
    classes (by default 3x32x32 and 10, CIFAR-10's)."""
    rows = ["| preset | command | parameters | FLOPs |", "|---|---|---:|---:|"]
    for name, (family, knobs) in PRESETS.items():
        with torch.device("meta"):  # shapes only: no memory, no init time
            model = build_model(family, channels, classes, size, **knobs)
        flops = count_flops(model, channels, size)
        rows.append(f"| {name} | `{preset_command(name)}` | {count_parameters(model):,} | {format_flops(flops)} |")
    return "\n".join(rows)

