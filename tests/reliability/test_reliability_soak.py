"""Load: a 20-job multirun in parallel local processes loses no run and mixes none up (`make soak`; ~3 min on 2 cores)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from genlab.analysis.report import main as compare

from conftest import REPO

JOBS = 20


@pytest.mark.slow
@pytest.mark.soak
def test_twenty_parallel_jobs_give_twenty_results_in_their_own_dirs(tmp_path):
    sweep = tmp_path / "soak"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "hydra/launcher=submitit_local", f"seed=range(1,{JOBS + 1})",
         "trainer.max_epochs=2", "logger=csv", "analysis.robustness=false", "callbacks.rich_progress_bar.enabled=false",
         "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    records = {int(p.parent.name): json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert sorted(records) == list(range(JOBS))
    assert all(r["status"] == "completed" and r["seed"] == job + 1 for job, r in records.items())  # nothing mixed up
    out = compare([str(sweep)])
    assert f"| all runs | {JOBS} | 0 |" in (out / "report.md").read_text()
