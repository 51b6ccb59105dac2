"""Reproducibility: the same seed gives bit-identical results, and a run dir holds what it takes to re-run it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from genlab.pipeline import run

from conftest import compose_config
from scripts import run_script


def test_deterministic_runs_with_the_same_seed_are_bit_identical(tmp_path):
    overrides = ["logger=csv", "callbacks.rich_progress_bar.enabled=false", "trainer.enable_progress_bar=false",
                 "trainer.deterministic=true", "trainer.max_epochs=2", "model.dropout=0.3",
                 # every metric is compared: the PNGs (confusion matrix, augmentation grid) add none, at ~1 s a run
                 "analysis.confusion_matrix=false", "augmentation.preview_images=0", "seed=5"]
    first = run(compose_config(overrides, tmp_path / "a"))
    second = run(compose_config(overrides, tmp_path / "b"))
    assert first == second  # exact equality, every metric
    other_seed = run(compose_config([*overrides[:-1], "seed=6"], tmp_path / "c"))
    assert other_seed["test/loss"] != first["test/loss"]


def test_a_run_dir_records_what_it_takes_to_rerun_it(tmp_path):
    cfg = compose_config(["logger=csv", "trainer.max_epochs=1", "analysis.robustness=false"], tmp_path / "run")
    run(cfg)
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"command", "git", "packages", "seed"} <= set(record) and {"commit", "dirty"} <= set(record["git"])
    assert (tmp_path / "run" / "config.yaml").is_file()


@pytest.mark.slow
def test_rerunning_from_the_saved_hydra_config_reproduces_the_run(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline"}
    common = ["logger=csv", "trainer.max_epochs=2", "trainer.deterministic=true", "analysis.robustness=false"]

    def train(*args: str, run_dir: Path) -> dict:
        result = run_script("train.py", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads((run_dir / "results.json").read_text())["metrics"]

    original = train(*common, "seed=3", "model.width=16", run_dir=tmp_path / "original")
    again = train("--config-dir", str(tmp_path / "original" / ".hydra"), "--config-name", "config",
                  run_dir=tmp_path / "again")
    assert again == original
    saved = (tmp_path / "again" / "config.yaml").read_text()
    assert "width: 16" in saved and "seed: 3" in saved
