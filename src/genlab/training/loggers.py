"""W&B specifics: offline without credentials, never fatal to training, grouped per sweep, synced later."""
from __future__ import annotations

import csv
import logging
import netrc
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from genlab.errors import warn_in_one_line

WANDB_LOGGER = "genlab.training.loggers.ResilientWandbLogger"
CSV_LOGGER = "genlab.training.loggers.RunCSVLogger"
RUN_FILES_FOLDER = "genlab"  # in the W&B run's files: results.json and config.yaml of the run dir
WANDB_RUN_ID_FILE = "wandb_run_id"  # in the run dir, so a resumed run continues the same W&B run


class _RunWriter(ExperimentWriter):
    """Lightning's CSV writer warns whenever the run dir holds anything and deletes an existing metrics.csv; this one
    appends to it when the run resumes (keeping its columns), and otherwise replaces silently what a start that never
    reached a checkpoint left (a sweep job killed in its first epoch, started again)."""

    def __init__(self, log_dir: str, append: bool):
        self._append = append
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        if not self._append:
            self._fs.rm_file(self.metrics_file_path)
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            self.metrics_keys = sorted(csv.DictReader(file).fieldnames or [])


class RunCSVLogger(CSVLogger):
    """metrics.csv in the run dir, appended to when a run resumes (`append`; Lightning's own would start it afresh)."""

    def __init__(self, *args: Any, append: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._append = append

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _RunWriter(log_dir=self.log_dir, append=self._append)
        return self._experiment


class ResilientWandbLogger(WandbLogger):
    """A WandbLogger whose failures never stop training.

    If W&B cannot start online, it starts offline (one warning). If a logging call fails mid-run, the run goes on
    offline under the same run id, so `wandb sync` can upload it later (one warning); if even that fails, W&B is
    switched off for the rest of the run. metrics.csv keeps everything either way.
    """

    def __init__(self, *args: Any, init_timeout: float = 10, log_model: bool | str = False, **kwargs: Any):
        # Checkpoints are logged by genlab at the end of the run (log_tested_checkpoints), with the tested epoch and
        # score, offline too: Lightning's own log_model refuses offline runs before training starts.
        super().__init__(*args, log_model=False, **kwargs)
        self.checkpoints_to_log = log_model
        self._broken = False
        # How long wandb.init may wait for the server before the run goes offline (W&B's own default, 90 s, stalls a
        # run with a key but no network for a minute and a half).
        self._init_timeout = float(init_timeout)
        set_wandb_setting(self._wandb_init, "init_timeout", self._init_timeout)
        if self._wandb_init.get("anonymous") is None:
            # Lightning passes anonymous=None to wandb.init, and wandb >= 0.2x warns on every run that the setting
            # has no effect; leaving it out is the same run without the warning.
            del self._wandb_init["anonymous"]
        quiet_wandb(self._wandb_init)
        # Each logger its own run: a process that runs several jobs (a multirun, a parallel launcher's worker) must
        # never hand a job the run of the one before, which W&B's default ("return_previous") does.
        self._wandb_init.setdefault("reinit", "create_new")

    @property
    @rank_zero_experiment
    def experiment(self):
        try:
            return super().experiment
        except Exception as err:  # any failure of wandb.init: network, auth, service
            if self._offline:
                raise
            self._go_offline(f"W&B could not start online within {self._init_timeout:g} s "
                             f"(logger.wandb.init_timeout): {one_line(err)}")
            return super().experiment

    @property
    def offline(self) -> bool:
        return self._offline

    def _go_offline(self, why: str) -> None:
        self._offline = True
        self._wandb_init["mode"] = "offline"
        if self._experiment is not None:
            self._wandb_init["id"] = getattr(self._experiment, "id", None) or self._wandb_init.get("id")
            try:
                self._experiment.finish()
            except Exception:  # the failing run may not even finish; the offline one takes over regardless
                pass
            self._experiment = None
        folder = Path(self.save_dir or ".") / "wandb" / f"offline-run-*-{self._wandb_init.get('id') or '*'}"
        # this line says it all: W&B's own lines about the offline run (4, after the failed start's) stay unsaid
        set_wandb_setting(self._wandb_init, "silent", True)
        warn_in_one_line(f"{why}; logging to W&B offline instead, upload later with: wandb sync {folder}. "
                         "Training goes on.")

    def _guarded(self, method, *args: Any, **kwargs: Any) -> None:
        if self._broken:
            return
        try:
            method(*args, **kwargs)
            return
        except Exception as err:
            if self._offline:
                self._broken = True
                warn_in_one_line(f"W&B logging failed offline too ({one_line(err)}); W&B is off for the rest of this run.")
                return
            self._go_offline(f"W&B logging failed ({one_line(err)})")
        self._guarded(method, *args, **kwargs)

    def log_metrics(self, metrics, step=None) -> None:
        self._guarded(super().log_metrics, metrics, step)

    def log_hyperparams(self, params, *args: Any, **kwargs: Any) -> None:
        """The config under dotted keys (`data.batch_size`, `regularization.name`), as every W&B run gets it: under a
        W&B sweep agent the sweep locks the keys it sets (`data: digits`, `regularization: none`), and a nested
        `data` section would be dropped as an update of a locked key. Keys the sweep itself set are left to it."""
        if isinstance(params, dict):
            locked = sweep_parameters()
            params = {key: value for key, value in dotted(params).items() if key not in locked}
        self._guarded(super().log_hyperparams, params, *args, **kwargs)

    def log_image(self, *args: Any, **kwargs: Any) -> None:
        self._guarded(super().log_image, *args, **kwargs)

    def summarise_best_epochs(self) -> None:
        """val/acc's summary is its max and val/loss's its min (W&B's default is the last value logged)."""
        def define() -> None:
            for key, summary in WANDB_SUMMARIES.items():
                # step_metric as Lightning's own glob definition sets it, which an explicit definition replaces
                self.experiment.define_metric(key, summary=summary, step_metric="trainer/global_step")

        self._guarded(define)

    def log_class_results(self, class_names: list[str], accuracy: list[float], labels: list[int],
                          predictions: list[int]) -> None:
        """Per-class accuracy as a W&B table and the confusion matrix as a W&B plot, from the test predictions."""
        def log() -> None:
            import wandb

            self.log_table("per_class_acc", columns=["class", "accuracy"], data=[list(row) for row in zip(class_names, accuracy)])
            plot = wandb.plot.confusion_matrix(y_true=labels, preds=predictions, class_names=class_names)
            self.experiment.log({"confusion_matrix_plot": plot})

        self._guarded(log)

    def log_run_facts(self, facts: dict[str, Any]) -> None:
        """Numbers about the run a dashboard groups and filters on (parameters, FLOPs, data sizes, tested epochs,
        threads), in the run's summary."""
        def log() -> None:
            self.experiment.summary.update(facts)

        self._guarded(log)

    def log_tested_checkpoints(self, checkpoints: list[tuple[Path, list[str], dict[str, Any]]]) -> None:
        """The checkpoints `logger.wandb.log_model` asks for, as versions of the run's model artifact, each with its
        aliases (best, last) and what was tested on it; offline, W&B keeps them for `wandb sync`."""
        def log() -> None:
            import wandb

            for path, aliases, metadata in checkpoints:
                artifact = wandb.Artifact(name=f"model-{self.experiment.id}", type="model", metadata=metadata)
                artifact.add_file(str(path), name="model.ckpt")
                self.experiment.log_artifact(artifact, aliases=aliases)

        self._guarded(log)

    def save_files(self, paths: list[Path]) -> None:
        """Keep copies of run files (results.json, config.yaml) with the W&B run, as `genlab/<name>`.

        Copied into the run's files dir, which W&B uploads (or `wandb sync` does, offline), under a folder of their
        own: W&B keeps its own config.yaml there, which a file of the same name would replace.
        """
        def save() -> None:
            folder = Path(self.experiment.dir) / RUN_FILES_FOLDER
            folder.mkdir(exist_ok=True)
            for path in paths:
                if path.is_file():
                    shutil.copyfile(path, folder / path.name)

        self._guarded(save)


def dotted(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of dotted keys: {"data": {"name": "digits"}} -> {"data.name": "digits"}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def sweep_parameters() -> set[str]:
    """The config keys a W&B sweep agent set for this run (its WANDB_SWEEP_PARAM_PATH file), which W&B locks."""
    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not os.environ.get("WANDB_SWEEP_ID") or not path:
        return set()
    try:
        import yaml

        parameters = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, ValueError):
        return set()
    return {str(key) for key in parameters} if isinstance(parameters, dict) else set()


def one_line(err: BaseException, limit: int = 300) -> str:
    """An error as one line: W&B's span several (the request, each retry)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def set_wandb_setting(init: dict[str, Any], key: str, value: Any) -> None:
    """Set a wandb.Settings field in the arguments wandb.init will get, whatever form its settings have there."""
    settings = init.get("settings")
    if settings is None:
        init["settings"] = {key: value}
    elif isinstance(settings, dict):
        settings[key] = value
    else:  # a wandb.Settings object
        setattr(settings, key, value)


def quiet_wandb(init: dict[str, Any]) -> None:
    """W&B's quiet mode: no ~25-line footer of history sparklines and summaries right before genlab's summary, no
    project link; the run link (online) and the offline note stay. Set into whatever settings wandb.init gets."""
    settings = init.get("settings")
    if settings is None:
        init["settings"] = {"quiet": True}
    elif isinstance(settings, dict):
        settings.setdefault("quiet", True)
    else:  # a wandb.Settings object
        settings.quiet = True


class LightningTips(logging.Filter):
    """Drops Lightning's advertising tips (litlogger, litmodels), logged at INFO on every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless" not in record.getMessage()


def quiet_lightning_tips() -> None:
    """Keep Lightning's informative lines (seed, devices) and drop its tips; idempotent."""
    log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, LightningTips) for f in log.filters):
        log.addFilter(LightningTips())


class RunTensorBoardLogger(TensorBoardLogger):
    """TensorBoard with a real `hp_metric`: the run's optimized metric (val/acc_best), not Lightning's placeholder -1.

    The hyperparameters are written once the metric is known, at the end of fit, so TensorBoard's HPARAMS tab lists
    each run with its value; the images the pipeline draws (augmentation grid, confusion matrix) go to the IMAGES tab.
    """

    def __init__(self, *args: Any, hp_metric: str = "val/acc_best", **kwargs: Any):
        kwargs["default_hp_metric"] = False
        super().__init__(*args, **kwargs)
        self._hp_metric_key = hp_metric
        self._hp_params: Any = None
        self._hp_value: float | None = None

    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None) -> None:
        if metrics is None:
            self._hp_params = params  # written with hp_metric in finalize
            return
        super().log_hyperparams(params, metrics)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._hp_metric_key in metrics:
            self._hp_value = float(metrics[self._hp_metric_key])
        super().log_metrics(metrics, step)

    def finalize(self, status: str) -> None:
        if self._hp_params is not None and self._hp_value is not None:
            params, self._hp_params = self._hp_params, None
            super().log_hyperparams(params, {"hp_metric": self._hp_value})
        super().finalize(status)

    def log_image_file(self, key: str, path: Path) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.experiment.add_image(key, pixels, global_step=0, dataformats="HWC")
        self.experiment.flush()


def wandb_hosts() -> set[str]:
    """The hosts `wandb login` may have stored a key under in ~/.netrc: the configured server (WANDB_BASE_URL, else
    the client's default: api.forge.coreweave.com since wandb 0.28) and api.wandb.ai, where older clients stored it."""
    from urllib.parse import urlparse

    try:
        from wandb.sdk.lib.urls import DEFAULT_BASE_URL
    except ImportError:  # an older client: its default was api.wandb.ai
        DEFAULT_BASE_URL = "https://api.wandb.ai"  # noqa: N806
    return {urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname or "", "api.wandb.ai"}


def wandb_credentials_available() -> bool:
    """True when W&B could log online: WANDB_API_KEY is set or `wandb login` stored a key in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        stored = netrc.netrc()
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any(stored.authenticators(host) is not None for host in wandb_hosts())


def wandb_should_run_offline() -> bool:
    return os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") or not wandb_credentials_available()


WANDB_TAG_MAX = 64  # W&B rejects longer tags
WANDB_NAME_MAX = 128  # longer display names are cut by the dashboard anyway
# Summaries a person reads in the runs table: the best epoch, not the last one W&B shows by default.
WANDB_SUMMARIES = {"val/acc": "max", "val/acc_best": "max", "val/loss": "min"}


@dataclass(frozen=True)
class WandbIdentity:
    """How a run appears on the dashboard: its display name, its group and its tags."""

    name: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()


# Overrides that change how a run is shown, logged or continued, not what it trains: never in a W&B name or tag.
DISPLAY_KEYS = ("logger", "callbacks.rich_progress_bar", "trainer.enable_progress_bar", "hydra", "paths", "tags",
                "task_name", "ckpt_path", "resume", "resume_dir", "retry_failed")


def shows_only(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0].split("/", 1)[0]
    return any(key == k or key.startswith(f"{k}.") for k in DISPLAY_KEYS)


def wandb_identity(hydra_cfg, task_name: str) -> WandbIdentity:
    """Names a person can read: the run is named by its overrides (`regularization=dropout,seed=2`, or the task when
    it has none), those that only say how it is shown or logged aside; the jobs of a multirun are named by what tells
    them apart (the swept values, from the sweep's plan), grouped as `<experiment or task>/<sweep dir>` and tagged with
    those values, seed aside.

    The group comes from the job's own output dir (<sweep dir>/<job>), which is resolved per job under every launcher.
    """
    if hydra_cfg is None:
        return WandbIdentity()
    overrides = [o for o in hydra_cfg.overrides.task if not shows_only(o)]
    if str(hydra_cfg.mode) != "RunMode.MULTIRUN":
        return WandbIdentity((",".join(overrides) or task_name)[:WANDB_NAME_MAX])
    from genlab.sweep import Plan, job_identity, only, swept_keys

    sweep_dir = Path(hydra_cfg.runtime.output_dir).parent
    plan = Plan.read(sweep_dir)
    if plan is not None and plan.jobs and len(plan.jobs) > 1:
        overrides = only(overrides, swept_keys([job_identity(job) for job in plan.jobs]))
    study = hydra_cfg.runtime.choices.get("experiment") or task_name
    return WandbIdentity((",".join(overrides) or task_name)[:WANDB_NAME_MAX], f"{study}/{sweep_dir.name}",
                         tuple(o[:WANDB_TAG_MAX] for o in overrides if not o.startswith("seed=")))


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


def finish_wandb(loggers: list, status: str = "completed") -> None:
    """Close W&B runs, so the next job of a multirun starts its own run, with the run's status in the summary and an
    exit code that says whether it completed (W&B marks a run with a non-zero exit code failed or crashed)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            try:
                logger._experiment.summary["status"] = status
                logger._experiment.finish(exit_code=0 if status == "completed" else 1)
            except Exception as err:  # the dashboard must not fail a finished run
                warn_in_one_line(f"W&B did not finish cleanly ({one_line(err)}); sync the run dir later with `wandb sync`.")


def log_image_file(loggers: list, key: str, path: Path) -> None:
    """Show an image file (a PNG the pipeline wrote) on the W&B dashboard and in TensorBoard's IMAGES tab; the CSV
    record keeps it in the run dir."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)])
        elif isinstance(logger, RunTensorBoardLogger):
            logger.log_image_file(key, path)


def wandb_loggers(loggers: list) -> list[ResilientWandbLogger]:
    return [logger for logger in loggers if isinstance(logger, ResilientWandbLogger)]
