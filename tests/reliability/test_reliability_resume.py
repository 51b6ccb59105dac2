"""Resume: the newest checkpoint of a run is found without a path, the run continues in its own dir (metrics.csv,
W&B run), mismatched checkpoints are refused, and an interruption leaves a checkpoint and a resume command."""
from __future__ import annotations

import csv
import json
import os
import signal
import time
import warnings
from pathlib import Path

import pytest
import torch

from genlab.errors import ConfigError
from genlab.pipeline import run
from genlab.resume import newest_checkpoint, run_dir_for

from conftest import FAST, compose_config
from scripts import run_script, start_script


def epochs_in(metrics_csv: Path) -> list[int]:
    return sorted({int(r["epoch"]) for r in csv.DictReader(open(metrics_csv)) if r.get("val/acc")})


def test_resume_continues_the_same_run_dir_csv_and_wandb_run(tmp_path):
    run_dir = tmp_path / "run"
    common = [*FAST, "logger=wandb", "analysis.robustness=false", "trainer.deterministic=true"]
    run(compose_config([*common, "trainer.max_epochs=2"], run_dir))
    wandb_id = (run_dir / "wandb_run_id").read_text()
    assert epochs_in(run_dir / "metrics.csv") == [0, 1]
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        resumed = run(compose_config([*common, "trainer.max_epochs=4", "ckpt_path=last", f"resume_dir={run_dir}"], run_dir))
    assert not [w for w in shown if "exists and is not empty" in str(w.message)]  # its own checkpoints are expected
    assert epochs_in(run_dir / "metrics.csv") == [0, 1, 2, 3]
    assert (run_dir / "wandb_run_id").read_text() == wandb_id
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{wandb_id}"))) == 2  # both segments, one W&B run id
    assert json.loads((run_dir / "results.json").read_text())["metrics"] == resumed


def test_last_without_checkpoints_and_a_missing_file_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"ckpt_path: got 'last', expected a run dir with checkpoints"):
        run(compose_config([*FAST, "ckpt_path=last"], tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"ckpt_path: got '/no/such.ckpt', expected an existing .ckpt file"):
        run(compose_config([*FAST, "ckpt_path=/no/such.ckpt"], tmp_path / "other"))


def test_a_checkpoint_of_another_model_or_class_count_is_refused(tmp_path):
    run(compose_config([*FAST, "trainer.max_epochs=1", "analysis.robustness=false"], tmp_path / "cnn"))
    ckpt = newest_checkpoint(tmp_path / "cnn")
    with pytest.raises(ConfigError, match=r"model.name: got 'lenet5', expected 'simple_cnn'"):
        run(compose_config([*FAST, "model=lenet5", f"ckpt_path={ckpt}"], tmp_path / "lenet"))


def test_the_run_dir_resolver_finds_the_newest_resumable_run_of_the_task(tmp_path):
    for name, has_ckpt in (("2026-01-01_10-00-00_train", True), ("2026-01-02_10-00-00_train", True),
                           ("2026-01-03_10-00-00_train", False), ("2026-01-04_10-00-00_other", True)):
        (tmp_path / "runs" / name / "checkpoints").mkdir(parents=True)
        if has_ckpt:
            torch.save({"state_dict": {}}, tmp_path / "runs" / name / "checkpoints" / "last.ckpt")
            time.sleep(0.01)
    newest = str(tmp_path / "runs" / "2026-01-02_10-00-00_train")
    assert run_dir_for(str(tmp_path), "train", "true", None, None, "now") == newest
    assert run_dir_for(str(tmp_path), "train", "false", "last", None, "now") == newest
    assert run_dir_for(str(tmp_path), "train", "false", None, None, "now") == str(tmp_path / "runs" / "now_train")
    assert run_dir_for(str(tmp_path), "train", "false", None, str(tmp_path / "x"), "now") == str(tmp_path / "x")


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline"}
    run_dir = tmp_path / "run"
    proc = start_script("train.py", "trainer.max_epochs=1000", "logger=csv", "analysis.robustness=false",
                        f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "interrupted" and (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    command = record["resume_command"]
    assert stderr.strip().splitlines()[-1].endswith(f"Resume with: {command}")
    args = command.split()[2:] + ["trainer.max_epochs=3"]  # after "python train.py"
    resumed = run_script("train.py", *args, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "completed"
