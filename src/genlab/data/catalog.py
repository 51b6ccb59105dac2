"""Every built-in data set: its metadata and the function that loads it into uint8 arrays."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from genlab.errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """What models, transforms and reports need to know about a data set, without reading its images."""

    name: str
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...] | None  # None: measured on the training split when it is loaded
    std: tuple[float, ...] | None
    class_names: tuple[str, ...]
    flips_keep_label: bool = False  # a mirrored image has the same label (objects: yes; digits, characters: no)


@dataclass
class Splits:
    """A data set in memory: images as uint8 (N, H, W, C), labels as int64 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


# loader(data_dir, download, **options) -> Splits; its keyword-only parameters are the data set's options.
Loader = Callable[..., Splits]
# describe(data_dir, **options) -> DatasetInfo, for data sets whose metadata depends on their options.
Describe = Callable[..., DatasetInfo]
_CATALOG: dict[str, tuple[Describe, Loader]] = {}


def register_dataset(info: DatasetInfo | Describe, name: str | None = None):
    """Decorator: `loader(data_dir, download, *, **options) -> Splits` becomes the reader of a data set.

    `info` is the data set's fixed metadata, or, where class count, size or channels follow from its options
    (an image folder, synthetic data, CIFAR-100's coarse labels), `describe(data_dir, **options)`, given with `name`.
    """
    describe = (lambda data_dir, **options: info) if isinstance(info, DatasetInfo) else info
    key = info.name if isinstance(info, DatasetInfo) else name
    if key is None:
        raise TypeError("register_dataset(describe) needs the data set's name")

    def wrap(loader: Loader) -> Loader:
        _CATALOG[key] = (describe, loader)
        return loader

    return wrap


def available_datasets() -> list[str]:
    _import_readers()
    return sorted(_CATALOG)


def dataset_options(name: str) -> dict[str, Any]:
    """The options a data set's reader takes (its keyword-only parameters), with their defaults."""
    params = inspect.signature(_entry(name)[1]).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def options_in(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a data config (a mapping) that are options of its data set's reader."""
    return {key: config[key] for key in dataset_options(name) if key in config}


def dataset_info(name: str, data_dir: str | Path = ".", **options: Any) -> DatasetInfo:
    return _entry(name)[0](Path(data_dir).expanduser(), **options)


def load_dataset(name: str, data_dir: str | Path, download: bool, **options: Any) -> Splits:
    return _entry(name)[1](Path(data_dir).expanduser(), download, **options)


def _entry(name: str) -> tuple[Describe, Loader]:
    _import_readers()
    if name not in _CATALOG:
        raise ConfigError("data.name", name, f"one of {sorted(_CATALOG)}")
    return _CATALOG[name]


def _import_readers() -> None:
    # Each reader module registers itself on import.
    from genlab.data import cifar, digits, imagefolder, mnist, svhn, synthetic  # noqa: F401
