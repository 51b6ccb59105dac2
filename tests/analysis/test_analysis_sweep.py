"""A real sweep end to end: the ablation smoke multirun, then compare.py on its dir."""
from __future__ import annotations

import json
import os
from statistics import mean

import pytest

from genlab.analysis.report import main

from scripts import run_script


@pytest.mark.slow
def test_ablation_smoke_multirun_and_its_report(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}
    # no hydra.sweep.dir: the default outputs/multirun/<date>_<time>/ under the launch dir, as a user runs it
    # 1 of the preset's 4 epochs: the report reads whatever the runs recorded
    result = run_script("train.py", "-m", "experiment=regularization_ablation_smoke", "trainer.max_epochs=1",
                        "logger=csv", "callbacks.rich_progress_bar.enabled=false", "trainer.enable_progress_bar=false",
                        cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "multirun").iterdir()
    records = {int(p.parent.name): json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert sorted(records) == [0, 1, 2, 3]

    out = main([str(sweep)])
    report = (out / "report.md").read_text()
    by_strategy = {"none": [records[0], records[1]], "dropout": [records[2], records[3]]}  # jobs in sweep order
    for strategy, group in by_strategy.items():
        # the summary table's row; the runs list below it repeats the group once per run
        row = next(line for line in report.splitlines() if f"regularization.name={strategy} |" in line)
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "2" and cells[3] == "0"  # n seeds, failed
        # the ablation compares the last epoch's weights: its first measure is their test accuracy
        expected = mean(r["metrics"]["final/test/acc"] for r in group)
        assert cells[4].startswith(f"{expected:.4f} ± ")
    table = next(line for line in report.splitlines() if line.startswith("| "))  # the verdict's lines come first
    header = [c.strip() for c in table.strip("|").split("|")]
    assert header[4] == "test acc, last epoch" and "test acc, best ckpt" in header
    assert "Best: regularization.name=" in report and ": test acc, last epoch " in report
    assert (out / "report.html").is_file()
