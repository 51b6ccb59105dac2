"""Generalization measures of trained weights (Jiang et al. 2020, "Fantastic Generalization Measures"): norms,
distance from the initialization, spectral norms, path norm, output margin, optimisation speed, and (opt-in) sharpness
and PAC-Bayes flatness. Every measure is computed in eval mode on the network with batch norm folded (see
`folding`), on a fixed subset of the training set, and is a plain number: larger should mean a larger gap."""
from __future__ import annotations

import copy
import csv
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlab.analysis.folding import fold_batch_norm, folded_path_norm, path_norm_defined
from genlab.analysis.landscape import landscapes

MEASURE_SETS = ("none", "cheap", "all")
MARGIN_QUANTILE = 0.1  # Jiang et al.'s margin: the 10th percentile of the correct-class margin over the training set
CE_TARGET = 0.1  # Jiang et al.'s "steps to reach cross-entropy 0.1"
EVAL_BATCH = 500  # images per forward pass over the subset: bounds memory, not the result
POWER_TOLERANCE = 1e-9  # relative change of the spectral-norm estimate at which power iteration stops
POWER_MAX_ITERATIONS = 2000
MAGNITUDE_EPS = 1e-3  # Jiang et al.'s floor of the magnitude-aware noise: std = sqrt(sigma'^2 w^2 + eps^2)


@dataclass
class Subset:
    """Normalised images and their labels: the fixed training subset every measure of a run is computed on."""

    images: torch.Tensor
    labels: torch.Tensor

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.labels), EVAL_BATCH):
            yield self.images[start:start + EVAL_BATCH], self.labels[start:start + EVAL_BATCH]


# --- weights -------------------------------------------------------------------------------------------------------

def parameter_vector(net: nn.Module) -> torch.Tensor:
    """All trainable parameters of `net`, as trained (what weight decay shrinks), in one float64 vector."""
    return torch.cat([p.detach().reshape(-1).double() for p in net.parameters() if p.requires_grad])


def weight_matrices(folded: nn.Module) -> list[torch.Tensor]:
    """Each conv and linear layer's weight as a matrix (out, in x kernel), float64: Jiang et al.'s reshaped weights."""
    return [m.weight.detach().reshape(m.weight.shape[0], -1).double() for m in folded.modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))]


def spectral_norm(matrix: torch.Tensor, seed: int = 0) -> float:
    """The largest singular value of `matrix`, by power iteration on WᵀW from a seeded random start."""
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(matrix.shape[1], generator=generator, dtype=matrix.dtype)
    v /= v.norm()
    estimate = 0.0
    for _ in range(POWER_MAX_ITERATIONS):
        u = matrix @ v
        new = float(u.norm())
        if new == 0.0:
            return 0.0
        v = matrix.T @ (u / new)
        v /= v.norm()
        if abs(new - estimate) <= POWER_TOLERANCE * new:
            return new
        estimate = new
    return estimate


# --- outputs -------------------------------------------------------------------------------------------------------

@torch.no_grad()
def logits_on(net: nn.Module, subset: Subset) -> torch.Tensor:
    return torch.cat([net(images) for images, _ in subset.batches()])


def correct_class_margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image: the correct class's logit minus the largest other logit (negative where misclassified)."""
    correct = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return correct - others.max(1).values


def output_margin(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The 10th percentile (linear interpolation, as numpy's) of the correct-class margins."""
    return float(torch.quantile(correct_class_margins(logits.double(), labels), MARGIN_QUANTILE))


def steps_to_loss(metrics_csv: Path, target: float = CE_TARGET) -> int | None:
    """The first logged training step whose train/loss_step is <= target, from the run's metrics.csv (None when never
    reached, or no log). Its resolution is trainer.log_every_n_steps. Lightning's `step` counts from 0: step s logs
    the loss of optimizer step s + 1."""
    if not metrics_csv.is_file():
        return None
    with metrics_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            value = row.get("train/loss_step")
            if value and float(value) <= target:
                return int(row["step"]) + 1
    return None


# --- the cheap set -------------------------------------------------------------------------------------------------

def cheap_measures(net: nn.Module, initial: nn.Module | None, subset: Subset, input_shape: tuple[int, ...],
                   seed: int) -> dict[str, float]:
    """Norms, distance from `initial` (None: not known), spectral norms, path norm and margin of `net` on `subset`."""
    net.eval()
    folded = fold_batch_norm(net)
    spectral = [spectral_norm(w, seed) for w in weight_matrices(folded)]
    margin = output_margin(logits_on(net, subset), subset.labels)
    measures = {"l2_norm": float(parameter_vector(net).norm()),
                "frobenius_sq_sum": sum(float(w.pow(2).sum()) for w in weight_matrices(folded)),
                "margin": margin}
    if min(spectral) > 0:  # a layer of zeros has no logarithm: its net is constant
        measures["log_prod_spec"] = sum(2 * math.log(s) for s in spectral)  # log prod ||W||_2^2, Jiang et al.'s form
        measures["log_sum_spec"] = math.log(sum(s * s for s in spectral))
    if initial is not None:
        measures["dist_init"] = float((parameter_vector(net) - parameter_vector(initial)).norm())
    if path_norm_defined(net):
        measures["path_norm"] = folded_path_norm(folded, input_shape)
    if margin > 0:  # normalising by a margin that is not positive (>= 10 % misclassified) means nothing
        measures["inverse_margin"] = 1 / margin ** 2
        for name in ("log_prod_spec", "log_sum_spec"):
            if name in measures:
                measures[f"{name}_over_margin"] = measures[name] - 2 * math.log(margin)
        if "path_norm" in measures:
            measures["path_norm_over_margin"] = measures["path_norm"] / margin ** 2
    return measures


# --- the opt-in set: sharpness and flatness ------------------------------------------------------------------------

def hessian_vector_product(params: list[torch.Tensor], losses: Callable[[], Iterable[torch.Tensor]],
                           vector: list[torch.Tensor]) -> list[torch.Tensor]:
    """H v for the loss that `losses` yields in parts (their sum is the loss), one part's graph at a time."""
    product = [torch.zeros_like(p) for p in params]
    for loss in losses():
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((g * v).sum() for g, v in zip(grads, vector))
        for total, part in zip(product, torch.autograd.grad(dot, params)):
            total += part
    return product


def hessian_top_eigenvalue(params: list[torch.Tensor], losses: Callable[[], Iterable[torch.Tensor]], iterations: int,
                           tolerance: float, seed: int) -> float:
    """The Hessian's eigenvalue of largest magnitude, by power iteration on Hessian-vector products (stops when the
    estimate changes by less than `tolerance`, relative, or after `iterations` products)."""
    generator = torch.Generator().manual_seed(seed)
    vector = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device) for p in params]
    estimate = 0.0
    for _ in range(iterations):
        norm = torch.sqrt(sum((v * v).sum() for v in vector))
        vector = [v / norm for v in vector]
        product = hessian_vector_product(params, losses, vector)
        new = float(sum((h * v).sum() for h, v in zip(product, vector)))  # Rayleigh quotient vᵀHv, |v| = 1
        vector = product
        if abs(new - estimate) <= tolerance * abs(new):
            return new
        estimate = new
    return estimate


def mean_cross_entropy_parts(net: nn.Module, subset: Subset) -> Callable[[], Iterator[torch.Tensor]]:
    """The subset's mean cross-entropy in per-batch parts, for `hessian_vector_product`."""
    count = len(subset.labels)

    def parts() -> Iterator[torch.Tensor]:
        for images, labels in subset.batches():
            yield F.cross_entropy(net(images), labels, reduction="sum") / count
    return parts


def largest_passing(passes: Callable[[float], bool], tolerance: float, start: float = 0.1,
                    max_doublings: int = 30) -> float:
    """The largest x >= 0 with passes(x), for a predicate that holds up to some point and fails beyond it: doubling
    from `start` until it fails, then bisection until the bracket is within `tolerance` (relative) of its top; the
    bracket's lower end (which passed) is returned. 0.0 when even x = start * 2^-30 fails."""
    low, high = 0.0, start
    for _ in range(max_doublings):
        if not passes(high):
            break
        low, high = high, 2 * high
    else:
        return low
    if low == 0.0:  # failed at start: look below it
        for _ in range(max_doublings):
            high /= 2
            if passes(high):
                low, high = high, 2 * high
                break
        else:
            return 0.0
    while high - low > tolerance * high:
        middle = (low + high) / 2
        low, high = (middle, high) if passes(middle) else (low, middle)
    return low


@torch.no_grad()
def error_rate(net: nn.Module, subset: Subset) -> float:
    return float((logits_on(net, subset).argmax(1) != subset.labels).double().mean())


@torch.no_grad()
def expected_error_rise(net: nn.Module, subset: Subset, sigma: float, samples: int, seed: int,
                        magnitude_aware: bool) -> float:
    """Mean training error of `net` under Gaussian weight noise, over `samples` seeded draws, minus its clean error.
    Noise std is sigma (or, magnitude-aware, sqrt(sigma^2 w^2 + eps^2) per weight); the same standard-normal draws for
    every sigma (common random numbers), so the rise grows with sigma as the bisection needs. `net` is restored."""
    clean = error_rate(net, subset)
    params = [p for p in net.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    rise = 0.0
    try:
        for sample in range(samples):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + sample)
            for p, w in zip(params, saved):
                noise = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
                std = torch.sqrt(sigma ** 2 * w ** 2 + MAGNITUDE_EPS ** 2) if magnitude_aware else sigma
                p.copy_(w + std * noise)
            rise += error_rate(net, subset) - clean
    finally:
        for p, w in zip(params, saved):
            p.copy_(w)
    return rise / samples


def pac_bayes_sigma(net: nn.Module, subset: Subset, bound: float, samples: int, tolerance: float, seed: int,
                    magnitude_aware: bool = False) -> float:
    """Jiang et al.'s PAC-Bayes flatness: the largest noise scale sigma whose expected training-error rise is <= bound."""
    return largest_passing(lambda sigma: expected_error_rise(net, subset, sigma, samples, seed, magnitude_aware) <= bound,
                           tolerance)


def costly_measures(net: nn.Module, subset: Subset, settings: dict, seed: int) -> dict[str, float]:
    """Hessian top eigenvalue and the PAC-Bayes flatness sigma and its magnitude-aware sigma' (with 1/sigma^2, the
    form that grows with sharpness)."""
    net.eval()
    params = [p for p in net.parameters() if p.requires_grad]
    measures = {"hessian_top_eig": hessian_top_eigenvalue(params, mean_cross_entropy_parts(net, subset),
                                                          settings["hessian_iterations"], settings["hessian_tolerance"],
                                                          seed)}
    for name, aware in (("pacbayes", False), ("pacbayes_mag", True)):
        sigma = pac_bayes_sigma(net, subset, settings["flatness_bound"], settings["flatness_samples"],
                                settings["flatness_tolerance"], seed, magnitude_aware=aware)
        measures[f"{name}_sigma"] = sigma
        if sigma > 0:
            measures[f"{name}_flatness"] = 1 / sigma ** 2
    return measures


# --- one run -------------------------------------------------------------------------------------------------------

INITIAL_WEIGHTS_FILE = "init_weights.pt"  # in the run dir: the network's state before its first training step


def save_initial_weights(net: nn.Module, run_dir: Path) -> Path:
    """The untrained network's state, for distance from initialization: saved where it was built, before training."""
    path = run_dir / INITIAL_WEIGHTS_FILE
    torch.save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, path)
    return path


def initial_network(net: nn.Module, run_dir: Path) -> nn.Module | None:
    """A copy of `net` holding the run's saved initial weights; None when the run saved none (started without
    measures)."""
    path = run_dir / INITIAL_WEIGHTS_FILE
    if not path.is_file():
        return None
    initial = copy.deepcopy(net)
    initial.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return initial.to(next(net.parameters()).device)


def measure_weights(net: nn.Module, subset: Subset, input_shape: tuple[int, ...], settings: dict, run_dir: Path,
                    metrics_csv: Path | None, trains_on_cross_entropy: bool, seed: int,
                    landscape: bool = False) -> tuple[dict[str, float], dict]:
    """measures/* of `net` (its current weights) on `subset` (none when settings name none), and what they were
    computed on, for results.json, with the 1-D loss landscapes when `landscape`. steps_to_ce_0.1 comes from the run's
    training log, only when the logged loss is the plain cross-entropy."""
    initial = initial_network(net, run_dir)
    values: dict[str, float] = {}
    seconds = {}
    if settings["name"] != "none":
        t0 = time.perf_counter()
        values = cheap_measures(net, initial, subset, input_shape, seed)
        if metrics_csv is not None and trains_on_cross_entropy:
            steps = steps_to_loss(metrics_csv)
            if steps is not None:
                values["steps_to_ce_0.1"] = float(steps)
        seconds["cheap"] = time.perf_counter() - t0
    if settings["name"] == "all":
        t1 = time.perf_counter()
        values.update(costly_measures(net, subset, settings, seed))
        seconds["all"] = time.perf_counter() - t1
    facts = {"set": settings["name"], "subset": {"split": "train_eval", "size": len(subset.labels), "seed": seed},
             "initial_weights": INITIAL_WEIGHTS_FILE if initial is not None else None,
             "seconds": seconds, "settings": dict(settings)}
    if landscape:
        t2 = time.perf_counter()
        facts["landscape"] = landscapes(net, initial, subset, seed)
        seconds["landscape"] = time.perf_counter() - t2
    return {f"measures/{name}": value for name, value in values.items()}, facts
