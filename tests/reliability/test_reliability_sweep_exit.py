"""A multirun ends with an account of its jobs: a failed job makes the sweep exit non-zero with one count line, and
Ctrl+C or SIGTERM stops the whole sweep, not just the job that was running, leaving no process behind (issue 14)."""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from scripts import ScriptProcess, processes_in_session, start_script

ENV = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}


def sweep(cwd: Path, *overrides: str, start_new_session: bool = False) -> ScriptProcess:
    return start_script("train.py", "-m", *overrides, cwd=cwd, env=ENV, merge_stderr=True,
                        start_new_session=start_new_session)


@pytest.mark.slow
def test_a_sweep_with_a_failed_job_exits_1_and_says_how_many_jobs_failed(tmp_path):
    # job 1's step schedule multiplies lr by 1e6 after its first epoch: its loss turns NaN, the run is marked failed
    process = sweep(tmp_path, "debug=limit", "trainer.detect_anomaly=false", "trainer.max_epochs=2",
                    "analysis.robustness=false", "optimizer=sgd", "scheduler=step", "scheduler.step_size=1",
                    "scheduler.gamma=0.5,1e6")
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 1, out[-3000:]
    # named by what it is, under the debug tree: nothing where compare.py 'outputs/multirun/*' would look
    (sweep_dir,) = (tmp_path / "outputs" / "debug" / "multirun").iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_train", sweep_dir.name)
    assert not (tmp_path / "outputs" / "multirun").exists() and not (tmp_path / "outputs" / "runs").exists()
    relative = sweep_dir.relative_to(tmp_path)
    assert out.strip().splitlines()[-1] == f"sweep: 2 jobs, 1 completed, 1 failed, 0 interrupted ({relative})"
    assert (sweep_dir / "multirun.yaml").is_file()
    summary = (sweep_dir / "sweep_summary.md").read_text()
    assert "| 1 | `scheduler.gamma=1000000.0` | failed |" in summary
    assert "python train.py debug=limit" in summary and "scheduler.gamma=0.5" in summary  # the best job's re-run


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds leftover processes through /proc")
# SIGTERM to the basic launcher's sweep, and Ctrl+C to the parallel launcher's: test_reliability_study.py
@pytest.mark.parametrize(("signum", "to_group", "code"), [(signal.SIGINT, True, 130)], ids=["ctrl-c"])
def test_a_signal_stops_the_whole_sweep_and_leaves_no_process(tmp_path, signum, to_group, code):
    sweep_dir = tmp_path / "sweep"
    # a loader worker (data.num_workers=1) that must not outlive the sweep; a new session to find every descendant
    process = sweep(tmp_path, "seed=1,2", "trainer.max_epochs=100", "data.num_workers=1", "logger=csv",
                    "analysis.robustness=false", f"hydra.sweep.dir={sweep_dir}", start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (sweep_dir / "0" / "checkpoints" / "last.ckpt").exists():  # job 0 is training
            assert process.poll() is None and time.monotonic() < deadline, "job 0 never trained"
            time.sleep(0.2)
        if to_group:  # Ctrl+C in a terminal reaches every process of the foreground group
            os.killpg(process.pid, signum)
        else:  # a scheduler's SIGTERM, to the process it started
            process.send_signal(signum)
        out, _ = process.communicate(timeout=120)  # before the fix, job 1 started and trained 100 epochs
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == code, out[-3000:]
    assert not (sweep_dir / "1").exists()  # the next job never started, and is counted as such
    assert out.strip().splitlines()[-1] == f"sweep: 2 jobs, 0 completed, 0 failed, 1 interrupted, 1 not started ({sweep_dir})"
    deadline = time.monotonic() + 15
    while processes_in_session(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_in_session(process.pid) == []  # no loader worker left behind
