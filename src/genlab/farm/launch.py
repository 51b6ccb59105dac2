"""`hydra/launcher=farm`: the basic launcher's jobs, with those that pack trained together as seed farms."""
from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict

from genlab.farm.packing import plan
from genlab.threads import use_torch_threads


def job_config(launcher: Any, overrides: Sequence[str], index: int) -> DictConfig:
    cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = index
        cfg.hydra.job.num = index
    return cfg


def run_ordinary(launcher: Any, cfg: DictConfig) -> JobReturn:
    return run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=cfg,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def resume_command(sweep_dir: Path) -> str:
    """This command again, continuing every job in its own dir of `sweep_dir` from its newest checkpoint."""
    kept = [arg for arg in sys.argv[1:] if not arg.startswith(("hydra.sweep.dir=", "ckpt_path="))]
    return shlex.join(["python", Path(sys.argv[0]).name, *kept, f"hydra.sweep.dir={sweep_dir}", "ckpt_path=last"])


class JobStartOnly:
    """Hydra's callbacks with on_job_end held back (run_farm calls it when the member's job really ends)."""

    def __init__(self, callbacks: Any):
        self.callbacks = callbacks

    def on_job_start(self, **kwargs: Any) -> None:
        self.callbacks.on_job_start(**kwargs)

    def on_job_end(self, **kwargs: Any) -> None:
        pass


def say(line: str) -> None:
    print(f"farm: {line}", file=sys.stderr, flush=True)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    configs = [job_config(launcher, overrides, initial_job_idx + i) for i, overrides in enumerate(job_overrides)]
    packing = plan(configs, launcher.max_members)
    # one process trains every job: it gets every core it may use, and no more (each job's run sets the same again)
    threads, why = use_torch_threads(None)
    sizes = ", ".join(str(len(farm)) for farm in packing.farms) or "none"
    say(f"{len(configs)} jobs: {len(packing.farms)} farm(s) of {sizes} members, {len(packing.alone)} ordinary "
        f"job(s); {threads} torch threads ({why})")
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
    from genlab.farm import enroll, finish, record_interruption, train_farm
    from genlab.farm.engine import FarmInterrupted

    # A member's job ends after the farm has trained and finished it, not when it enrolls: Hydra's job-end callbacks
    # (genlab's sweep summary reads the job's results.json) are called then.
    enrolling = dataclasses.replace(launcher.hydra_context, callbacks=JobStartOnly(launcher.hydra_context.callbacks))
    members, returns = {}, []
    for cfg in configs:
        ret = run_job(hydra_context=enrolling, task_function=user_errors_exit_cleanly(enroll),
                      config=cfg, job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        returns.append(ret)
        if ret.status == JobStatus.COMPLETED:
            members[len(returns) - 1] = ret._return_value
        else:
            launcher.hydra_context.callbacks.on_job_end(config=cfg, job_return=ret)
    say(f"training {len(members)} members together: jobs " + ", ".join(str(configs[i].hydra.job.num) for i in members))
    try:
        train_farm(list(members.values()), int(configs[0].trainer.max_epochs))
    except FarmInterrupted as stop:
        command = resume_command(next(iter(members.values())).start.run_dir.parent)
        for position, member in members.items():
            HydraConfig.instance().set_config(configs[position])
            record_interruption(member, str(stop), command)
        say(f"{stop}; every member saved checkpoints/interrupted.ckpt. Resume with: {command}")
        for position in members:  # the sweep summary stops the sweep at the first interrupted job, as for any job
            launcher.hydra_context.callbacks.on_job_end(config=configs[position], job_return=returns[position])
        raise SystemExit(128 + stop.signum) from None
    for position, member in members.items():
        HydraConfig.instance().set_config(configs[position])  # what the member's code reads of Hydra: its own job's
        ret = returns[position]
        try:
            ret.return_value = finish(member).get(member.start.cfg.optimized_metric)
            ret.status = JobStatus.COMPLETED
        except Exception as err:  # noqa: BLE001  (a failed member is its job's failure, as Hydra records one)
            ret.return_value, ret.status = err, JobStatus.FAILED
        launcher.hydra_context.callbacks.on_job_end(config=configs[position], job_return=ret)
    return returns
