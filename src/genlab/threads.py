"""How many torch threads a training process uses: the cores it may run on, or its share of them.

torch's default is the machine's core count, whatever a cgroup, taskset or scheduler allows this process: jobs that
run side by side (submitit_local, a sweep beside other work) then oversubscribe the cores, and a small digits job
slowed 10x so.
"""
from __future__ import annotations

import os
from typing import Any, Mapping


def cores_available() -> int:
    """The cores this process may run on (an affinity or cgroup cpuset counts), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Set by a sweep that continues in its dir: the thread count its earlier jobs trained with (genlab.hydra_callbacks).
STUDY_THREADS_ENV = "GENLAB_STUDY_THREADS"


def _positive(environ: Mapping[str, str], name: str) -> int | None:
    try:
        value = int(environ.get(name, "0") or 0)
    except ValueError:
        return None
    return value if value > 0 else None


def torch_threads(launcher: Mapping[str, Any] | None, environ: Mapping[str, str] = os.environ) -> tuple[int, str]:
    """(threads, why): in a continued sweep, the count its earlier jobs trained with; else OMP_NUM_THREADS when the
    user set it; else the job's share of the machine: `hydra.launcher.cpus_per_task` (submitit) within the cores
    available, or the cores available divided among `hydra.launcher.n_jobs` jobs running at once (the parallel
    launcher); else the cores available."""
    cores = cores_available()
    study = _positive(environ, STUDY_THREADS_ENV)
    if study:
        return study, "as the earlier jobs of the sweep this job continues"
    omp = _positive(environ, "OMP_NUM_THREADS")
    if omp:
        return omp, "OMP_NUM_THREADS"
    launcher = launcher or {}
    per_task = launcher.get("cpus_per_task")
    if per_task:
        threads = max(1, min(cores, int(per_task)))
        return threads, f"hydra.launcher.cpus_per_task={per_task}, {cores} cores available"
    at_once = jobs_at_once(launcher)
    if at_once > 1:
        return max(1, cores // at_once), f"{cores} cores available, shared by {at_once} jobs at once (hydra.launcher.n_jobs)"
    return cores, f"{cores} cores available"


def jobs_at_once(launcher: Mapping[str, Any] | None) -> int:
    """How many jobs a launcher runs at once on this machine: its `n_jobs` (joblib's; -1: one per core), else 1."""
    n_jobs = (launcher or {}).get("n_jobs")
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0:
        return 1
    return cores_available() if n_jobs < 0 else n_jobs


def use_torch_threads(launcher: Mapping[str, Any] | None) -> tuple[int, str]:
    """Set torch's intra-op threads by `torch_threads`; returns what it chose and why."""
    import torch

    threads, why = torch_threads(launcher)
    torch.set_num_threads(threads)
    return threads, why
