"""The model registry: every family registers a builder; `build_model` is the one way to make a network."""
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple

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


def build_model(name: str, in_channels: int, num_classes: int, image_size: int, **knobs) -> nn.Module:
    """Build family `name` for the given data shape; unknown knobs are rejected by name."""
    allowed = model_knobs(name)
    for key, value in knobs.items():
        if key not in allowed:
            raise ConfigError(f"model.{key}", value, f"a knob of {name}: one of {sorted(allowed)}")
    return _builder(name)(in_channels=in_channels, num_classes=num_classes, image_size=image_size, **knobs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _builder(name: str) -> Builder:
    _import_families()
    if name not in _BUILDERS:
        raise ConfigError("model.name", name, f"one of {sorted(_BUILDERS)}")
    return _BUILDERS[name]


def _import_families() -> None:
    # Each family module registers itself on import.
    from genlab.models import alexnet, googlenet, lenet5, preact_resnet, resnet, simple_cnn, vgg, wide_resnet  # noqa: F401
