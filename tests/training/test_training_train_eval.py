"""train_eval measures the training fit honestly: eval mode, no augmentation, the same fixed images every time."""
from __future__ import annotations

import lightning.pytorch as L
import numpy as np
import torch

from genlab.pipeline import build_datamodule, build_module


def test_train_eval_images_are_unaugmented_while_training_images_are_augmented(make_cfg):
    cfg = make_cfg("augmentation=strong", "data.num_workers=0")
    datamodule = build_datamodule(cfg.data, cfg.seed, cfg.augmentation)
    datamodule.prepare_data()
    datamodule.setup("fit")
    indices = list(range(16))
    first, again = datamodule.train_eval_set.__getitems__(indices)[0], datamodule.train_eval_set.__getitems__(indices)[0]
    assert torch.equal(first, again)
    augmented = [datamodule.train_set.__getitems__(indices)[0] for _ in range(2)]
    assert not torch.equal(*augmented)  # the same training images come out differently: augmentation is on there


def test_train_eval_metrics_are_computed_in_eval_mode(make_cfg):
    cfg = make_cfg("model.dropout=0.9", "augmentation=strong", "data.num_workers=0")
    datamodule = build_datamodule(cfg.data, cfg.seed, cfg.augmentation)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    first = trainer.validate(module, datamodule=datamodule, verbose=False)[1]["train_eval/loss"]
    second = trainer.validate(module, datamodule=datamodule, verbose=False)[1]["train_eval/loss"]
    assert first == second  # with dropout 0.9 in train mode these would differ
    assert np.isfinite(first)
