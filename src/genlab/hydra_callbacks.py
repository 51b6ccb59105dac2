"""Hydra callbacks (conf/hydra/default.yaml, conf/debug/default.yaml): what Hydra does around the jobs it runs."""
from __future__ import annotations

import atexit
import signal
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from genlab.cli import refuse
from genlab.errors import ConfigError
from genlab.resume import check_task_name


_SWEEP_NAME = {"task": "sweep"}  # set when a multirun starts, from its own (not a job's) config


def sweep_name() -> str:
    """${genlab_sweep_name:} in hydra.sweep.dir: the sweep's task_name (or experiment's, which sets it). Cached, and
    the cache is copied into every job's config, so jobs that set their own task_name (experiment=glob(*)) stay in
    the one sweep dir instead of each naming its own."""
    return _SWEEP_NAME["task"]


OmegaConf.register_new_resolver("genlab_sweep_name", sweep_name, use_cache=True, replace=True)


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
    """At the end of a multirun, print a table of its jobs, the re-run command of the best one and one line of counts
    (completed / failed / interrupted), and end with a non-zero exit code unless every job completed.

    A job interrupted by Ctrl+C or SIGTERM stops the sweep there: genlab's jobs turn an interruption into a result
    (results.json says `interrupted`), which would otherwise let the launcher start the next job. A sweep that ends
    another way before its end (a job raised, Hydra exits 1) still prints the summary, at exit.
    """

    def __init__(self) -> None:
        self._config: DictConfig | None = None
        self._sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._config = config
        _SWEEP_NAME["task"] = str(config.get("task_name") or "sweep")
        try:  # it names the sweep dir, which the launcher creates next: it must not leave outputs/multirun
            check_task_name(_SWEEP_NAME["task"])
        except ConfigError as err:
            refuse(err)
        # Resolved (and cached) now, before the launcher and the jobs read it
        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        atexit.register(self._report_unless_reported)
        if "optuna" in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created …": the table says more

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from genlab.sweep import read_job

        if self._config is None:  # not the process that runs the sweep (a submitit job): nothing to stop here
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        if self._sweep_dir is None or self._sweep_dir.resolve() != job_dir.parent.resolve():
            self._sweep_dir = job_dir.parent  # where the jobs really are
        if read_job(job_dir).status != "interrupted":
            return
        # Lightning ignores further Ctrl+C after the first (for its own shutdown); the sweep ends now, as asked.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = self._report()
        print("sweep stopped: a job was interrupted; no further job is started", file=sys.stderr, flush=True)
        raise SystemExit(code)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        code = self._report()
        if code:
            sys.stdout.flush()
            raise SystemExit(code)

    def _report(self) -> int:
        from genlab.sweep import report

        config, self._config = self._config, None
        if config is None:
            return 0
        return report(self._sweep_dir, str(config.get("optimized_metric", "val/acc_best")),
                      _maximizes(config), script=_script(config))

    def _report_unless_reported(self) -> None:
        try:
            self._report()
        except Exception:  # at exit, after a failure Hydra already reported: never a second traceback
            pass
