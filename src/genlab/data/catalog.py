"""Every built-in data set: its metadata and the function that loads it into uint8 arrays."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from genlab.errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """What models, transforms and reports need to know about a data set, without reading it."""

    name: str
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


@dataclass
class Splits:
    """A data set in memory: images as uint8 (N, H, W, C), labels as int64 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


Loader = Callable[[Path, bool], Splits]
_CATALOG: dict[str, tuple[DatasetInfo, Loader]] = {}


def register_dataset(info: DatasetInfo):
    """Decorator: `loader(data_dir, download) -> Splits` becomes the reader of `info.name`."""

    def wrap(loader: Loader) -> Loader:
        _CATALOG[info.name] = (info, loader)
        return loader

    return wrap


def available_datasets() -> list[str]:
    _import_readers()
    return sorted(_CATALOG)


def dataset_info(name: str) -> DatasetInfo:
    return _entry(name)[0]


def load_dataset(name: str, data_dir: str | Path, download: bool) -> Splits:
    return _entry(name)[1](Path(data_dir).expanduser(), download)


def _entry(name: str) -> tuple[DatasetInfo, Loader]:
    _import_readers()
    if name not in _CATALOG:
        raise ConfigError("data.name", name, f"one of {sorted(_CATALOG)}")
    return _CATALOG[name]


def _import_readers() -> None:
    # Each reader module registers itself on import.
    from genlab.data import cifar, digits, mnist  # noqa: F401
