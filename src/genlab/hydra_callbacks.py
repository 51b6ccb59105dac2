"""Hydra callbacks (conf/hydra/default.yaml, conf/debug/default.yaml): what Hydra does around the jobs it runs."""
from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from genlab.cli import refuse
from genlab.errors import ConfigError
from genlab.locks import acquire, release
from genlab.resume import check_task_name, new_run_dir


_SWEEP_NAME = {"task": "sweep"}  # set when a multirun starts, from its own (not a job's) config


def sweep_name() -> str:
    """${genlab_sweep_name:} in hydra.sweep.dir: the sweep's task_name (or experiment's, which sets it). Cached, and
    the cache is copied into every job's config, so jobs that set their own task_name (experiment=glob(*)) stay in
    the one sweep dir instead of each naming its own."""
    return _SWEEP_NAME["task"]


def new_sweep_dir(log_dir: str, stamp: str, task_name: str) -> str:
    """${genlab_sweep_dir:…} (hydra.sweep.dir): <log_dir>/multirun/<stamp>_<task>, created here, or <stamp>.2_<task>,
    .3, … when a sweep started in the same second (in another process) took it. Resolved once, by the process that
    runs the sweep; Hydra hands each job the cached value."""
    return str(new_run_dir(Path(log_dir) / "multirun", stamp, task_name))


OmegaConf.register_new_resolver("genlab_sweep_name", sweep_name, use_cache=True, replace=True)
OmegaConf.register_new_resolver("genlab_sweep_dir", new_sweep_dir, use_cache=True, replace=True)


class PrintConfig(Callback):
    """Print the composed config as YAML before a job runs (debug=default), resolved where it can be."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        cfg = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
        try:
            text = OmegaConf.to_yaml(cfg, resolve=True)
        except Exception:  # an interpolation only a later stage can resolve: show it as written
            text = OmegaConf.to_yaml(cfg)
        print(text, flush=True)


def _maximizes(config: DictConfig) -> bool:
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default="maximize")
    return str(direction).lower() not in ("minimize", "studydirection.minimize")


def _script(config: DictConfig) -> str:
    name = OmegaConf.select(config, "hydra.job.name", default="train")
    return f"{name}.py"


class SweepSummary(Callback):
    """A multirun as a study: at its start, the plan of its jobs (sweep_jobs.yaml) and, when it continues a sweep dir
    (hydra.sweep.dir=<dir> ckpt_path=last), the check that the dir holds this command's jobs; `job k/N` as each job
    starts; at its end, a table of its jobs, the re-run command of the best one, one line of counts (completed /
    failed / interrupted / not started), the command that continues it when jobs are left, and a non-zero exit code
    unless every job completed.

    A job interrupted by Ctrl+C or SIGTERM stops the sweep there: genlab's jobs turn an interruption into a result
    (results.json says `interrupted`), which would otherwise let the launcher start the next job. A sweep that ends
    another way before its end (a job raised, Hydra exits 1) still prints the summary, at exit.
    """

    def __init__(self) -> None:
        self._config: DictConfig | None = None
        self._sweep_dir: Path | None = None
        self._pid: int | None = None  # the process that runs the sweep; a launcher's workers get copies of this object

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        from genlab.sweep import plan_of

        self._config, self._pid = config, os.getpid()
        _SWEEP_NAME["task"] = str(config.get("task_name") or "sweep")
        try:  # it names the sweep dir, which the launcher creates next: it must not leave outputs/multirun
            check_task_name(_SWEEP_NAME["task"])
            plan = plan_of(config, GlobalHydra.instance().config_loader())
            check_one_training_set_size_knob(plan)
            # Resolved (and cached) now, before the launcher and the jobs read it; a new sweep's dir is created here
            self._sweep_dir = Path(str(config.hydra.sweep.dir))
            self._sweep_dir.mkdir(parents=True, exist_ok=True)
            check_sweep_dir(self._sweep_dir, plan, continues=config.get("ckpt_path") == "last")
            acquire(self._sweep_dir, "hydra.sweep.dir", "a sweep dir no other sweep is running in")
        except ConfigError as err:
            refuse(err)
        keep_the_study_threads(self._sweep_dir)
        plan.write(self._sweep_dir)
        atexit.register(self._report_unless_reported)
        if "optuna" in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created …": the table says more

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from genlab.parallel import stop_requested
        from genlab.sweep import progress_line

        if str(config.hydra.mode) != "RunMode.MULTIRUN":
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        if stop_requested(job_dir.parent):  # a stopping parallel sweep: this job will not start
            return
        overrides = [str(o) for o in config.hydra.overrides.task]
        print(progress_line(job_dir.parent, int(config.hydra.job.num), overrides), flush=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from genlab.sweep import read_job

        if self._config is None or self._pid != os.getpid():  # not the process that runs the sweep: nothing to stop
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        if self._sweep_dir is None or self._sweep_dir.resolve() != job_dir.parent.resolve():
            self._sweep_dir = job_dir.parent  # where the jobs really are
        if read_job(job_dir).status != "interrupted":
            return
        # Lightning ignores further Ctrl+C after the first (for its own shutdown); the sweep ends now, as asked.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("sweep stopped: a job was interrupted; no further job is started", file=sys.stderr, flush=True)
        raise SystemExit(self._report())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        code = self._report()
        if code:
            sys.stdout.flush()
            raise SystemExit(code)

    def _report(self) -> int:
        from genlab.parallel import stop_requested
        from genlab.sweep import report

        config, self._config = self._config, None
        if config is None or self._pid != os.getpid():
            return 0
        try:
            return report(self._sweep_dir, str(config.get("optimized_metric", "val/acc_best")),
                          _maximizes(config), script=_script(config), argv=sys.argv,
                          stopped_by=stop_requested(self._sweep_dir))
        finally:
            release(self._sweep_dir)

    def _report_unless_reported(self) -> None:
        try:
            self._report()
        except Exception:  # at exit, after a failure Hydra already reported: never a second traceback
            pass


def check_sweep_dir(sweep_dir: Path, plan: Any, continues: bool) -> None:
    """A sweep dir that holds jobs already is this command's to continue (ckpt_path=last), job for job: refused in one
    line when the command does not continue it, or when a job there ran other swept values than this command's job of
    the same number (the sweep's values changed). Values every job shares may change (trainer.max_epochs=<more> trains
    the completed jobs further); a line names them."""
    from genlab.resume import run_files
    from genlab.sweep import job_dirs, job_identity, only, read_job, swept_keys

    started = [read_job(d) for d in job_dirs(sweep_dir) if run_files(d)]
    if not started:
        return
    if not continues:
        raise ConfigError("hydra.sweep.dir", str(sweep_dir), f"a new sweep dir: it holds {len(started)} job(s) of a "
                          "sweep; add ckpt_path=last to continue that sweep there, or choose another dir")
    if plan.jobs is None:
        return
    keys = swept_keys(plan.jobs)
    changed: set[str] = set()
    for job in started:
        ours = job_identity(plan.jobs[job.number]) if job.number < len(plan.jobs) else None
        theirs = job_identity(job.overrides)
        if ours is None or only(theirs, keys) != only(ours, keys):
            mine = " ".join(only(ours, keys)) or "(no swept values)" if ours is not None else "(no such job)"
            raise ConfigError("hydra.sweep.dir", str(sweep_dir), f"a sweep dir of this command's jobs: its job "
                              f"{job.number} ran {' '.join(only(theirs, keys)) or '(no swept values)'}, where this "
                              f"command's job {job.number} is {mine}")
        changed |= set(ours) - set(theirs)
    if changed:
        print(f"continuing with values the sweep's earlier jobs did not have: {' '.join(sorted(changed))} (completed "
              "jobs are kept unless these train them further)", flush=True)


def check_one_training_set_size_knob(plan: Any) -> None:
    """data.train_fraction and data.train_size size the training set two ways, and a run takes one (config.validate_data).
    A sweep over one with the other given too (`experiment=data_scaling data.train_size=500`) would fail every job but
    the fraction-1.0 ones, hours in: refused before the first job, with the command that sweeps sizes instead."""
    from genlab.sweep import override_key

    jobs = [{override_key(o): o.split("=", 1)[1] for o in job if "=" in o} for job in plan.jobs or []]
    for values in jobs:
        fraction, size = values.get("data.train_fraction"), values.get("data.train_size")
        if fraction is None or size in (None, "null"):
            continue
        try:
            if float(fraction) == 1.0:
                continue
        except ValueError:
            continue  # not a number: the job's own validation names it
        fractions = dict.fromkeys(j["data.train_fraction"] for j in jobs if "data.train_fraction" in j)
        raise ConfigError("data.train_size", size, f"null while the sweep sets data.train_fraction "
                          f"({','.join(fractions)}): one knob sizes the training set. To sweep sizes instead, add "
                          "data.train_fraction=1.0 (the command line replaces a preset's sweep of it)")


def keep_the_study_threads(sweep_dir: Path) -> None:
    """A continued sweep's jobs train with the torch thread count its earlier jobs recorded, whatever launcher or
    machine continues it: a run's numbers depend on its thread count (genlab.threads reads the variable)."""
    from genlab.threads import STUDY_THREADS_ENV

    counts = set()
    for record in Path(sweep_dir).glob("*/results.json"):
        try:
            counts.add(int(json.loads(record.read_text())["torch_threads"]["threads"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if len(counts) == 1:
        os.environ[STUDY_THREADS_ENV] = str(counts.pop())
