"""The Lightning data module: splits, loaders, and normalisation on the device."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genlab.data.catalog import Splits, dataset_info, load_dataset
from genlab.errors import ConfigError

ImageTransform = Callable[[np.ndarray], np.ndarray]


class ArrayDataset(Dataset):
    """Images held in memory as uint8 (N, H, W, C); batches are fetched with one fancy index, not per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: ImageTransform | None = None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.images[indices]
        if self.transform is not None:
            images = np.stack([self.transform(image) for image in images])
        return torch.from_numpy(images), torch.from_numpy(self.labels[indices])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.__getitems__([index])
        return images[0], labels[0]


def keep_batch(batch):
    """collate_fn for datasets whose `__getitems__` already returns a whole batch."""
    return batch


def holdout_count(size: int | float, total: int, key: str) -> int:
    """Turn a count (int >= 1) or a fraction (0 < f < 1) into a number of samples held out of `total`."""
    count = int(round(size * total)) if isinstance(size, float) and size < 1 else int(size)
    if not 1 <= count < total:
        raise ConfigError(key, size, f"a count in [1, {total - 1}] or a fraction in (0, 1) of the {total} training images")
    return count


def stratified_holdout(labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): `count` samples held out with class proportions kept where the counts allow it."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    classes, per_class = np.unique(labels, return_counts=True)
    stratify = labels if per_class.min() >= 2 and len(classes) <= count <= len(labels) - len(classes) else None
    kept, held = train_test_split(indices, test_size=count, stratify=stratify, random_state=seed)
    return np.sort(kept), np.sort(held)


class ImageDataModule(L.LightningDataModule):
    """Train/val/test loaders for one catalogued data set.

    The validation split is carved out of the training set with the run's seed; `train_eval` is a fixed, seeded
    subset of the remaining training images, the same size as val, served without augmentation so that the
    model's fit of its training data can be measured in eval mode.
    """

    def __init__(
        self,
        name: str,
        data_dir: str | Path,
        batch_size: int,
        val_size: int | float,
        num_workers: int = 0,
        pin_memory: bool = False,
        download: bool = True,
        seed: int = 0,
        eval_batch_size: int | None = None,
        train_transform: ImageTransform | None = None,
    ):
        super().__init__()
        self.info = dataset_info(name)
        self.data_dir, self.download, self.seed = Path(data_dir), download, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.num_workers, self.pin_memory = val_size, num_workers, pin_memory
        self.train_transform = train_transform
        self._splits: Splits | None = None
        self.train_set = self.val_set = self.train_eval_set = self.test_set = None
        mean = torch.tensor(self.info.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.info.std, dtype=torch.float32).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std

    def prepare_data(self) -> None:
        # Runs on one process per node: the download (if any) happens here, once. The pipeline calls it before
        # any logger starts, so a missing data set stops a run before it creates a dashboard entry.
        if self._splits is None and self.train_set is None:
            self._splits = load_dataset(self.info.name, self.data_dir, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self._splits or load_dataset(self.info.name, self.data_dir, download=False)
        total = len(splits.train_labels)
        val_count = holdout_count(self.val_size, total, "data.val_size")
        train_idx, val_idx = stratified_holdout(splits.train_labels, val_count, self.seed)
        rng = np.random.default_rng(self.seed)
        eval_idx = np.sort(rng.choice(train_idx, size=min(val_count, len(train_idx)), replace=False))
        x, y = splits.train_images, splits.train_labels
        self.train_set = ArrayDataset(x[train_idx], y[train_idx], self.train_transform)
        self.val_set = ArrayDataset(x[val_idx], y[val_idx])
        self.train_eval_set = ArrayDataset(x[eval_idx], y[eval_idx])
        self.test_set = ArrayDataset(splits.test_images, splits.test_labels)
        self._splits = None  # the split copies above are all that is needed from here on

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.val_set, self.eval_batch_size), self._loader(self.train_eval_set, self.eval_batch_size)]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(self.test_set, self.eval_batch_size), self._loader(self.train_eval_set, self.eval_batch_size)]

    def _loader(self, dataset: ArrayDataset, batch_size: int, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=keep_batch,
        )

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        return self.normalize(images), labels

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, C) -> normalised float (N, C, H, W), on whatever device the batch is on."""
        scale, shift = self._scale.to(images.device), self._shift.to(images.device)
        return (images.permute(0, 3, 1, 2).float() * scale + shift).contiguous()
