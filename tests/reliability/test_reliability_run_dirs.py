"""Run dirs: every run gets its own, whatever the timing, in one process or many; a start that is refused never
touches an existing run dir (its saved config stays the one that reproduces it) and leaves no new one behind; a run
dir that cannot be created is one line before Hydra writes anything."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from genlab.cli import protect_the_run_dir_on_the_command_line, resolve_run_dir
from genlab.resume import run_dir_for, undo_refused_start

from conftest import compose_config
from scripts import run_script

STAMP = "2026-01-01_10-00-00"


def test_runs_started_in_the_same_second_get_their_own_dirs(tmp_path):
    first = run_dir_for(str(tmp_path), "train", "false", None, None, STAMP)
    second = run_dir_for(str(tmp_path), "train", "false", None, None, STAMP)
    assert first != second and Path(first).is_dir() and Path(second).is_dir()
    assert Path(second).name == f"{STAMP}.2_train"


def _start_a_run(log_dir: str, barrier, results) -> None:
    barrier.wait()  # all at once, as the jobs of an array that SLURM starts in the same second
    results.put(run_dir_for(log_dir, "train", "false", None, None, STAMP))


def test_processes_started_together_get_their_own_dirs(tmp_path):
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    barrier, results = context.Barrier(4), context.Queue()
    processes = [context.Process(target=_start_a_run, args=(str(tmp_path), barrier, results)) for _ in range(4)]
    for process in processes:
        process.start()
    dirs = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert len(set(dirs)) == 4 and all(Path(d).is_dir() for d in dirs)


def test_a_run_dir_that_cannot_be_created_is_one_line_before_hydra_starts(capsys):
    for bad in ("/proc/genlab-x", "/etc/passwd/x"):
        with pytest.raises(SystemExit) as stopped:
            protect_the_run_dir_on_the_command_line(["trainer.max_epochs=1", f"hydra.run.dir={bad}"])
        assert stopped.value.code == 2
        line = capsys.readouterr().err.strip()
        assert line.startswith(f"error: hydra.run.dir: got '{bad}', expected a directory that can be created (")
        assert "\n" not in line
    undo_refused_start()


def test_a_refused_new_run_leaves_no_run_dir(tmp_path):
    run_dir = Path(resolve_run_dir(str(tmp_path), "train", "false", None, None, STAMP))
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("seed: -1\n")  # what Hydra writes before the job is refused
    (run_dir / "train.log").write_text("")
    undo_refused_start()
    assert not run_dir.exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline"}
    return run_script("train.py", *args, cwd=cwd, env=env)


@pytest.mark.slow
def test_a_refused_resume_never_touches_the_run_dir(tmp_path):
    """`ckpt_path=last optimizer.lr=-1` rewrote the run's .hydra/config.yaml, so its reproduce command failed after;
    task_name='*' did so to the newest run of any task (see test_reliability_untrusted.py for the name matching).
    Refused by validation or later (after the log has had lines), in a dir chosen by the resolver or named by the
    README's resume command (hydra.run.dir=), the run dir is byte for byte as it was."""
    run_dir = tmp_path / "outputs" / "runs" / f"{STAMP}_X"
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_config(["task_name=X", "logger=csv"], run_dir), run_dir / ".hydra" / "config.yaml")
    (run_dir / ".hydra" / "hydra.yaml").write_text("hydra: {}\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- task_name=X\n")
    (run_dir / "config.yaml").write_text("seed: 42\n")
    (run_dir / "train.log").write_text("[train] the run's own log\n")
    (run_dir / "checkpoints").mkdir()
    torch.save({"state_dict": {}}, run_dir / "checkpoints" / "last.ckpt")
    before = snapshot(tmp_path / "outputs")

    for args in (["task_name=X", "ckpt_path=last", "optimizer.lr=-1"],
                 ["task_name=X", "ckpt_path=last"],  # refused later: the checkpoint records no model
                 ["--config-dir", str(run_dir / ".hydra"), "--config-name", "config", f"hydra.run.dir={run_dir}",
                  "ckpt_path=last", "optimizer.lr=-1"]):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in result.stderr
        assert snapshot(tmp_path / "outputs") == before
        assert sorted(p.name for p in (tmp_path / "outputs" / "runs").iterdir()) == [f"{STAMP}_X"]


@pytest.mark.slow
def test_a_refused_new_run_is_one_line_exit_2_and_writes_nothing(tmp_path):
    result = cli("seed=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: seed: got -1, expected an integer in [0, 4294967295]"]
    assert not list((tmp_path / "outputs" / "runs").iterdir())


@pytest.mark.slow
def test_a_sweep_whose_task_name_would_leave_outputs_is_one_line_exit_2_and_creates_nothing(tmp_path):
    result = cli("-m", "task_name=../../escaped", "seed=1,2", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: task_name: got '../../escaped', expected a plain")
    assert not (tmp_path / "outputs" / "multirun").exists() and not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("fast_dev_run,under", [("true", "outputs/debug"), ("2", "outputs/debug"), ("false", "outputs")])
def test_a_fast_dev_run_writes_under_outputs_debug_where_no_report_looks(tmp_path, fast_dev_run, under):
    cfg = compose_config([f"trainer.fast_dev_run={fast_dev_run}"], tmp_path / "run")
    assert cfg.paths.log_dir == str(Path(cfg.paths.root_dir) / under)
