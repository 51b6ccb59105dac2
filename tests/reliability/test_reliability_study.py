"""A study, not just a run (issue 21): a sweep interrupted and continued with the command it prints (basic and parallel
launchers), finished runs left as they are, dirs that belong to one live process, progress lines, and compare.py
saying when a study is not whole."""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from genlab import locks
from genlab.analysis.completeness import unequal_seed_warnings, unfinished_sweep_warnings
from genlab.errors import ConfigError
from genlab.hydra_callbacks import check_sweep_dir, new_sweep_dir
from genlab.pipeline import run
from genlab.resume import check_named_run_dir
from genlab.sweep import Plan, progress_line
from genlab.threads import STUDY_THREADS_ENV, torch_threads

from conftest import FAST, MANY_PROCESSES, REPO, compose_config
from scripts import ScriptProcess, processes_in_session, run_script, start_script

ENV = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
QUIET = ["logger=csv", "analysis.robustness=false", "analysis.confusion_matrix=false", "augmentation.preview_images=0",
         "callbacks.rich_progress_bar.enabled=false", "trainer.enable_progress_bar=false"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def epochs_in_csv(run_dir: Path) -> list[int]:
    return [int(row["epoch"]) for row in csv.DictReader(open(run_dir / "metrics.csv")) if row.get("val/loss")]


def stop_when(process: ScriptProcess, ready: Path, signum: int, to_group: bool) -> str:
    """Signal `process` once `ready` exists (a job is training), and return its output."""
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
            time.sleep(0.1)
        if to_group:  # Ctrl+C in a terminal reaches every process of the foreground group
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        try:
            out, _ = process.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the sweep did not stop:\n{process.communicate()[0][-3000:]}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return out


SWEEP_EPOCHS = 4  # each job's length: the sweep is stopped once job 0 has its first epoch's checkpoint


@pytest.mark.slow
@pytest.mark.xdist_group(MANY_PROCESSES)
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds leftover processes through /proc")
@pytest.mark.parametrize(("launcher", "signum", "to_group", "code", "stopped_job"),
                         [("basic", signal.SIGTERM, False, 143, 1), ("parallel", signal.SIGINT, True, 130, 0)],
                         ids=["basic-SIGTERM", "parallel-ctrl-c"])
def test_an_interrupted_sweep_continues_with_the_command_it_prints(tmp_path, launcher, signum, to_group, code,
                                                                   stopped_job):
    sweep_dir = tmp_path / "sweep"
    # 320 images: 5 batches an epoch, so a signal lands in validation as often as in training (both are resumed whole)
    args = ["-m", "seed=1,2,3", f"trainer.max_epochs={SWEEP_EPOCHS}", "data.train_size=320", *QUIET,
            f"hydra.sweep.dir={sweep_dir}",
            *(["hydra/launcher=parallel"] if launcher == "parallel" else [])]
    process = start_script("train.py", *args, cwd=tmp_path, env=ENV, merge_stderr=True, start_new_session=True)
    out = stop_when(process, sweep_dir / str(stopped_job) / "checkpoints" / "last.ckpt", signum, to_group)
    assert process.returncode == code, out[-3000:]
    lines = out.strip().splitlines()
    statuses = [json.loads((sweep_dir / str(n) / "results.json").read_text())["status"]
                for n in range(3) if (sweep_dir / str(n) / "results.json").exists()]
    # every planned job is counted, those that never started too (before: "1 job, ... 1 interrupted")
    assert re.fullmatch(rf"sweep: 3 jobs, {statuses.count('completed')} completed, 0 failed, "
                        rf"{statuses.count('interrupted')} interrupted, {3 - len(statuses)} not started \({sweep_dir}\)",
                        lines[-1]), lines[-1]
    assert "interrupted" in statuses and len(statuses) < 3
    deadline = time.monotonic() + 15
    while processes_in_session(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_in_session(process.pid) == []  # no job, worker or loader left behind
    (command,) = [line.split(": ", 1)[1] for line in lines if line.startswith("continue the sweep with: ")]
    completed = {n: snapshot(sweep_dir / str(n)) for n in range(3) if statuses[n:n + 1] == ["completed"]}

    # the printed command, as typed: python train.py <the same overrides> hydra.sweep.dir=<dir> ckpt_path=last
    continued = run_script(*shlex.split(command)[1:], cwd=tmp_path, env=ENV, merge_stderr=True)
    assert continued.returncode == 0, continued.stdout[-3000:]
    assert continued.stdout.strip().splitlines()[-1] == f"sweep: 3 jobs, 3 completed, 0 failed, 0 interrupted ({sweep_dir})"
    assert all(snapshot(sweep_dir / str(n)) == files for n, files in completed.items())  # kept byte for byte
    for n in range(3):
        record = json.loads((sweep_dir / str(n) / "results.json").read_text())
        assert record["status"] == "completed" and record["epochs"] == SWEEP_EPOCHS
        assert epochs_in_csv(sweep_dir / str(n)) == list(range(SWEEP_EPOCHS))  # each epoch once: resumed, not restarted
        assert record["torch_threads"]["threads"] == 1
    assert {m.group(1) for m in re.finditer(r"^job (\d)/3: seed=\d", continued.stdout, re.M)} == {"1", "2", "3"}


def finished_run(tmp_path: Path, epochs: int = 2) -> Path:
    run_dir = tmp_path / "run"
    run(compose_config([*FAST, f"trainer.max_epochs={epochs}", "analysis.robustness=false"], run_dir))
    return run_dir


def test_a_completed_run_resumed_at_its_length_is_one_line_and_keeps_its_record(tmp_path, capsys):
    run_dir = finished_run(tmp_path)
    before = snapshot(run_dir)
    recorded = json.loads((run_dir / "results.json").read_text())
    capsys.readouterr()
    metrics = run(compose_config([*FAST, "trainer.max_epochs=2", "analysis.robustness=false", "ckpt_path=last"], run_dir))
    assert metrics == recorded["metrics"]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"run {run_dir} is complete (2 epochs, test/acc ")
    assert snapshot(run_dir) == before


def test_a_completed_run_resumed_for_more_epochs_trains_them(tmp_path):
    run_dir = finished_run(tmp_path)
    run(compose_config([*FAST, "trainer.max_epochs=3", "analysis.robustness=false", "ckpt_path=last"], run_dir))
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 3 and epochs_in_csv(run_dir) == [0, 1, 2]


def test_a_run_killed_after_its_last_epoch_completes_its_record_with_the_same_numbers(tmp_path):
    """Killed after training, during its test: results.json was never written (before: KeyError 'val/acc_best')."""
    run_dir = finished_run(tmp_path)
    recorded = json.loads((run_dir / "results.json").read_text())
    (run_dir / "results.json").unlink()
    run(compose_config([*FAST, "trainer.max_epochs=2", "analysis.robustness=false", "ckpt_path=last"], run_dir))
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "completed" and record["metrics"] == recorded["metrics"]
    assert record["tested"] == recorded["tested"] and epochs_in_csv(run_dir) == [0, 1]


def hold_lock(folder: str, ready, release) -> None:
    locks.acquire(Path(folder), "hydra.run.dir", "a free dir")
    ready.set()
    release.wait(120)


@pytest.mark.slow
def test_a_run_dir_written_by_a_live_process_is_refused_and_its_stale_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    first = run_script("train.py", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}", *QUIET, cwd=tmp_path, env=ENV)
    assert first.returncode == 0, first.stderr[-2000:]
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=hold_lock, args=(str(run_dir), ready, release))
    holder.start()
    assert ready.wait(60)
    before = snapshot(run_dir)
    resume = ["--config-dir", str(run_dir / ".hydra"), "--config-name", "config", f"hydra.run.dir={run_dir}",
              "ckpt_path=last", "trainer.max_epochs=2"]
    try:
        refused = run_script("train.py", *resume, cwd=tmp_path, env=ENV)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert refused.stderr.strip().splitlines() == [
            f"error: hydra.run.dir: got '{run_dir}', expected a run dir no other process is writing; it is being "
            f"written by pid {holder.pid} ({run_dir / locks.LOCK_FILE}; remove it if that process is gone)"]
        assert snapshot(run_dir) == before
    finally:
        holder.kill()  # kill -9: its lock stays behind, naming a dead pid
        holder.join()
    assert (run_dir / locks.LOCK_FILE).exists()
    resumed = run_script("train.py", *resume, cwd=tmp_path, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run_dir / "results.json").read_text())["epochs"] == 2
    assert not (run_dir / locks.LOCK_FILE).exists()  # released at the end


def test_a_lock_of_a_reused_pid_or_a_garbled_lock_is_stale(tmp_path):
    lock = tmp_path / locks.LOCK_FILE
    me = locks.Holder.this_process()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": me.host, "started": (me.started or 0) + 1}))
    assert locks.holder_of(tmp_path) is None  # this pid, but a process started at another time
    lock.write_text("{not json")
    assert locks.holder_of(tmp_path) is None
    lock.write_text(json.dumps({"pid": os.getppid(), "host": me.host, "started": locks.process_start_time(os.getppid())}))
    assert locks.holder_of(tmp_path) == locks.Holder(os.getppid(), me.host, locks.process_start_time(os.getppid()))
    with pytest.raises(locks.DirLocked):
        locks.acquire(tmp_path, "hydra.run.dir", "a free dir")
    lock.write_text(json.dumps({"pid": os.getppid(), "host": "another-host", "started": 1}))
    assert locks.holder_of(tmp_path).describe() == f"pid {os.getppid()} on another-host"  # cannot be checked: live


@pytest.mark.parametrize("value", ["", "  ", "."])
def test_an_empty_run_dir_or_the_launch_dir_is_refused(value):
    with pytest.raises(ConfigError, match=r"^hydra.run.dir: got "):
        check_named_run_dir(value, resumes=False)


@pytest.mark.slow
def test_a_run_dir_holding_another_run_is_refused_unless_the_command_resumes_it(tmp_path):
    run_dir = finished_run(tmp_path, epochs=1)
    before = snapshot(run_dir)
    result = run_script("train.py", "seed=7", f"hydra.run.dir={run_dir}", *QUIET, cwd=tmp_path, env=ENV)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: hydra.run.dir: got '{run_dir}', expected a new or empty directory: it holds a run (")
    assert snapshot(run_dir) == before
    empty = run_script("train.py", "hydra.run.dir=''", *QUIET, cwd=tmp_path, env=ENV)
    assert empty.returncode == 2 and empty.stderr.strip().startswith("error: hydra.run.dir: got ''")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written into the launch dir


def test_sweeps_started_in_the_same_second_get_their_own_dirs(tmp_path):
    first = new_sweep_dir(str(tmp_path), "2026-01-01_10-00-00", "study")
    second = new_sweep_dir(str(tmp_path), "2026-01-01_10-00-00", "study")
    assert Path(first).name == "2026-01-01_10-00-00_study" and Path(second).name == "2026-01-01_10-00-00.2_study"


def write_job(sweep_dir: Path, number: int, overrides: list[str], **record) -> None:
    (sweep_dir / str(number) / ".hydra").mkdir(parents=True)
    (sweep_dir / str(number) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (sweep_dir / str(number) / "results.json").write_text(json.dumps(record))


def test_a_sweep_dir_is_continued_only_by_its_own_command(tmp_path, capsys):
    plan = Plan(2, [["seed=1", "model.width=8"], ["seed=2", "model.width=8"]])
    write_job(tmp_path, 0, ["seed=1", "model.width=8"], status="completed")
    with pytest.raises(ConfigError, match=r"expected a new sweep dir: it holds 1 job\(s\) of a sweep; add ckpt_path=last"):
        check_sweep_dir(tmp_path, plan, continues=False)
    check_sweep_dir(tmp_path, plan, continues=True)
    other = Plan(2, [["seed=5", "model.width=8"], ["seed=6", "model.width=8"]])  # the seeds changed: job 0 is another
    with pytest.raises(ConfigError, match=r"its job 0 ran seed=1, where this command's job 0 is seed=5"):
        check_sweep_dir(tmp_path, other, continues=True)
    longer = Plan(2, [["seed=1", "model.width=8", "trainer.max_epochs=9"], ["seed=2", "model.width=8", "trainer.max_epochs=9"]])
    capsys.readouterr()
    check_sweep_dir(tmp_path, longer, continues=True)  # a value every job shares may change, and is named
    assert "trainer.max_epochs=9" in capsys.readouterr().out


def test_progress_lines_count_every_job_and_estimate_the_time_left(tmp_path):
    Plan(5, [[f"seed={s}", "logger=csv"] for s in range(1, 6)], parallel=2).write(tmp_path)
    assert progress_line(tmp_path, 0, ["seed=1", "logger=csv"]) == "job 1/5: seed=1"
    write_job(tmp_path, 0, ["seed=1", "logger=csv"], status="completed", wall_time_s=10.0)
    write_job(tmp_path, 1, ["seed=2", "logger=csv"], status="failed", wall_time_s=20.0)
    # 3 jobs left, 2 at once: 2 rounds of the finished jobs' mean 15 s
    assert progress_line(tmp_path, 2, ["seed=3", "logger=csv", "ckpt_path=last"]) == \
        "job 3/5: seed=3 (2 finished; about 30 s left)"


def test_compare_warns_about_unequal_seeds_and_unfinished_sweeps(tmp_path):
    groups = [SimpleNamespace(label="regularization.name=none", runs=[1, 2, 3]),
              SimpleNamespace(label="regularization.name=dropout", runs=[1, 2])]
    assert unequal_seed_warnings(groups) == ["warning: group regularization.name=dropout has 2 completed seeds where "
                                             "others have 3: its mean and interval rest on fewer runs"]
    Plan(4, [[f"seed={s}"] for s in range(4)]).write(tmp_path)
    write_job(tmp_path, 0, ["seed=0"], status="completed")
    write_job(tmp_path, 1, ["seed=1"], status="interrupted")
    (line,) = unfinished_sweep_warnings([tmp_path])
    assert line.startswith(f"warning: sweep {tmp_path}: 3 of 4 jobs have no completed record (1 interrupted, "
                           "2 not started)")


def test_a_continued_sweep_trains_with_its_earlier_jobs_thread_count():
    assert torch_threads({"n_jobs": 2}, environ={STUDY_THREADS_ENV: "3", "OMP_NUM_THREADS": "1"}) == (
        3, "as the earlier jobs of the sweep this job continues")


def test_parallel_jobs_share_the_cores(monkeypatch):
    from genlab import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert torch_threads({"n_jobs": 2}, environ={}) == (3, "6 cores available, shared by 2 jobs at once "
                                                          "(hydra.launcher.n_jobs)")
    assert torch_threads({"n_jobs": -1}, environ={})[0] == 1  # one job per core
    assert torch_threads({"n_jobs": 4}, environ={"OMP_NUM_THREADS": "2"}) == (2, "OMP_NUM_THREADS")


def test_the_retired_seed_farm_is_one_line_naming_the_parallel_launcher():
    from genlab.cli import unknown_option

    err = unknown_option(["-m", "seed=1,2", "hydra/launcher=farm"], REPO / "conf")
    assert str(err).startswith("hydra/launcher: got 'farm', expected parallel: the seed farm is retired")
    assert "'parallel'" in str(unknown_option(["hydra/launcher=nope"], REPO / "conf"))


def test_a_seed_farm_checkpoint_is_refused_in_one_line(tmp_path):
    import torch

    from genlab.resume import FARM_STATE, check_checkpoint_fits

    torch.save({"state_dict": {}, FARM_STATE: {}, "hyper_parameters": {}}, tmp_path / "last.ckpt")
    with pytest.raises(ConfigError, match=r"seed farm member's \(the farm is retired"):
        check_checkpoint_fits(tmp_path / "last.ckpt", {"name": "simple_cnn"}, "digits")


def test_a_start_that_never_reached_a_checkpoint_leaves_no_rows_behind(tmp_path):
    """A sweep job killed in its first epoch (no checkpoint) starts afresh when the sweep continues: the rows of the
    attempt must not stay in front of the new ones; a resumed run appends."""
    from genlab.training.loggers import RunCSVLogger

    (tmp_path / "metrics.csv").write_text("epoch,step,train/loss_step\n0,9,2.3\n")
    fresh = RunCSVLogger(save_dir=str(tmp_path), name="", version="", append=False)
    fresh.log_metrics({"train/loss_step": 1.0}, step=0)
    fresh.save()
    assert [row["train/loss_step"] for row in csv.DictReader(open(tmp_path / "metrics.csv"))] == ["1.0"]
    resumed = RunCSVLogger(save_dir=str(tmp_path), name="", version="", append=True)
    resumed.log_metrics({"train/loss_step": 0.5}, step=1)
    resumed.save()
    assert [row["train/loss_step"] for row in csv.DictReader(open(tmp_path / "metrics.csv"))] == ["1.0", "0.5"]


def test_a_sweep_over_one_training_set_size_knob_with_the_other_given_is_refused_before_any_job(tmp_path, capsys):
    """`experiment=data_scaling data.train_size=300` once failed every job but the fraction-1.0 ones; the command the
    refusal gives (add data.train_fraction=1.0) replaces the preset's sweep of the fraction and sweeps sizes."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from genlab.hydra_callbacks import check_one_training_set_size_knob
    from genlab.sweep import plan_of

    def plan(*overrides: str):
        """The plan of `train.py -m experiment=data_scaling_smoke <overrides>`: Hydra composes no sweep values (the
        sweeper expands them), so the command line reaches the plan as the sweep's task overrides."""
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=["experiment=data_scaling_smoke"], return_hydra_config=True)
            cfg.hydra.overrides.task = ["experiment=data_scaling_smoke", *overrides]
            return plan_of(cfg, GlobalHydra.instance().config_loader())

    with pytest.raises(ConfigError) as refused:
        check_one_training_set_size_knob(plan("data.train_size=300"))
    assert str(refused.value) == ("data.train_size: got '300', expected null while the sweep sets data.train_fraction "
                                  "(0.25,1.0): one knob sizes the training set. To sweep sizes instead, add "
                                  "data.train_fraction=1.0 (the command line replaces a preset's sweep of it)")
    sizes = plan("data.train_fraction=1.0", "data.train_size=300,600")
    check_one_training_set_size_knob(sizes)
    assert sizes.count == 4 and {o for job in sizes.jobs for o in job if "train_" in o} == {
        "data.train_fraction=1.0", "data.train_size=300", "data.train_size=600"}
