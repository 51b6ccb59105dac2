"""Which training images each process sees, in which order: a pure function of (seed, epoch, step), so that

* any number of processes sees the global batches one process would see (DDP equals one device at the same global
  batch),
* a resumed run continues mid-epoch exactly where the interrupted one stopped (only the epoch and the number of
  batches done need to be stored), and
* augmentation draws are keyed by the batch, not by which loader worker happens to process it.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


class SeededBatch(list):
    """A list of dataset indices that also carries the seed of its augmentation stream."""

    def __init__(self, indices, stream_seed: int):
        super().__init__(indices)
        self.stream_seed = stream_seed


def stream_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """A 32-bit seed unique to one process's batch `step` of `epoch`, well mixed even for neighbouring inputs."""
    return int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1)[0])


class EpochOrder(Sampler[int]):
    """The training set's order in one epoch: a permutation drawn from (seed, epoch), or with `weights` a draw with
    replacement in proportion to them (class-balanced sampling). Lightning calls `set_epoch` before every epoch."""

    def __init__(self, size: int, seed: int, weights: np.ndarray | None = None):
        self.size, self.seed, self.epoch = size, seed, 0
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())

    def order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.weights is None:
            return rng.permutation(self.size)
        return rng.choice(self.size, size=self.size, replace=True, p=self.weights)


class EpochBatchSampler(Sampler[SeededBatch]):
    """This process's share of each global batch of the epoch's order.

    Global batch `step` is `order[step * B:(step + 1) * B]` with `B = batch_size * world_size`; process `rank` takes the
    `rank`-th contiguous slice of it. A short last global batch is split evenly, padded by wrapping around to the
    epoch's first images when it does not divide, so every process runs the same number of steps (DDP requires it).

    `sampler` is the epoch order, where Lightning looks for `set_epoch` (as on torch's BatchSampler).
    `resume_at(epoch, batches_done)` makes that epoch start after its first `batches_done` batches, once. It also sets
    the epoch itself: on resume, Lightning creates the first iterator before its `set_epoch` call, and loader workers
    draw indices as soon as the iterator exists.
    """

    def __init__(self, sampler: EpochOrder, batch_size: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size} processes")
        self.sampler, self.batch_size, self.rank, self.world_size = sampler, batch_size, rank, world_size
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, batches_done: int) -> None:
        self.sampler.set_epoch(epoch)
        self._resume = (epoch, batches_done)

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / (self.batch_size * self.world_size))

    def __iter__(self) -> Iterator[SeededBatch]:
        epoch, start = self.sampler.epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            start = self._resume[1]
        self._resume = None
        order = self.sampler.order()
        global_batch = self.batch_size * self.world_size
        for step in range(start, len(self)):
            chunk = order[step * global_batch:(step + 1) * global_batch]
            share = math.ceil(len(chunk) / self.world_size)
            if share * self.world_size > len(chunk):
                chunk = np.concatenate([chunk, np.resize(order, share * self.world_size - len(chunk))])
            mine = chunk[self.rank * share:(self.rank + 1) * share]
            yield SeededBatch(mine.tolist(), stream_seed(self.sampler.seed, epoch, step, self.rank))


class ShardSampler(Sampler[list[int]]):
    """Evaluation batches of this process's contiguous shard, without padding: every image is scored exactly once
    over all processes, so metrics synced across them are the full-set metrics."""

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1):
        bounds = np.linspace(0, size, world_size + 1).round().astype(int)
        self.indices = range(bounds[rank], bounds[rank + 1])
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, len(self.indices), self.batch_size):
            yield list(self.indices[start:start + self.batch_size])
