"""The Lightning data module: splits, training-set strategies, loaders, and normalisation on the device."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genlab.data.catalog import Splits, dataset_info, load_dataset
from genlab.data.device_augment import DeviceAugment
from genlab.data.sampling import EpochBatchSampler, EpochOrder, SeededBatch, ShardSampler
from genlab.errors import DataError
from genlab.data.strategies import (
    TrainingSetPlan,
    balanced_class_weights,
    class_priors,
    effective_number_weights,
    balanced_sample_weights,
    holdout_count,
    stratified_fold,
    stratified_holdout,
    warn_if_the_val_split_takes_most,
)

ImageTransform = Callable[[np.ndarray], np.ndarray]
# Lightning warns on every mid-epoch resume unless the loader object itself is stateful; the data module restores the
# position instead (see ImageDataModule.state_dict), so the warning would be wrong.
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
# Loader workers only pay off where there is per-image work (augmentation); more than this rarely helps one GPU.
MAX_AUTO_WORKERS = 8
# How the train/val split is drawn (conf/data_common.yaml): ImageDataModule's arguments of those names.
SPLIT_KEYS = ("split_seed", "folds", "fold")


class ArrayDataset(Dataset):
    """Images held in memory as uint8 (N, H, W, C); batches are fetched with one fancy index, not per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: ImageTransform | None = None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.images[indices]
        if self.transform is not None:
            # A training batch carries its own augmentation seed: the draws depend on (seed, epoch, step), never on
            # which loader worker runs the batch or how many there are, and a resumed run repeats them.
            stream = getattr(indices, "stream_seed", None)
            if stream is not None:
                self.transform.reseed(stream)
            images = np.stack([self.transform(image) for image in images])
        return torch.from_numpy(images), torch.from_numpy(self.labels[indices])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.__getitems__([index])
        return images[0], labels[0]


class SplitIndices(Dataset):
    """data.loader=gpu: batches of indices into a split held on the training device; no image passes the loader.

    A batch is (indices, split name, augmentation seed): the data module gathers and augments on the device.
    """

    def __init__(self, split: str, size: int):
        self.split, self.size = split, size

    def __len__(self) -> int:
        return self.size

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, str, int]:
        return torch.tensor(indices, dtype=torch.int64), self.split, getattr(indices, "stream_seed", 0)


def keep_batch(batch):
    """collate_fn for datasets whose `__getitems__` already returns a whole batch."""
    return batch


def resolve_num_workers(num_workers: int | str, has_transform: bool) -> int:
    """`auto`: no workers without augmentation (slicing in-memory arrays is cheaper than shipping them between
    processes), else one per spare core of the job's share up to MAX_AUTO_WORKERS: its torch threads, which a run sets
    to the cores it may use, or its share of them when jobs run side by side (genlab.threads): 1 on a 2-core laptop,
    8 on a 16-core server, 7 for each of 2 jobs at once there."""
    if num_workers != "auto":
        return int(num_workers)
    if not has_transform:
        return 0
    return max(0, min(MAX_AUTO_WORKERS, torch.get_num_threads() - 1))


def resolve_pin_memory(pin_memory: bool | str) -> bool:
    """`auto`: page-locked host memory only where there is a CUDA device to copy to."""
    return torch.cuda.is_available() if pin_memory == "auto" else bool(pin_memory)


class TrainLoader(DataLoader):
    """The training DataLoader, whose failures say which data set and which augmentation policy they came from.

    A transform that raises in a worker, or a worker killed by the OS (out of memory, a crash in native code), would
    otherwise surface as a bare RuntimeError about a worker pid.
    """

    def __init__(self, dataset: ArrayDataset, dataset_name: str, **kwargs: Any):
        super().__init__(dataset, **kwargs)
        self.dataset_name = dataset_name

    def __iter__(self):
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as err:  # anything a transform or a dying worker raises
                transform = self.dataset.transform
                policy = "no augmentation" if transform is None else f"augmentation {transform}"
                raise DataError(f"loading training images of data set {self.dataset_name!r} with {policy} failed: "
                                f"{last_line(err)}"
                                + ("; data.num_workers=0 runs the augmentation in the training process, where the "
                                   "full traceback shows" if self.num_workers else "")) from err
            yield batch


def last_line(err: BaseException) -> str:
    """The line that names the error: worker exceptions arrive with the worker's whole traceback as their message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def own_generator(seed: int) -> torch.Generator:
    """A DataLoader's own generator: creating an iterator then draws from it, not from the global torch RNG, so the
    global stream (dropout, mixup) is the same whether or not a run was interrupted and resumed."""
    return torch.Generator().manual_seed(seed)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, H, W, C) images, on the 0..1 scale."""
    pixels = images.reshape(-1, images.shape[-1])
    mean = np.zeros(pixels.shape[1])
    sq = np.zeros(pixels.shape[1])
    for start in range(0, len(pixels), 1 << 22):  # chunks keep float copies of large sets small
        chunk = pixels[start : start + (1 << 22)].astype(np.float64) / 255.0
        mean += chunk.sum(0)
        sq += (chunk**2).sum(0)
    mean /= len(pixels)
    std = np.sqrt(np.maximum(sq / len(pixels) - mean**2, 1e-12))
    return tuple(mean.tolist()), tuple(std.tolist())


class ImageDataModule(L.LightningDataModule):
    """Train/val/test loaders for one catalogued data set.

    The validation split is carved out of the training set with `split_seed` (the run's seed unless set): `val_size`
    images, or with `folds` fold number `fold` of a stratified K-fold (val_size unused); then `plan` reshapes what is left
    (subset, long tail, label noise). `train_eval` is a fixed, seeded subset of that training set (its labels as
    trained), the same size as val, served without augmentation so that the model's fit of its training data can be
    measured in eval mode.
    """

    def __init__(
        self,
        name: str,
        data_dir: str | Path,
        batch_size: int,
        val_size: int | float,
        num_workers: int | str = 0,
        pin_memory: bool | str = False,
        download: bool = True,
        seed: int = 0,
        eval_batch_size: int | None = None,
        train_transform: ImageTransform | None = None,
        options: dict[str, Any] | None = None,
        plan: TrainingSetPlan | None = None,
        on_device: bool = False,
        device_augment: DeviceAugment | None = None,
        split_seed: int | None = None,
        folds: int | None = None,
        fold: int | None = None,
    ):
        super().__init__()
        self.options = dict(options or {})
        self.info = dataset_info(name, data_dir, **self.options)
        self.data_dir, self.download, self.seed = Path(data_dir), download, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.pin_memory = val_size, resolve_pin_memory(pin_memory)
        # None: each seed draws its own train/val split (Bouthillier et al. 2021 count it among the sources of variance)
        self.split_seed = seed if split_seed is None else split_seed
        self.folds, self.fold = folds, fold
        # On the device, loaders only hand out indices: workers would have nothing to do.
        self.num_workers = 0 if on_device else resolve_num_workers(num_workers, train_transform is not None)
        self.train_transform, self.on_device, self.device_augment = train_transform, on_device, device_augment
        self._resident: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self.plan = plan or TrainingSetPlan()
        self.plan_record: dict[str, Any] = {}
        self._splits: Splits | None = None
        self._resume_position: tuple[int, int] | None = None
        self.train_set = self.val_set = self.train_eval_set = self.test_set = None
        self._fixed_normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self.mean: tuple[float, ...] | None = None  # None until setup() for data sets normalised by their own stats
        self.std: tuple[float, ...] | None = None
        if self.info.mean is not None:
            self._set_normalization(self.info.mean, self.info.std)

    def prepare_data(self) -> None:
        # Runs on one process per node: the download (if any) happens here, once. The pipeline calls it before
        # any logger starts, so a missing data set stops a run before it creates a dashboard entry.
        if self._splits is None and self.train_set is None:
            self._splits = self._load(self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self._splits or self._load(download=False)
        pool_idx, val_idx = self.train_val_split(splits.train_labels)
        val_count = len(val_idx)
        kept, train_labels, self.plan_record = self.plan.apply(splits.train_labels[pool_idx], self.info.num_classes, self.seed)
        train_idx = pool_idx[kept]
        rng = np.random.default_rng(self.seed)
        eval_pos = np.sort(rng.choice(len(train_idx), size=min(val_count, len(train_idx)), replace=False))
        x, y = splits.train_images, splits.train_labels
        train_images = x[train_idx]
        self.train_set = ArrayDataset(train_images, train_labels, self.train_transform)
        self.val_set = ArrayDataset(x[val_idx], y[val_idx])
        self.train_eval_set = ArrayDataset(train_images[eval_pos], train_labels[eval_pos])
        self.test_set = ArrayDataset(splits.test_images, splits.test_labels)
        if self.info.mean is None and self._fixed_normalization is None:
            # an image folder or synthetic data: normalise with the training images' own stats
            self._set_normalization(*channel_stats(train_images))
        self._splits = None  # the split copies above are all that is needed from here on

    def train_val_split(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices (train pool, val) into the official training set: a fold of K, or a stratified holdout."""
        if self.folds:
            return stratified_fold(labels, self.folds, self.fold, self.split_seed)
        val_count = holdout_count(self.val_size, len(labels), "data.val_size")
        warn_if_the_val_split_takes_most(self.val_size, val_count, len(labels))
        return stratified_holdout(labels, val_count, self.split_seed)

    def preview_batch(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` seeded training images through the training augmentation (either path), and their labels.

        Drawn as a training batch seeded with `seed`; training is unaffected, since each of its batches reseeds.
        """
        indices = np.sort(np.random.default_rng(seed).choice(len(self.train_set), size=min(count, len(self.train_set)),
                                                              replace=False))
        if self.device_augment is None:
            images, labels = self.train_set.__getitems__(SeededBatch(indices.tolist(), seed))
            return images.numpy(), labels.numpy()
        images = self.device_augment(torch.from_numpy(self.train_set.images[indices]), torch.Generator().manual_seed(seed))
        return images.numpy(), self.train_set.labels[indices]

    def class_weights(self) -> list[float] | None:
        """Loss weights per class when `balance` is loss (inverse frequency) or effective_number (after setup), else
        None."""
        if self.plan.balance == "loss":
            return balanced_class_weights(self.train_set.labels, self.info.num_classes).tolist()
        if self.plan.balance == "effective_number":
            return effective_number_weights(self.train_set.labels, self.info.num_classes, self.plan.balance_beta).tolist()
        return None

    def class_priors(self) -> list[float]:
        """The training set's class frequencies (after setup), for the logit-adjusted loss."""
        return class_priors(self.train_set.labels, self.info.num_classes).tolist()

    def train_dataloader(self) -> DataLoader:
        rank, world_size = self.process_slot()
        weights = balanced_sample_weights(self.train_set.labels) if self.plan.balance == "sampler" else None
        order = EpochOrder(len(self.train_set), self.seed, weights)
        batches = EpochBatchSampler(order, self.batch_size, rank, world_size)
        if self._resume_position is not None:  # kept: Lightning builds this loader twice (once just for its length)
            batches.resume_at(*self._resume_position)
        return TrainLoader(
            self._served(self.train_set, "train"),
            dataset_name=self.info.name,
            batch_sampler=batches,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=keep_batch,
            generator=own_generator(self.seed),
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(self.val_set, "val"), self._eval_loader(self.train_eval_set, "train_eval")]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(self.test_set, "test"), self._eval_loader(self.train_eval_set, "train_eval")]

    def _eval_loader(self, dataset: ArrayDataset, split: str) -> DataLoader:
        # No workers: evaluation has no per-image work, and slicing in-memory uint8 arrays beats inter-process copies.
        batches = ShardSampler(len(dataset), self.eval_batch_size, *self.process_slot())
        return DataLoader(self._served(dataset, split), batch_sampler=batches, pin_memory=self.pin_memory,
                          collate_fn=keep_batch, generator=own_generator(self.seed))

    def _served(self, dataset: ArrayDataset, split: str) -> Dataset:
        """What a loader iterates: the images themselves, or with data.loader=gpu only their indices."""
        return SplitIndices(split, len(dataset)) if self.on_device else dataset

    def resident(self, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """A split's uint8 images (N, H, W, C) and labels on `device`, copied there once."""
        key = (split, str(device))
        if key not in self._resident:
            dataset = {"train": self.train_set, "val": self.val_set, "train_eval": self.train_eval_set,
                       "test": self.test_set}[split]
            # contiguous: index_select on a strided view (the synthetic set is one) is ~20x slower
            images = torch.from_numpy(np.ascontiguousarray(dataset.images)).to(device)
            self._resident[key] = images, torch.from_numpy(dataset.labels).to(device)
        return self._resident[key]

    def process_slot(self) -> tuple[int, int]:
        """(rank, world size) of this process: the data module shards the data itself (Lightning's
        use_distributed_sampler is off, since its sampler neither resumes mid-epoch nor matches one device's order)."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def state_dict(self) -> dict[str, int]:
        """Where training continues in the sampler's order, saved in every checkpoint: an epoch and its batches done.

        Counted from the trainer's progress, not by the loader: workers and Lightning's prefetching draw batches ahead
        of the ones trained on. The data module, not the loader, holds it: Lightning restores a data module before it
        first builds the training loader, but a stateful loader only when it builds it after the restore, which it
        does not when the scheduler asks for the number of steps first.
        """
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        epoch, done = trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:  # the epoch is over: the next one starts from its beginning
            return {"epoch": epoch + 1, "batches_done": 0}
        return {"epoch": epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self._resume_position = (state["epoch"], state["batches_done"])

    def _load(self, download: bool) -> Splits:
        return load_dataset(self.info.name, self.data_dir, download, **self.options)

    def use_normalization(self, mean: list[float], std: list[float]) -> None:
        """Normalise with these channel stats (a checkpoint's), not the ones the data set or its training split give."""
        self._fixed_normalization = (tuple(mean), tuple(std))
        self._set_normalization(*self._fixed_normalization)

    def _set_normalization(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.mean, self.std = tuple(mean), tuple(std)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -mean_t / std_t

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.on_device:
            images, labels = self.gather_on_device(*batch)
        else:
            images, labels = batch
        return self.normalize(images), labels

    def gather_on_device(self, indices: torch.Tensor, split: str, stream_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """data.loader=gpu: a batch's images and labels from the resident split, training images augmented there
        with draws from the batch's own seed (as on the CPU path: resumable, the same on every run)."""
        images, labels = self.resident(split, indices.device)
        batch = images.index_select(0, indices)  # ~10x faster than images[indices] on the CPU
        if split == "train" and self.device_augment is not None:
            generator = torch.Generator(device=indices.device).manual_seed(stream_seed)
            batch = self.device_augment(batch, generator)
        return batch, labels.index_select(0, indices)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, C) -> normalised float (N, C, H, W), on whatever device the batch is on."""
        scale, shift = self._scale.to(images.device), self._shift.to(images.device)
        return (images.permute(0, 3, 1, 2).float() * scale + shift).contiguous()
