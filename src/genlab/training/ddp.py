"""DDP inside Hydra runs and multiruns: each job's worker processes re-run that job, not the command line.

Lightning starts the ranks > 0 of `strategy=ddp` by re-running `sys.argv` with `hydra.run.dir` set to Hydra's
*run* dir. Inside a multirun that re-runs the whole sweep (`-m` and all its values) in every worker and points them
at a dir no job uses: the duplicated runs and output dirs users of Lightning+Hydra templates report. Here every
worker instead composes the job's own saved config (`<job dir>/.hydra/config.yaml`, exactly what rank 0 runs) and
writes into the job's dir.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Sequence


ENTRY_SCRIPT_ENV = "GENLAB_ENTRY_SCRIPT"


ENTRY_SCRIPTS = ("train.py", "eval.py")


def remember_entry_script() -> None:
    """Record the script the user ran (train.py) for the job's DDP workers; the job's processes inherit it.

    Launchers may run a job through a script of their own (submitit's `_submit.py`), so `sys.argv[0]` inside the job
    is not the script the workers must re-run. Only an entry script records itself: any other process that imports
    genlab (a test runner's worker, started as `python -c`) would hand its own argv[0] to the runs it starts.
    """
    if os.path.basename(sys.argv[0]) in ENTRY_SCRIPTS:
        os.environ.setdefault(ENTRY_SCRIPT_ENV, os.path.abspath(sys.argv[0]))


def job_worker_command(local_rank: int) -> tuple[Sequence[str], str]:
    """(command, cwd) that starts DDP worker `local_rank` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    command = [
        sys.executable, os.environ.get(ENTRY_SCRIPT_ENV) or to_absolute_path(sys.argv[0]),
        "--config-dir", str(job_dir / hydra_cfg.output_subdir), "--config-name", "config",
        f"hydra.run.dir={job_dir}",
        f"hydra.job.name={hydra_cfg.job.name}_ddp_rank_{local_rank}",
        "hydra.output_subdir=null",  # rank 0 already saved the job's config
    ]
    return command, get_original_cwd()


def launch_ddp_workers_as_this_job() -> None:
    """Make Lightning's subprocess launcher use `job_worker_command` (idempotent)."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = job_worker_command


DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "GLOBAL_RANK", "RANK")


@contextlib.contextmanager
def isolated_distributed_job():
    """Leave the process as the job found it: the next job of a multirun (same process) starts its own process group.

    Lightning exports the rendezvous variables into os.environ and leaves the process group initialised; a second
    DDP job in the same process would otherwise join the first job's dead group.
    """
    saved = {key: os.environ.get(key) for key in DDP_ENV}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
