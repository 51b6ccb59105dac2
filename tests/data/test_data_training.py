"""In-process training runs: every new data set on files in its official format, with augmentation and strategies."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genlab.pipeline import evaluate, run

from conftest import write_cifar10, write_cifar100, write_idx_set, write_imagefolder, write_mnist, write_svhn

# one quick epoch; the generalization analysis is tested elsewhere
QUICK = ["trainer.max_epochs=1", "data.num_workers=0", "data.download=false", "analysis.robustness=false",
         "analysis.confusion_matrix=false", "augmentation.preview_images=0"]


def train(make_cfg, *overrides: str) -> tuple[dict, dict, Path]:
    cfg = make_cfg(*QUICK, *overrides)
    metrics = run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    return metrics, json.loads((run_dir / "results.json").read_text()), run_dir


@pytest.mark.parametrize("mixing", [[], ["augmentation.mixup_alpha=0.4", "augmentation.cutmix_alpha=1.0"]],
                         ids=["standard", "standard+mixup+cutmix"])
def test_cifar10_trains_with_standard_augmentation_and_mixing(make_cfg, tmp_path, mixing):
    write_cifar10(tmp_path / "data", per_batch=16, test=16)
    metrics, record, run_dir = train(make_cfg, "data=cifar10", f"data.data_dir={tmp_path / 'data'}", "data.val_size=16",
                                     "data.batch_size=16", "augmentation=standard", "augmentation.preview_images=16",
                                     *mixing)
    assert 0 <= metrics["test/acc"] <= 1 and 0 <= metrics["test/acc_balanced"] <= 1
    assert record["augmentation"] == "standard" and record["data"]["train_size"] == 64
    assert (run_dir / "augmentations.png").stat().st_size > 1000
    assert record["data"]["strategy"]["label_noise"] == 0.0


def test_fashion_mnist_strong_augmentation_with_label_noise(make_cfg, tmp_path):
    write_idx_set(tmp_path, "fashion_mnist", train=80, test=20)
    metrics, record, _ = train(make_cfg, "data=fashion_mnist", f"data.data_dir={tmp_path}", "data.val_size=20",
                               "data.batch_size=20", "augmentation=strong", "data.label_noise=0.5")
    strategy = record["data"]["strategy"]
    assert strategy["noisy_labels"] == 30 and strategy["noisy_label_rate"] == 0.5 and record["data"]["val_size"] == 20
    assert "train_eval/acc" in metrics


def test_kmnist_randaugment_long_tail_and_balanced_sampler(make_cfg, tmp_path):
    write_idx_set(tmp_path, "kmnist", train=120, test=20)
    _, record, _ = train(make_cfg, "data=kmnist", f"data.data_dir={tmp_path}", "data.val_size=20", "data.batch_size=20",
                         "augmentation=randaugment", "data.imbalance=5", "data.balance=sampler")
    strategy = record["data"]["strategy"]
    assert strategy["class_counts"][0] == 10 and strategy["class_counts"][-1] == 2 and strategy["imbalance_achieved"] == 5


def test_cifar100_coarse_custom_policy_subset_and_weighted_focal_loss(make_cfg, tmp_path):
    write_cifar100(tmp_path, train=200, test=40)
    metrics, record, _ = train(make_cfg, "data=cifar100", "data.labels=coarse", f"data.data_dir={tmp_path}",
                               "data.val_size=40", "data.batch_size=32", "augmentation=custom", "data.train_fraction=0.5",
                               "data.balance=loss", "loss=focal")
    assert record["data"]["train_size"] == 80 and record["data"]["options"] == {"labels": "coarse"}
    assert "test/acc_top5" in metrics  # 20 classes


def test_svhn_with_extra_and_a_fixed_train_size(make_cfg, tmp_path):
    write_svhn(tmp_path, train=40, test=20, extra=40)
    _, record, _ = train(make_cfg, "data=svhn", "data.extra=true", f"data.data_dir={tmp_path}", "data.val_size=20",
                         "data.batch_size=20", "augmentation=standard", "data.train_size=30")
    assert record["data"]["train_size"] == 30 and record["data"]["val_size"] == 20


def test_imagefolder_trains_in_a_worker_then_evaluates_with_flip_averaging(make_cfg, tmp_path):
    root = write_imagefolder(tmp_path / "pets", train=10, test=4)
    metrics, record, run_dir = train(make_cfg, "data=imagefolder", f"data.data_dir={root}", "data.image_size=16",
                                     "data.batch_size=8", "augmentation=standard", "augmentation.tta=true",
                                     "data.num_workers=1", "data.label_noise=0.2")
    assert record["data"]["name"] == "imagefolder" and len(record["data"]["normalization"]["mean"]) == 3
    assert 0 <= metrics["test/acc"] <= 1

    checkpoint = next((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    cfg = make_cfg(f"ckpt_path={checkpoint}", "data=imagefolder", f"data.data_dir={root}", "data.image_size=16",
                   "data.batch_size=8", "augmentation.tta=true", "callbacks.rich_progress_bar.enabled=false",
                   "trainer.enable_progress_bar=false", fast=False, config_name="eval")
    evaluated = evaluate(cfg)
    # the one epoch's checkpoint is the best one the run tested; train_eval is drawn from the training set the model
    # saw, noisy labels included, and both tests averaged over flips
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"])
    assert evaluated["train_eval/acc"] == pytest.approx(metrics["train_eval/acc"])
    eval_record = json.loads((Path(cfg.paths.output_dir) / "eval_results.json").read_text())
    assert eval_record["data"]["strategy"]["noisy_labels"] == record["data"]["strategy"]["noisy_labels"] == 5  # 0.2 x 27


def test_synthetic_data_any_shape_with_class_weighted_loss(make_cfg):
    metrics, record, _ = train(make_cfg, "data=synthetic", "data.image_size=12", "data.channels=2", "data.num_classes=4",
                               "data.num_train=200", "data.num_test=40", "data.batch_size=32", "augmentation=none",
                               "data.imbalance=4", "data.balance=loss", "analysis.robustness=true")
    assert 0 <= metrics["robust/acc_mean"] <= 1  # the corruptions (JPEG included) handle 2-channel images
    assert record["data"]["strategy"]["class_counts"] == [45, 28, 18, 11]  # 45 x 4^(-c/3), rounded
    assert record["data"]["strategy"]["imbalance_achieved"] == pytest.approx(45 / 11) and "test/acc_balanced" in metrics


def write_every_data_set(root: Path) -> Path:
    write_cifar10(root, per_batch=8, test=10)
    write_mnist(root, train=40, test=10)
    write_idx_set(root, "fashion_mnist", train=40, test=10)
    write_idx_set(root, "kmnist", train=40, test=10)
    write_cifar100(root, train=100, test=20)
    write_svhn(root, train=40, test=10)
    write_imagefolder(root / "imagefolder", train=6, test=2)
    return root


@pytest.mark.slow
def test_every_data_set_with_every_augmentation_preset_takes_a_training_step(make_cfg, tmp_path):
    from genlab.config import validate
    from genlab.data.augment import PRESETS
    from genlab.data.catalog import available_datasets
    from genlab.pipeline import build_datamodule, build_module

    root = write_every_data_set(tmp_path / "data")
    # 9 + 5 compositions, not 9 x 5: the augmentation group refers to nothing outside itself (no interpolations)
    policies = {preset: make_cfg(f"augmentation={preset}", "augmentation.mixup_alpha=0.2").augmentation
                for preset in PRESETS}
    for name in available_datasets():
        data_dir = root / "imagefolder" if name == "imagefolder" else root
        data_set_cfg = make_cfg(f"data={name}", f"data.data_dir={data_dir}", "data.val_size=10", "data.batch_size=8",
                                "data.num_workers=0", "data.label_noise=0.1")
        for preset, policy in policies.items():
            cfg = data_set_cfg.copy()
            cfg.augmentation = policy.copy()
            validate(cfg)
            datamodule = build_datamodule(cfg.data, cfg.seed, cfg.augmentation)
            datamodule.prepare_data()
            datamodule.setup("fit")
            module = build_module(cfg, datamodule)
            module.log = module.log_dict = lambda *args, **kwargs: None  # outside a Trainer
            batch = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
            assert torch.isfinite(module.training_step(batch, 0)), (name, preset)
