"""What a person reads (issue 15): the four metrics on the bar (one line per epoch in a log: test_entrypoints.py), a summary whose run dir
never wraps, no advertising, choices in --help that are whole, TensorBoard as complete as W&B, the model table of a
data set's shape."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, compose_config

def test_the_bar_shows_train_and_val_loss_and_accuracy_and_nothing_else():
    from genlab.training.progress import EpochLines, MetricsBar, progress_bar

    logged = {"train/loss_step": torch.tensor(0.5), "train/loss_epoch": torch.tensor(0.6), "train/acc": torch.tensor(0.8),
              "val/loss": torch.tensor(0.7), "val/acc": torch.tensor(0.75), "val/acc_top5": torch.tensor(1.0),
              "val/acc_best": torch.tensor(0.75), "gap_val/acc": torch.tensor(0.05)}
    trainer = SimpleNamespace(callback_metrics=logged, progress_bar_metrics=logged, loggers=[], current_epoch=4)
    bar = MetricsBar()
    bar.validated_epoch = 3  # the previous epoch's validation: the newest there is while epoch 4 trains
    shown = bar.get_metrics(trainer, None)
    assert shown == pytest.approx({"train/loss": 0.5, "train/acc": 0.8, "val/loss": 0.7, "val/acc": 0.75})
    bar.validated_epoch = 2  # trainer.check_val_every_n_epoch=2: epoch 3 had none, and these are epoch 2's
    assert bar.get_metrics(trainer, None) == pytest.approx({"train/loss": 0.5, "train/acc": 0.8})
    assert isinstance(progress_bar(), EpochLines)  # pytest's output is not a terminal


def test_an_epoch_without_validation_prints_no_val_metrics(make_cfg, capsys):
    from genlab.pipeline import run

    run(make_cfg("trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2", "trainer.enable_progress_bar=true",
                 "callbacks.rich_progress_bar.enabled=true", "trainer.limit_train_batches=2",
                 "analysis.robustness=false"))
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")}
    # epochs count from 0: epoch 1 validates; epoch 2 does not, and once printed epoch 1's val/* as its own
    assert "val/acc" in lines["1/2"] and "val/" not in lines["0/2"] and "val/" not in lines["2/2"]


def summary_record(tested: dict | None) -> dict:
    return {"model": {"name": "simple_cnn", "params": 1000, "flops": 2e6}, "wall_time_s": 1.0, "tested": tested,
            "data": {"train_size": 1455, "val_size": 162, "test_size": 180}}


BEST = {"weights": "best", "epoch": 3, "monitor": "val/loss", "mode": "min"}
LAST = {"weights": "last", "epoch": 5}
BOTH = {"test/acc": 0.9, "final/test/acc": 0.88, "train_eval/acc": 0.95, "final/train_eval/acc": 1.0, "gap/acc": 0.05,
        "final/gap/acc": 0.12, "test/loss": 0.3, "final/test/loss": 0.5, "test/ece": 0.02, "final/test/ece": 0.04}


def summary_rows(capsys) -> dict[str, str]:
    """The summary table's rows as {name: value}, read from the printed box."""
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


def test_the_summary_never_wraps_the_run_dir(capsys, tmp_path):
    from genlab.summary import print_summary

    run_dir = tmp_path / ("a_long_study_name_" * 6) / "2026-12-01_10-00-00_regularization_ablation_smoke"
    print_summary("Run summary", BOTH, summary_record({"test": BEST, "final": LAST, "analysis": BEST}), run_dir, [])
    lines = capsys.readouterr().out.splitlines()
    assert f"outputs: {run_dir.resolve()}" in lines
    assert any("epoch 3, lowest val/loss" in line for line in lines) and any("0.8800" in line for line in lines)


def test_the_summary_leads_with_the_compared_weights_and_shows_the_other_set_beside_them(capsys, tmp_path):
    """analysis.compared_weights=last (the memorisation recipe): the last epoch's train accuracy and gap are the
    study's, the best checkpoint's follow as such; with the best compared, the order turns; one set when they agree."""
    from genlab.summary import print_summary

    print_summary("Run summary", BOTH, summary_record({"test": BEST, "final": LAST, "analysis": LAST}), tmp_path, [])
    rows = summary_rows(capsys)
    assert rows["compared weights"] == "epoch 5, the last"
    assert (rows["train accuracy (eval mode)"], rows["generalization gap (train - test)"]) == ("1.0000", "+0.1200")
    assert rows["test accuracy"] == "0.8800" and rows["test accuracy, best checkpoint"] == "0.9000"
    assert rows["train accuracy (eval mode), best checkpoint"] == "0.9500"
    assert rows["images train / val / test"] == "1,455 / 162 / 180"
    assert (rows["test loss"], rows["test calibration error (ECE)"]) == ("0.5000", "0.0400")
    print_summary("Run summary", BOTH, summary_record({"test": BEST, "final": LAST, "analysis": BEST}), tmp_path, [])
    rows = summary_rows(capsys)
    assert rows["train accuracy (eval mode)"] == "0.9500" and rows["train accuracy (eval mode), last epoch"] == "1.0000"
    print_summary("Run summary", BOTH, summary_record({"test": LAST, "final": LAST, "analysis": LAST}), tmp_path, [])
    rows = summary_rows(capsys)
    assert rows["train accuracy (eval mode)"] == "0.9500" and not any(", last epoch" in name for name in rows)


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
