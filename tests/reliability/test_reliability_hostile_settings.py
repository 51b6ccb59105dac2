"""Settings that Lightning, torch or Hydra would reject only later, or in several lines (issue 22, families 3, 4 and 6):
each is one line naming the key, the value and what is allowed, exit code 2, before any data is read or any file of
the run is written; a sweep with one bad job runs the others; SIGTERM during a start leaves no half-made run dir."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from genlab.errors import ConfigError
from genlab.pipeline import run

from scripts import run_script, start_script

ENV = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("overrides,message", [
    (["callbacks.model_checkpoint.monitor=val/accuracy"],
     "callbacks.model_checkpoint.monitor: got 'val/accuracy', expected a metric every epoch logs: ['val/acc', "),
    (["regularization=early_stopping", "callbacks.early_stopping.monitor=nope"],
     "callbacks.early_stopping.monitor: got 'nope', expected a metric every epoch logs"),
    (["callbacks.model_checkpoint.mode=maximum"], "callbacks.model_checkpoint.mode: got 'maximum', expected min or max"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch: got 0, expected an integer in [1, "),
    (["trainer.max_epochs=3", "trainer.check_val_every_n_epoch=4"], "trainer.check_val_every_n_epoch: got 4, expected"),
    (["trainer.val_check_interval=0"], "trainer.val_check_interval: got 0, expected null (once an epoch)"),
    (["trainer.val_check_interval=2.5"], "trainer.val_check_interval: got 2.5, expected"),
    (["trainer.devices=0"], "trainer.devices: got 0, expected auto, -1 (all), a count >= 1 or a list of device ids"),
    (["trainer.devices=[]"], "trainer.devices: got [], expected"),
    (["trainer.accelerator=tpu"], "trainer.accelerator: got 'tpu', expected an accelerator this machine has: tpu needs "
                                  "torch_xla"),
    (["trainer.accelerator=quantum"], "trainer.accelerator: got 'quantum', expected one of ['auto', 'cpu'"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val: got -1, expected null or 0 (off) or a number > 0"),
    (["trainer.limit_train_batches=0"], "trainer.limit_train_batches: got 0, expected null (all), a fraction in (0, 1]"),
    (["trainer.limit_val_batches=1.5"], "trainer.limit_val_batches: got 1.5, expected null (all)"),
    (["model.width=100000"], "model: got 'simple_cnn with 180,103,601,418 parameters', expected a network whose "
                             "training state (about 3,354.7 GiB"),
], ids=lambda v: v[0] if isinstance(v, list) else "")
def test_settings_rejected_late_by_lightning_are_one_line_before_anything_runs(make_cfg, tmp_path, overrides, message):
    with pytest.raises(ConfigError) as refused:
        run(make_cfg(*overrides))
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()  # refused before the data was read and before anything was written


@pytest.mark.parametrize("overrides,message", [
    (["trainer.val_check_interval=1000"], "trainer.val_check_interval: got 1000, expected at most the 21 training "
                                          "batches of an epoch (1293 images / data.batch_size=64)"),
    (["trainer.accumulate_grad_batches=50"], "trainer.accumulate_grad_batches: got 50, expected an integer in [1, 21]"),
    (["trainer.limit_train_batches=5", "trainer.val_check_interval=6"],
     "trainer.val_check_interval: got 6, expected at most the 5 training batches"),
])
def test_intervals_are_checked_against_the_epoch_the_data_gives(make_cfg, tmp_path, overrides, message):
    with pytest.raises(ConfigError) as refused:
        run(make_cfg(*overrides))
    assert str(refused.value).startswith(message)
    assert not (tmp_path / "run" / "config.yaml").exists() and not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.slow
def test_hydras_own_errors_are_one_line_with_the_fix(tmp_path):
    cases = {
        "optimizer.lrr=0.1": "error: optimizer.lrr: no such key; did you mean optimizer.lr?",
        "foo=bar": "error: foo: no such key; to add a new key, write +foo=…",
        "model=resnet model.dpeth=20": "error: model.dpeth: no such key; did you mean model.depth?",
        "+trainer.fast_dev_run=true": "error: +trainer.fast_dev_run: drop the +: trainer.fast_dev_run is already a key "
                                      "(trainer.fast_dev_run=<value> sets it)",
        "regularization.dropout=0.5": "error: regularization.dropout: no such key: set model.dropout, which the presets "
                                      "set and an explicit value overrides",
        "seed=1,2": "error: seed: got '1,2', expected one value: add -m (--multirun) to sweep over them, or write "
                    "seed=[1,2] for a list",
        "seed=[": "error: seed=[: not a Hydra override (",
        "hydra/launcher=nope": "error: hydra/launcher: got 'nope', expected one of ['basic', 'joblib', 'parallel', ",
    }
    for args, expected in cases.items():
        result = run_script("train.py", *args.split(), cwd=tmp_path, env=ENV)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), (args, result.stderr)
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.json"))


@pytest.mark.slow
def test_a_sweep_with_one_invalid_job_runs_the_others_and_marks_it_failed(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_script("train.py", "-m", "optimizer.lr=-1,1e-3", "trainer.max_epochs=1", "logger=csv",
                        "analysis.robustness=false", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path, env=ENV,
                        merge_stderr=True)
    assert result.returncode == 1, result.stdout[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"sweep: 2 jobs, 1 completed, 1 failed, 0 interrupted ({sweep_dir})"
    refused = json.loads((sweep_dir / "0" / "results.json").read_text())
    assert refused["status"] == "failed" and refused["error"] == "optimizer.lr: got -1, expected a number > 0"
    assert json.loads((sweep_dir / "1" / "results.json").read_text())["status"] == "completed"
    assert "error: optimizer.lr: got -1, expected a number > 0" in result.stdout and "Traceback" not in result.stdout


@pytest.mark.slow
def test_sigterm_during_the_start_leaves_no_half_made_run_dir(tmp_path):
    # 30,000 synthetic images: a second or more of start-up between the run dir's creation and the first step
    process = start_script("train.py", "data=synthetic", "data.num_train=30000", "data.image_size=16", "logger=csv",
                           cwd=tmp_path, env=ENV, merge_stderr=True)
    runs = tmp_path / "outputs" / "runs"
    deadline = time.monotonic() + 120
    while not (runs.is_dir() and any((d / ".hydra" / "config.yaml").exists() for d in runs.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-2000:]
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 143, out[-2000:]
    assert list(runs.iterdir()) == []  # the run dir it had made, with Hydra's files in it, is gone
