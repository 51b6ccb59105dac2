"""Which weights a study compares: the study presets choose the last epoch's, compare.py ranks by the weights the runs
say they compare and refuses runs that disagree, and the table shows both."""
from __future__ import annotations

import pytest

from genlab.analysis.labels import metric_label
from genlab.analysis.report import main
from genlab.config import validate
from genlab.errors import ConfigError

from test_analysis_report_statistics import write_run

STUDIES = ("regularization_ablation", "label_noise", "data_scaling", "depth", "long_tail")


@pytest.mark.parametrize("experiment", [*STUDIES, *(f"{s}_smoke" for s in STUDIES), "architecture_zoo", "batch_size"])
def test_the_study_presets_compare_the_last_epochs_weights(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.analysis.compared_weights == ("last" if experiment.removesuffix("_smoke") in STUDIES else "best")
    assert make_cfg(f"experiment={experiment}", "analysis.compared_weights=best").analysis.compared_weights == "best"


def test_an_unknown_choice_of_weights_is_refused(make_cfg):
    with pytest.raises(ConfigError, match=r"analysis.compared_weights: got 'final', expected one of \['best', 'last'\]"):
        validate(make_cfg("analysis.compared_weights=final"), cuda_available=False)


def two_arms(root, weights: str | None, best: tuple[float, float], last: tuple[float, float]):
    """Arms A and B, 3 seeds each: `best` and `last` are each arm's test/acc and final/test/acc (seed noise added)."""
    for arm, b, f in (("a", best[0], last[0]), ("b", best[1], last[1])):
        for seed, noise in zip((1, 2, 3), (-0.01, 0.0, 0.01)):
            extra = {} if weights is None else {"analysis__compared_weights": weights}
            write_run(root, f"{arm}{seed}", seed, {"test/acc": b + noise, "final/test/acc": f + noise},
                      model__dropout={"a": 0.0, "b": 0.5}[arm], **extra)
    return root


@pytest.mark.parametrize("weights,winner,metric", [("best", "0.0", "test/acc"), (None, "0.0", "test/acc"),
                                                   ("last", "0.5", "final/test/acc")])
def test_compare_ranks_by_the_weights_the_runs_compare(tmp_path, capsys, weights, winner, metric):
    # arm 0.0 wins at its best checkpoint, arm 0.5 at its last epoch: the verdict must follow the runs' choice
    two_arms(tmp_path, weights, best=(0.90, 0.80), last=(0.70, 0.85))
    report = (main([str(tmp_path)]) / "report.md").read_text()
    assert report.splitlines()[2].startswith(f"Best: model.dropout={winner}: {metric_label(metric)} ")
    header = next(line for line in report.splitlines() if line.startswith("| "))
    assert "test acc, best ckpt" in header and "test acc, last epoch" in header  # both are always shown
    assert "analysis.compared_weights" not in header  # the choice is not a grouping key


def test_runs_that_compare_different_weights_are_refused_unless_the_metric_is_named(tmp_path):
    two_arms(tmp_path / "x", "best", best=(0.9, 0.8), last=(0.7, 0.85))
    two_arms(tmp_path / "y", "last", best=(0.9, 0.8), last=(0.7, 0.85))
    with pytest.raises(SystemExit, match=r"analysis.compared_weights: best in 6 runs, last in 6 runs\); pass --metric"):
        main([str(tmp_path)])
    report = (main([str(tmp_path), "--metric", "final/test/acc", "--by", "model.dropout"]) / "report.md").read_text()
    assert report.splitlines()[2].startswith("Best: model.dropout=0.5: test acc, last epoch ")
