"""Generalization measures, each against an independent computation: numpy's SVD and eigensolver, paths enumerated by
hand, margins by hand, bisection against a closed form; batch-norm folding against the unfolded net; and a real run
whose saved initial weights are the ones training started from."""
from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genlab.analysis.folding import fold_batch_norm, path_norm
from genlab.analysis.measures import (Subset, cheap_measures, correct_class_margins, expected_error_rise,
                                      hessian_top_eigenvalue, largest_passing, output_margin, pac_bayes_sigma,
                                      spectral_norm, steps_to_loss)
from genlab.config import validate
from genlab.errors import ConfigError
from genlab.models import build_model


@pytest.mark.parametrize("shape,kind", [((7, 5), "random"), ((3, 12), "random"), ((6, 6), "orthogonal"),
                                        ((4, 9), "rank1"), ((3, 4), "zero")])
def test_spectral_norm_is_numpys_largest_singular_value(shape, kind):
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=shape)
    if kind == "orthogonal":  # every singular value ties at 1: power iteration must still give 1
        matrix = np.linalg.qr(matrix)[0]
    elif kind == "rank1":
        matrix = np.outer(rng.normal(size=shape[0]), rng.normal(size=shape[1]))
    elif kind == "zero":
        matrix = np.zeros(shape)
    expected = np.linalg.svd(matrix, compute_uv=False).max()
    assert spectral_norm(torch.from_numpy(matrix)) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_the_hessian_of_least_squares_is_xtx_over_n():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 6)), rng.normal(size=50)
    x[:, 0] *= 3  # a clear top eigenvalue
    w = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def parts():  # 0.5 * mean squared error, in uneven batches
        for start, stop in ((0, 7), (7, 30), (30, 50)):
            yield 0.5 * ((xt[start:stop] @ w - yt[start:stop]) ** 2).sum() / 50

    expected = np.linalg.eigvalsh(x.T @ x / 50).max()
    assert hessian_top_eigenvalue([w], parts, iterations=500, tolerance=1e-12, seed=0) == pytest.approx(expected, rel=1e-6)


def test_path_norm_of_a_two_layer_net_sums_its_paths():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    w1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
    w2, b2 = net[2].weight.detach().numpy(), net[2].bias.detach().numpy()
    paths = sum(w2[k, j] ** 2 * w1[j, i] ** 2 for k, j, i in itertools.product(range(2), range(4), range(3)))
    paths += sum(w2[k, j] ** 2 * b1[j] ** 2 for k, j in itertools.product(range(2), range(4)))  # from hidden biases
    paths += sum(b2 ** 2)
    assert path_norm(net, (3,)) == pytest.approx(paths, rel=1e-12)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(3, 3, bias=False), nn.ReLU(), nn.Linear(3, 3, bias=False)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) + x


def test_path_norm_counts_the_shortcuts_paths():
    torch.manual_seed(0)
    net = Residual().double()
    w1, w2 = net.fc1.weight.detach().numpy(), net.fc2.weight.detach().numpy()
    paths = sum(w2[k, j] ** 2 * w1[j, i] ** 2 for k, j, i in itertools.product(range(3), repeat=3))
    assert path_norm(net, (3,)) == pytest.approx(paths + 3, rel=1e-12)  # + one identity path per unit


def randomise_batch_norm(net: nn.Module) -> None:
    """Running statistics and affine parameters away from their initial values, so folding has something to do."""
    generator = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=generator))
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator))


@pytest.mark.parametrize("name,knobs", [("simple_cnn", {"norm": "batch"}), ("resnet", {"depth": 20, "width": 4}),
                                        ("resnet", {"depth": 18, "width": 4}), ("preact_resnet", {"width": 4}),
                                        ("lenet5", {"norm": "batch"})])  # its padding layer cannot be traced inside
def test_batch_norm_folding_leaves_the_outputs_unchanged(name, knobs):
    net = build_model(name, in_channels=3, num_classes=10, image_size=8, **knobs).double()
    randomise_batch_norm(net)
    folded = fold_batch_norm(net)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(folded(x), net.eval()(x), rtol=1e-10, atol=1e-10)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the original is left as it was


def test_margins_by_hand_with_a_tie():
    logits = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 2.0], [0.0, 5.0, 1.0], [4.0, 4.0, -1.0]])
    labels = torch.tensor([0, 1, 1, 0])
    # 3-1, a tie of 2 with 2, 5-1, a tie of 4 with 4
    assert correct_class_margins(logits, labels).tolist() == [2.0, 0.0, 4.0, 0.0]
    assert output_margin(logits, labels) == pytest.approx(np.percentile([2.0, 0.0, 4.0, 0.0], 10))
    assert correct_class_margins(torch.tensor([[0.0, 1.0]]), torch.tensor([0])).tolist() == [-1.0]


def test_the_margin_normalised_forms_are_left_out_when_the_margin_is_not_positive():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        net[1].weight.fill_(1.0)
        net[1].bias.zero_()  # both classes' logits are equal: every margin is 0
    subset = Subset(torch.randn(10, 1, 2, 2), torch.zeros(10, dtype=torch.long))
    measures = cheap_measures(net, None, subset, (1, 2, 2), seed=0)
    assert measures["margin"] == 0.0 and "inverse_margin" not in measures and "dist_init" not in measures
    assert measures["log_prod_spec"] == pytest.approx(math.log(8.0))  # [[1,1,1,1],[1,1,1,1]] has sigma^2 = 8
    assert not any(name.endswith("_over_margin") for name in measures)


@pytest.mark.parametrize("bound", [0.01, 2.0, 1e-7])
def test_bisection_finds_the_largest_passing_value_within_its_tolerance(bound):
    found = largest_passing(lambda x: x * x <= bound, tolerance=1e-3)
    assert found * found <= bound and found == pytest.approx(math.sqrt(bound), rel=1e-3)


def test_bisection_returns_zero_when_nothing_passes():
    assert largest_passing(lambda x: False, tolerance=0.01) == 0.0


def small_classifier() -> tuple[nn.Module, Subset]:
    torch.manual_seed(0)
    x = torch.randn(200, 2)
    labels = (x[:, 0] > 0).long()
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[-4.0, 0.0], [4.0, 0.0]]))
        net.bias.zero_()
    return net, Subset(x, labels)


def test_pac_bayes_sigma_keeps_the_error_rise_within_the_bound_and_grows_with_it():
    net, subset = small_classifier()
    before = [p.detach().clone() for p in net.parameters()]
    sigmas = []
    for bound in (0.05, 0.1, 0.2):
        sigma = pac_bayes_sigma(net, subset, bound, samples=8, tolerance=0.01, seed=3)
        assert expected_error_rise(net, subset, sigma, 8, 3, magnitude_aware=False) <= bound
        assert expected_error_rise(net, subset, sigma * 1.02, 8, 3, magnitude_aware=False) > bound * 0.8
        sigmas.append(sigma)
    assert sigmas == sorted(sigmas) and sigmas[0] > 0
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))  # the weights are restored


def test_steps_to_cross_entropy_from_the_log(tmp_path):
    log = tmp_path / "metrics.csv"
    with log.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["epoch", "step", "train/loss_step", "val/acc"], [0, 9, 0.9, ""], [0, 19, "", 0.5],
                          [1, 29, 0.1, ""], [1, 39, 0.05, ""]])
    assert steps_to_loss(log) == 30  # step 29 logs the loss of the 30th optimizer step; 0.1 itself counts
    assert steps_to_loss(log, target=0.01) is None and steps_to_loss(tmp_path / "none.csv") is None


def test_an_unknown_measure_set_is_refused(make_cfg):
    with pytest.raises(ConfigError, match=r"analysis.measures.name: got 'some', expected one of \['none', 'cheap', 'all'\]"):
        validate(make_cfg("analysis.measures.name=some"), cuda_available=False)
    with pytest.raises(ConfigError, match=r"analysis.measures.flatness_bound: got 1.5, expected a number in \(0, 1\)"):
        validate(make_cfg("analysis/measures=all", "analysis.measures.flatness_bound=1.5"), cuda_available=False)


def test_a_run_measures_its_compared_weights_from_its_real_initialization(make_cfg):
    """With a learning rate too small to move any float32 weight (AdamW's step is about lr), training leaves the weights
    where they started: the saved initial weights are those iff the distance is 0. The weight norm is recomputed from
    the checkpoint the run tested."""
    from genlab.pipeline import run

    cfg = make_cfg("trainer.max_epochs=1", "optimizer.lr=1e-30", "optimizer.weight_decay=0", "analysis.robustness=false",
                   "optimizer.lr_scaling=linear", "optimizer.base_batch_size=128", "data.batch_size=64",
                   "scheduler=cosine", "scheduler.warmup_epochs=1", "analysis.landscape=true", "analysis/measures=cheap")
    metrics = run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    record = json.loads((run_dir / "results.json").read_text())
    assert metrics["measures/dist_init"] == 0.0
    state = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    init = torch.load(run_dir / "init_weights.pt", weights_only=True)
    params = [k for k, p in build_model(**state_hparams(run_dir)).named_parameters()]
    norm = np.sqrt(sum(np.sum(state[f"net.{k}"].double().numpy() ** 2) for k in params))
    assert metrics["measures/l2_norm"] == pytest.approx(norm, rel=1e-12)
    assert all(torch.equal(init[k], state[f"net.{k}"]) for k in params)
    assert record["measures"]["subset"] == {"split": "train_eval", "size": 144, "seed": cfg.seed}
    assert "measures/steps_to_ce_0.1" not in metrics  # an untrained net never gets there
    # the landscapes go through the compared weights: there, the loss is the test pass's train_eval loss; the init line
    # of weights that never moved is flat
    lines = record["measures"]["landscape"]
    at_zero = dict(zip(lines["random_direction"]["alpha"], lines["random_direction"]["loss"]))[0.0]
    assert at_zero == pytest.approx(metrics["train_eval/loss"], rel=1e-5)
    assert lines["init_line"]["loss"] == pytest.approx([at_zero] * len(lines["init_line"]["loss"]), rel=1e-6)
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert any(row.get("measures/path_norm") for row in rows)
    # what ran: lr halved by linear scaling (64 / 128), a one-epoch warm-up starting at lr / steps per epoch
    ran = record["optimization"]
    steps = math.ceil(1293 / 64)  # one epoch of digits' 1,293 training images
    assert ran["steps"] == steps and ran["global_batch_size"] == 64 and ran["weight_decay"] == 0
    assert ran["lr"] == pytest.approx(0.5e-30) and ran["lr_first_step"] == pytest.approx(0.5e-30 / steps)


def state_hparams(run_dir: Path) -> dict:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return checkpoint["hyper_parameters"]["model"]


def test_the_costly_set_on_a_small_classifier_matches_torchs_full_hessian():
    from genlab.analysis.measures import costly_measures

    net, subset = small_classifier()
    net.double()
    subset = Subset(subset.images.double(), subset.labels)
    settings = {"hessian_iterations": 1000, "hessian_tolerance": 1e-12, "flatness_bound": 0.1, "flatness_samples": 4,
                "flatness_tolerance": 0.01}
    measures = costly_measures(net, subset, settings, seed=0)
    weight, bias = net.weight.detach().clone(), net.bias.detach().clone()

    def loss(flat):  # the mean cross-entropy as a function of all 6 parameters, for torch's own full Hessian
        logits = subset.images @ flat[:4].reshape(2, 2).T + flat[4:]
        return torch.nn.functional.cross_entropy(logits, subset.labels)

    full = torch.autograd.functional.hessian(loss, torch.cat([weight.reshape(-1), bias]))
    eigenvalues = np.linalg.eigvalsh(full.numpy())
    assert measures["hessian_top_eig"] == pytest.approx(eigenvalues[np.abs(eigenvalues).argmax()], rel=1e-6)
    for name in ("pacbayes", "pacbayes_mag"):
        assert measures[f"{name}_flatness"] == pytest.approx(1 / measures[f"{name}_sigma"] ** 2)


def test_the_filter_normalised_direction_has_each_filters_norm_and_none_for_zero_filters():
    from genlab.analysis.landscape import filter_normalised_direction

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 2))
    with torch.no_grad():
        net[0].weight[1].zero_()  # a dead filter
    direction = filter_normalised_direction(net, seed=0)
    conv, conv_bias, fc, fc_bias = direction
    expected = net[0].weight.detach().reshape(3, -1).norm(dim=1).numpy()
    assert np.allclose(conv.reshape(3, -1).norm(dim=1).numpy(), expected) and not torch.isnan(conv).any()
    assert torch.count_nonzero(conv[1]) == 0 and torch.count_nonzero(conv_bias) == 0 and torch.count_nonzero(fc_bias) == 0
    assert np.allclose(fc.norm(dim=1).numpy(), net[2].weight.detach().norm(dim=1).numpy())


def test_the_init_line_ends_at_the_initial_and_the_compared_weights_losses():
    from sklearn.metrics import log_loss

    from genlab.analysis.landscape import INIT_LINE, landscapes

    net, subset = small_classifier()
    initial = nn.Linear(2, 2)
    with torch.no_grad():
        initial.weight.copy_(torch.tensor([[0.5, -0.2], [0.1, 0.3]]))
        initial.bias.copy_(torch.tensor([0.2, -0.1]))
    curves = landscapes(net, initial, subset, seed=0)

    def cross_entropy(weight: np.ndarray, bias: np.ndarray) -> float:  # numpy softmax, sklearn's log loss
        logits = subset.images.numpy() @ weight.T + bias
        probabilities = np.exp(logits - logits.max(1, keepdims=True))
        return log_loss(subset.labels.numpy(), probabilities / probabilities.sum(1, keepdims=True), labels=[0, 1])

    line = dict(zip(INIT_LINE, curves["init_line"]["loss"]))
    w0, b0 = initial.weight.detach().numpy(), initial.bias.detach().numpy()
    w1, b1 = net.weight.detach().numpy(), net.bias.detach().numpy()
    assert line[0.0] == pytest.approx(cross_entropy(w0, b0), rel=1e-5)
    assert line[1.0] == pytest.approx(cross_entropy(w1, b1), rel=1e-5)
    assert line[0.5] == pytest.approx(cross_entropy((w0 + w1) / 2, (b0 + b1) / 2), rel=1e-5)
    assert dict(zip(curves["random_direction"]["alpha"], curves["random_direction"]["loss"]))[0.0] == pytest.approx(line[1.0])
    assert torch.equal(net.weight, torch.from_numpy(w1))  # restored


def test_the_study_presets_vary_the_four_keys_and_measure_the_last_weights(make_cfg):
    import yaml

    for name in ("generalization_measures", "generalization_measures_smoke"):
        cfg = make_cfg(f"experiment={name}", fast=False)
        validate(cfg, cuda_available=False)
        assert cfg.analysis.compared_weights == "last" and cfg.analysis.measures.name == "cheap"
        assert cfg.data.name == "digits" and cfg.data.train_size == 400
    folder = Path(__file__).resolve().parents[2] / "conf" / "experiment"
    full, smoke = (yaml.safe_load((folder / f"{n}.yaml").read_text())["hydra"]["sweeper"]["params"]
                   for n in ("generalization_measures", "generalization_measures_smoke"))
    assert set(full) == {"data.batch_size", "optimizer.lr", "model.dropout", "optimizer.weight_decay", "seed"}
    assert all(len(str(v).split(",")) == 2 for k, v in full.items() if k != "seed") and smoke == {"seed": 1}
