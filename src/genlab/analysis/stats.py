"""The statistics of a comparison: mean, spread and 95 % confidence interval over seeds, and Welch's t-test."""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for a single value
    ci_low: float
    ci_high: float


def summarize(values: list[float], confidence: float = 0.95) -> Summary:
    """Mean, sample std and the Student-t confidence interval of the mean (degenerate for n = 1)."""
    n = len(values)
    if n == 0:
        raise ValueError("summarize needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return Summary(1, mean, 0.0, mean, mean)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch_t_test(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's unequal-variance t-test of mean(a) != mean(b): (t statistic, two-sided p-value).

    NaN when either side has fewer than 2 values or both have zero variance (no evidence either way).
    """
    if len(a) < 2 or len(b) < 2:
        return math.nan, math.nan
    sa, sb = summarize(a), summarize(b)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    if va + vb == 0:
        return math.nan, math.nan
    t = (sa.mean - sb.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))  # Welch–Satterthwaite
    return t, 2 * scipy_stats.t.sf(abs(t), df)
