"""lightning-hydra-template's own tests, re-expressed for genlab (issue 15).

The template's fixture limits every run to a few batches on the CPU with plain Trainer flags, and its tests run
fast_dev_run, the debug presets, two validations per epoch, resume, train-then-eval, every experiment under
debug=fdr, and Hydra and Optuna sweeps. Its DDP-simulation tests are test_distributed.py's: a run on 2 CPU processes
(`trainer=ddp trainer.accelerator=cpu trainer.devices=2`) and DDP jobs inside a multirun.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from genlab.pipeline import evaluate, run

from conftest import REPO, compose_config
from scripts import run_script

# The template's fixture (cfg_train_global), as genlab's overrides: no '+' needed for any of them.
LIMITS = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
          "trainer.limit_test_batches=2", "trainer.accelerator=cpu", "trainer.devices=1", "data.num_workers=0",
          "trainer.log_every_n_steps=1", "analysis.robustness=false", "augmentation.preview_images=0"]
ENV = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}


def record(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())


@pytest.mark.parametrize("overrides", [["trainer.fast_dev_run=true"], ["debug=fdr"], ["debug=default"]],
                         ids=["fast_dev_run", "debug=fdr", "debug=default"])
def test_fast_dev_run_and_the_debug_presets_train_and_test(make_cfg, overrides):
    cfg = make_cfg(*overrides, "trainer.limit_train_batches=4", "analysis.robustness=false")
    metrics = run(cfg)
    assert 0 <= metrics["test/acc"] <= 1 and record(cfg)["status"] == "completed"
    if overrides[0].startswith("debug="):
        assert cfg.paths.log_dir.endswith("outputs/debug")  # never outputs/runs, where compare.py looks
        assert cfg.trainer.accelerator == "cpu" and cfg.trainer.detect_anomaly and cfg.data.num_workers == 0
        assert "wandb" not in cfg.logger  # the CSV record only


@pytest.mark.parametrize("preset", ["limit", "overfit", "profiler"])
def test_the_other_debug_presets_compose_and_change_what_they_say(make_cfg, preset):
    cfg = make_cfg(f"debug={preset}")
    expected = {"limit": ("trainer.limit_train_batches", 5), "overfit": ("data.train_size", 192),
                "profiler": ("trainer.profiler._target_", "lightning.pytorch.profilers.SimpleProfiler")}[preset]
    assert OmegaConf.select(cfg, expected[0]) == expected[1]
    assert cfg.paths.log_dir.endswith("outputs/debug")


def test_two_validations_per_epoch(make_cfg):
    cfg = make_cfg(*LIMITS, "trainer.val_check_interval=0.5")  # 4 batches: validate after 2 and after 4
    run(cfg)
    with open(Path(cfg.paths.output_dir) / "metrics.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/acc")]
    assert [row["epoch"] for row in rows] == ["0", "0"]


def test_resume_from_last_ckpt_trains_one_more_epoch(make_cfg):
    first = make_cfg(*LIMITS)
    run(first)
    checkpoints = Path(first.paths.output_dir) / "checkpoints"
    assert {"last.ckpt", "epoch_000.ckpt"} <= {p.name for p in checkpoints.iterdir()}
    again = make_cfg(*LIMITS, f"ckpt_path={checkpoints / 'last.ckpt'}", "trainer.max_epochs=2")
    run(again)
    names = {p.name for p in checkpoints.iterdir()}
    assert "epoch_001.ckpt" in names and "epoch_002.ckpt" not in names
    assert record(again)["epochs"] == 2


def test_train_then_eval_gives_the_same_test_accuracy(make_cfg, tmp_path):
    trained = make_cfg(*LIMITS)
    metrics = run(trained)
    best = record(trained)["best_checkpoint"]
    cfg = make_cfg(f"ckpt_path={best}", "trainer.limit_test_batches=2", "callbacks.rich_progress_bar.enabled=false",
                   "trainer.enable_progress_bar=false", fast=False, config_name="eval")
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
    assert evaluate(cfg)["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


def train_sweep(cwd: Path, *overrides: str) -> str:
    result = run_script("train.py", "-m", *overrides, cwd=cwd, env=ENV)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


@pytest.mark.slow
def test_every_smoke_experiment_runs_under_debug_fdr_in_one_sweep(tmp_path):
    # the template runs experiment=glob(*); genlab's full presets download CIFAR-10, their _smoke twins run on digits
    smoke = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*_smoke.yaml"))
    # 2 epochs, not debug's 1: cifar10_speed_smoke warms up for 2, and a schedule shorter than its warmup is refused
    out = train_sweep(tmp_path, "experiment=glob(*_smoke)", "debug=fdr", "trainer.max_epochs=2",
                      "~hydra.callbacks.print_config")
    assert f"sweep: {len(smoke)} jobs, {len(smoke)} completed, 0 failed, 0 interrupted" in out.splitlines()[-1]
    (sweep_dir,) = (tmp_path / "outputs" / "debug" / "multirun").iterdir()
    tasks = sorted(json.loads(p.read_text())["task_name"] for p in sweep_dir.glob("*/results.json"))
    assert tasks == smoke


@pytest.mark.slow
def test_optuna_sweep_keeps_its_study_and_prints_a_rerun_line_for_the_best_trial(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = train_sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=3",
                      "hydra.sweeper.sampler.n_startup_trials=2", "debug=fdr", "~hydra.callbacks.print_config",
                      f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert "Study name:" not in out and "A new study created" not in out  # the plugin's set-up lines
    assert out.splitlines()[-1].startswith("sweep: 3 jobs, 3 completed, 0 failed, 0 interrupted")
    study = optuna.load_study(study_name="train", storage=storage)  # what optuna-dashboard reads
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    # the printed line re-runs a best trial: compose it as train.py would
    line = re.search(r"re-run it with: python train\.py (.+)$", out, re.MULTILINE).group(1)
    overrides = shlex.split(line)
    assert "hydra.mode=RUN" in overrides
    cfg = compose_config([o for o in overrides if not o.startswith("hydra.")], tmp_path / "rerun")
    best = [t.params for t in study.trials if t.value == study.best_value]
    assert any(cfg.optimizer.lr == pytest.approx(p["optimizer.lr"]) and cfg.data.batch_size == p["data.batch_size"]
               for p in best)
