"""Data-distribution strategies on the training split: stratified subsets, long tails, label noise, class balance.

Pure NumPy on label arrays, seeded, so each is testable on its own and reproducible per run seed. They run after the
validation split is carved out, so validation and test sets keep their original images and labels.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from genlab.errors import ConfigError, warn_in_one_line

BALANCE_MODES = ("none", "sampler", "loss", "effective_number")
# uniform: a corrupted label is redrawn from all classes, so it may land on the true one (Zhang et al. 2017's random
# labels: at rate 1 the labels carry no information and test accuracy falls to chance). other_class: it is redrawn from
# the other classes only, so every corrupted label is wrong (at rate 1 the net learns to avoid the true class and
# test accuracy falls below chance).
LABEL_NOISE_KINDS = ("uniform", "other_class")
# Independent random streams per strategy, so turning one on does not change what another draws.
_SUBSET, _TAIL, _NOISE = 1, 2, 3


def holdout_count(size: int | float, total: int, key: str) -> int:
    """Turn a count (int >= 1) or a fraction (0 < f < 1) into a number of samples held out of `total`."""
    count = int(round(size * total)) if isinstance(size, float) and size < 1 else int(size)
    if not 1 <= count < total:
        raise ConfigError(key, size, f"a count in [1, {total - 1}] or a fraction in (0, 1) of the {total} training images")
    return count


def warn_if_the_val_split_takes_most(size: int | float, count: int, total: int) -> None:
    """A validation split of over half the training set is a data set smaller than data.val_size was meant for (the
    default 5000 is CIFAR's): a one-line warning, since the run still trains, on what is left."""
    if count > total / 2:
        warn_in_one_line(f"data.val_size={size} holds out {count:,} of the {total:,} training images, leaving "
                         f"{total - count:,} to train on; give a smaller data.val_size (a count, or a fraction like 0.1)")


def stratified_holdout(labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): `count` samples held out with class proportions kept where the counts allow it."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    classes, per_class = np.unique(labels, return_counts=True)
    stratify = labels if per_class.min() >= 2 and len(classes) <= count <= len(labels) - len(classes) else None
    kept, held = train_test_split(indices, test_size=count, stratify=stratify, random_state=seed)
    return np.sort(kept), np.sort(held)


def stratified_fold(labels: np.ndarray, folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out) of stratified K-fold: held out is fold `fold` of `folds`, kept the other folds.

    Each class's samples, in an order drawn from `seed`, are dealt to the folds in turn, each class continuing where
    the one before stopped: every class's count per fold, and the folds' sizes, differ by at most one, as with
    scikit-learn's StratifiedKFold; the folds of one seed are disjoint and cover the whole set.
    """
    classes, per_class = np.unique(labels, return_counts=True)
    if folds > per_class.min():
        raise ConfigError("data.folds", folds, f"at most {per_class.min()}, the training images of the smallest "
                                               f"class, {classes[per_class.argmin()]}, so that every fold holds every "
                                               "class")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in classes])
    assigned = np.empty(len(labels), dtype=np.int64)
    assigned[order] = np.arange(len(labels)) % folds
    return np.flatnonzero(assigned != fold), np.flatnonzero(assigned == fold)


def stratified_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of `count` samples whose class proportions match `labels` (within rounding)."""
    if count >= len(labels):
        return np.arange(len(labels))
    return stratified_holdout(labels, count, seed)[1]


def long_tail_counts(available: np.ndarray, ratio: float) -> np.ndarray:
    """Per-class counts n_c = n_max * ratio^(-c / (C - 1)): class 0 keeps the most, the last class n_max / ratio.

    n_max is the smallest available class count, so every class can supply its share.
    """
    num_classes = len(available)
    n_max = int(available.min())
    exponents = np.arange(num_classes) / max(1, num_classes - 1)
    counts = np.floor(n_max * ratio ** -exponents + 0.5).astype(np.int64)
    if counts.min() < 1:
        raise ConfigError("data.imbalance", ratio, f"at most {n_max}: the rarest class would keep no images "
                                                   f"(the smallest class has {n_max} training images)")
    return counts


def long_tail_subset(labels: np.ndarray, num_classes: int, ratio: float, seed: int) -> np.ndarray:
    """Sorted indices of an exponentially long-tailed subset with max/min class-count ratio `ratio` (within rounding)."""
    available = np.bincount(labels, minlength=num_classes)
    present = np.flatnonzero(available)
    targets = long_tail_counts(available[present], ratio)
    rng = np.random.default_rng([seed, _TAIL])
    kept = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c, n in zip(present, targets)]
    return np.sort(np.concatenate(kept))


def corrupt_labels(labels: np.ndarray, rate: float, num_classes: int, seed: int,
                   kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(new labels, redrawn indices): exactly round(rate * N) labels redrawn, uniformly from all classes (`uniform`) or
    from the classes other than the true one (`other_class`)."""
    if kind not in LABEL_NOISE_KINDS:
        raise ConfigError("data.label_noise_kind", kind, f"one of {list(LABEL_NOISE_KINDS)}")
    count = int(np.floor(rate * len(labels) + 0.5))
    rng = np.random.default_rng([seed, _NOISE])
    redrawn = np.sort(rng.choice(len(labels), size=count, replace=False))
    noisy = labels.copy()
    if kind == "uniform":
        noisy[redrawn] = rng.integers(0, num_classes, size=count)
    else:
        noisy[redrawn] = (labels[redrawn] + rng.integers(1, num_classes, size=count)) % num_classes
    return noisy, redrawn


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """N / (C * n_c) per class (scikit-learn's "balanced"): rare classes weigh more; absent classes weigh 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def effective_number_weights(labels: np.ndarray, num_classes: int, beta: float) -> np.ndarray:
    """Cui et al. 2019's class-balanced weights: w_c proportional to (1 - beta) / (1 - beta^n_c), the inverse of the
    class's effective number of samples, normalised to sum to the number of classes present (theirs: to C); absent
    classes weigh 0. beta -> 1 tends to inverse frequency, beta = 0 to no weighting."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = (1 - beta) / (1 - beta ** counts[present])
    return weights * present.sum() / weights.sum()


def class_priors(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """pi_c = n_c / N, the training set's class frequencies; an absent class counts as one image, so its log-prior is
    finite (log 0 would make the logit-adjusted loss of a mixed target NaN)."""
    counts = np.maximum(np.bincount(labels, minlength=num_classes), 1).astype(np.float64)
    return counts / counts.sum()


def balanced_sample_weights(labels: np.ndarray) -> np.ndarray:
    """1 / n_(label) per sample: a sampler drawing by these weights sees every class equally often."""
    return 1.0 / np.bincount(labels)[labels]


@dataclass(frozen=True)
class TrainingSetPlan:
    """What happens to the training split, in this order: subset, long tail, label noise (`balance` acts at load time)."""

    train_fraction: float = 1.0
    train_size: int | None = None
    imbalance: float = 1.0
    label_noise: float = 0.0
    balance: str = "none"
    label_noise_kind: str = "uniform"
    balance_beta: float = 0.9999

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> "TrainingSetPlan":
        """The plan a checkpoint or results.json recorded; one saved before `label_noise_kind` existed drew its noisy
        labels from the other classes, so that is what it gets back."""
        fields = {key: saved[key] for key in cls.__dataclass_fields__ if key in saved}
        return cls(**{"label_noise_kind": "other_class", **fields})

    def apply(self, labels: np.ndarray, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(kept indices into `labels`, their training labels, a record for results.json)."""
        kept = np.arange(len(labels))
        size = self.train_size if self.train_size is not None else int(np.floor(self.train_fraction * len(labels) + 0.5))
        if size > len(labels):
            raise ConfigError("data.train_size", self.train_size, f"at most {len(labels)}, the training images left after the validation split")
        present = np.unique(labels)
        if size < len(present):  # fewer images than classes: some classes would have none, whatever the draw
            key, value = ("data.train_size", self.train_size) if self.train_size is not None else ("data.train_fraction", self.train_fraction)
            raise ConfigError(key, value, f"at least {len(present)} training images, one per class ({size} would leave "
                              f"{len(present) - size} of the {len(present)} classes without any)")
        if size < len(labels):
            kept = stratified_subset(labels, max(size, 1), seed + _SUBSET)
        if self.imbalance > 1:
            kept = kept[long_tail_subset(labels[kept], num_classes, self.imbalance, seed)]
        train_labels = labels[kept]
        redrawn = np.empty(0, dtype=np.int64)
        if self.label_noise > 0:
            train_labels, redrawn = corrupt_labels(train_labels, self.label_noise, num_classes, seed, self.label_noise_kind)
        counts = np.bincount(train_labels, minlength=num_classes)
        clean_counts = np.bincount(labels[kept], minlength=num_classes)
        emptied = [int(c) for c in present if clean_counts[c] == 0]
        if emptied:
            warnings.warn(f"data: classes {emptied} have no training images in the {len(kept)} kept (data.train_size, "
                          "train_fraction or imbalance); the model never sees them in training")
        record = {
            **asdict(self),
            "train_images": len(kept),
            "class_counts": clean_counts.tolist(),
            "imbalance_achieved": float(clean_counts.max() / max(1, clean_counts[clean_counts > 0].min())),
            "noisy_labels": len(redrawn),  # labels redrawn at random (with `uniform`, some land on the true class)
            "noisy_label_rate": len(redrawn) / max(1, len(kept)),
            "wrong_labels": int(np.count_nonzero(train_labels != labels[kept])),  # of them, those now naming another class
            "class_counts_as_trained": counts.tolist(),
        }
        return kept, train_labels, record
