"""The training order: seeded per epoch, sharded so that N processes see one process's global batches, resumable
mid-epoch, with augmentation draws keyed by the batch (not the loader worker), and loader failures that say where."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from genlab.data.sampling import EpochBatchSampler, EpochOrder, SeededBatch, ShardSampler
from genlab.errors import DataError
from genlab.pipeline import build_datamodule


def batches(size: int, batch_size: int, rank: int = 0, world_size: int = 1, epoch: int = 0, seed: int = 3,
            weights=None) -> list[SeededBatch]:
    sampler = EpochBatchSampler(EpochOrder(size, seed, weights), batch_size, rank, world_size)
    sampler.sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("size", [96, 100])  # the global batch divides the set, and it does not
def test_two_processes_split_each_global_batch_of_one_process(size):
    one = batches(size, 16)
    ranks = [batches(size, 8, rank, 2) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)  # DDP needs the same number of steps on every rank
    for step, global_batch in enumerate(one):
        assert len(ranks[0][step]) == len(ranks[1][step])
        together = ranks[0][step] + ranks[1][step]
        assert together[:len(global_batch)] == global_batch  # padding, if any, only at the end of the last batch
    assert sorted(i for b in one for i in b) == list(range(size))


def test_each_epoch_is_a_new_seeded_permutation():
    first, second = batches(50, 10, epoch=0), batches(50, 10, epoch=1)
    assert first == batches(50, 10, epoch=0) and first != second
    assert first != batches(50, 10, epoch=0, seed=4)
    assert sorted(i for b in second for i in b) == list(range(50))


def test_a_resumed_epoch_starts_after_the_batches_done_then_runs_whole_epochs():
    sampler = EpochBatchSampler(EpochOrder(50, 3), 10)
    sampler.resume_at(epoch=2, batches_done=3)
    assert list(sampler) == batches(50, 10, epoch=2)[3:]
    sampler.sampler.set_epoch(3)
    assert list(sampler) == batches(50, 10, epoch=3)


def test_class_balanced_sampling_draws_in_proportion_to_the_weights():
    weights = np.r_[np.full(90, 1 / 90), np.full(10, 1 / 10)]  # two classes, 90:10, equal total weight
    drawn = np.array([i for epoch in range(20) for b in batches(100, 25, epoch=epoch, weights=weights) for i in b])
    assert abs((drawn >= 90).mean() - 0.5) < 0.05


def test_augmentation_streams_differ_per_batch_and_rank():
    seeds = [b.stream_seed for b in batches(64, 8)] + [b.stream_seed for b in batches(64, 8, rank=1, world_size=2)]
    assert len(set(seeds)) == len(seeds)


def test_evaluation_shards_cover_every_image_exactly_once():
    shards = [[i for b in ShardSampler(103, 10, rank, 3) for i in b] for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(103))


def augmented_loader(make_cfg, num_workers: int, seed: int = 0):
    cfg = make_cfg("data=synthetic", "data.num_train=200", "data.num_test=20", "data.batch_size=32",
                   f"data.num_workers={num_workers}", "augmentation=strong")
    datamodule = build_datamodule(cfg.data, seed, cfg.augmentation)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule.train_dataloader()


def epoch_of(loader, epoch: int) -> list[torch.Tensor]:
    loader.batch_sampler.sampler.set_epoch(epoch)
    return [images for images, _ in loader]


def test_augmented_batches_do_not_depend_on_the_number_of_loader_workers(make_cfg):
    in_process, with_workers = augmented_loader(make_cfg, 0), augmented_loader(make_cfg, 2)
    for epoch in (0, 1):
        a, b = epoch_of(in_process, epoch), epoch_of(with_workers, epoch)
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(epoch_of(in_process, 0)[0], epoch_of(in_process, 1)[0])


class BrokenPolicy:
    """An augmentation policy that breaks on its first image, in the loader worker that runs it."""

    def __init__(self, name: str, breaks):
        self.name, self.breaks = name, breaks

    def __call__(self, image):
        self.breaks()

    def reseed(self, seed: int) -> None:
        pass

    def __repr__(self) -> str:
        return f"{self.name}()"


def raise_value_error():
    raise ValueError("cannot handle this image")


def die_as_if_killed():  # the OS killing a worker (out of memory)
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_failing_transform_in_a_worker_names_the_data_set_and_the_policy(make_cfg):
    loader = augmented_loader(make_cfg, 1)
    loader.dataset.transform = BrokenPolicy("FailingPolicy", raise_value_error)
    with pytest.raises(DataError, match=r"^loading training images of data set 'synthetic' with augmentation "
                                        r"FailingPolicy\(\) failed: ValueError: cannot handle this image; "
                                        r"data.num_workers=0 runs the augmentation in the training process"):
        next(iter(loader))


def test_a_killed_worker_is_a_clear_data_error(make_cfg):
    loader = augmented_loader(make_cfg, 1)
    loader.dataset.transform = BrokenPolicy("KillsItsWorker", die_as_if_killed)
    with pytest.raises(DataError, match=r"data set 'synthetic' with augmentation KillsItsWorker\(\) failed: .*worker"):
        next(iter(loader))
