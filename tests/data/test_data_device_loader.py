"""data.loader=gpu on the CPU device (it runs on any device): the same batches as the CPU loader where no draw is
involved, the same shapes, dtypes and ranges where one is, a fallback that says so, and a run that trains."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from genlab.pipeline import build_datamodule, run


def served_batches(make_cfg, loader: str, *overrides: str, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of training batches as the model receives them (after the transfer hook), plus the datamodule."""
    cfg = make_cfg("data=synthetic", "data.num_train=300", "data.num_test=20", "data.image_size=16",
                   "data.batch_size=64", f"data.loader={loader}", *overrides)
    datamodule = build_datamodule(cfg.data, cfg.seed, cfg.augmentation)
    datamodule.prepare_data()
    datamodule.setup("fit")
    train = datamodule.train_dataloader()
    train.batch_sampler.sampler.set_epoch(epoch)
    return [datamodule.on_after_batch_transfer(batch, 0) for batch in train], datamodule


def test_without_augmentation_both_loaders_serve_identical_batches(make_cfg):
    cpu, _ = served_batches(make_cfg, "cpu", "augmentation=none")
    gpu, datamodule = served_batches(make_cfg, "gpu", "augmentation=none")
    assert datamodule.on_device and datamodule.num_workers == 0
    assert len(cpu) == len(gpu)
    for (x_cpu, y_cpu), (x_gpu, y_gpu) in zip(cpu, gpu):
        assert torch.equal(x_cpu, x_gpu) and torch.equal(y_cpu, y_gpu)


def test_augmented_batches_match_the_cpu_loader_in_shape_dtype_and_range(make_cfg):
    overrides = ("augmentation=standard", "augmentation.cutout_prob=0.5")
    cpu, _ = served_batches(make_cfg, "cpu", *overrides)
    gpu, datamodule = served_batches(make_cfg, "gpu", *overrides)
    assert datamodule.device_augment is not None and datamodule.train_transform is None
    for (x_cpu, y_cpu), (x_gpu, y_gpu) in zip(cpu, gpu):
        assert x_gpu.shape == x_cpu.shape and x_gpu.dtype == x_cpu.dtype == torch.float32
        assert torch.equal(y_cpu, y_gpu)  # the same images in the same order; only the draws differ
    low = datamodule.normalize(torch.zeros(1, 1, 1, 3, dtype=torch.uint8)).amin()
    high = datamodule.normalize(torch.full((1, 1, 1, 3), 255, dtype=torch.uint8)).amax()
    for batches in (cpu, gpu):
        images = torch.cat([x for x, _ in batches])
        assert low - 1e-5 <= images.min() and images.max() <= high + 1e-5
        zero = datamodule.normalize(torch.zeros(1, 1, 1, 3, dtype=torch.uint8)).view(1, 3, 1, 1)
        black = (images - zero).abs().amax(1) < 1e-5  # padding and cutout holes are black on both paths
        assert 0.05 < black.float().mean() < 0.4


def test_draws_are_seeded_per_batch_and_differ_per_epoch(make_cfg):
    first, _ = served_batches(make_cfg, "gpu", "augmentation=standard")
    again, _ = served_batches(make_cfg, "gpu", "augmentation=standard")
    later, _ = served_batches(make_cfg, "gpu", "augmentation=standard", epoch=1)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(first, again))
    assert not torch.equal(first[0][0], later[0][0])


def test_an_unsupported_policy_falls_back_to_the_cpu_loader_and_says_so(make_cfg):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, datamodule = served_batches(make_cfg, "gpu", "augmentation=strong")
    assert not datamodule.on_device and datamodule.train_transform is not None
    assert any("data.loader=gpu: augmentation=strong needs per-image affine and colour transforms" in str(w.message)
               and "using the CPU loader" in str(w.message) for w in caught)


def test_a_run_trains_and_tests_with_the_device_loader(make_cfg):
    cfg = make_cfg("data=digits", "data.loader=gpu", "augmentation=standard", "trainer.max_epochs=2",
                   "analysis.robustness=false")
    metrics = run(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert record["status"] == "completed" and metrics["test/acc"] > 0.5
