"""`hydra/launcher=farm`: the basic launcher's jobs, with those that pack trained together as seed farms."""
from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from genlab.farm.packing import plan


def cores_available() -> int:
    """The cores this process may run on (a cgroup or taskset limit included), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def job_config(launcher: Any, overrides: Sequence[str], index: int) -> DictConfig:
    cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = index
        cfg.hydra.job.num = index
    return cfg


def run_ordinary(launcher: Any, cfg: DictConfig) -> JobReturn:
    return run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=cfg,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def say(line: str) -> None:
    print(f"farm: {line}", file=sys.stderr, flush=True)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    configs = [job_config(launcher, overrides, initial_job_idx + i) for i, overrides in enumerate(job_overrides)]
    packing = plan(configs, launcher.max_members)
    import torch

    threads = cores_available()
    torch.set_num_threads(threads)  # one process trains everything: it gets every core it may use, and no more
    sizes = ", ".join(str(len(farm)) for farm in packing.farms) or "none"
    say(f"{len(configs)} jobs: {len(packing.farms)} farm(s) of {sizes} members, {len(packing.alone)} ordinary "
        f"job(s); {threads} torch threads ({threads} cores available)")
    for index, why in sorted(packing.alone.items()):
        say(f"job {initial_job_idx + index} runs as an ordinary job: {why}")
    returns: dict[int, JobReturn] = {}
    for farm in packing.farms:
        returns.update(zip(farm, run_farm(launcher, [configs[i] for i in farm])))
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    for index in sorted(packing.alone):
        returns[index] = run_ordinary(launcher, configs[index])
        configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    return [returns[i] for i in range(len(configs))]


def run_farm(launcher: Any, configs: list[DictConfig]) -> list[JobReturn]:
    """Enroll each job (its run dir, saved config and log made by Hydra as for any job), train them together, then
    finish each: test, analyse, results.json. A job that fails to enroll fails alone."""
    from genlab.cli import user_errors_exit_cleanly
    from genlab.farm import enroll, finish, train_farm

    members, returns = {}, []
    for cfg in configs:
        ret = run_job(hydra_context=launcher.hydra_context, task_function=user_errors_exit_cleanly(enroll),
                      config=cfg, job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        returns.append(ret)
        if ret.status == JobStatus.COMPLETED:
            members[len(returns) - 1] = (ret._return_value, ret.hydra_cfg)
    say(f"training {len(members)} members together: jobs "
        + ", ".join(str(configs[i].hydra.job.num) for i in members))
    train_farm([member for member, _ in members.values()], int(configs[0].trainer.max_epochs))
    for position, (member, hydra_cfg) in members.items():
        HydraConfig.instance().set_config(hydra_cfg)  # what the member's code reads of Hydra: its own job's
        ret = returns[position]
        try:
            ret.return_value = finish(member).get(member.start.cfg.optimized_metric)
            ret.status = JobStatus.COMPLETED
        except Exception as err:  # noqa: BLE001  (a failed member is its job's failure, as Hydra records one)
            ret.return_value, ret.status = err, JobStatus.FAILED
    return returns
