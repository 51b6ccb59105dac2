"""The report's statistics agree with scipy on fixed numbers."""
import math

import numpy as np
import pytest
from scipy import stats

from genlab.analysis.stats import summarize, welch_t_test

A = [0.912, 0.925, 0.918, 0.931, 0.909]
B = [0.897, 0.902, 0.915, 0.889]


def test_welch_matches_scipy():
    t, p = welch_t_test(A, B)
    expected = stats.ttest_ind(A, B, equal_var=False)
    assert t == pytest.approx(expected.statistic, rel=1e-12) and p == pytest.approx(expected.pvalue, rel=1e-10)


def test_confidence_interval_matches_scipy():
    s = summarize(A)
    low, high = stats.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=stats.sem(A))
    assert (s.ci_low, s.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert s.std == pytest.approx(np.std(A, ddof=1)) and s.n == 5


def test_degenerate_cases_are_explicit():
    assert summarize([0.5]) == summarize([0.5]) and summarize([0.5]).ci_low == 0.5
    assert all(math.isnan(x) for x in welch_t_test([0.5], B))
    assert all(math.isnan(x) for x in welch_t_test([0.5, 0.5], [0.5, 0.5]))
    with pytest.raises(ValueError):
        summarize([])
