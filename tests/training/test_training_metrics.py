"""The module's metrics against independent computations, on batches shaped to hit torchmetrics' edge cases."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genlab.analysis.evaluation import predict
from genlab.training.module import CALIBRATION_BINS, ImageClassifier, accuracy_metrics

SPEC = {"name": "simple_cnn", "in_channels": 1, "num_classes": 10, "image_size": 8, "width": 2, "hidden": 8}


def by_hand(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1, top-5, balanced accuracy and 15-bin L1 ECE, written out from their definitions."""
    top1 = probs.argmax(1) == labels
    top5 = (probs.topk(5, dim=1).indices == labels[:, None]).any(1)
    recalls = [top1[labels == c].float().mean().item() for c in labels.unique()]
    confidence = probs.max(1).values
    ece = 0.0
    for b in range(CALIBRATION_BINS):
        lo, hi = b / CALIBRATION_BINS, (b + 1) / CALIBRATION_BINS
        members = (confidence > lo) & (confidence <= hi)
        if members.any():
            ece += members.float().mean().item() * abs(top1[members].float().mean().item() - confidence[members].mean().item())
    return {"acc": top1.float().mean().item(), "acc_top5": top5.float().mean().item(),
            "acc_balanced": float(np.mean(recalls)), "ece": ece}


def test_top5_and_balanced_accuracy_stay_apart_after_an_all_correct_first_batch():
    # torchmetrics merges the states of metrics that agree after the first update: an all top-1 correct first batch
    # made top-1, top-5 and balanced accuracy one group, and top-5 then reported another metric's value.
    generator = torch.Generator().manual_seed(0)
    first_labels = torch.arange(10)
    first = F.one_hot(first_labels, 10).float() * 5 + torch.rand(10, 10, generator=generator)
    # then: unbalanced classes, true class ranked 1st, 3rd or 8th, so top-1, top-5 and balanced all differ
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 3])
    scores = torch.rand(len(labels), 10, generator=generator)
    for row, (label, rank) in enumerate(zip(labels.tolist(), [1, 3, 8, 1, 3, 1, 8, 1, 1, 3, 8, 8])):
        order = scores[row].argsort(descending=True)
        scores[row, label], scores[row, order[rank - 1]] = scores[row, order[rank - 1]].item(), scores[row, label].item()
    metrics = accuracy_metrics(10, "test/", calibration=True)
    metrics.update(first.softmax(-1), first_labels)
    metrics.update(scores.softmax(-1), labels)
    got = {k.removeprefix("test/"): v.item() for k, v in metrics.compute().items()}
    expected = by_hand(torch.cat([first, scores]).softmax(-1), torch.cat([first_labels, labels]))
    assert len({round(expected[k], 6) for k in ("acc", "acc_top5", "acc_balanced")}) == 3  # the batch tells them apart
    assert got == pytest.approx(expected, abs=1e-6)


def test_calibration_error_is_computed_from_probabilities_even_when_the_logits_lie_in_0_1():
    # Small logits (an underfit or smoothed model) all lie in [0, 1]; torchmetrics would take them as probabilities.
    module = ImageClassifier(model=SPEC, optimizer={}, scheduler={}, data={"name": "digits", "seed": 0})
    generator = torch.Generator().manual_seed(1)
    logits = torch.rand(64, 10, generator=generator)
    labels = torch.randint(0, 10, (64,), generator=generator)
    module.forward = lambda images: logits
    module._evaluate("test", (torch.zeros(64, 1, 8, 8), labels))
    got = {k.removeprefix("test/"): v.item() for k, v in module.metrics["on_test"].compute().items()}
    expected = by_hand(logits.softmax(-1), labels)
    assert got["ece"] == pytest.approx(expected["ece"], abs=1e-6) and expected["ece"] < 0.5
    assert got["acc"] == pytest.approx(expected["acc"]) and got["acc_top5"] == pytest.approx(expected["acc_top5"])
    assert module.losses["on_test"].compute().item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)


@pytest.mark.parametrize("rule,factor", [("linear", 64 * 8 * 2 / 128), ("sqrt", math.sqrt(64 * 8 * 2 / 128)), ("none", 1.0)])
def test_lr_scaling_uses_the_trainers_real_world_size(rule, factor):
    # trainer.devices=auto or a device list counted as one device before: the lr was 8x too small on 8 GPUs.
    optimizer = {"_target_": "torch.optim.SGD", "lr": 0.1, "lr_scaling": rule, "base_batch_size": 128}
    module = ImageClassifier(model=SPEC, optimizer=optimizer, scheduler={"name": "none"},
                             data={"name": "digits", "seed": 0, "batch_size": 64})
    module.trainer = SimpleNamespace(precision="32-true", gradient_clip_val=None, estimated_stepping_batches=10,
                                     max_epochs=1, world_size=8, accumulate_grad_batches=2)
    assert module.configure_optimizers().param_groups[0]["lr"] == pytest.approx(0.1 * factor)


def test_robustness_and_per_class_predictions_are_the_test_metrics_predictions_with_flip_averaging():
    torch.manual_seed(0)
    module = ImageClassifier(model={**SPEC, "num_classes": 3}, optimizer={}, scheduler={},
                             data={"name": "t", "seed": 0}, tta=True).eval()
    module.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))  # left and right weigh differently
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    normalize = lambda x: (x.permute(0, 3, 1, 2).float() - 127.5) / 40  # noqa: E731
    batch = normalize(torch.from_numpy(images))
    with torch.no_grad():
        mean_probs = (module(batch).softmax(-1) + module(batch.flip(-1)).softmax(-1)) / 2
    flipped = predict(module, images, normalize, flip_average=True)
    assert (flipped == mean_probs.argmax(1).numpy()).all()
    assert (flipped != predict(module, images, normalize)).any()  # the flips decide some predictions here
