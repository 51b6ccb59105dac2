"""Long-tail corrections: effective-number class weights (data.balance=effective_number, Cui et al. 2019) and the
logit-adjusted loss (loss.logit_adjustment, Menon et al. 2021), against their formulas on a fixed long-tailed count
vector, and as the pipeline builds them from a run's training set."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.config import validate
from genlab.data.strategies import balanced_class_weights, class_priors, effective_number_weights
from genlab.errors import ConfigError
from genlab.training.losses import Objective

COUNTS = [500, 158, 50, 16, 5, 5, 0]  # a 100:1 exponential tail, a tie at the end and a class with no images


def labels_of(counts) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_effective_number_weights_are_cui_et_als_formula(beta):
    weights = effective_number_weights(labels_of(COUNTS), len(COUNTS), beta)
    by_hand = [(1 - beta) / (1 - beta**n) for n in COUNTS[:-1]]
    by_hand = [w * 6 / sum(by_hand) for w in by_hand]  # summing to the 6 classes present
    np.testing.assert_allclose(weights, [*by_hand, 0.0], rtol=1e-12)
    assert weights[4] == weights[5]  # equal counts, equal weights


def test_beta_zero_weighs_nothing_and_beta_near_one_is_inverse_frequency():
    labels = labels_of(COUNTS)
    np.testing.assert_allclose(effective_number_weights(labels, 7, 0.0), [1, 1, 1, 1, 1, 1, 0])
    near_one = effective_number_weights(labels, 7, 1 - 1e-9)
    inverse = balanced_class_weights(labels, 7)
    np.testing.assert_allclose(near_one / near_one[0], inverse / inverse[0], rtol=1e-5)


def test_class_priors_are_frequencies_with_an_absent_class_counted_once():
    np.testing.assert_allclose(class_priors(labels_of(COUNTS), 7), np.array([*COUNTS[:-1], 1]) / 735)


@pytest.mark.parametrize("tau", [0.0, 1.0, 2.0])
def test_logit_adjusted_loss_is_cross_entropy_of_logits_plus_tau_log_prior(tau):
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(6, 7)), np.array([0, 1, 4, 5, 2, 0])
    priors = class_priors(labels_of(COUNTS), 7)
    adjusted = logits + tau * np.log(priors)
    log_softmax = adjusted - np.log(np.exp(adjusted).sum(1, keepdims=True))
    by_hand = -log_softmax[np.arange(6), labels].mean()
    objective = Objective(logit_adjustment=tau, class_priors=torch.tensor(priors))
    loss = objective(torch.tensor(logits), torch.tensor(labels))
    assert float(loss) == pytest.approx(by_hand, rel=1e-10)
    # a mixed (soft) target stays finite with the absent class's prior
    soft = torch.full((6, 7), 1 / 7, dtype=torch.float64)
    assert torch.isfinite(objective(torch.tensor(logits), soft))


def test_the_pipeline_builds_both_from_the_runs_training_set(make_cfg):
    from genlab.pipeline import build_datamodule, build_module

    cfg = make_cfg("data.imbalance=5", "data.balance=effective_number", "data.balance_beta=0.99",
                   "loss.logit_adjustment=1.0")
    validate(cfg, cuda_available=False)
    datamodule = build_datamodule(cfg.data, cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    counts = np.array(datamodule.plan_record["class_counts_as_trained"])
    module = build_module(cfg, datamodule)
    weights = (1 - 0.99) / (1 - 0.99**counts)
    np.testing.assert_allclose(module.objective.class_weights.numpy(), weights * 10 / weights.sum(), rtol=1e-6)
    np.testing.assert_allclose(module.objective.logit_offsets.numpy(), np.log(counts / counts.sum()), rtol=1e-6)
    assert datamodule.plan_record["balance_beta"] == 0.99
    assert build_module(make_cfg("data.imbalance=5"), datamodule).objective.logit_offsets is None  # tau 0: off


@pytest.mark.parametrize("override,message", [
    ("data.balance_beta=1.0", "data.balance_beta: got 1.0, expected a number in [0, 1)"),
    ("loss.logit_adjustment=-1", "loss.logit_adjustment: got -1, expected a number >= 0"),
    ("data.balance=cui", "data.balance: got 'cui', expected one of ['none', 'sampler', 'loss', 'effective_number']"),
])
def test_bad_long_tail_settings_are_refused_in_one_line(make_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(override), cuda_available=False)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
