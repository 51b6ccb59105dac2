"""W&B specifics: offline without credentials, never fatal to training, grouped per sweep, synced later."""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

import csv

from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_warn

WANDB_LOGGER = "genlab.training.loggers.ResilientWandbLogger"
WANDB_RUN_ID_FILE = "wandb_run_id"  # in the run dir, so a resumed run continues the same W&B run


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; this one appends, keeping the existing columns."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(csv.DictReader(file).fieldnames or [])


class RunCSVLogger(CSVLogger):
    """metrics.csv in the run dir, appended to when a run is resumed (Lightning's own would start it afresh)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class ResilientWandbLogger(WandbLogger):
    """A WandbLogger whose failures never stop training.

    If W&B cannot start online, it starts offline (one warning). If a logging call fails mid-run, the run goes on
    offline under the same run id, so `wandb sync` can upload it later (one warning); if even that fails, W&B is
    switched off for the rest of the run. metrics.csv keeps everything either way.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._broken = False
        if self._wandb_init.get("anonymous") is None:
            # Lightning passes anonymous=None to wandb.init, and wandb >= 0.2x warns on every run that the setting
            # has no effect; leaving it out is the same run without the warning.
            del self._wandb_init["anonymous"]

    @property
    @rank_zero_experiment
    def experiment(self):
        try:
            return super().experiment
        except Exception as err:  # any failure of wandb.init: network, auth, service
            if self._offline:
                raise
            self._go_offline(f"W&B could not start online ({err})")
            return super().experiment

    @property
    def offline(self) -> bool:
        return self._offline

    def _go_offline(self, why: str) -> None:
        rank_zero_warn(f"{why}; logging to W&B offline instead (upload later with `wandb sync`). Training goes on.")
        self._offline = True
        self._wandb_init["mode"] = "offline"
        if self._experiment is not None:
            self._wandb_init["id"] = getattr(self._experiment, "id", None) or self._wandb_init.get("id")
            try:
                self._experiment.finish()
            except Exception:  # the failing run may not even finish; the offline one takes over regardless
                pass
            self._experiment = None

    def _guarded(self, method, *args: Any, **kwargs: Any) -> None:
        if self._broken:
            return
        try:
            method(*args, **kwargs)
            return
        except Exception as err:
            if self._offline:
                self._broken = True
                rank_zero_warn(f"W&B logging failed offline too ({err}); W&B is off for the rest of this run.")
                return
            self._go_offline(f"W&B logging failed ({err})")
        self._guarded(method, *args, **kwargs)

    def log_metrics(self, metrics, step=None) -> None:
        self._guarded(super().log_metrics, metrics, step)

    def log_hyperparams(self, params, *args: Any, **kwargs: Any) -> None:
        self._guarded(super().log_hyperparams, params, *args, **kwargs)

    def log_image(self, *args: Any, **kwargs: Any) -> None:
        self._guarded(super().log_image, *args, **kwargs)


def wandb_credentials_available() -> bool:
    """True when W&B could log online: WANDB_API_KEY is set or `wandb login` stored a key in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_should_run_offline() -> bool:
    return os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") or not wandb_credentials_available()


WANDB_TAG_MAX = 64  # W&B rejects longer tags


def sweep_group_and_tags(hydra_cfg) -> tuple[str | None, list[str]]:
    """For a job of a Hydra multirun: the sweep dir's name as W&B group, and the job's overrides (seed aside) as tags.

    The group comes from the job's own output dir (<sweep dir>/<job>), which is resolved per job under every launcher.
    """
    if hydra_cfg is None or str(hydra_cfg.mode) != "RunMode.MULTIRUN":
        return None, []
    group = Path(hydra_cfg.runtime.output_dir).parent.name
    tags = [o[:WANDB_TAG_MAX] for o in hydra_cfg.overrides.task if not o.startswith(("seed=", "hydra."))]
    return group, tags


def remember_wandb_run(loggers: list, run_dir: Path) -> None:
    """Write the W&B run id into the run dir, for `resumed_wandb_id` when the run is resumed."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and getattr(logger.experiment, "id", None):
            (run_dir / WANDB_RUN_ID_FILE).write_text(logger.experiment.id)


def resumed_wandb_id(run_dir: Path) -> str | None:
    path = run_dir / WANDB_RUN_ID_FILE
    return path.read_text().strip() if path.is_file() else None


def current_hydra_config():
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def offline_sync_hints(loggers: list) -> list[str]:
    """For each W&B run that logged offline (no credentials, or a fallback), the command that uploads it later."""
    return [f"W&B ran offline; upload later with: wandb sync {Path(lg.experiment.dir).parent}"
            for lg in loggers if isinstance(lg, ResilientWandbLogger) and lg.offline and not lg._broken]


def finish_wandb(loggers: list) -> None:
    """Close W&B runs so the next job of a multirun starts its own run instead of appending to this one."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            try:
                logger._experiment.finish()
            except Exception as err:  # the dashboard must not fail a finished run
                rank_zero_warn(f"W&B did not finish cleanly ({err}); sync the run dir later with `wandb sync`.")


def log_image_file(loggers: list, key: str, path: Path) -> None:
    """Show an image file (a PNG the pipeline wrote) on the W&B dashboard; other loggers keep it in the run dir."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)])
