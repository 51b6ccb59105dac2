"""The model registry: every family registers a builder; `build_model` is the one way to make a network."""
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from genlab.errors import ConfigError

Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {}
DATA_ARGS = ("in_channels", "num_classes", "image_size")


class LogitsWithAux(NamedTuple):
    """What a model with auxiliary classifiers returns in training mode; in eval mode it returns `logits` alone.

    The training loss is CE(logits) + aux_weight * sum(CE(a) for a in aux); `aux_weight` is the model's own knob.
    """

    logits: Tensor
    aux: tuple[Tensor, ...]
    aux_weight: float


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: `builder(in_channels, num_classes, image_size, **knobs) -> nn.Module` becomes model `name`."""

    def wrap(builder: Builder) -> Builder:
        _BUILDERS[name] = builder
        return builder

    return wrap


def available_models() -> list[str]:
    _import_families()
    return sorted(_BUILDERS)


def model_knobs(name: str) -> dict[str, object]:
    """The knobs of a family with their defaults (the data-derived arguments excluded)."""
    params = inspect.signature(_builder(name)).parameters
    return {k: p.default for k, p in params.items() if k not in DATA_ARGS}


def is_off(value: object) -> bool:
    """0 or "none": the value that switches a regularizer off (a drop probability, a norm)."""
    return value == "none" or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)


def check_knob(name: str, key: str, value: object) -> None:
    """A knob family `name` lacks is refused by name, unless it asks for off, which that family already is: the
    strategy presets switch off wide_resnet's block_dropout and googlenet's aux_dropout whatever the model."""
    allowed = model_knobs(name)
    if key not in allowed and not is_off(value):
        raise ConfigError(f"model.{key}", value, f"0 (off) or a knob of {name}: one of {sorted(allowed)}")


def build_model(name: str, in_channels: int, num_classes: int, image_size: int, **knobs) -> nn.Module:
    """Build family `name` for the given data shape; knobs it lacks are rejected by name, unless they are off."""
    allowed = model_knobs(name)
    for key, value in knobs.items():
        check_knob(name, key, value)
    own = {key: value for key, value in knobs.items() if key in allowed}
    return _builder(name)(in_channels=in_channels, num_classes=num_classes, image_size=image_size, **own)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, in_channels: int, image_size: int) -> int:
    """FLOPs of one eval-mode forward pass on one image, by torch's flop counter (a multiply-add counts as 2).

    Only convolutions and matrix products are counted (norms, activations and pools are not); works on meta-device
    models, so a table of big networks costs no memory.
    """
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    x = torch.zeros(1, in_channels, image_size, image_size, device=param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        # The counter decomposes every op it has no formula for, looking for products inside; batch norm has none,
        # and its decomposition, in Python, was a third of a preset table's time. Given a formula it runs natively.
        not_counted = {torch.ops.aten.native_batch_norm.default: lambda *args, **kwargs: 0}
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=not_counted) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def format_flops(flops: int) -> str:
    """1234567 -> '1.23 M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.2f} {unit}"
    return str(flops)


def _builder(name: str) -> Builder:
    _import_families()
    if name not in _BUILDERS:
        raise ConfigError("model.name", name, f"one of {sorted(_BUILDERS)}")
    return _BUILDERS[name]


def _import_families() -> None:
    # Each family module registers itself on import.
    from genlab.models import alexnet, googlenet, lenet5, preact_resnet, resnet, simple_cnn, vgg, wide_resnet  # noqa: F401
