"""torch threads per training process (genlab.threads): never more than the cores the process may run on, a
submitit job's share when the launcher says it, and what the user set with OMP_NUM_THREADS."""
from __future__ import annotations

import json

import pytest

from genlab import threads
from genlab.pipeline import run


@pytest.fixture
def six_of_eight_cores(monkeypatch):
    """A process allowed 6 of the machine's 8 cores (taskset, a cgroup cpuset, a SLURM allocation)."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 8)


def test_threads_are_the_cores_this_process_may_use_not_the_machines(six_of_eight_cores):
    assert threads.torch_threads(None, environ={}) == (6, "6 cores available")


def test_a_submitit_job_takes_its_cpus_per_task_within_the_cores_available(six_of_eight_cores):
    assert threads.torch_threads({"cpus_per_task": 2}, environ={}) == (2, "hydra.launcher.cpus_per_task=2, 6 cores available")
    assert threads.torch_threads({"cpus_per_task": 32}, environ={})[0] == 6
    assert threads.torch_threads({"cpus_per_task": None}, environ={})[0] == 6


def test_omp_num_threads_set_by_the_user_wins(six_of_eight_cores):
    assert threads.torch_threads({"cpus_per_task": 2}, environ={"OMP_NUM_THREADS": "3"}) == (3, "OMP_NUM_THREADS")
    assert threads.torch_threads(None, environ={"OMP_NUM_THREADS": "many"})[0] == 6  # not a number: ignored


def test_a_run_sets_and_records_its_threads(make_cfg, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    try:
        run(make_cfg("trainer.max_epochs=1", "analysis.robustness=false"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["torch_threads"] == {"threads": 1, "why": "OMP_NUM_THREADS"}
