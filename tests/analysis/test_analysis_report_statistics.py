"""What compare.py concludes: metric direction, any recorded metric, grouping that never pools different
experiments, Holm-corrected p-values, paired tests, power and honest wording, each checked against an independent
computation (scipy or by hand) on edge cases."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from genlab.analysis.report import default_direction, group_runs, main, rank_and_test, varying_keys
from genlab.analysis.runs import Run, find_run_dirs, load_local_run

BASE_CONFIG = {"model": {"name": "simple_cnn", "dropout": 0.0}, "data": {"name": "digits"},
               "callbacks": {"early_stopping": {"enabled": False, "monitor": "val/loss", "patience": 10},
                             "model_checkpoint": {"monitor": "val/loss", "mode": "min", "dirpath": "x"},
                             "rich_progress_bar": {"enabled": True}}}


def write_run(root: Path, name: str, seed: int, metrics: dict[str, float], status: str = "completed",
              **config_changes) -> Path:
    """A run dir in the pipeline's schema; `config_changes` are dotted keys with '__' for '.'."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({"schema_version": 1, "status": status,
                                                      "metrics": metrics if status == "completed" else {}}))
    config = json.loads(json.dumps(BASE_CONFIG))
    config.update(seed=seed, paths={"output_dir": str(run_dir)})
    for dotted, value in config_changes.items():
        *parents, leaf = dotted.split("__")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


def sweep(root: Path, values: dict[float, list[float]], metric: str = "test/acc", seeds=None, **extra) -> Path:
    """One run per (dropout, seed): `values[dropout][i]` is seed i+1's metric (or `seeds[i]`'s)."""
    for dropout, per_seed in values.items():
        for i, value in enumerate(per_seed):
            seed = seeds[i] if seeds else i + 1
            write_run(root, f"d{dropout}_s{seed}", seed, {metric: value, **extra}, model__dropout=dropout)
    return root


def load(root: Path) -> list[Run]:
    return [load_local_run(d) for d in find_run_dirs([str(root)])]


def compared(root: Path, metric: str = "test/acc", by=("model.dropout",), baseline=None, direction=None):
    groups = group_runs(load(root), list(by), metric)
    if direction is None:  # the default: the direction that follows from the metric's name
        return rank_and_test(groups, metric, baseline)
    return rank_and_test(groups, metric, baseline, direction)


# --- metric direction -----------------------------------------------------------------------------------------------

def test_lower_is_better_metrics_call_the_smallest_group_best(tmp_path, capsys):
    sweep(tmp_path / "s", {0.0: [0.10, 0.12, 0.11], 0.5: [0.30, 0.32, 0.31]}, metric="test/ece")
    groups = compared(tmp_path / "s", metric="test/ece")
    assert groups[0].best and groups[0].label == "model.dropout=0.0"
    main([str(tmp_path / "s"), "--metric", "test/ece"])
    out = capsys.readouterr().out
    assert "Best: model.dropout=0.0" in out and "lower is better" in out
    main([str(tmp_path / "s"), "--metric", "test/ece", "--direction", "max"])  # the explicit flag wins
    assert "Best: model.dropout=0.5" in capsys.readouterr().out


@pytest.mark.parametrize("metric, direction", [
    ("test/acc", "max"), ("final/test/acc", "max"), ("robust/acc_mean", "max"), ("val/acc_best", "max"),
    ("test/acc_top5", "max"), ("test/loss", "min"), ("final/test/loss", "min"), ("test/ece", "min"),
    ("final/test/ece", "min"), ("gap/acc", "min"), ("final/gap/loss", "min"), ("train_eval/loss", "min")])
def test_direction_follows_the_metric_name(metric, direction):
    assert default_direction(metric) == direction


# --- any recorded metric --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["final/test/acc", "test/loss", "val/acc_best", "test/acc_top5"])
def test_any_recorded_metric_ranks_the_groups(tmp_path, metric, capsys):
    sweep(tmp_path / "s", {0.0: [0.70, 0.72, 0.71], 0.5: [0.80, 0.81, 0.83]}, metric=metric)
    out_dir = main([str(tmp_path / "s"), "--metric", metric])
    printed = capsys.readouterr().out
    assert "No completed run has" not in printed
    best = "model.dropout=0.0" if metric == "test/loss" else "model.dropout=0.5"
    assert f"Best: {best}" in printed
    mean = np.mean([0.80, 0.81, 0.83]) if best.endswith("0.5") else np.mean([0.70, 0.72, 0.71])
    assert f"{mean:.4f} ±" in (out_dir / "report.md").read_text()


def test_an_unrecorded_metric_is_refused_with_the_recorded_ones(tmp_path):
    sweep(tmp_path / "s", {0.0: [0.7, 0.72], 0.5: [0.8, 0.81]}, **{"test/loss": 0.3})
    with pytest.raises(SystemExit, match=r"no completed run has test/acc_typo.*test/acc, test/loss"):
        main([str(tmp_path / "s"), "--metric", "test/acc_typo"])


# --- grouping never pools different experiments ---------------------------------------------------------------------

def test_callbacks_that_change_training_split_groups_and_the_progress_bar_does_not(tmp_path):
    root = tmp_path / "s"
    for seed in (1, 2):
        write_run(root, f"es_off_{seed}", seed, {"test/acc": 0.9})
        write_run(root, f"es_on_{seed}", seed, {"test/acc": 0.8}, callbacks__early_stopping__enabled=True,
                  callbacks__rich_progress_bar__enabled=False)
    assert varying_keys(load(root)) == ["callbacks.early_stopping.enabled"]
    for seed in (1, 2):
        write_run(root, f"monitor_acc_{seed}", seed, {"test/acc": 0.85}, callbacks__model_checkpoint__monitor="val/acc",
                  callbacks__model_checkpoint__mode="max", callbacks__model_checkpoint__dirpath=f"elsewhere{seed}")
    keys = varying_keys(load(root))  # monitor and mode change together, so one of them tells the groups apart
    assert keys[0] == "callbacks.early_stopping.enabled" and len(keys) == 2
    assert keys[1] in ("callbacks.model_checkpoint.monitor", "callbacks.model_checkpoint.mode")
    assert len(group_runs(load(root), keys, "test/acc")) == 3


def test_settings_of_a_switched_off_early_stopping_do_not_split_groups(tmp_path):
    root = tmp_path / "s"
    write_run(root, "a", 1, {"test/acc": 0.9}, callbacks__early_stopping__patience=3)
    write_run(root, "b", 2, {"test/acc": 0.9}, callbacks__early_stopping__patience=10)
    assert varying_keys(load(root)) == []
    for name, seed, patience in (("c", 1, 3), ("d", 2, 10)):
        write_run(root, name, seed, {"test/acc": 0.9}, callbacks__early_stopping__patience=patience,
                  callbacks__early_stopping__enabled=True)
    assert varying_keys(load(root)) == ["callbacks.early_stopping.enabled", "callbacks.early_stopping.patience"]


def test_runs_on_different_data_sets_are_refused(tmp_path):
    root = tmp_path / "s"
    for seed in (1, 2):
        write_run(root, f"digits_{seed}", seed, {"test/acc": 0.9})
        write_run(root, f"mnist_{seed}", seed, {"test/acc": 0.99}, data__name="mnist")
    with pytest.raises(SystemExit, match=r"2 data sets \(digits, mnist\)"):
        main([str(root)])
    with pytest.raises(SystemExit, match="data sets"):
        main([str(root), "--by", "model.dropout"])


def test_by_a_key_no_run_has_is_refused(tmp_path):
    sweep(tmp_path / "s", {0.0: [0.7, 0.72], 0.5: [0.8, 0.81]})
    with pytest.raises(SystemExit, match=r"--by no\.such\.key: no run has this key.*model\.dropout"):
        main([str(tmp_path / "s"), "--by", "no.such.key"])


def test_by_that_pools_different_experiments_warns_in_one_line(tmp_path, capsys):
    sweep(tmp_path / "s", {0.0: [0.7, 0.72], 0.5: [0.8, 0.81]})
    out_dir = main([str(tmp_path / "s"), "--by", "model.name"])
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "model.dropout" in warnings[0] and "model.name=simple_cnn" in warnings[0]
    assert warnings[0] in (out_dir / "report.md").read_text()


# --- multiple comparisons -------------------------------------------------------------------------------------------

def null_study(rng: np.random.Generator, groups: int = 9, seeds: int = 3) -> list[Run]:
    return [Run(f"{g}/{s}", {"model.dropout": g / 10, "seed": s}, {"test/acc": float(rng.normal(0.9, 0.01))},
                "completed") for g in range(groups) for s in range(seeds)]


def test_with_no_true_difference_a_star_appears_in_at_most_5_percent_of_studies():
    # Before the Holm correction, 9 groups x 3 seeds starred at least one row in about 35 % of such studies.
    rng = np.random.default_rng(0)
    starred = 0
    studies = 300
    for _ in range(studies):
        groups = rank_and_test(group_runs(null_study(rng), ["model.dropout"], "test/acc"), "test/acc", None)
        starred += any(g.p_value < 0.05 for g in groups if not math.isnan(g.p_value))
    assert starred / studies <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / studies)


def holm_by_hand(p_values: list[float]) -> list[float]:
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def test_table_p_values_are_holm_adjusted_over_all_pairs_or_over_the_declared_baseline(tmp_path):
    values = {0.0: [0.90, 0.91, 0.89], 0.1: [0.93, 0.94, 0.935], 0.2: [0.88, 0.87, 0.885], 0.3: [0.91, 0.905, 0.92]}
    sweep(tmp_path / "s", values)
    keys = sorted(values)
    raw = {frozenset((a, b)): stats.ttest_ind(values[a], values[b], equal_var=False).pvalue
           for a, b in itertools.combinations(keys, 2)}
    pairs = list(raw)
    adjusted = dict(zip(pairs, holm_by_hand([raw[p] for p in pairs])))
    groups = compared(tmp_path / "s")  # the best group is the baseline: all 6 pairs are the family
    best = groups[0].values[0][1]
    assert best == 0.1
    for g in groups[1:]:
        dropout = g.values[0][1]
        assert g.p_value == pytest.approx(adjusted[frozenset((best, dropout))])
        assert g.p_raw == pytest.approx(raw[frozenset((best, dropout))])
    groups = compared(tmp_path / "s", baseline={"model.dropout": "0.0"})  # pre-declared: 3 comparisons
    others = [k for k in keys if k != 0.0]
    declared = dict(zip(others, holm_by_hand([raw[frozenset((0.0, k))] for k in others])))
    for g in groups:
        if not g.baseline:
            assert g.p_value == pytest.approx(declared[g.values[0][1]])


def test_the_report_says_the_p_values_are_holm_adjusted(tmp_path):
    sweep(tmp_path / "s", {0.0: [0.90, 0.91, 0.89], 0.5: [0.93, 0.94, 0.935], 0.7: [0.80, 0.82, 0.81]})
    markdown = (main([str(tmp_path / "s")]) / "report.md").read_text()
    assert "Holm" in markdown and "3 comparisons" in markdown
    markdown = (main([str(tmp_path / "s"), "--baseline", "model.dropout=0.0"]) / "report.md").read_text()
    assert "2 comparisons" in markdown


# --- paired test, power and wording ---------------------------------------------------------------------------------

def test_arms_that_share_seeds_get_a_paired_test_aligned_by_seed(tmp_path):
    # Seeds are written in different orders per arm, so pairing by position would be wrong.
    root = tmp_path / "s"
    a = {3: 0.95, 1: 0.91, 2: 0.93}
    b = {1: 0.90, 2: 0.91, 3: 0.92}
    for seed, value in a.items():
        write_run(root, f"a{seed}", seed, {"test/acc": value}, model__dropout=0.5)
    for seed, value in b.items():
        write_run(root, f"b{seed}", seed, {"test/acc": value}, model__dropout=0.0)
    groups = compared(root)
    expected = stats.ttest_rel([a[s] for s in (1, 2, 3)], [b[s] for s in (1, 2, 3)]).pvalue
    assert groups[1].p_paired == pytest.approx(expected) and groups[1].paired_n == 3
    markdown = (main([str(root)]) / "report.md").read_text()
    assert f"{expected:.3g}" in markdown


def test_arms_without_shared_seeds_get_no_paired_test(tmp_path):
    root = tmp_path / "s"
    sweep(root, {0.0: [0.90, 0.91, 0.89]}, seeds=[1, 2, 3])
    sweep(root, {0.5: [0.93, 0.94, 0.935]}, seeds=[4, 5, 6])
    groups = compared(root)
    assert math.isnan(groups[1].p_paired) and groups[1].paired_n == 0 and not math.isnan(groups[1].p_value)


def test_a_non_significant_lead_is_inconclusive_and_says_how_many_seeds_would_detect_it(tmp_path, capsys):
    low, high = [0.90, 0.93, 0.91], [0.92, 0.94, 0.925]
    sweep(tmp_path / "s", {0.0: low, 0.5: high})
    main([str(tmp_path / "s")])
    printed = capsys.readouterr().out
    assert "inconclusive" in printed and "indistinguishable" not in printed
    delta = np.mean(high) - np.mean(low)
    pooled = math.sqrt((np.var(low, ddof=1) + np.var(high, ddof=1)) / 2)
    d = delta / pooled
    n = next(n for n in range(2, 1000) if power_by_nct(n, d) >= 0.8)
    assert f"about {n} seeds per group" in printed


def power_by_nct(n: int, d: float) -> float:
    df, nc = 2 * n - 2, d * math.sqrt(n / 2)
    crit = stats.t.ppf(0.975, df)
    return stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)


def test_a_single_seed_has_no_interval_and_no_test(tmp_path, capsys):
    sweep(tmp_path / "s", {0.0: [0.90], 0.5: [0.95]})
    markdown = (main([str(tmp_path / "s")]) / "report.md").read_text()
    assert "± 0.0000" not in markdown and "[0.9500, 0.9500]" not in markdown and "| 0.9500 |" in markdown
    assert "nan" not in markdown.lower()
    assert "1 seed" in capsys.readouterr().out


def test_accuracy_intervals_stay_within_0_and_1(tmp_path):
    sweep(tmp_path / "s", {0.0: [1.0, 1.0, 0.97], 0.5: [0.90, 0.91, 0.89]})
    groups = compared(tmp_path / "s")
    s = groups[0].stats["test/acc"]
    assert s.ci_high == 1.0 and s.ci_low == pytest.approx(
        stats.t.interval(0.95, 2, loc=np.mean([1.0, 1.0, 0.97]), scale=stats.sem([1.0, 1.0, 0.97]))[0])
    assert "1.0000]" in (main([str(tmp_path / "s")]) / "report.md").read_text()


def test_two_zero_variance_groups_are_compared_not_nan(tmp_path, capsys):
    sweep(tmp_path / "s", {0.0: [0.90, 0.90, 0.90], 0.5: [0.95, 0.95, 0.95]})
    groups = compared(tmp_path / "s")
    assert groups[1].p_raw == pytest.approx(2 / math.comb(6, 3))  # the exact permutation p of complete separation
    markdown = (main([str(tmp_path / "s")]) / "report.md").read_text()
    printed = capsys.readouterr().out
    assert "nan" not in markdown.lower() and "same on every seed" in markdown
    assert "consistent across all 3 vs 3 seeds" in printed and "0.1" in printed


def test_groups_that_gave_the_same_value_on_every_seed_tie_rather_than_lead(tmp_path, capsys):
    # An early stopping that never triggers trains bit-identical runs: no group is 'best' and nothing is inconclusive.
    root = tmp_path / "s"
    for seed, value in ((1, 0.80), (2, 0.86)):
        write_run(root, f"on{seed}", seed, {"test/acc": value}, callbacks__early_stopping__enabled=True)
        write_run(root, f"off{seed}", seed, {"test/acc": value})
    main([str(root)])
    printed = capsys.readouterr().out
    assert "No lead:" in printed and "tie at test acc, best ckpt 0.8300" in printed
    assert "each of the 2 seeds they share" in printed
    assert "inconclusive" not in printed
