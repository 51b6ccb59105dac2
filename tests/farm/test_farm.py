"""The seed farm (genlab.farm): members trained together equal their separate runs, a failing member fails alone, and
the jobs of a multirun pack by what they share."""
from __future__ import annotations

import csv
import json
import shlex
import signal
import time
from pathlib import Path

import pytest

from conftest import FAST, compose_config
from genlab.errors import ConfigError, RunFailed
from genlab.farm import enroll, finish, train_farm
from genlab.farm.packing import plan
from genlab.pipeline import run
from scripts import run_script, start_script

EPOCHS = 2
SHARED = [*FAST, f"trainer.max_epochs={EPOCHS}", "trainer.deterministic=true", "analysis.robustness=false",
          "model.dropout=0.3", "data.val_size=0.2"]
# Members differ in what each keeps for itself; dropout (shared) and mixup draw from each member's own random stream.
MEMBERS = [["seed=1"], ["seed=2", "loss.label_smoothing=0.1", "augmentation.mixup_alpha=0.4"],
           ["seed=3", "optimizer=sgd", "optimizer.lr=0.05", "scheduler=step", "scheduler.step_size=1"]]


def per_epoch(run_dir: Path, keys: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """metrics.csv's values of `keys` per epoch, whichever rows of the epoch hold them."""
    epochs: dict[str, dict[str, str]] = {}
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            epochs.setdefault(row["epoch"], {}).update({k: row[k] for k in keys if row.get(k)})
    return {epoch: values for epoch, values in epochs.items() if values}


def farm(tmp_path: Path, members: list[list[str]]) -> list[Path]:
    dirs = [tmp_path / "farm" / str(i) for i in range(len(members))]
    enrolled = [enroll(compose_config([*SHARED, *overrides], run_dir)) for overrides, run_dir in zip(members, dirs)]
    train_farm(enrolled, EPOCHS)
    for member in enrolled:
        try:
            finish(member)
        except RunFailed:
            pass
    return dirs


@pytest.mark.slow
def test_every_member_equals_its_separate_run_to_the_last_bit(tmp_path):
    # Tolerance 0: a member's step runs the same kernels on the same tensors as its separate run's step, in its own
    # random stream, so nothing differs, not even rounding (stacking members into one vmapped net would: benchmarks).
    farmed = farm(tmp_path, MEMBERS)
    for overrides, farm_dir in zip(MEMBERS, farmed):
        alone_dir = tmp_path / "alone" / farm_dir.name
        run(compose_config([*SHARED, *overrides], alone_dir))
        alone, together = (json.loads((d / "results.json").read_text()) for d in (alone_dir, farm_dir))
        assert together["status"] == alone["status"] == "completed"
        assert together["metrics"] == alone["metrics"], overrides
        assert together["tested"] == alone["tested"] and together["epochs"] == alone["epochs"] == EPOCHS
        assert Path(together["best_checkpoint"]).name == Path(alone["best_checkpoint"]).name
        keys = ("train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/acc_best", "train_eval/acc", "test/acc",
                "lr-AdamW/pg1", "lr-SGD/pg2", "step")
        logged = per_epoch(farm_dir, keys)
        assert logged == per_epoch(alone_dir, keys) and all(len(logged[str(e)]) >= 6 for e in range(EPOCHS))


def test_every_member_has_its_own_wandb_run(tmp_path):
    members = [["seed=1", "logger=wandb"], ["seed=2", "logger=wandb"]]  # FAST's logger=csv, then W&B (offline here)
    dirs = farm(tmp_path, members)
    runs = [list((d / "wandb").glob("offline-run-*")) for d in dirs]
    assert [len(found) for found in runs] == [1, 1] and runs[0][0].name != runs[1][0].name
    assert [json.loads((d / "results.json").read_text())["status"] for d in dirs] == ["completed"] * 2


def test_a_member_whose_loss_turns_nan_is_marked_failed_and_the_others_finish(tmp_path):
    diverging = ["seed=2", "optimizer=sgd", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=1e6"]
    dirs = farm(tmp_path, [["seed=1"], diverging])
    ok, failed = (json.loads((d / "results.json").read_text()) for d in dirs)
    assert ok["status"] == "completed" and ok["epochs"] == EPOCHS and ok["metrics"]["test/acc"] > 0.3
    assert failed["status"] == "failed" and failed["error"].startswith("train/loss is nan at step")
    assert failed["last_checkpoint"].endswith("checkpoints/last.ckpt") and Path(failed["last_checkpoint"]).is_file()
    # The farm again with ckpt_path=last: the finished member is tested again as it was, the failed one stays failed
    # (resumed from its last good epoch, it would only diverge again), and neither is trained further.
    again = [enroll(compose_config([*SHARED, *overrides, "ckpt_path=last"], d))
             for overrides, d in zip([["seed=1"], diverging], dirs)]
    train_farm(again, EPOCHS)
    assert finish(again[0]) == ok["metrics"]
    with pytest.raises(RunFailed, match="train/loss is nan"):
        finish(again[1])


def test_a_single_run_refuses_a_farm_checkpoint_and_a_farm_a_single_runs(tmp_path):
    # A farm's checkpoints hold no Lightning loop state: a single run resumed from one restarted at epoch 0 (31 epochs
    # "resumed" for 1 asked, on the member's weights) and recorded it as a resume.
    (farm_dir,) = farm(tmp_path, [["seed=1"]])
    before = sorted(p.name for p in (farm_dir / "checkpoints").iterdir())
    with pytest.raises(ConfigError, match="a single run's checkpoint; this one is a seed farm member's"):
        run(compose_config([*SHARED, "seed=1", f"ckpt_path={farm_dir / 'checkpoints' / 'last.ckpt'}"], tmp_path / "one"))
    alone = tmp_path / "alone"
    run(compose_config([*SHARED, "seed=1"], alone))
    with pytest.raises(ConfigError, match="a checkpoint a seed farm wrote; this one is a single run's"):
        enroll(compose_config([*SHARED, "seed=1", "ckpt_path=last"], alone))
    assert sorted(p.name for p in (farm_dir / "checkpoints").iterdir()) == before


def test_jobs_pack_by_what_they_share_and_the_rest_run_alone_with_a_reason(tmp_path):
    def job(*overrides):
        return compose_config(list(overrides), tmp_path / "x")

    jobs = [job("seed=1", "regularization=none"), job("seed=2", "regularization=l2"), job("seed=3", "model.width=8"),
            job("seed=4", "trainer.fast_dev_run=true"), job("seed=5", "regularization=label_smoothing"),
            job("seed=6", "ckpt_path=/x.ckpt"), job("seed=7", "+trainer.gradient_clip_algorithm=value")]
    packed = plan(jobs, max_members=32)
    assert packed.farms == [[0, 1, 4]]
    assert packed.alone == {2: "no other job shares its network, data and trainer settings",
                            3: "it limits or reschedules the loops (debug settings)",
                            5: "it resumes from a given checkpoint or run dir", 6: "the farm clips gradients by norm only"}
    small = plan(jobs[:2] + [jobs[4]], max_members=2)
    assert small.farms == [[0, 1]] and "max_members=2" in small.alone[2]


@pytest.mark.slow
def test_a_farm_says_what_it_packed_and_resumes_after_sigterm_to_the_numbers_of_one_never_stopped(tmp_path):
    sweep = ["-m", "hydra/launcher=farm", "seed=1,2", "trainer.max_epochs=4", "model.dropout=0.3",
             "trainer.deterministic=true", "logger=csv", "analysis.robustness=false", "analysis.confusion_matrix=false",
             "augmentation.preview_images=0", "callbacks.rich_progress_bar.enabled=false",
             "trainer.enable_progress_bar=false"]
    whole = run_script("train.py", *sweep, f"hydra.sweep.dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    said = [line for line in whole.stderr.splitlines() if line.startswith("farm: ")]
    assert said[0].startswith("farm: 2 jobs: 1 farm(s) of 2 members, 0 ordinary job(s); ") and "torch threads" in said[0]
    assert said[1] == "farm: training 2 members together: jobs 0, 1"
    assert whole.stdout.strip().splitlines()[-1].startswith("sweep: 2 jobs, 2 completed, 0 failed")
    cut = tmp_path / "cut"
    process = start_script("train.py", *sweep, f"hydra.sweep.dir={cut}", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not (cut / "1" / "checkpoints" / "last.ckpt").exists():  # both members have finished epoch 0
        assert process.poll() is None and time.monotonic() < deadline, "the farm never trained"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
    (said,) = [line for line in err.splitlines() if line.startswith("farm: interrupted (SIGTERMException) at epoch ")]
    command = said.split("Resume with: ")[1]
    for job in ("0", "1"):
        record = json.loads((cut / job / "results.json").read_text())
        assert record["status"] == "interrupted" and record["resume_command"] == command
        assert (cut / job / "checkpoints" / "interrupted.ckpt").is_file()
    resumed = run_script("train.py", *shlex.split(command)[2:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for job in ("0", "1"):
        again, never = (json.loads((d / job / "results.json").read_text()) for d in (cut, tmp_path / "whole"))
        assert again["status"] == "completed" and again["metrics"] == never["metrics"] and again["epochs"] == 4


def test_a_member_stopped_early_stops_where_its_separate_run_stops(tmp_path):
    # mode=min on val/acc with patience 1: the first epoch whose accuracy rises stops the run, well before 4 epochs
    stopping = ["seed=4", "trainer.max_epochs=4", "callbacks.early_stopping.enabled=true",
                "callbacks.early_stopping.monitor=val/acc", "callbacks.early_stopping.mode=min",
                "callbacks.early_stopping.patience=1"]
    member = enroll(compose_config([*SHARED, *stopping], tmp_path / "farm"))
    train_farm([member], 4)
    finish(member)
    run(compose_config([*SHARED, *stopping], tmp_path / "alone"))
    together, alone = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("farm", "alone"))
    assert together["epochs"] == alone["epochs"] < 4 and member.outcome.stopped_early_at == alone["epochs"] - 1
    assert together["metrics"] == alone["metrics"]
