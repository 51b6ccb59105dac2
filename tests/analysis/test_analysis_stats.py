"""The report's statistics agree with scipy, or with a computation by hand, on fixed numbers and edge cases."""
import itertools
import math

import numpy as np
import pytest
from scipy import stats

from genlab.analysis.stats import (holm, paired_t_test, permutation_p, seeds_for_power, sign_flip_p, summarize,
                                   welch_interval, welch_t_test)

A = [0.912, 0.925, 0.918, 0.931, 0.909]
B = [0.897, 0.902, 0.915, 0.889]


def test_welch_matches_scipy():
    t, p = welch_t_test(A, B)
    expected = stats.ttest_ind(A, B, equal_var=False)
    assert t == pytest.approx(expected.statistic, rel=1e-12) and p == pytest.approx(expected.pvalue, rel=1e-10)


def test_welch_interval_of_the_difference_matches_scipy():
    expected = stats.ttest_ind(A, B, equal_var=False).confidence_interval(0.95)
    assert welch_interval(A, B) == (pytest.approx(expected.low, rel=1e-12), pytest.approx(expected.high, rel=1e-12))
    assert welch_interval(B, A) == (pytest.approx(-expected.high), pytest.approx(-expected.low))  # antisymmetric
    # one seed, or no spread on either side: no standard error, so no interval (not a zero-width one)
    assert all(math.isnan(x) for x in welch_interval([0.5], B) + welch_interval([0.5, 0.5], [0.4, 0.4]))
    low, high = welch_interval([0.5, 0.5], [0.4, 0.42])  # one side's spread is enough
    assert low < 0.09 < high


def test_confidence_interval_matches_scipy():
    s = summarize(A)
    low, high = stats.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=stats.sem(A))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert s.std == pytest.approx(np.std(A, ddof=1)) and s.n == 5


def test_degenerate_cases_are_explicit():
    assert all(math.isnan(x) for x in welch_t_test([0.5], B))
    assert all(math.isnan(x) for x in welch_t_test([0.5, 0.5], [0.5, 0.5]))
    with pytest.raises(ValueError):
        summarize([])


def test_a_single_value_has_no_spread_and_no_interval():
    s = summarize([0.5])
    assert s.n == 1 and s.mean == 0.5 and math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_interval_is_clipped_to_the_metrics_range():
    values = [1.0, 1.0, 0.97]  # the t interval reaches above 1, which no accuracy can
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert high > 1
    s = summarize(values, bounds=(0.0, 1.0))
    assert s.ci_high == 1.0 and s.ci_low == pytest.approx(low)
    assert summarize(values).ci_high == pytest.approx(high)  # unbounded by default


def test_a_mean_rounded_past_the_range_keeps_an_interval_around_it():
    # torchmetrics' balanced (macro) accuracy of a perfect run, in float32 (measured on a default digits run)
    perfect = float(np.float32(1.0000001))
    s = summarize([perfect, perfect, perfect], bounds=(0.0, 1.0))
    assert s.ci_low == s.mean == s.ci_high == perfect  # before: ci_high 1.0 below the mean, an inverted interval
    s = summarize([perfect, 0.99, 0.98], bounds=(0.0, 1.0))
    assert s.ci_low <= s.mean <= s.ci_high == 1.0


def test_paired_test_matches_scipy_ttest_rel():
    a, b = [0.91, 0.93, 0.90, 0.95], [0.90, 0.90, 0.89, 0.91]
    t, p = paired_t_test(a, b)
    expected = stats.ttest_rel(a, b)
    assert t == pytest.approx(expected.statistic, rel=1e-12) and p == pytest.approx(expected.pvalue, rel=1e-10)


def test_paired_test_with_the_same_difference_on_every_pair_is_not_infinitely_significant():
    # scipy's ttest_rel says t = inf, p = 0 here; 3 pairs cannot say that much. The exact sign-flip test can:
    # of the 2^3 sign patterns, 2 reach |mean| = 0.02, so p = 2/8.
    a, b = [0.92, 0.93, 0.94], [0.90, 0.91, 0.92]
    assert all(math.isnan(x) for x in paired_t_test(a, b))
    assert sign_flip_p([x - y for x, y in zip(a, b)]) == pytest.approx(0.25)
    assert all(math.isnan(x) for x in paired_t_test([0.9], [0.8]))


def test_permutation_p_of_two_constant_groups_matches_scipy_exact_test():
    a, b = [0.9, 0.9, 0.9], [0.8, 0.8, 0.8]
    exact = stats.permutation_test((a, b), lambda x, y: np.mean(x) - np.mean(y), permutation_type="independent",
                                   n_resamples=np.inf, alternative="two-sided").pvalue
    assert permutation_p(a, b) == pytest.approx(exact) == pytest.approx(2 / math.comb(6, 3))
    assert permutation_p([0.9] * 4, [0.8] * 4) == pytest.approx(2 / 70)  # 4 vs 4 seeds can reach p < 0.05
    assert permutation_p([0.9, 0.9], [0.9, 0.9]) == 1.0


def holm_by_hand(p_values, alpha):
    """Holm's step-down procedure as written in textbooks: which hypotheses it rejects at level alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = set()
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected.add(i)
    return rejected


def test_holm_adjusted_p_values_reject_what_the_step_down_procedure_rejects():
    p = [0.01, 0.04, 0.03, 0.005]
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = list(rng.uniform(0, 0.2, size=rng.integers(1, 8)))
        adjusted = holm(p)
        for alpha in (0.01, 0.05, 0.1):
            assert {i for i, q in enumerate(adjusted) if q <= alpha} == holm_by_hand(p, alpha)
    adjusted = holm([0.01, math.nan, 0.04])  # an untested comparison is not counted in the family
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


def power_by_nct(n: int, d: float, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test with n per group and effect size d, from scipy's noncentral t."""
    df, nc = 2 * n - 2, d * math.sqrt(n / 2)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)


@pytest.mark.parametrize("delta, std, expected", [(1.0, 1.0, 17), (0.5, 1.0, 64), (-0.02, 0.01, 6)])
def test_seeds_for_power_is_the_smallest_n_with_80_percent_power(delta, std, expected):
    n = seeds_for_power(delta, std)  # 17 and 64 per group are the textbook numbers for d = 1 and d = 0.5
    d = abs(delta) / std
    assert n == expected and power_by_nct(n, d) >= 0.8 > power_by_nct(n - 1, d)


def test_seeds_for_power_agrees_with_simulated_studies():
    rng = np.random.default_rng(1)
    n = seeds_for_power(0.03, 0.02)
    studies = 4000
    a, b = rng.normal(0.03, 0.02, (studies, n)), rng.normal(0.0, 0.02, (studies, n))
    detected = np.mean(stats.ttest_ind(a, b, axis=1).pvalue < 0.05)
    assert 0.78 <= detected <= 0.86  # 80 % power (the binomial sd of 4000 studies is 0.6 %)
    assert seeds_for_power(0.0, 0.02) is None and seeds_for_power(1e-6, 1.0) is None  # beyond any sensible count
    assert seeds_for_power(0.01, 0.0) is None and seeds_for_power(0.01, math.nan) is None


def test_exhaustive_permutation_counts_agree_for_unequal_groups():
    a, b = [0.9, 0.9], [0.8, 0.8, 0.8]
    pooled = a + b
    observed = abs(np.mean(a) - np.mean(b))
    count = sum(abs(np.mean([pooled[i] for i in idx]) - np.mean([pooled[i] for i in range(5) if i not in idx]))
                >= observed - 1e-12 for idx in itertools.combinations(range(5), 2))
    assert permutation_p(a, b) == pytest.approx(count / math.comb(5, 2))
