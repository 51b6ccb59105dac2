"""The comparison report: grouping by what differs, failed runs kept apart, baselines, and the W&B reader."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from genlab.analysis.report import group_runs, main, rank_and_test, varying_keys
from genlab.analysis.runs import Run, epoch_curves, find_run_dirs, load_local_run, load_wandb_runs


def write_run(root: Path, name: str, dropout: float, seed: int, acc: float, status: str = "completed") -> Path:
    """A run dir in the schema the pipeline writes (results.json, resolved config.yaml, metrics.csv)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    metrics = {"test/acc": acc, "train_eval/acc": acc + 0.02, "gap/acc": 0.02} if status == "completed" else {}
    (run_dir / "results.json").write_text(json.dumps({"schema_version": 1, "status": status, "metrics": metrics}))
    config = {"seed": seed, "model": {"name": "simple_cnn", "dropout": dropout}, "paths": {"output_dir": str(run_dir)}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "metrics.csv").write_text(
        "epoch,step,train/loss_step,val/acc,train_eval/acc,test/acc\n0,5,1.0,,,\n0,9,,0.5,0.6,\n1,19,,0.7,0.8,\n1,19,,,0.9,0.8\n")
    return run_dir


@pytest.fixture
def sweep(tmp_path) -> Path:
    for i, (dropout, seed, acc) in enumerate([(0.0, 1, 0.90), (0.0, 2, 0.92), (0.5, 1, 0.95), (0.5, 2, 0.96)]):
        write_run(tmp_path / "multirun", str(i), dropout, seed, acc)
    write_run(tmp_path / "multirun", "4", 0.5, 3, 0.0, status="failed")
    return tmp_path / "multirun"


def test_curves_are_per_epoch_and_leave_out_the_final_test_rows():
    rows = [dict(zip(["epoch", "step", "val/acc", "test/acc"], r)) for r in
            [("0", "9", "0.5", ""), ("1", "19", "0.7", ""), ("1", "19", "", "0.8")]]
    assert epoch_curves(rows) == [{"epoch": 0, "val/acc": 0.5}, {"epoch": 1, "val/acc": 0.7}]


def test_groups_by_the_keys_that_differ_and_keeps_failed_runs_apart(sweep):
    runs = [load_local_run(d) for d in find_run_dirs([str(sweep)])]
    assert varying_keys(runs) == ["model.dropout"]  # seed and paths are bookkeeping
    groups = rank_and_test(group_runs(runs, ["model.dropout"], "test/acc"), "test/acc", None)
    best, other = groups
    assert best.best and best.label == "model.dropout=0.5" and len(best.runs) == 2 and best.failed == 1
    assert best.stats["test/acc"].mean == pytest.approx(0.955)
    assert other.delta == pytest.approx(0.91 - 0.955) and 0 < other.p_value < 1


def test_keys_determined_by_other_varying_keys_are_left_out():
    def run(name, dropout, depth):
        return Run("x", {"regularization.name": name, "model.dropout": dropout, "model.depth": depth, "seed": 1}, {}, "completed")

    runs = [run("none", 0.0, 20), run("dropout", 0.5, 20), run("none", 0.0, 56), run("dropout", 0.5, 56)]
    assert varying_keys(runs) == ["regularization.name", "model.depth"]


def test_explicit_baseline_and_a_bad_one(sweep):
    runs = [load_local_run(d) for d in find_run_dirs([str(sweep)])]
    groups = rank_and_test(group_runs(runs, ["model.dropout"], "test/acc"), "test/acc", {"model.dropout": "0.0"})
    assert [g.baseline for g in groups] == [False, True] and groups[0].delta == pytest.approx(0.045)
    with pytest.raises(SystemExit, match="matches 0 groups"):
        rank_and_test(group_runs(runs, ["model.dropout"], "test/acc"), "test/acc", {"model.dropout": "0.3"})


def test_report_files_hold_the_numbers_of_the_runs(sweep):
    out = main([str(sweep)])
    markdown = (out / "report.md").read_text()
    assert "model.dropout=0.5" in markdown and "0.9550 ± 0.0071" in markdown and "| 2 | 1 |" in markdown
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "model.dropout=0.0" in html
    assert (out / "learning_curves.png").stat().st_size > 0 and (out / "trend.png").is_file()


def test_wandb_reader_builds_the_same_runs_from_the_api():
    remote = SimpleNamespace(id="abc", state="finished", config={"model": {"dropout": 0.5}, "seed": 1},
                             summary={"test/acc": 0.9, "_step": 3},
                             history=lambda pandas: [{"epoch": 0, "val/acc": 0.5}, {"epoch": None, "x": 1}])
    calls = []
    api = SimpleNamespace(runs=lambda path, filters: calls.append((path, filters)) or [remote])
    (run,) = load_wandb_runs("me/proj", group="g1", api=api)
    assert calls == [("me/proj", {"group": "g1"})]
    assert run.config["model.dropout"] == 0.5 and run.metrics == {"test/acc": 0.9} and run.status == "completed"
    assert run.curves == [{"epoch": 0, "val/acc": 0.5}]


def test_trend_plot_uses_the_numeric_key_even_when_a_name_key_comes_first(tmp_path):
    for i, (aug, fraction, acc) in enumerate([("none", 0.25, 0.5), ("none", 1.0, 0.9), ("standard", 0.25, 0.4),
                                               ("standard", 1.0, 0.95)]):
        run_dir = write_run(tmp_path / "sweep", str(i), 0.0, 1, acc)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config.update(augmentation={"name": aug}, data={"train_fraction": fraction})
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    out = main([str(tmp_path / "sweep")])
    assert "augmentation.name=none, data.train_fraction=0.25" in (out / "report.md").read_text()
    assert (out / "trend.png").stat().st_size > 0
