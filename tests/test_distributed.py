"""DDP on the CPU (gloo), run as a user runs it: `trainer=ddp` starts a second process, and the data module gives the
two processes the halves of each global batch one process would train on."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import MANY_PROCESSES
from scripts import run_script

COMMON = ["data=digits", "trainer.max_epochs=2", "trainer.deterministic=true", "logger=csv",
          "analysis.robustness=false", "analysis.confusion_matrix=false", "augmentation.preview_images=0",
          "callbacks.rich_progress_bar.enabled=false", "trainer.enable_progress_bar=false", "seed=3"]
TWO_CPU_PROCESSES = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


def train(cwd: Path, *args: str, multirun: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    result = run_script("train.py", *(["-m"] if multirun else []), *COMMON, *args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def job_dirs(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir())


def assert_one_run_dir_result_and_wandb_run_per_job(sweep: Path, seeds: list[int]) -> None:
    jobs = job_dirs(sweep)
    assert [p.name for p in jobs] == [str(i) for i in range(len(seeds))]
    assert [results(p)["seed"] for p in jobs] == seeds
    assert all(results(p)["status"] == "completed" for p in jobs)
    # no stray dirs from the second process of each job (the W&B run's own copy, genlab/results.json, aside)
    assert len([p for p in sweep.rglob("results.json") if "wandb" not in p.parts]) == len(seeds)
    assert [len(list(p.glob("wandb/offline-run-*"))) for p in jobs] == [1] * len(seeds)  # rank zero's run only


@pytest.mark.slow
@pytest.mark.xdist_group(MANY_PROCESSES)
def test_ddp_jobs_of_a_multirun_train_like_one_process_each_in_a_run_dir_of_its_own(tmp_path):
    # 1,280 training images: 20 global batches of 64, none short (a short last batch is padded on 2 processes).
    # No augmentation: its draws are keyed by each process's batch, so they differ from one process's draws.
    same = ["data.val_size=157", "augmentation=none", "trainer.max_epochs=1"]
    train(tmp_path, *same, "data.batch_size=64", f"hydra.run.dir={tmp_path / 'one'}")
    # Two DDP jobs in one process (the basic launcher): the second job's workers must not join the first job's
    # process group or reuse its dir.
    sweep = tmp_path / "sweep"
    two_processes = train(tmp_path, *TWO_CPU_PROCESSES, *same, "data.batch_size=32", "logger=wandb", "seed=3,4",
                          f"hydra.sweep.dir={sweep}", multirun=True)
    assert_one_run_dir_result_and_wandb_run_per_job(sweep, [3, 4])
    one, two = results(tmp_path / "one"), results(sweep / "0")
    # Epoch values are already global (torchmetrics, strategy.reduce); Lightning is told so and does not warn per key.
    assert "when logging on epoch level in distributed setting" not in two_processes.stderr + two_processes.stdout
    assert two["seed"] == one["seed"] and two["epochs"] == one["epochs"] == 1
    # Same images per step and the same mean gradient; only the order of float additions differs.
    for key in ("test/acc", "final/test/acc", "train_eval/acc", "val/acc_best"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], abs=2 / 360), key
    for key in ("test/loss", "train_eval/loss"):
        assert two["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-3), key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "sweep"]  # the second processes wrote no dir


@pytest.mark.slow
@pytest.mark.xdist_group(MANY_PROCESSES)
# One job under submitit, whose job process runs submitit's own script: its workers must still re-run train.py with
# that job's config. (Each submitit job and each worker is a fresh interpreter, ~8 s of imports: a second submitit job
# would add two for what the basic launcher's two jobs already show.)
def test_a_ddp_job_under_submitit_gets_one_run_dir_one_result_and_one_wandb_run(tmp_path):
    sweep = tmp_path / "sweep"
    train(tmp_path, *TWO_CPU_PROCESSES, "hydra/launcher=submitit_local", "logger=wandb", "trainer.max_epochs=1",
          "trainer.limit_train_batches=4", "seed=1", f"hydra.sweep.dir={sweep}", multirun=True)
    assert_one_run_dir_result_and_wandb_run_per_job(sweep, [1])


@pytest.mark.parametrize("argv0,recorded", [("/repo/train.py", "/repo/train.py"), ("-c", None),
                                            ("/venv/lib/pytest/__main__.py", None)])
def test_only_an_entry_script_is_remembered_for_the_ddp_workers(monkeypatch, argv0, recorded):
    # A pytest-xdist worker (argv[0] '-c') importing genlab set it for every train.py it started, whose DDP workers
    # then ran '<cwd>/-c' and died: only train.py or eval.py may record themselves.
    from genlab.training import ddp

    monkeypatch.delenv(ddp.ENTRY_SCRIPT_ENV, raising=False)
    monkeypatch.setattr("sys.argv", [argv0])
    ddp.remember_entry_script()
    assert os.environ.get(ddp.ENTRY_SCRIPT_ENV) == recorded
