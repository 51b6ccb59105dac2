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

from conftest import FAST, compose_config

# Every random stream a run has: seeded crops in the data (augmentation), dropout and mixup (global torch RNG).
RANDOM_RUN = [*FAST, "trainer.max_epochs=3", "trainer.deterministic=true", "augmentation=standard",
              "augmentation.mixup_alpha=0.2", "model.dropout=0.3", "analysis.robustness=false", "seed=7"]
STEPS_PER_EPOCH = 21  # digits: 1,293 training images (1,437 less 10 % for validation) in batches of 64


class SigtermAt(L.Callback):
    """Sends this process SIGTERM (what SLURM sends on preemption) after training step `step`, or after the first
    epoch's validation; Lightning's handler then stops the run where it would for a real signal."""

    def __init__(self, step: int | None = None):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.step is None and not trainer.sanity_checking and trainer.current_epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def epoch_rows(run_dir) -> dict[int, dict[str, str]]:
    """metrics.csv's epoch-level values (validation, train epoch means) by epoch, last write wins."""
    rows = {}
    for row in csv.DictReader(open(run_dir / "metrics.csv")):
        values = {k: v for k, v in row.items() if v and k.startswith(("val/", "train/acc", "train/loss_epoch", "gap"))}
        if values:
            rows.setdefault(int(row["epoch"]), {}).update(values)
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("stop_after, loader", [(None, "cpu"), (STEPS_PER_EPOCH + 9, "cpu"), (STEPS_PER_EPOCH + 9, "gpu")],
                         ids=["after_epoch_1", "mid_epoch_2", "mid_epoch_2_device_loader"])
def test_an_interrupted_and_resumed_run_equals_the_uninterrupted_one(tmp_path, monkeypatch, stop_after, loader):
    config = [*RANDOM_RUN, f"data.loader={loader}"]
    straight = run(compose_config(config, tmp_path / "straight"))

    build_callbacks = pipeline.build_callbacks
    monkeypatch.setattr(pipeline, "build_callbacks", lambda *a, **k: [*build_callbacks(*a, **k), SigtermAt(stop_after)])
    with pytest.raises(RunFailed, match=f"interrupted at step {stop_after or STEPS_PER_EPOCH}"):
        run(compose_config(config, tmp_path / "stopped"))
    monkeypatch.setattr(pipeline, "build_callbacks", build_callbacks)
    resumed = run(compose_config([*config, "ckpt_path=last"], tmp_path / "stopped"))

    assert resumed == straight  # exactly: every test metric of the best and the final weights
    assert epoch_rows(tmp_path / "stopped") == epoch_rows(tmp_path / "straight")
    record = json.loads((tmp_path / "stopped" / "results.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 3
