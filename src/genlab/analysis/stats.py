"""The statistics of a comparison over seeds: mean, spread and 95 % confidence interval, Welch's and the paired
t-test, exact permutation tests where a t-test has no spread to work with, Holm's correction, and t-test power."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from scipy import stats as scipy_stats

UNBOUNDED = (-math.inf, math.inf)
MAX_ENUMERATED = 200_000  # relabelings an exact permutation test may enumerate (20 seeds: 2^20 sign flips is more)


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN for a single value, which has no spread to estimate
    ci_low: float  # NaN for a single value
    ci_high: float


def summarize(values: list[float], confidence: float = 0.95, bounds: tuple[float, float] = UNBOUNDED) -> Summary:
    """Mean, sample std and the Student-t confidence interval of the mean, clipped to `bounds` (the values the
    metric can take: an accuracy's interval never leaves [0, 1]). A single value has neither std nor interval."""
    n = len(values)
    if n == 0:
        raise ValueError("summarize needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n)
    # A float32 metric can overshoot its range by a rounding (torchmetrics' balanced accuracy of a perfect run is
    # 1.0000001): the clip never cuts the interval past its own mean, which would invert it.
    return Summary(n, mean, std, max(mean - half, min(bounds[0], mean)), min(mean + half, max(bounds[1], mean)))


def is_constant(values: list[float]) -> bool:
    """All values equal, up to float rounding (0.92 - 0.90 and 0.93 - 0.91 differ in the 17th digit)."""
    return max(values) - min(values) <= 1e-12 * max(1.0, *(abs(v) for v in values))


def _variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def welch_t_test(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's unequal-variance t-test of mean(a) != mean(b): (t statistic, two-sided p-value).

    NaN when either side has fewer than 2 values or both have zero variance (see `permutation_p` for that case).
    """
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    if is_constant(a) and is_constant(b):
        return math.nan, math.nan
    va, vb = _variance(a) / len(a), _variance(b) / len(b)
    t = (sum(a) / len(a) - sum(b) / len(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch–Satterthwaite
    return t, 2 * scipy_stats.t.sf(abs(t), df)


def welch_interval(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """The Welch confidence interval of mean(a) - mean(b) (scipy's ttest_ind(equal_var=False).confidence_interval);
    NaN when either side has fewer than 2 values or neither has any spread (no standard error to scale)."""
    if len(a) < 2 or len(b) < 2 or (is_constant(a) and is_constant(b)):
        return math.nan, math.nan
    va, vb = _variance(a) / len(a), _variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    diff = sum(a) / len(a) - sum(b) / len(b)
    half = scipy_stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(va + vb)
    return float(diff - half), float(diff + half)


def paired_t_test(a: list[float], b: list[float]) -> tuple[float, float]:
    """The paired t-test of mean(a - b) != 0 over aligned pairs (scipy's ttest_rel): (t, two-sided p).

    NaN for fewer than 2 pairs, or when every pair differs by the same amount: scipy then says t = ±inf, p = 0,
    which no handful of pairs supports (see `sign_flip_p` for that case).
    """
    if len(a) != len(b):
        raise ValueError(f"paired_t_test needs aligned pairs, got {len(a)} and {len(b)} values")
    diffs = [x - y for x, y in zip(a, b)]
    if len(diffs) < 2 or is_constant(diffs):
        return math.nan, math.nan
    n = len(diffs)
    t = (sum(diffs) / n) / math.sqrt(_variance(diffs) / n)
    return t, 2 * scipy_stats.t.sf(abs(t), n - 1)


def permutation_p(a: list[float], b: list[float]) -> float:
    """Exact two-sided permutation p-value of the difference in means: the share of all ways to split the pooled
    values into groups of len(a) and len(b) whose |difference| is at least the observed one (NaN when too many)."""
    pooled, n = [*a, *b], len(a)
    if math.comb(len(pooled), n) > MAX_ENUMERATED:
        return math.nan
    total, observed = sum(pooled), abs(sum(a) / n - sum(b) / len(b))
    tolerance = 1e-12 * max(1.0, observed)
    hits = count = 0
    for chosen in itertools.combinations(range(len(pooled)), n):
        first = sum(pooled[i] for i in chosen)
        hits += abs(first / n - (total - first) / len(b)) >= observed - tolerance
        count += 1
    return hits / count


def sign_flip_p(diffs: list[float]) -> float:
    """Exact two-sided sign-flip (paired permutation) p-value of mean(diffs) != 0 (NaN when too many pairs)."""
    if 2 ** len(diffs) > MAX_ENUMERATED or not diffs:
        return math.nan
    observed = abs(sum(diffs))
    tolerance = 1e-12 * max(1.0, observed)
    hits = sum(abs(sum(s * d for s, d in zip(signs, diffs))) >= observed - tolerance
               for signs in itertools.product((1, -1), repeat=len(diffs)))
    return hits / 2 ** len(diffs)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control); NaN entries are untested and not counted."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def pooled_std(a: list[float], b: list[float]) -> float:
    """The pooled sample standard deviation of two groups (NaN unless both have at least 2 values)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return math.sqrt(((len(a) - 1) * _variance(a) + (len(b) - 1) * _variance(b)) / (len(a) + len(b) - 2))


def t_test_power(n: int, effect_size: float, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test with n values per group at effect size |difference| / std."""
    df, noncentrality = 2 * n - 2, abs(effect_size) * math.sqrt(n / 2)
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    return scipy_stats.nct.sf(critical, df, noncentrality) + scipy_stats.nct.cdf(-critical, df, noncentrality)


def seeds_for_power(delta: float, std: float, alpha: float = 0.05, power: float = 0.8,
                    most: int = 10_000) -> int | None:
    """The fewest seeds per group with which a two-sample t-test at `alpha` detects a true difference `delta`
    with probability `power`, if the std over seeds is `std`; None when there is no finite answer below `most`."""
    if not (std > 0 and math.isfinite(delta) and delta != 0):
        return None
    effect = abs(delta) / std
    # The normal approximation lands within a few seeds of the answer; the exact power then settles it.
    z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power)
    n = max(2, math.ceil(2 * (z / effect) ** 2))
    if n > most:
        return None
    while t_test_power(n, effect, alpha) < power:
        n += 1
        if n > most:
            return None
    while n > 2 and t_test_power(n - 1, effect, alpha) >= power:
        n -= 1
    return n
