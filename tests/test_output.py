"""What a person reads (issue 15): one line per epoch in a log, the four metrics on the bar, a summary whose run dir
never wraps, no advertising, choices in --help that are whole, TensorBoard as complete as W&B, the model table of a
data set's shape."""
from __future__ import annotations

import os
import re
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, compose_config
from scripts import run_script

ENV = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
EPOCH_LINE = re.compile(r"epoch (\d+)/1  train/loss \d\.\d{4}  train/acc \d\.\d{4}  val/loss \d\.\d{4}  val/acc \d\.\d{4}  "
                        r"\d+\.\d s")


@pytest.mark.slow
def test_a_log_file_gets_one_line_per_epoch_and_nothing_a_person_does_not_read(tmp_path):
    log = tmp_path / "train.out"
    # stdout and stderr into one file, as nohup or SLURM keep them: not a terminal
    trained = run_script("train.py", "trainer.max_epochs=2", "analysis.robustness=false",
                         f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=ENV, merge_stderr=True, check=True)
    log.write_text(trained.stdout)
    text = log.read_text()
    epochs = [m.group(1) for m in (EPOCH_LINE.fullmatch(line) for line in text.splitlines()) if m]
    assert epochs == ["0", "1"], text[-3000:]
    assert f"outputs: {tmp_path / 'run'}" in text.splitlines()  # whole, on its own line
    for noise in ("v_num", "Tip:", "litlogger", "Run history", "Run summary:"):  # W&B's footer says the last two
        assert noise not in text, noise
    evaluated = run_script("eval.py", f"ckpt_path={tmp_path / 'run/checkpoints/last.ckpt'}",
                           f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path, env=ENV, check=True)
    assert "Tip:" not in evaluated.stdout + evaluated.stderr and "litmodels" not in evaluated.stdout + evaluated.stderr
    # and no warning in either (a W&B table that could not be staged once warned here)
    assert not re.search(r"\.py:\d+: ", text + evaluated.stdout + evaluated.stderr), evaluated.stderr[-3000:]


def test_the_bar_shows_train_and_val_loss_and_accuracy_and_nothing_else():
    from genlab.training.progress import EpochLines, MetricsBar, progress_bar

    logged = {"train/loss_step": torch.tensor(0.5), "train/loss_epoch": torch.tensor(0.6), "train/acc": torch.tensor(0.8),
              "val/loss": torch.tensor(0.7), "val/acc": torch.tensor(0.75), "val/acc_top5": torch.tensor(1.0),
              "val/acc_best": torch.tensor(0.75), "gap_val/acc": torch.tensor(0.05)}
    trainer = SimpleNamespace(callback_metrics=logged, progress_bar_metrics=logged, loggers=[])
    shown = MetricsBar().get_metrics(trainer, None)
    assert shown == pytest.approx({"train/loss": 0.5, "train/acc": 0.8, "val/loss": 0.7, "val/acc": 0.75})
    assert isinstance(progress_bar(), EpochLines)  # pytest's output is not a terminal


def test_the_summary_never_wraps_the_run_dir(capsys, tmp_path):
    from genlab.summary import print_summary

    run_dir = tmp_path / ("a_long_study_name_" * 6) / "2026-12-01_10-00-00_regularization_ablation_smoke"
    metrics = {"test/acc": 0.9, "final/test/acc": 0.88, "train_eval/acc": 0.95, "gap/acc": 0.05, "test/loss": 0.3,
               "test/ece": 0.02}
    tested = {"test": {"weights": "best", "epoch": 3, "monitor": "val/loss", "mode": "min"},
              "final": {"weights": "last", "epoch": 5}}
    print_summary("Run summary", metrics, {"name": "simple_cnn", "params": 1000, "flops": 2e6}, 1.0, run_dir, [],
                  tested)
    lines = capsys.readouterr().out.splitlines()
    assert f"outputs: {run_dir.resolve()}" in lines
    assert any("epoch 3, lowest val/loss" in line for line in lines) and any("0.8800" in line for line in lines)


def test_help_offers_whole_callback_sets_only():
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        options = GlobalHydra.instance().config_loader().get_group_options("callbacks")
        debug = GlobalHydra.instance().config_loader().get_group_options("debug")
    assert options == ["default", "none"]  # callbacks=early_stopping once dropped checkpointing and the NaN guard
    assert debug == ["default", "fdr", "limit", "overfit", "profiler"]
    cfg = compose_config(["callbacks.early_stopping.enabled=true"], Path("/tmp/unused"))
    assert cfg.callbacks.model_checkpoint.enabled and cfg.callbacks.stop_on_non_finite_loss.enabled


def test_tensorboard_gets_the_images_and_a_real_hp_metric(make_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from genlab.pipeline import run

    cfg = make_cfg("logger=tensorboard", "trainer.max_epochs=1", "trainer.limit_train_batches=4",
                   "analysis.robustness=false", "augmentation.preview_images=8",
                   "analysis.confusion_matrix=true")
    metrics = run(cfg)
    events = EventAccumulator(str(Path(cfg.paths.output_dir) / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert {"augmentation/samples", "confusion_matrix"} <= set(events.Tags()["images"])
    (hp_metric,) = events.Scalars("hp_metric")  # Lightning's default logs -1 here
    assert hp_metric.value == pytest.approx(metrics["val/acc_best"])


def test_model_table_of_a_data_sets_shape(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m genlab.models", "--table", "--data", "digits"])
    runpy.run_module("genlab.models", run_name="__main__")
    out = capsys.readouterr().out
    assert out.startswith("digits: 1x8x8 inputs, 10 classes")
    assert "| simple_cnn | `model=simple_cnn` | 53,002 |" in out  # 545,098 at CIFAR-10's 3x32x32
