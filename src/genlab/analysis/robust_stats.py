"""rliable's statistics (Agarwal et al. 2021), built on scipy: the interquartile mean with a stratified bootstrap BCa
interval, the probability of improvement P(A > B) (Mann–Whitney U / (n m)) with its interval, and performance
profiles; and Bouthillier et al.'s (2021) decision rule on P(A > B).

A study's metric is one task, so rliable's stratification over tasks is a stratification over the compared groups:
each group's seeds are resampled within that group. Every bootstrap is seeded, so a report is the same when rerun.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # one fixed stream: the same runs give the same intervals in every report
MEANINGFUL = 0.75  # Bouthillier et al. 2021: P(A > B) above this is an improvement worth having
TRIM = 0.25  # the IQM drops the lowest and highest quarter of the values


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95 % BCa bootstrap interval; `why` says why there is no interval (low, high are NaN)."""

    value: float
    low: float
    high: float
    why: str = ""

    @property
    def has_interval(self) -> bool:
        return not math.isnan(self.low)


def iqm(values, axis: int = -1) -> np.ndarray | float:
    """The interquartile mean: the mean of the middle 50 % (scipy.stats.trim_mean at 25 %)."""
    return scipy_stats.trim_mean(values, TRIM, axis=axis)


def probability_of_improvement(a, b, axis: int = -1) -> np.ndarray | float:
    """P(A > B): the share of (a, b) pairs with a > b, a tie counting one half; Mann–Whitney's U / (len(a) len(b))."""
    a, b = np.moveaxis(np.asarray(a, float), axis, -1), np.moveaxis(np.asarray(b, float), axis, -1)
    differences = a[..., :, None] - b[..., None, :]
    return ((differences > 0) + 0.5 * (differences == 0)).mean(axis=(-2, -1))


def bca(statistic, samples: tuple[list[float], ...], confidence: float = 0.95) -> Estimate:
    """The statistic of `samples` and its BCa interval from a bootstrap that resamples each sample on its own
    (stratified by sample), seeded; no interval, with the reason, where BCa is undefined."""
    value = float(statistic(*samples))
    if any(len(s) < 2 for s in samples):
        return Estimate(value, math.nan, math.nan, "a group of one seed has nothing to resample")
    with warnings.catch_warnings():  # a degenerate bootstrap is reported below, in words
        warnings.simplefilter("ignore")
        result = scipy_stats.bootstrap(samples, statistic, n_resamples=RESAMPLES, vectorized=True, paired=False,
                                       confidence_level=confidence, method="BCa",
                                       random_state=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):
        # every resample the same: no spread across seeds, or groups that never overlap (P = 1 on every resample)
        why = (f"every resample gives {value:.4g}, where BCa is undefined" if np.ptp(result.bootstrap_distribution) == 0
               else "BCa is undefined for these values")
        return Estimate(value, math.nan, math.nan, why)
    return Estimate(value, low, high)


def iqm_estimate(values: list[float]) -> Estimate:
    """The IQM of a group's values with its 95 % BCa interval."""
    return bca(iqm, (list(values),))


def improvement_estimate(a: list[float], b: list[float], direction: str = "max") -> Estimate:
    """P(A better than B) with its 95 % BCa interval: P(A > B), or P(A < B) when lower is better."""
    if direction == "min":
        return bca(lambda x, y, axis=-1: probability_of_improvement(y, x, axis=axis), (list(a), list(b)))
    return bca(probability_of_improvement, (list(a), list(b)))


def decision(estimate: Estimate) -> str:
    """Bouthillier et al.'s rule: an improvement is significant when the interval of P(A > B) lies above 0.5, and
    meaningful when P(A > B) is above MEANINGFUL; anything short of both is inconclusive."""
    meaningful = estimate.value > MEANINGFUL
    if not estimate.has_interval:
        return (f"inconclusive: P above {MEANINGFUL} but no interval ({estimate.why})" if meaningful else
                f"inconclusive: no interval ({estimate.why})")
    significant = estimate.low > 0.5
    if meaningful and significant:
        return f"a meaningful and significant improvement (P > {MEANINGFUL}, interval above 0.5)"
    if significant:
        return f"significant (interval above 0.5) but not meaningful (P ≤ {MEANINGFUL}): inconclusive"
    if meaningful:
        return f"inconclusive: P above {MEANINGFUL} but its interval reaches 0.5"
    return f"inconclusive: P ≤ {MEANINGFUL} and its interval reaches 0.5"


def performance_profile(values: list[float], thresholds: list[float], direction: str = "max") -> list[float]:
    """The share of runs scoring better than each threshold τ: above it (higher is better) or below it (lower)."""
    scores = np.asarray(values, float)[:, None]
    taus = np.asarray(thresholds, float)[None, :]
    better = scores > taus if direction == "max" else scores < taus
    return [float(x) for x in better.mean(axis=0)]


def interval_text(estimate: Estimate) -> str:
    """`value [low, high]`, or the value and why it has no interval."""
    if estimate.has_interval:
        return f"{estimate.value:.4f} [{estimate.low:.4f}, {estimate.high:.4f}]"
    return f"{estimate.value:.4f} (no interval: {estimate.why})"


def improvement_text(name: str, other: str, estimate: Estimate) -> str:
    """One clause: P(name better than other) with its interval, and what Bouthillier et al.'s rule makes of it."""
    shown = (f"{estimate.value:.2f} [{estimate.low:.2f}, {estimate.high:.2f}]" if estimate.has_interval else
             f"{estimate.value:.2f}")
    return f"P({name} better than {other}) = {shown}: {decision(estimate)}"
