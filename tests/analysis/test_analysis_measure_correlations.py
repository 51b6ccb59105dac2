"""compare.py --measures: Kendall τ against scipy, granulated Ψ against slices ranked one by one with scipy, the coupled
sign error by hand, on runs written by hand; the report gains its section and figure."""
from __future__ import annotations

import itertools
import json
import math

import pytest
from scipy import stats

from genlab.analysis import figures
from genlab.analysis.measure_correlations import (coupled_pairs, coupled_sign_error, correlate, figure_landscapes,
                                                  figure_measures, gap_of, granulated_psi, kendall_tau)
from genlab.analysis.report import main

from test_analysis_report_statistics import load, write_run

LRS, DROPOUTS, SEEDS = (0.01, 0.1), (0.0, 0.25, 0.5), (1, 2)


def gap_and_measures(lr: float, dropout: float, seed: int) -> dict[str, float]:
    """A gap rising with lr and falling with dropout; `sharp` follows lr only, `norm` dropout only (inversely, as the
    gap does), `noise` neither; a tie in `flat`."""
    gap = 0.05 + lr - 0.02 * dropout + 0.001 * seed
    return {"gap/acc": gap, "test/acc": 0.9 - gap, "measures/sharp": lr * 100 + seed * 0.01,
            "measures/norm": 1 - dropout, "measures/noise": math.sin(37 * lr + 11 * dropout + seed),
            "measures/flat": 1.0 if dropout < 0.5 else 2.0}


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "study"
    for lr, dropout, seed in itertools.product(LRS, DROPOUTS, SEEDS):
        write_run(root, f"lr{lr}_d{dropout}_s{seed}", seed, gap_and_measures(lr, dropout, seed),
                  optimizer__lr=lr, model__dropout=dropout)
    return root


AXES = ["model.dropout", "optimizer.lr"]


@pytest.mark.parametrize("measure", ["sharp", "norm", "noise", "flat"])
def test_tau_and_its_p_value_are_scipys(study, measure):
    runs = load(study)
    xs, ys = [r.metrics[f"measures/{measure}"] for r in runs], [r.metrics["gap/acc"] for r in runs]
    expected = stats.kendalltau(xs, ys)
    row = next(r for r in correlate(runs, "gap/acc", AXES) if r.name == measure)
    assert (row.tau, row.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert row.runs == 12


def test_tau_is_inconclusive_without_a_ranking():
    assert all(math.isnan(v) for v in kendall_tau([1.0, 2.0], [1.0, 2.0]))  # two runs
    assert all(math.isnan(v) for v in kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # a constant measure


def psi_by_slices(runs, measure: str) -> float:
    """Ψ as Jiang et al. define it, written out: per axis, the mean scipy τ over the slices that fix the other axis
    and the seed; then the mean over the axes."""
    m = {}
    for axis, other, values in (("model.dropout", "optimizer.lr", LRS), ("optimizer.lr", "model.dropout", DROPOUTS)):
        taus = []
        for value, seed in itertools.product(values, SEEDS):
            chosen = [r for r in runs if r.config[other] == value and r.seed == seed]
            xs, ys = [r.metrics[measure] for r in chosen], [r.metrics["gap/acc"] for r in chosen]
            if len(set(xs)) > 1:
                taus.append(stats.kendalltau(xs, ys).statistic)
        if taus:  # an axis with no rankable slice is left out
            m[axis] = sum(taus) / len(taus)
    return sum(m.values()) / len(m)


@pytest.mark.parametrize("measure", ["measures/sharp", "measures/norm", "measures/noise", "measures/flat"])
def test_psi_is_the_mean_over_axes_of_the_mean_slice_tau(study, measure):
    runs = load(study)
    psi, per_axis = granulated_psi(runs, measure, "gap/acc", AXES)
    assert psi == pytest.approx(psi_by_slices(runs, measure))
    if measure == "measures/sharp":  # it ranks the lr slices perfectly and is constant within the dropout slices
        assert per_axis == {"optimizer.lr": pytest.approx(1.0)}


def test_coupled_pairs_differ_in_one_key_at_one_seed_and_their_sign_error_by_hand(study):
    runs = load(study)
    pairs = coupled_pairs(runs, AXES)
    # per seed: lr pairs 3 (one per dropout), dropout pairs 3 per lr (0-0.25, 0-0.5, 0.25-0.5) x 2 lrs
    assert len(pairs) == 2 * (3 + 6)
    assert all(a.seed == b.seed for _, a, b in pairs)
    error, by_key = coupled_sign_error(pairs, "measures/sharp", "gap/acc")
    # sharp is right on every lr pair (0) and ties on every dropout pair (1/2 each): (0 * 6 + 0.5 * 12) / 18
    assert by_key == {"optimizer.lr": 0.0, "model.dropout": 0.5} and error == pytest.approx(6 / 18)
    error, by_key = coupled_sign_error(pairs, "measures/norm", "gap/acc")
    assert by_key["model.dropout"] == 0.0 and by_key["optimizer.lr"] == 0.5


def test_compare_with_measures_adds_the_section_and_figure(study, tmp_path, capsys):
    for results in list(study.glob("*/results.json"))[:3]:  # three runs recorded their landscapes
        record = json.loads(results.read_text())
        record["measures"] = {"landscape": {"init_line": {"alpha": [0.0, 1.0], "loss": [2.3, 0.1]},
                                            "random_direction": {"alpha": [-1.0, 0.0, 1.0], "loss": [0.5, 0.1, 0.4]}}}
        results.write_text(json.dumps(record))
    out = main([str(study), "--measures", "--out", str(tmp_path / "report")])
    assert (out / "landscape.png").stat().st_size > 0 and "## Loss landscapes" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "## Which measure predicts the gap" in report and "model.dropout, optimizer.lr" in report
    assert (out / "measures.png").stat().st_size > 0 and "Which measure predicts the gap" in (out / "report.html").read_text()
    assert "sharp" in capsys.readouterr().out


def test_both_measure_figures_order_a_numeric_key_by_its_value(tmp_path, monkeypatch):
    root = tmp_path / "lrs"
    lrs = (0.1, 1e-05, 0.01, 0.001)  # as text: 0.001 < 0.01 < 0.1 < 1e-05
    for i, lr in enumerate(lrs):
        run_dir = write_run(root, f"lr{i}", 1, {"gap/acc": 0.1 + i / 100, "test/acc": 0.9, "measures/norm": 1.0 + i},
                            optimizer__lr=lr)
        record = json.loads((run_dir / "results.json").read_text())
        record["measures"] = {"landscape": {"init_line": {"alpha": [0.0, 1.0], "loss": [2.3, 0.1 + i]}}}
        (run_dir / "results.json").write_text(json.dumps(record))
    drawn = []
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.append(fig) or path)
    runs = load(root)
    figure_measures(runs, correlate(runs, "gap/acc", ["optimizer.lr"]), "gap/acc", "optimizer.lr", tmp_path / "m.png")
    figure_landscapes(runs, ["optimizer.lr", "seed"], tmp_path / "l.png")
    in_order = [f"optimizer.lr={lr}" for lr in sorted(lrs)]
    assert [t.get_text() for t in drawn[0].legends[0].get_texts()] == in_order
    assert [t.get_text() for t in drawn[1].legends[0].get_texts()] == in_order


def test_the_gap_is_the_compared_weights():
    assert gap_of("test/acc") == "gap/acc" and gap_of("final/test/acc") == "final/gap/acc"
