"""Data-distribution strategies: stratified subsets, long tails, label noise and class balance, seeded and exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.data.datamodule import ImageDataModule
from genlab.data.strategies import (
    TrainingSetPlan,
    balanced_class_weights,
    corrupt_labels,
    long_tail_subset,
    stratified_subset,
)
from genlab.errors import ConfigError

# 10 classes with unequal counts: 100, 120, ..., 280
LABELS = np.repeat(np.arange(10), np.arange(100, 300, 20))


def test_stratified_subset_keeps_class_proportions_and_is_deterministic_per_seed():
    a = stratified_subset(LABELS, 380, seed=1)
    assert len(a) == 380 and len(np.unique(a)) == 380
    expected = np.bincount(LABELS) * 380 / len(LABELS)
    assert np.all(np.abs(np.bincount(LABELS[a]) - expected) <= 1)
    np.testing.assert_array_equal(a, stratified_subset(LABELS, 380, seed=1))
    assert not np.array_equal(a, stratified_subset(LABELS, 380, seed=2))


@pytest.mark.parametrize("ratio", [2.0, 10.0, 50.0])
def test_long_tail_reaches_the_ratio_within_rounding(ratio):
    kept = long_tail_subset(LABELS, 10, ratio, seed=0)
    counts = np.bincount(LABELS[kept], minlength=10)
    assert counts[0] == 100  # the smallest class sets n_max, so every class can supply its share
    assert np.all(np.diff(counts) <= 0)  # exponential profile: class 0 the head, class 9 the tail
    assert counts[-1] == round(100 / ratio)
    assert abs(counts[0] / counts[-1] - ratio) <= ratio / counts[-1]  # the ratio, up to rounding the tail count
    np.testing.assert_array_equal(kept, long_tail_subset(LABELS, 10, ratio, seed=0))


def test_long_tail_too_steep_for_the_data_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.imbalance: got 500.0, expected at most 100"):
        long_tail_subset(LABELS, 10, 500.0, seed=0)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.37, 1.0])
def test_other_class_label_noise_changes_exactly_that_fraction_to_another_class(rate):
    noisy, changed = corrupt_labels(LABELS, rate, 10, seed=3, kind="other_class")
    assert len(changed) == round(rate * len(LABELS))
    assert np.count_nonzero(noisy != LABELS) == len(changed)  # every chosen label really changed ...
    assert np.all(noisy[changed] != LABELS[changed]) and noisy.min() >= 0 and noisy.max() <= 9  # ... to another class
    np.testing.assert_array_equal(noisy, corrupt_labels(LABELS, rate, 10, seed=3, kind="other_class")[0])
    # the same draws as before the uniform kind existed, so runs recorded then are reproduced
    rng = np.random.default_rng([3, 3])
    chosen = np.sort(rng.choice(len(LABELS), size=len(changed), replace=False))
    expected = LABELS.copy()
    expected[chosen] = (LABELS[chosen] + rng.integers(1, 10, size=len(chosen))) % 10
    np.testing.assert_array_equal(noisy, expected)


def test_other_class_label_noise_draws_the_other_classes_uniformly():
    labels = np.zeros(20000, dtype=np.int64)
    noisy, _ = corrupt_labels(labels, 1.0, 5, seed=0, kind="other_class")
    counts = np.bincount(noisy, minlength=5)
    assert counts[0] == 0 and np.all(np.abs(counts[1:] - 5000) < 300)


def test_uniform_label_noise_redraws_from_every_class_as_zhang_et_al():
    """Random labels: a redrawn label is independent of the image, so it is the true class 1 time in C."""
    labels = np.repeat(np.arange(5), 4000)
    noisy, redrawn = corrupt_labels(labels, 1.0, 5, seed=0, kind="uniform")
    assert len(redrawn) == len(labels)
    for c in range(5):  # each class's images get every label about equally often, their own included
        counts = np.bincount(noisy[labels == c], minlength=5)
        assert np.all(np.abs(counts - 800) < 4 * np.sqrt(800 * 0.8))  # binomial(4000, 1/5): 4 standard deviations
    half, chosen = corrupt_labels(labels, 0.5, 5, seed=0, kind="uniform")
    untouched = np.setdiff1d(np.arange(len(labels)), chosen)
    assert len(chosen) == 10000 and np.array_equal(half[untouched], labels[untouched])
    assert abs(np.mean(half[chosen] == labels[chosen]) - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 10000)


def test_an_unknown_noise_kind_is_refused():
    with pytest.raises(ConfigError, match=r"data.label_noise_kind: got 'flip', expected one of \['uniform', 'other_class'\]"):
        corrupt_labels(LABELS, 0.5, 10, seed=0, kind="flip")


def test_the_plan_records_the_noise_kind_and_how_many_labels_are_wrong():
    kept, labels, record = TrainingSetPlan(label_noise=0.5).apply(LABELS, 10, seed=0)
    assert record["label_noise_kind"] == "uniform" and record["noisy_labels"] == round(0.5 * len(kept))
    assert record["wrong_labels"] == np.count_nonzero(labels != LABELS[kept]) < record["noisy_labels"]
    _, labels, record = TrainingSetPlan(label_noise=0.5, label_noise_kind="other_class").apply(LABELS, 10, seed=0)
    assert record["label_noise_kind"] == "other_class" and record["wrong_labels"] == record["noisy_labels"]


def test_a_plan_saved_before_the_noise_kind_existed_comes_back_as_other_class():
    old = {"train_fraction": 1.0, "train_size": None, "imbalance": 1.0, "label_noise": 0.2, "balance": "none", "seed": 1}
    assert TrainingSetPlan.from_saved(old) == TrainingSetPlan(label_noise=0.2, label_noise_kind="other_class")
    assert TrainingSetPlan.from_saved({**old, "label_noise_kind": "uniform"}).label_noise_kind == "uniform"


def test_balanced_class_weights_undo_the_imbalance():
    weights = balanced_class_weights(LABELS, 11)  # class 10 absent: weight 0
    assert weights[10] == 0
    np.testing.assert_allclose(weights[:10] * np.bincount(LABELS), len(LABELS) / 10)


def test_plan_applies_subset_then_tail_then_noise_and_records_it():
    kept, labels, record = TrainingSetPlan(train_fraction=0.5, imbalance=4.0, label_noise=0.25,
                                           label_noise_kind="other_class").apply(LABELS, 10, seed=0)
    clean = np.bincount(LABELS[kept], minlength=10)
    assert clean[0] == 50 and clean[-1] == 13  # the tail of the stratified half: 50 / 4, rounded half up
    assert record["train_images"] == len(kept) == len(labels) and record["class_counts"] == clean.tolist()
    assert record["noisy_labels"] == round(0.25 * len(kept)) == np.count_nonzero(labels != LABELS[kept])
    assert record["imbalance_achieved"] == pytest.approx(50 / 13)
    with pytest.raises(ConfigError, match=r"data.train_size: got 5000, expected at most 1900"):
        TrainingSetPlan(train_size=5000).apply(LABELS, 10, seed=0)


def synthetic_module(plan: TrainingSetPlan, **kwargs) -> ImageDataModule:
    dm = ImageDataModule("synthetic", ".", batch_size=50, val_size=100, seed=5, plan=plan,
                         options={"image_size": 8, "num_train": 1000, "num_test": 100}, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_val_and_test_are_carved_first_and_never_touched():
    plain = synthetic_module(TrainingSetPlan())
    noisy = synthetic_module(TrainingSetPlan(train_fraction=0.5, imbalance=3.0, label_noise=0.5))
    for split in ("val_set", "test_set"):
        np.testing.assert_array_equal(getattr(plain, split).images, getattr(noisy, split).images)
        np.testing.assert_array_equal(getattr(plain, split).labels, getattr(noisy, split).labels)
    assert len(noisy.train_set) < len(plain.train_set) // 2
    assert noisy.plan_record["noisy_labels"] == round(0.5 * len(noisy.train_set))
    # train_eval measures the fit of the training set as trained: its labels are the noisy ones
    train_rows = {img.tobytes(): lab for img, lab in zip(noisy.train_set.images, noisy.train_set.labels)}
    assert all(train_rows[img.tobytes()] == lab for img, lab in zip(noisy.train_eval_set.images, noisy.train_eval_set.labels))


def test_balance_sampler_draws_classes_evenly_and_loss_gives_class_weights():
    dm = synthetic_module(TrainingSetPlan(imbalance=10.0, balance="sampler"))
    torch.manual_seed(0)
    drawn = torch.cat([labels for _, labels in dm.train_dataloader()]).numpy()
    counts = np.bincount(drawn, minlength=10)
    assert dm.plan_record["imbalance_achieved"] == pytest.approx(10.0, rel=0.1)
    assert counts.max() / counts.min() < 2.5  # against 10x in the data
    assert dm.class_weights() is None
    weighted = synthetic_module(TrainingSetPlan(imbalance=10.0, balance="loss"))
    weights = np.array(weighted.class_weights())
    assert weights[-1] / weights[0] == pytest.approx(weighted.plan_record["imbalance_achieved"])


def test_a_val_split_of_most_of_the_training_set_is_a_one_line_warning_naming_data_val_size(capsys):
    """CIFAR's default val_size=5000 on a small image folder once left 3,000 of 8,000 images to train on, silently."""
    for val_size, warned in ((500, False), (501, True)):
        dm = ImageDataModule("synthetic", ".", batch_size=50, val_size=val_size, seed=5, plan=TrainingSetPlan(),
                             options={"image_size": 8, "num_train": 1000, "num_test": 100})
        dm.prepare_data()
        dm.setup("fit")
        err = capsys.readouterr().err
        assert len(dm.train_set) == 1000 - val_size
        if warned:
            assert err == (f"warning: data.val_size={val_size} holds out {val_size} of the 1,000 training images, "
                           f"leaving {1000 - val_size} to train on; give a smaller data.val_size (a count, or a "
                           "fraction like 0.1)\n")
        else:
            assert err == ""
