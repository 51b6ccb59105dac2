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


def torch_threads(launcher: Mapping[str, Any] | None, environ: Mapping[str, str] = os.environ) -> tuple[int, str]:
    """(threads, why): OMP_NUM_THREADS when the user set it; else the job's `hydra.launcher.cpus_per_task` (submitit's
    share of the machine per job) within the cores available; else the cores available."""
    cores = cores_available()
    try:
        if int(environ.get("OMP_NUM_THREADS", "0")) > 0:
            return int(environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    except ValueError:
        pass
    per_task = (launcher or {}).get("cpus_per_task")
    if per_task:
        threads = max(1, min(cores, int(per_task)))
        return threads, f"hydra.launcher.cpus_per_task={per_task}, {cores} cores available"
    return cores, f"{cores} cores available"


def use_torch_threads(launcher: Mapping[str, Any] | None) -> tuple[int, str]:
    """Set torch's intra-op threads by `torch_threads`; returns what it chose and why."""
    import torch

    threads, why = torch_threads(launcher)
    torch.set_num_threads(threads)
    return threads, why
