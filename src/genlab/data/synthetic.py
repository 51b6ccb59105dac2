"""Synthetic images of any shape, generated in memory: for benchmarks and tests, no files involved."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset

# The images are the same in every run (only the run's seed varies splits and training), so results compare.
GENERATOR_SEED = 0
TEMPLATE_GRID = 4  # each class is a random 4x4 colour pattern, upsampled: coarse enough for a small CNN to learn


def describe_synthetic(data_dir: Path, image_size: int = 32, channels: int = 3, num_classes: int = 10, **_) -> DatasetInfo:
    return DatasetInfo(
        name="synthetic", channels=channels, image_size=image_size, num_classes=num_classes, mean=None, std=None,
        class_names=tuple(f"class_{c}" for c in range(num_classes)),
        flips_keep_label=True,  # the patterns carry no handedness; flips stay on so benchmarks exercise them
    )


@register_dataset(describe_synthetic, name="synthetic")
def load_synthetic_splits(data_dir: Path, download: bool, *, image_size: int = 32, channels: int = 3,
                          num_classes: int = 10, num_train: int = 5000, num_test: int = 1000) -> Splits:
    """Class-balanced uint8 images: a per-class template blended 60/40 with per-image uniform noise."""
    rng = np.random.default_rng(GENERATOR_SEED)
    grid = rng.integers(0, 256, size=(num_classes, TEMPLATE_GRID, TEMPLATE_GRID, channels), dtype=np.uint16)
    cells = np.arange(image_size) * TEMPLATE_GRID // image_size
    templates = grid[:, cells][:, :, cells]  # nearest-neighbour upsampling to (classes, size, size, channels)

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(count) % num_classes).astype(np.int64)
        noise = rng.integers(0, 256, size=(count, image_size, image_size, channels), dtype=np.uint16)
        return ((templates[labels] * 3 + noise * 2) // 5).astype(np.uint8), labels

    train_x, train_y = draw(num_train)
    test_x, test_y = draw(num_test)
    return Splits(train_x, train_y, test_x, test_y)
