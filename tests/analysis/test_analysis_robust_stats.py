"""rliable-style statistics against scipy and hand counts on hand-written groups: ties, one seed, identical groups,
zero spread, groups that never overlap; Bouthillier et al.'s decision rule; and their place in the report."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from genlab.analysis import figures
from genlab.analysis import robust_stats as rs
from genlab.analysis.report import group_runs, main, rank_and_test
from test_analysis_report_statistics import load, sweep


def by_hand_improvement(a, b) -> float:
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    return wins / (len(a) * len(b))


@pytest.mark.parametrize("values, expected", [
    ([1, 2, 3, 4, 5, 6, 7, 8], 4.5),  # the middle four: 3, 4, 5, 6
    ([0.9, 0.9, 0.9, 0.1], 0.9),  # ties: 0.1 and one 0.9 dropped
    ([0.7], 0.7),  # one seed: the value itself
])
def test_iqm_is_scipys_25_percent_trimmed_mean(values, expected):
    assert rs.iqm(values) == pytest.approx(expected)
    assert rs.iqm(values) == pytest.approx(stats.trim_mean(values, 0.25))


@pytest.mark.parametrize("a, b", [
    ([0.90, 0.91, 0.92], [0.91, 0.91, 0.80]),  # ties across groups
    ([0.5, 0.5], [0.5, 0.5, 0.5]),  # every pair a tie
    ([0.8], [0.7, 0.9]),  # one seed
    ([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]),  # identical groups
])
def test_probability_of_improvement_is_mann_whitney_u_over_n_m(a, b):
    expected = stats.mannwhitneyu(a, b).statistic / (len(a) * len(b))
    assert rs.probability_of_improvement(a, b) == pytest.approx(expected)
    assert rs.probability_of_improvement(a, b) == pytest.approx(by_hand_improvement(a, b))
    assert rs.probability_of_improvement(a, b) + rs.probability_of_improvement(b, a) == pytest.approx(1.0)


def test_identical_groups_are_a_coin_flip():
    values = [0.81, 0.84, 0.86, 0.9]
    estimate = rs.improvement_estimate(values, values)
    assert estimate.value == 0.5 and estimate.low <= 0.5 <= estimate.high
    assert rs.decision(estimate).startswith("inconclusive")


def test_lower_is_better_asks_p_of_a_below_b():
    a, b = [0.1, 0.2, 0.2], [0.2, 0.3, 0.4]
    assert rs.improvement_estimate(a, b, "min").value == pytest.approx(by_hand_improvement(b, a))


def test_the_bca_interval_is_scipys_seeded_bootstrap():
    a, b = [0.90, 0.85, 0.92, 0.88, 0.90], [0.80, 0.91, 0.82, 0.86, 0.89]
    expected = stats.bootstrap((a, b), lambda x, y, axis: by_hand_vectorized(x, y), vectorized=True, paired=False,
                               n_resamples=rs.RESAMPLES, method="BCa",
                               random_state=np.random.default_rng(rs.BOOTSTRAP_SEED)).confidence_interval
    got = rs.improvement_estimate(a, b)
    assert (got.low, got.high) == (pytest.approx(expected.low), pytest.approx(expected.high))
    assert got == rs.improvement_estimate(a, b)  # seeded: the same report twice
    iqm_expected = stats.bootstrap((a,), lambda x, axis: stats.trim_mean(x, 0.25, axis=axis), vectorized=True,
                                   n_resamples=rs.RESAMPLES, method="BCa",
                                   random_state=np.random.default_rng(rs.BOOTSTRAP_SEED)).confidence_interval
    iqm = rs.iqm_estimate(a)
    assert (iqm.low, iqm.high) == (pytest.approx(iqm_expected.low), pytest.approx(iqm_expected.high))
    assert iqm.low <= iqm.value <= iqm.high


def by_hand_vectorized(x, y):
    """P(X > Y) for each resample: scipy's Mann–Whitney U over the last axis, / (n m)."""
    return stats.mannwhitneyu(x, y, axis=-1).statistic / (x.shape[-1] * y.shape[-1])


@pytest.mark.parametrize("a, b, why", [
    ([0.9], [0.8, 0.85], "one seed"),
    ([0.9, 0.9, 0.9], None, "every resample gives 0.9"),  # zero spread: the IQM's BCa is undefined
    ([0.90, 0.91, 0.92], [0.80, 0.81, 0.82], "every resample gives 1"),  # never overlapping: P = 1 on every resample
])
def test_no_interval_where_bca_is_undefined_and_it_says_why(a, b, why):
    estimate = rs.iqm_estimate(a) if b is None else rs.improvement_estimate(a, b)
    assert math.isnan(estimate.low) and math.isnan(estimate.high) and why in estimate.why
    assert not math.isnan(estimate.value)
    assert "no interval" in rs.interval_text(estimate) and rs.decision(estimate).startswith("inconclusive")


@pytest.mark.parametrize("value, low, verdict", [
    (0.9, 0.6, "a meaningful and significant improvement"),
    (0.7, 0.55, "significant (interval above 0.5) but not meaningful"),
    (0.8, 0.45, "inconclusive: P above 0.75 but its interval reaches 0.5"),
    (0.6, 0.3, "inconclusive: P ≤ 0.75"),
    (0.75, 0.6, "significant (interval above 0.5) but not meaningful"),  # 0.75 itself is not above the threshold
])
def test_bouthilliers_rule_needs_both_p_above_075_and_the_interval_above_05(value, low, verdict):
    assert rs.decision(rs.Estimate(value, low, 1.0)).startswith(verdict)


def test_performance_profile_counts_the_runs_beyond_each_threshold():
    values = [0.7, 0.8, 0.8, 0.9]
    taus = [0.6, 0.7, 0.8, 0.85, 0.95]
    assert rs.performance_profile(values, taus) == [np.mean(np.array(values) > t) for t in taus]
    assert rs.performance_profile(values, taus) == [1.0, 0.75, 0.25, 0.25, 0.0]  # a tie with τ is not above it
    assert rs.performance_profile(values, taus, "min") == [0.0, 0.0, 0.25, 0.75, 1.0]


def test_the_profile_figure_draws_each_groups_share_above_each_threshold(tmp_path):
    values = {0.0: [0.90, 0.93, 0.91], 0.5: [0.92, 0.95, 0.94]}
    groups = rank_and_test(group_runs(load(sweep(tmp_path / "s", values)), ["model.dropout"], "test/acc"),
                           "test/acc", None)
    fig = figures.figure_performance_profile(groups, "test/acc", figures.group_colors(groups), "max")
    ax = fig.axes[0]
    for g in groups:
        (line,) = [line for line in ax.lines if line.get_gid() == f"line:{g.label}"]
        taus = np.asarray(line.get_xdata())
        mine = np.array(values[dict(g.values)["model.dropout"]])
        assert list(line.get_ydata()) == pytest.approx([(mine > t).mean() for t in taus])
    assert ax.get_xlabel() == "threshold τ of test acc, best ckpt" and ax.get_ylabel() == "share of runs above τ"


def test_the_report_states_p_of_improvement_beside_the_p_value(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("genlab.analysis.report.write_figures", lambda *args: [])  # the figures are tested above
    sweep(tmp_path / "s", {0.0: [0.90, 0.93, 0.91, 0.92], 0.5: [0.92, 0.95, 0.94, 0.91]})
    out = main([str(tmp_path / "s")])
    printed = capsys.readouterr().out
    a, b = [0.92, 0.95, 0.94, 0.91], [0.90, 0.93, 0.91, 0.92]
    expected = rs.improvement_estimate(a, b)
    line = next(line for line in printed.splitlines() if line.startswith("P(model.dropout=0.5 better than"))
    assert f"= {by_hand_improvement(a, b):.2f} [{expected.low:.2f}, {expected.high:.2f}]" in line
    assert "Welch p = " in line
    markdown = (out / "report.md").read_text()
    assert "## Robust statistics" in markdown and f"{stats.trim_mean(a, 0.25):.4f} [" in markdown
