"""mixup and cutmix: soft targets that sum to 1, the loss on them by hand, accuracy on the hard labels."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genlab.training.mixing import BatchMixing, cutmix, cutmix_box, mixup


def batch(n=4, classes=3, size=6):
    torch.manual_seed(0)
    return torch.randn(n, 2, size, size), torch.tensor([0, 1, 2, 1][:n]), classes


def test_mixup_blends_images_and_targets_by_lambda():
    images, labels, classes = batch()
    targets = F.one_hot(labels, classes).float()
    partner = torch.tensor([1, 0, 3, 2])
    mixed, soft = mixup(images, targets, 0.7, partner)
    torch.testing.assert_close(mixed[0], 0.7 * images[0] + 0.3 * images[1])
    torch.testing.assert_close(soft[2], torch.tensor([0.0, 0.3, 0.7]))  # label 2 mixed with label 1
    torch.testing.assert_close(soft.sum(1), torch.ones(4))


def test_cutmix_pastes_a_box_and_weights_targets_by_its_area():
    images, labels, classes = batch(size=10)
    targets = F.one_hot(labels, classes).float()
    partner = torch.tensor([1, 0, 3, 2])
    mixed, soft = cutmix(images, targets, (2, 6, 3, 8), partner)  # a 4 x 5 box: 20 of 100 pixels pasted
    torch.testing.assert_close(mixed[0, :, 2:6, 3:8], images[1, :, 2:6, 3:8])
    torch.testing.assert_close(mixed[0, :, :2], images[0, :, :2])
    torch.testing.assert_close(soft[0], torch.tensor([0.8, 0.2, 0.0]))
    torch.testing.assert_close(soft.sum(1), torch.ones(4))


def test_cutmix_box_area_follows_lambda():
    generator = torch.Generator().manual_seed(0)
    top, bottom, left, right = cutmix_box(100, 100, 0.75, generator)
    assert bottom - top <= 50 and right - left <= 50  # side = sqrt(1 - lambda) of the image, clipped at the edges
    assert 0 <= top < bottom <= 100 and 0 <= left < right <= 100


@pytest.mark.parametrize("mixing", [BatchMixing(mixup_alpha=0.4), BatchMixing(cutmix_alpha=1.0),
                                    BatchMixing(mixup_alpha=0.2, cutmix_alpha=1.0, switch_prob=0.5)])
def test_batch_mixing_targets_are_distributions(mixing):
    images, labels, classes = batch()
    for seed in range(10):
        torch.manual_seed(seed)
        mixed, targets = mixing(images, labels, classes)
        assert mixed.shape == images.shape and targets.shape == (4, classes)
        torch.testing.assert_close(targets.sum(1), torch.ones(4))
        assert targets.min() >= 0


def test_mix_prob_zero_or_no_alpha_leaves_the_batch_alone():
    images, labels, classes = batch()
    for mixing in (BatchMixing(mixup_alpha=1.0, mix_prob=0.0), BatchMixing()):
        assert not mixing.enabled
        mixed, targets = mixing(images, labels, classes)
        assert mixed is images and torch.equal(targets, F.one_hot(labels, classes).float())


def test_loss_on_mixed_targets_matches_the_hand_computed_value():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    labels = torch.tensor([0, 2])
    lam = 0.6
    _, soft = mixup(torch.zeros(2, 1, 1, 1), F.one_hot(labels, 3).float(), lam, torch.tensor([1, 0]))

    def log_softmax(row):
        total = math.log(sum(math.exp(v) for v in row))
        return [v - total for v in row]

    row0, row1 = log_softmax([2.0, 0.0, -1.0]), log_softmax([0.5, 0.5, 0.0])
    # sample 0: 0.6 x class 0 + 0.4 x class 2; sample 1: 0.6 x class 2 + 0.4 x class 0
    by_hand = -((0.6 * row0[0] + 0.4 * row0[2]) + (0.6 * row1[2] + 0.4 * row1[0])) / 2
    assert F.cross_entropy(logits, soft).item() == pytest.approx(by_hand, abs=1e-6)
    # the same as mixing the two hard-label losses
    mixed_hard = lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(logits, labels[[1, 0]])
    assert F.cross_entropy(logits, soft).item() == pytest.approx(mixed_hard.item(), abs=1e-6)


def test_module_trains_on_mixed_targets_and_scores_hard_labels():
    from genlab.training.module import ImageClassifier

    module = ImageClassifier(
        model={"name": "simple_cnn", "in_channels": 2, "num_classes": 3, "image_size": 6},
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.1}, scheduler={"name": "none"}, data={"name": "t", "seed": 0},
        mixing={"mixup_alpha": 1.0, "mix_prob": 1.0})
    module.log = module.log_dict = lambda *args, **kwargs: None  # outside a Trainer
    images, labels, _ = batch()
    loss = module.training_step((images, labels), 0)
    assert torch.isfinite(loss) and loss.requires_grad
    images_seen, correct = module.train_totals[2].item(), module.train_totals[1].item()
    assert images_seen == len(labels) and correct == (module(images).argmax(-1) == labels).sum().item()  # hard labels
