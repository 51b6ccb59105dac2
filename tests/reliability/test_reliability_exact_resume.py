"""Exact resume: a run stopped after an epoch or in the middle of one and resumed with ckpt_path=last ends with the
same metrics, bit for bit, as the same run never stopped (sampler position, RNG states, scheduler and accumulated
metrics all come back from the checkpoint)."""
from __future__ import annotations

import csv
import json
import os
import signal

import lightning.pytorch as L
import pytest

import genlab.pipeline as pipeline
from genlab.errors import RunFailed
from genlab.pipeline import run
from genlab.training.module import ImageClassifier

from conftest import FAST, compose_config

# Every random stream a run has: seeded crops in the data (augmentation), dropout and mixup (global torch RNG).
RANDOM_RUN = [*FAST, "trainer.max_epochs=3", "trainer.deterministic=true", "augmentation=standard",
              "augmentation.mixup_alpha=0.2", "model.dropout=0.3", "analysis.robustness=false", "seed=7"]
STEPS_PER_EPOCH = 21  # digits: 1,293 training images (1,437 less 10 % for validation) in batches of 64


class SigtermAt(L.Callback):
    """Sends this process SIGTERM (what SLURM sends on preemption) after training step `step`, after the first epoch's
    validation, or after batch `validation_batch` of the first epoch's validation; Lightning's handler then stops the
    run where it would for a real signal (in validation: after that batch)."""

    def __init__(self, step: int | None = None, validation_batch: int | None = None):
        self.step, self.validation_batch = step, validation_batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if first_validation(trainer) and (batch_idx, dataloader_idx) == (self.validation_batch, 0):
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.step is None and self.validation_batch is None and first_validation(trainer):
            os.kill(os.getpid(), signal.SIGTERM)


def first_validation(trainer) -> bool:
    return not trainer.sanity_checking and trainer.current_epoch == 0


def ctrl_c_in_validation_step(batch: int):
    """A validation_step that is interrupted (KeyboardInterrupt) at `batch` of the first epoch's validation: where
    Ctrl+C lands when validation is running, in the middle of a step."""
    step = ImageClassifier.validation_step

    def validation_step(self, batch_, batch_idx, dataloader_idx=0):
        if first_validation(self.trainer) and (batch_idx, dataloader_idx) == (batch, 0):
            raise KeyboardInterrupt
        return step(self, batch_, batch_idx, dataloader_idx)

    return validation_step


def epoch_rows(run_dir) -> dict[int, dict[str, str]]:
    """metrics.csv's epoch-level values (validation, train epoch means) by epoch, last write wins."""
    rows = {}
    for row in csv.DictReader(open(run_dir / "metrics.csv")):
        values = {k: v for k, v in row.items() if v and k.startswith(("val/", "train/acc", "train/loss_epoch", "gap"))}
        if values:
            rows.setdefault(int(row["epoch"]), {}).update(values)
    return rows


_uninterrupted: dict[tuple[str, ...], tuple[dict, dict]] = {}


def uninterrupted(config: list[str], tmp_path_factory) -> tuple[dict, dict]:
    """The metrics and epoch rows of `config` never stopped, trained once per test process for every case."""
    if tuple(config) not in _uninterrupted:
        run_dir = tmp_path_factory.mktemp("straight")
        _uninterrupted[tuple(config)] = run(compose_config(config, run_dir)), epoch_rows(run_dir)
    return _uninterrupted[tuple(config)]


# Stopped in validation, the checkpoint holds a validation cut short: before, the resume skipped the rest of it (a
# SIGTERM: no val row for that epoch, no checkpoint or early-stopping check) or validated only the batches left over
# the loader's first ones (Ctrl+C in a step: a val/loss of part of the set). It must validate that epoch whole.
def with_callback(make_callback):
    """A stop made by a callback that build_callbacks adds to the run's own."""
    def stop(stopping: pytest.MonkeyPatch) -> None:
        build_callbacks = pipeline.build_callbacks
        stopping.setattr(pipeline, "build_callbacks", lambda *a, **k: [*build_callbacks(*a, **k), make_callback()])

    return stop


# Each way of stopping: what it patches for the stopped run.
STOPS = {"after_epoch_1": with_callback(SigtermAt),
         "mid_epoch_2": with_callback(lambda: SigtermAt(step=STEPS_PER_EPOCH + 9)),
         "mid_validation_sigterm": with_callback(lambda: SigtermAt(validation_batch=1)),
         "mid_validation_ctrl_c": lambda stopping: stopping.setattr(ImageClassifier, "validation_step",
                                                                    ctrl_c_in_validation_step(batch=1))}


@pytest.mark.slow
@pytest.mark.parametrize("stop, loader", [("after_epoch_1", "cpu"), ("mid_epoch_2", "cpu"), ("mid_epoch_2", "gpu"),
                                          ("mid_validation_sigterm", "cpu"), ("mid_validation_ctrl_c", "cpu")],
                         ids=["after_epoch_1", "mid_epoch_2", "mid_epoch_2_device_loader", "mid_validation_sigterm",
                              "mid_validation_ctrl_c"])
def test_an_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path, tmp_path_factory, monkeypatch, stop,
                                                                     loader):
    config = [*RANDOM_RUN, f"data.loader={loader}"]
    straight, straight_rows = uninterrupted(config, tmp_path_factory)

    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a KeyboardInterrupt: given back below
    with monkeypatch.context() as stopping:
        STOPS[stop](stopping)
        step = STEPS_PER_EPOCH + 9 if stop == "mid_epoch_2" else STEPS_PER_EPOCH
        try:
            with pytest.raises(RunFailed, match=f"interrupted at step {step}"):
                run(compose_config(config, tmp_path / "stopped"))
        finally:
            signal.signal(signal.SIGINT, sigint)
    resumed = run(compose_config([*config, "ckpt_path=last"], tmp_path / "stopped"))

    assert resumed == straight  # exactly: every test metric of the best and the final weights
    assert epoch_rows(tmp_path / "stopped") == straight_rows
    record = json.loads((tmp_path / "stopped" / "results.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 3
