"""What the report writes and prints besides its figures: report.csv and report.tex, a second report that never
overwrites the first, --baseline values read as config values, one verdict line per arm against a declared
baseline, and a terminal table that fits the terminal."""
from __future__ import annotations

import csv
import io
import itertools

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from genlab.analysis import exports, terminal
from genlab.analysis.compare_args import Refusal, key_values
from genlab.analysis.figures import WRAP_AT
from genlab.analysis.report import columns_for, group_runs, main, rank_and_test, table_rows
from test_analysis_report_statistics import load, sweep, write_run

DEPTH = {20: [0.910, 0.915, 0.905, 0.912], 56: [0.880, 0.890, 0.870, 0.885], 32: [0.906, 0.915, 0.903, 0.911]}


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    """Without the figures (test_analysis_report_pictures.py's subject): a second or more each."""
    monkeypatch.setattr("genlab.analysis.report.write_figures", lambda *args: [])


def ranked(root, baseline=None, by=("model.dropout",)):
    return rank_and_test(group_runs(load(root), list(by), "test/acc"), "test/acc", baseline)


# --- report.csv and report.tex --------------------------------------------------------------------------------------

def test_the_csv_holds_every_number_at_full_precision(tmp_path):
    values = {0.0: [0.90, 0.93, 0.91], 0.5: [0.95, 0.96, 0.955]}
    groups = ranked(sweep(tmp_path / "s", values))
    rows = list(csv.DictReader(io.StringIO(exports.table_csv(groups, {"test/acc": "test acc, best ckpt"}))))
    for row in rows:
        mine = values[float(row["group"].split("=")[1])]
        interval = stats.t.interval(0.95, len(mine) - 1, loc=np.mean(mine), scale=stats.sem(mine))
        assert float(row["test/acc mean"]) == pytest.approx(np.mean(mine), abs=1e-15)
        assert float(row["test/acc std"]) == pytest.approx(np.std(mine, ddof=1), abs=1e-15)
        assert (float(row["test/acc ci_low"]), float(row["test/acc ci_high"])) == pytest.approx(interval)
    best, other = rows
    assert (best["best"], best["baseline"], best["delta"], best["p_welch_holm"]) == ("1", "1", "", "")
    assert float(other["p_welch_holm"]) == pytest.approx(stats.ttest_ind(values[0.0], values[0.5],
                                                                         equal_var=False).pvalue)


def test_the_latex_table_is_booktabs_with_the_best_in_bold_only_when_significant(tmp_path):
    columns = {"test/acc": "test acc, best ckpt"}
    clear = ranked(sweep(tmp_path / "a", {0.0: [0.90, 0.91, 0.905], 0.5: [0.95, 0.96, 0.955]}))
    latex = exports.table_latex(clear, columns, "test/acc", 0.05)
    assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
    assert "model.dropout=0.5 (baseline) & 3 & \\textbf{0.9550} {\\scriptsize [" in latex
    assert "test acc, best ckpt" in latex and "The best test acc, best ckpt is bold only when" in latex
    close = ranked(sweep(tmp_path / "b", {0.0: [0.90, 0.93, 0.91], 0.5: [0.92, 0.95, 0.90]}))
    assert close[1].p_value > 0.05 and "\\textbf" not in exports.table_latex(close, columns, "test/acc", 0.05)
    single = ranked(sweep(tmp_path / "c", {0.0: [0.90], 0.5: [0.95]}))  # one seed each: untestable, no bold
    assert "\\textbf" not in exports.table_latex(single, columns, "test/acc", 0.05)
    assert exports.latex_escape("lr_1e-3 & 50% #2") == r"lr\_1e-3 \& 50\% \#2"


# --- a second report never overwrites the first ---------------------------------------------------------------------

def test_a_second_compare_on_the_same_dir_writes_a_new_report_dir(tmp_path, capsys):
    root = sweep(tmp_path / "s", {0.0: [0.90, 0.91], 0.5: [0.95, 0.96]})
    first = main([str(root)])
    assert first == root and {"report.md", "report.html", "report.csv", "report.tex"} <= {p.name for p in
                                                                                          first.iterdir()}
    before = (first / "report.md").read_text()
    capsys.readouterr()
    second = main([str(root)])
    assert second == root / "report-2" and (second / "report.csv").is_file()
    assert (first / "report.md").read_text() == before
    assert f"note: {root} already holds a report; this one goes to {root / 'report-2'}" in capsys.readouterr().err
    assert main([str(root)]) == root / "report-3"
    assert len(load(root)) == 4  # the report dirs are no runs


# --- --baseline values are config values ----------------------------------------------------------------------------

def test_baseline_values_are_read_as_config_values():
    assert key_values("model.residual=false,optimizer.lr=1e-3") == {"model.residual": False, "optimizer.lr": 0.001}
    assert key_values("model.widths=[16,32],model.name=none") == {"model.widths": (16, 32), "model.name": "none"}
    with pytest.raises(Exception, match="not a config value"):
        key_values("model.name=a=b=")


def test_baseline_false_matches_the_group_whose_value_is_false_and_not_zero(tmp_path):
    root = tmp_path / "s"
    for residual, accs in ((False, [0.90, 0.91]), (True, [0.95, 0.96])):
        for seed, acc in enumerate(accs, 1):
            write_run(root, f"r{residual}{seed}", seed, {"test/acc": acc}, model__residual=residual)
    for typed in ("false", "False"):
        groups = ranked(root, key_values(f"model.residual={typed}"), by=("model.residual",))
        assert [dict(g.values)["model.residual"] for g in groups if g.baseline] == [False]
    root0 = sweep(tmp_path / "zero", {0: [0.90, 0.91], 1: [0.95, 0.96]})  # model.dropout is the int 0
    with pytest.raises(Refusal, match="matches 0 groups"):
        ranked(root0, key_values("model.dropout=false"))
    assert [g.baseline for g in ranked(root0, key_values("model.dropout=0.0"))] == [False, True]  # 0 == 0.0


# --- with a declared baseline, one verdict per arm ------------------------------------------------------------------

def test_each_arm_gets_its_own_verdict_against_the_declared_baseline(tmp_path, capsys):
    root = tmp_path / "depth"
    for depth, accs in DEPTH.items():
        for seed, acc in enumerate(accs, 1):
            write_run(root, f"d{depth}_{seed}", seed, {"test/acc": acc}, model__depth=depth)
    main([str(root), "--baseline", "model.depth=20"])
    printed = capsys.readouterr().out
    arms = [line for line in printed.splitlines() if " vs baseline model.depth=20: " in line]
    assert [line.split(" vs ")[0] for line in arms] == ["model.depth=32", "model.depth=56"]  # ranked, baseline out
    welch = {d: stats.ttest_ind(DEPTH[d], DEPTH[20], equal_var=False).pvalue for d in (32, 56)}
    (first, p_first), (second, p_second) = sorted(welch.items(), key=lambda item: item[1])
    holm = {first: min(1.0, 2 * p_first), second: max(min(1.0, 2 * p_first), p_second)}  # Holm's step-down, k = 2
    for line, depth in zip(arms, (32, 56)):
        assert f"Welch p = {welch[depth]:.3g}, Holm-adjusted over 2 comparisons: {holm[depth]:.3g}" in line
        assert f"Δ {np.mean(DEPTH[depth]) - np.mean(DEPTH[20]):+.4f}" in line and "P(model.depth=" in line
    assert "inconclusive at 4 vs 4 seeds" in arms[0] and arms[1].split(", ")[1].startswith("significant")


# --- the terminal table fits ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [100, 80, 64])  # 62 is the narrowest this table can be drawn
def test_the_terminal_table_fits_its_width_without_cutting_a_cell(tmp_path, width):
    root = tmp_path / "s"
    for name, accs in (("regularization_strong", [0.94, 0.95, 0.945]), ("none", [0.90, 0.91, 0.905])):
        for seed, acc in enumerate(accs, 1):
            write_run(root, f"{name}{seed}", seed, {"test/acc": acc, "train_eval/acc": acc + 0.03,
                                                    "gap/acc": 0.03, "test/ece": 0.05, "final/test/acc": acc},
                      regularization__name=name)
    groups = rank_and_test(group_runs(load(root), ["regularization.name"], "test/acc"), "test/acc", None)
    header, rows = table_rows(groups, "test/acc", with_ci=False)
    console = Console(width=width, file=io.StringIO(), force_terminal=True, color_system=None)
    table, dropped = terminal.fitted_table(console, header, rows)
    console.print(table)
    drawn = console.file.getvalue()
    assert max(map(len, drawn.splitlines())) <= width and "…" not in drawn
    body = [line.split("│") for line in drawn.splitlines() if line.startswith("│")]
    group_lines = [cells[2].strip() for cells in body if cells[2].strip()]
    labels = [g.label for g in groups]
    assert "".join(group_lines) == "".join(labels)  # every label whole, in order, only wrapped
    starts = [0, *itertools.accumulate(map(len, labels))]  # offsets in the labels written one after the other
    breaks = {start + m.start() for start, label in zip(starts, labels) for m in WRAP_AT.finditer(label)}
    assert set(itertools.accumulate(map(len, group_lines))) <= breaks | set(starts)  # lines end at break points
    for g in groups:
        assert f"{g.stats['test/acc'].mean:.4f}" in drawn
    assert "test acc, best ckpt" not in dropped and "p Welch (Holm)" not in dropped
    wide = Console(width=400, file=io.StringIO(), force_terminal=True)
    assert terminal.fitted_table(wide, header, rows)[1] == []  # nothing left out where everything fits
    assert columns_for("test/acc")["test/acc"] == header[4]
