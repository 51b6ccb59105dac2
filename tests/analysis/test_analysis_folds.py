"""compare.py on K-fold runs: runs differing only in data.fold are replicates of one group, paired by (seed, fold),
and the report says n counts seeds x folds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from genlab.analysis.report import group_runs, main, rank_and_test, varying_keys
from genlab.analysis.runs import find_run_dirs, load_local_runs

# test/acc by (regularization, seed, fold): two arms, 2 seeds x 3 folds each
ACC = {(reg, seed, fold): 0.80 + 0.05 * (reg == "dropout") + 0.01 * seed + 0.003 * fold ** 2 * (1 + (reg == "none"))
       for reg in ("none", "dropout") for seed in (1, 2) for fold in range(3)}


def write_fold_run(root: Path, name: str, regularization: str, seed: int, fold: int, acc: float) -> None:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({"schema_version": 1, "status": "completed",
                                                      "metrics": {"test/acc": acc}}))
    config = {"seed": seed, "regularization": {"name": regularization}, "data": {"folds": 3, "fold": fold}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture
def study(tmp_path) -> Path:
    for i, ((reg, seed, fold), acc) in enumerate(ACC.items()):
        write_fold_run(tmp_path / "cv", str(i), reg, seed, fold, acc)
    return tmp_path / "cv"


def test_folds_are_replicates_of_one_group_paired_by_seed_and_fold(study):
    runs, _ = load_local_runs(find_run_dirs([str(study)]))
    assert varying_keys(runs) == ["regularization.name"]  # data.fold tells replicates apart, not groups
    best, other = rank_and_test(group_runs(runs, ["regularization.name"], "test/acc"), "test/acc", None)
    arms = {reg: [ACC[(reg, s, f)] for s in (1, 2) for f in range(3)] for reg in ("none", "dropout")}
    assert best.label == "regularization.name=dropout" and len(best.runs) == len(other.runs) == 6
    assert best.stats["test/acc"].mean == pytest.approx(np.mean(arms["dropout"]))
    assert other.p_raw == pytest.approx(stats.ttest_ind(arms["none"], arms["dropout"], equal_var=False).pvalue)
    assert other.paired_n == 6  # every (seed, fold) pair, though each seed appears three times per group
    assert other.p_paired_raw == pytest.approx(stats.ttest_rel(arms["none"], arms["dropout"]).pvalue)


def test_the_report_says_n_counts_seeds_times_folds(study):
    markdown = (main([str(study)]) / "report.md").read_text()
    assert ("Folds are replicates, as seeds are: runs differing only in data.fold (data.folds=3) are one group, and n "
            "counts seeds × folds (2 seeds × 3 folds)") in markdown
    assert "| 1, fold 2 |" in markdown  # the runs list names each replicate
