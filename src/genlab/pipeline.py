"""The one place where a run is assembled: config -> data -> model -> module -> trainer -> results."""
from __future__ import annotations

import copy
import errno
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_warn
from omegaconf import DictConfig, OmegaConf

from genlab.analysis.evaluation import confusion_matrix, per_class_accuracy, plot_confusion_matrix, predict, robustness
from genlab.analysis.measures import Subset, measure_weights, save_initial_weights
from genlab.cli import in_multirun
from genlab.config import MODEL_RUN_KEYS, validate, validate_augmentation, validate_data, validate_epoch_length
from genlab.data.augment import build_train_transform
from genlab.data.catalog import dataset_info, options_in
from genlab.data.datamodule import SPLIT_KEYS, ImageDataModule
from genlab.data.device_augment import DeviceAugment, cpu_fallback_message, unsupported_reason
from genlab.data.strategies import TrainingSetPlan
from genlab.errors import ConfigError, NonFiniteLoss, RunFailed
from genlab.models import count_flops, count_parameters
from genlab.records import SCHEMA_VERSION, git_state, package_versions, write_json_atomic
from genlab.summary import print_summary
from genlab.threads import use_torch_threads
from genlab.resume import (CHECKPOINT_DIR, check_checkpoint_fits, checkpoint_to_resume, kept_record, lock_run_dir, release_run_dir,
                           resume_command, start_accepted, undo_refused_start)
from genlab.training.averaging import AveragedWeights
from genlab.training.checkpoints import (check_loadable, check_resumable, checkpoint_globals, read_checkpoint,
                                        save_and_load_checkpoints_safely)
from genlab.training.ddp import isolated_distributed_job, launch_ddp_workers_as_this_job
from genlab.training.guards import INTERRUPTIONS
from genlab.training.loggers import (
    CSV_LOGGER,
    WANDB_LOGGER,
    RunCSVLogger,
    current_hydra_config,
    finish_wandb,
    log_image_file,
    offline_sync_hints,
    quiet_lightning_tips,
    remember_wandb_run,
    resumed_wandb_id,
    wandb_identity,
    wandb_loggers,
    wandb_should_run_offline,
)
from genlab.training.module import ImageClassifier
from genlab.training.optim import scale_learning_rate
from genlab.training.random_state import RandomStateInCheckpoint

PLAN_KEYS = ("train_fraction", "train_size", "imbalance", "label_noise", "label_noise_kind", "balance", "balance_beta")
MIXING_KEYS = ("mixup_alpha", "cutmix_alpha", "mix_prob", "switch_prob")
PREVIEW_FILE = "augmentations.png"
# computed by the pipeline after testing, not logged by a test pass
DERIVED_METRICS = ("gap/", "final/gap/", "robust/", "measures/")
# Lightning 2.6 calls a torch pytree API that newer torch deprecates, once per run: nothing a user can act on.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                        module=r"lightning\.pytorch\.utilities\._pytree")


def build_datamodule(data: DictConfig, seed: int, augmentation: DictConfig | None = None,
                     plan: TrainingSetPlan | None = None, val_size: int | float | None = None,
                     split: dict[str, Any] | None = None) -> ImageDataModule:
    """The data module of `data`: its reader's options, the training-set plan and the augmentation policy (if any),
    run per image in loader workers or, with data.loader=gpu, batch-wise on the device. `val_size` and `split`
    (split_seed, folds, fold) replace data's own where a checkpoint says how its splits were drawn."""
    split = {key: data.get(key) for key in SPLIT_KEYS} if split is None else split
    options = options_in(data.name, data)
    on_device = data.get("loader", "cpu") == "gpu"
    transform = device_augment = None
    if augmentation is not None:
        info = dataset_info(data.name, data.data_dir, **options)
        policy = OmegaConf.to_container(augmentation, resolve=True)
        reason = unsupported_reason(policy) if on_device else None
        if reason is not None:
            rank_zero_warn(cpu_fallback_message(reason))
            on_device = False
        if on_device:
            device_augment = DeviceAugment(policy, info)
        else:
            transform = build_train_transform(policy, info, seed)
    return ImageDataModule(
        name=data.name, data_dir=data.data_dir, batch_size=data.batch_size,
        val_size=data.val_size if val_size is None else val_size,
        num_workers=data.num_workers, pin_memory=data.pin_memory, download=data.download, seed=seed,
        train_transform=transform, options=options, on_device=on_device, device_augment=device_augment,
        plan=plan or TrainingSetPlan(**{key: data[key] for key in PLAN_KEYS if key in data}), **split,
    )


def build_module(cfg: DictConfig, datamodule: ImageDataModule) -> ImageClassifier:
    """The LightningModule, with the model shaped by the data set (channels, size, classes), never by hand.

    With data.balance=loss, `datamodule` must be set up: the class weights come from its training set's counts.
    """
    info = datamodule.info
    model = OmegaConf.to_container(cfg.model, resolve=True)
    # How the net runs is the module's business; the build spec (and so the checkpoint's hparams.model) is the net.
    # A config saved before these keys existed runs as they default.
    run_options = {key: model.pop(key, False) for key in MODEL_RUN_KEYS}
    model.update(in_channels=info.channels, num_classes=info.num_classes, image_size=info.image_size)
    augmentation = cfg.get("augmentation") or {}
    return ImageClassifier(
        model=model,
        # lr_scaling is applied by the module, when the trainer knows how many processes share the global batch.
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        data=training_data_spec(cfg, datamodule),
        loss=OmegaConf.to_container(cfg.loss, resolve=True),
        mixing={key: augmentation[key] for key in MIXING_KEYS if key in augmentation},
        class_weights=datamodule.class_weights(),
        class_priors=datamodule.class_priors() if cfg.loss.get("logit_adjustment", 0.0) else None,
        tta=bool(augmentation.get("tta", False)),
        **run_options,
    )


def training_data_spec(cfg: DictConfig, datamodule: ImageDataModule) -> dict[str, Any]:
    """What defines the images the model was trained and validated on, kept in every checkpoint: the data set, the seed,
    the val_size or fold and the split seed that draw the splits, the training-set plan, the per-device batch size and
    the normalisation. eval.py rebuilds exactly these splits from it, whatever its own data.* say."""
    return {"name": datamodule.info.name, "seed": cfg.seed, "options": datamodule.options, "val_size": datamodule.val_size,
            **split_spec(datamodule), "batch_size": datamodule.batch_size, **asdict(datamodule.plan),
            "normalization": None if datamodule.mean is None else {"mean": list(datamodule.mean), "std": list(datamodule.std)}}


def split_spec(datamodule: ImageDataModule) -> dict[str, Any]:
    """How the train/val split was drawn: the seed that drew it (the run's, unless data.split_seed set one) and the
    K-fold (folds and fold; None for a val_size holdout)."""
    return {"split_seed": datamodule.split_seed, "folds": datamodule.folds, "fold": datamodule.fold}


def model_record(module: ImageClassifier) -> dict[str, Any]:
    """The run record's model entry: family, size (all and trainable parameters), and FLOPs of one forward pass on one
    image of the data set."""
    spec = module.hparams.model
    return {"name": spec["name"], "params": count_parameters(module.net),
            "trainable": sum(p.numel() for p in module.net.parameters() if p.requires_grad),
            "flops": count_flops(module.net, spec["in_channels"], spec["image_size"])}


def save_preview(cfg: DictConfig, datamodule: ImageDataModule, run_dir: Path, loggers: list[Any]) -> Path | None:
    """The grid of augmented training images, in the run dir and on W&B (augmentation.preview_images of them)."""
    count = (cfg.get("augmentation") or {}).get("preview_images", 0)
    if not count:
        return None
    from genlab.data.preview import save_augmentation_grid

    path = save_augmentation_grid(*datamodule.preview_batch(count, cfg.seed), datamodule.info, run_dir / PREVIEW_FILE)
    log_image_file(loggers, "augmentation/samples", path)
    return path


def data_record(datamodule: ImageDataModule) -> dict[str, Any]:
    """What the run trained and was tested on, for results.json: sizes, normalisation and the training-set strategy."""
    return {"name": datamodule.info.name, "train_size": len(datamodule.train_set), "val_size": len(datamodule.val_set),
            "test_size": len(datamodule.test_set), **split_spec(datamodule), "options": datamodule.options,
            "normalization": {"mean": list(datamodule.mean), "std": list(datamodule.std)},
            "strategy": datamodule.plan_record}


def instantiate_enabled(section: DictConfig | None, skipped: set[str] = frozenset(), **overrides: Any) -> list[Any]:
    """Instantiate every `_target_` entry of a config section whose `enabled` flag is not false, `skipped` keys aside."""
    objects = []
    for key, spec in (section or {}).items():
        if spec is None or "_target_" not in spec or not spec.get("enabled", True) or key in skipped:
            continue
        kwargs = {k: v for k, v in OmegaConf.to_container(spec, resolve=True).items() if k != "enabled"}
        objects.append(instantiate(kwargs, **overrides.get(key, {})))
    return objects


def build_loggers(section: DictConfig | None, task_name: str, resumed: bool = False,
                  wandb_id: str | None = None, smoke_check: bool = False) -> list[Any]:
    """Instantiate the loggers; W&B goes offline without credentials, is named by the run's overrides and grouped by
    sweep in a multirun, and continues run `wandb_id` when a run is `resumed`; metrics.csv is appended to then. A
    `smoke_check` (trainer.fast_dev_run) never opens a W&B run: it would be a dashboard entry without metrics."""
    identity = wandb_identity(current_hydra_config(), task_name)
    settings = {}
    skipped = set()
    for key, spec in (section or {}).items():
        if smoke_check and spec and spec.get("_target_") == WANDB_LOGGER:
            skipped.add(key)
        elif spec and spec.get("_target_") == WANDB_LOGGER:
            settings[key] = {"offline": wandb_should_run_offline(), "name": spec.get("name") or identity.name,
                             "group": spec.get("group") or identity.group,
                             "tags": [*(spec.get("tags") or []), *identity.tags], "id": wandb_id}
        elif spec and spec.get("_target_") == CSV_LOGGER:
            settings[key] = {"append": resumed}
    return instantiate_enabled(section, skipped, **settings)


def build_callbacks(section: DictConfig | None, have_loggers: bool) -> list[L.Callback]:
    """The configured callbacks, plus the random state in checkpoints, which exact resume needs whatever the config."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    callbacks = instantiate_enabled(section)
    # The LR monitor logs through a logger and refuses to start without one (logger=none).
    return [*(c for c in callbacks if have_loggers or not isinstance(c, LearningRateMonitor)), RandomStateInCheckpoint()]


def build_trainer(cfg: DictConfig, loggers: list[Any], callbacks: list[L.Callback]) -> L.Trainer:
    if current_hydra_config() is not None:
        launch_ddp_workers_as_this_job()
    quiet_lightning_tips()
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)


def test_metrics(trainer: L.Trainer, module: ImageClassifier, datamodule: ImageDataModule, ckpt_path: str | None,
                 prefix: str = "") -> dict[str, float]:
    """Test-set and train_eval metrics of the given checkpoint (None: the module's weights as they are), plus the
    generalization gap; every name starts with `prefix`, in the loggers as in the returned dict."""
    module.test_prefix = prefix
    per_loader = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    metrics = {k: float(v) for results in per_loader for k, v in results.items()}
    metrics[f"{prefix}gap/acc"] = metrics[f"{prefix}train_eval/acc"] - metrics[f"{prefix}test/acc"]
    metrics[f"{prefix}gap/loss"] = metrics[f"{prefix}test/loss"] - metrics[f"{prefix}train_eval/loss"]
    return metrics


def analyse_generalization(module: ImageClassifier, datamodule: ImageDataModule, analysis: DictConfig, seed: int,
                           run_dir: Path, loggers: list[Any], weights: str) -> tuple[dict[str, float], dict[str, float]]:
    """Robustness metrics, and per-class test accuracy from a confusion matrix saved as PNG (and logged to W&B as an
    image, a table and a plot). Predictions are made as the test metrics make them (test-time flips included)."""
    images, labels = datamodule.test_set.images, datamodule.test_set.labels
    flip_average = module.hparams.tta
    metrics = {}
    if analysis.robustness:
        metrics = robustness(module, images, labels, datamodule.normalize, list(analysis.corruptions),
                             list(analysis.severities), seed, flip_average=flip_average)
    if not analysis.confusion_matrix:
        return metrics, {}
    info = datamodule.info
    predictions = predict(module, images, datamodule.normalize, flip_average=flip_average)
    confusion = confusion_matrix(labels, predictions, info.num_classes)
    png = plot_confusion_matrix(confusion, list(info.class_names), run_dir / "confusion_matrix.png", weights)
    log_image_file(loggers, "confusion_matrix", png)
    accuracy = list(map(float, per_class_accuracy(confusion)))
    for logger in wandb_loggers(loggers):
        logger.log_class_results(list(info.class_names), accuracy, labels.tolist(), predictions.tolist())
    return metrics, dict(zip(info.class_names, accuracy))


CHECKPOINT_COPIES = 3  # best + last + the one being written


def prepare_run_dir(run_dir: Path, params: int) -> None:
    """Fail before training if the run dir cannot be written or cannot hold the checkpoints."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise ConfigError("paths.output_dir", str(run_dir), f"a writable directory ({err.strerror})") from err
    # A checkpoint holds the weights and the optimizer state (up to 2 more tensors per weight for Adam), float32.
    needed = CHECKPOINT_COPIES * params * 4 * 3
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise ConfigError("paths.output_dir", str(run_dir),
                          f"a disk with at least {needed / 2**20:.1f} MiB free for checkpoints, found {free / 2**20:.1f} MiB")


def fit_and_test(cfg: DictConfig, trainer: L.Trainer, module: ImageClassifier, datamodule: ImageDataModule,
                 run_dir: Path, loggers: list[Any], resume_from: Path | None
                 ) -> tuple[dict[str, float], str | None, dict[str, float], dict[str, Any] | None]:
    """Train, then test the last epoch's and the best checkpoint's weights, and analyse the weights the study compares
    (analysis.compared_weights): (metrics, best, per-class, what the measures were computed on)."""
    if trainer.is_global_zero:
        save_preview(cfg, datamodule, run_dir, loggers)
    with warnings.catch_warnings():
        if resume_from is not None and resume_from.resolve().is_relative_to(run_dir.resolve()):
            # A resumed run continues in its own dir by design; Lightning would call its checkpoints a surprise.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    # From the module's own (checkpointed) state: a run resumed after its last epoch trains and validates nothing more,
    # so nothing is logged, but its best val accuracy is the one it had.
    val_acc_best = float(module.val_acc_best.max_value)
    best = (trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else "") or None
    metrics, per_class, measured = test_and_analyse(cfg, trainer, module, datamodule, run_dir, loggers, best)
    return {**metrics, "val/acc_best": val_acc_best}, best, per_class, measured


def test_and_analyse(cfg: DictConfig, trainer: L.Trainer, module: ImageClassifier, datamodule: ImageDataModule,
                     run_dir: Path, loggers: list[Any], best: str | None
                     ) -> tuple[dict[str, float], dict[str, float], dict[str, Any] | None]:
    """Test the trained module's last weights (final/*) and the `best` checkpoint's (test/*; the last weights when
    None), then analyse the weights the study compares: (metrics, per-class accuracy, the measures' record)."""
    # The last epoch's weights are tested first, as final/*; testing `best` then loads those weights into the module.
    final = test_metrics(trainer, module, datamodule, None, prefix="final/")
    last_weights = copy.deepcopy(module.state_dict()) if compares_last(cfg) and best is not None else None
    metrics = {**test_metrics(trainer, module, datamodule, best), **final}
    if last_weights is not None:  # robustness and per-class accuracy describe the weights the study compares
        module.load_state_dict(last_weights)
    analysed = "last epoch" if last_weights is not None or best is None else "best checkpoint"
    robust, per_class = analyse_generalization(module, datamodule, cfg.analysis, cfg.seed, run_dir, loggers, analysed)
    metrics.update(robust)
    measured = None
    if measures_on(cfg):
        values, measured = measure_generalization(cfg, module, datamodule, run_dir, trainer)
        metrics.update(values)
    # test/* and final/test/* were logged by the test passes themselves.
    log_derived_metrics(trainer, {k: v for k, v in metrics.items() if k.startswith(DERIVED_METRICS)})
    return metrics, per_class, measured


def measures_on(cfg: DictConfig) -> bool:
    """Whether the run measures its compared weights: analysis.measures is not none, or analysis.landscape."""
    return (cfg.analysis.get("measures") or {}).get("name", "none") != "none" or bool(cfg.analysis.get("landscape"))


def measure_generalization(cfg: DictConfig, module: ImageClassifier, datamodule: ImageDataModule, run_dir: Path,
                           trainer: L.Trainer) -> tuple[dict[str, float], dict[str, Any]]:
    """measures/* of the module's current weights on the train_eval subset (see analysis.measures)."""
    device = next(module.net.parameters()).device
    images = datamodule.normalize(torch.from_numpy(np.ascontiguousarray(datamodule.train_eval_set.images)).to(device))
    subset = Subset(images, torch.from_numpy(datamodule.train_eval_set.labels).long().to(device))
    info = datamodule.info
    # the training log is rank zero's: another DDP rank's logger has no experiment (Lightning's stand-in)
    csv_log = next((Path(lg.experiment.metrics_file_path) for lg in trainer.loggers if isinstance(lg, RunCSVLogger)),
                   None) if trainer.is_global_zero else None
    plain_ce = (module.objective.name == "cross_entropy" and not module.objective.label_smoothing
                and module.objective.class_weights is None and not module.mixing.enabled)
    return measure_weights(module.net, subset, (info.channels, info.image_size, info.image_size),
                           OmegaConf.to_container(cfg.analysis.measures, resolve=True), run_dir, csv_log, plain_ce,
                           cfg.seed, landscape=bool(cfg.analysis.get("landscape")))


def compares_last(cfg: DictConfig) -> bool:
    """analysis.compared_weights=last: the study compares the last epoch's weights, not the best checkpoint's."""
    return cfg.analysis.get("compared_weights", "best") == "last"


def optimization_record(trainer: L.Trainer, module: ImageClassifier) -> dict[str, Any]:
    """What the optimizer ran with, for results.json: the learning rate after optimizer.lr_scaling, the one its first
    step took (the schedule's start: warm-up begins below lr), weight decay, the global batch size and the steps taken.
    The first step's rate is read from the module's own optimizer and schedule built again (a schedule sets it when
    built), so it is what `configure_optimizers` gave the run, whatever the scheduler."""
    built = module.configure_optimizers()
    optimizer = built["optimizer"] if isinstance(built, dict) else built
    config = module.hparams.optimizer
    batch = module.global_batch_size()
    return {"lr": scale_learning_rate(config, batch)["lr"], "lr_first_step": optimizer.param_groups[0]["lr"],
            "lr_scaling": config.get("lr_scaling", "none"), "weight_decay": config.get("weight_decay", 0.0),
            "global_batch_size": batch, "steps": trainer.global_step}


def tested_weights(cfg: DictConfig, trainer: L.Trainer, best: str | None) -> dict[str, dict[str, Any]]:
    """Which weights each test pass scored, for results.json: `test` the best checkpoint (its epoch, and the monitor
    and mode that chose it) or, with no checkpoint callback, the last weights; `final` the last epoch's weights;
    `analysis` the ones robust/*, per_class_acc and the confusion matrix describe (analysis.compared_weights).
    Epochs count from 0, as in metrics.csv and the checkpoints."""
    callback = trainer.checkpoint_callback
    epoch_of = getattr(callback, "epoch_of", lambda path: None)
    last = {"weights": "last", "epoch": trainer.current_epoch - 1}
    if best is None:
        tested = {"test": last, "final": last}
    else:
        score = callback.best_model_score
        tested = {"test": {"weights": "best", "epoch": epoch_of(best), "monitor": callback.monitor,
                           "mode": callback.mode, "score": None if score is None else float(score)}, "final": last}
    averaging = weight_averaging_of(trainer)
    if averaging is not None:
        tested = {name: with_averaging(entry, averaging) for name, entry in tested.items()}
    return {**tested, "analysis": tested["final" if compares_last(cfg) else "test"]}


def weight_averaging_of(trainer: L.Trainer) -> AveragedWeights | None:
    return next((c for c in trainer.callbacks if isinstance(c, AveragedWeights)), None)


def with_averaging(entry: dict[str, Any], averaging: AveragedWeights) -> dict[str, Any]:
    """A `tested` entry with `averaged`: the averaging's kind, dose, updates and batch norm, or false where the tested
    weights are the current ones (a checkpoint from before SWA's first average, or a run that never averaged)."""
    if entry["weights"] == "last":
        averaged = averaging.record() if averaging.updates > 0 else False
    else:
        epoch = entry["epoch"]
        averaged = averaging.record(epoch) if epoch is not None and averaging.averages_epoch(epoch) else False
    return {**entry, "averaged": averaged}


def log_derived_metrics(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """Log what the pipeline computes after testing (gaps, robustness) to every logger at the step and epoch the test
    passes were logged at, flushed to metrics.csv now: Lightning saves a logger's buffer only in its own loops."""
    for logger in trainer.loggers:
        logger.log_metrics({**metrics, "epoch": trainer.current_epoch}, step=trainer.global_step)
        logger.save()


def run(cfg: DictConfig) -> dict[str, float]:
    """Train, test the best checkpoint, write results.json, and return the metrics (for Hydra sweepers).

    A run whose loss turns non-finite still writes results.json, with `status: failed` and the reason, then raises
    RunFailed.
    """
    try:
        with isolated_distributed_job():
            return _run(cfg)
    finally:
        release_run_dir()  # the next process that continues this run may start now


@dataclass
class RunStart:
    """A run assembled and accepted, up to its first training step: what `fit_and_record` trains."""

    cfg: DictConfig
    run_dir: Path
    datamodule: ImageDataModule
    module: ImageClassifier
    loggers: list[Any]
    trainer: L.Trainer
    record: dict[str, Any]
    resume_from: Path | None
    t0: float


def _run(cfg: DictConfig) -> dict[str, float]:
    validate(cfg)
    run_dir = Path(cfg.paths.output_dir)
    kept = kept_record(cfg, run_dir, in_sweep=in_multirun())
    if kept is not None:
        return keep_finished_run(cfg, run_dir, kept)
    start = start_run(cfg)
    trainer, loggers, run_dir = start.trainer, start.loggers, start.run_dir
    try:
        metrics, best, per_class = fit_and_record(cfg, trainer, start.module, start.datamodule, run_dir, loggers,
                                                  start.resume_from, start.record, start.t0)
        sync_hints = offline_sync_hints(loggers) if trainer.is_global_zero else []
    finally:
        finish_wandb(loggers, start.record.get("status", "crashed"))
    if trainer.is_global_zero:
        print_summary("Run summary", metrics, start.record, run_dir, sync_hints)
    return metrics


def keep_finished_run(cfg: DictConfig, run_dir: Path, record: dict[str, Any]) -> dict[str, float]:
    """A continued run with nothing left to do: its dir is left as it was (Hydra's writes undone), and one line says
    why; its recorded metrics are returned, as the run returned them."""
    undo_refused_start()
    metrics = record.get("metrics") or {}
    if record["status"] == "completed":
        shown = "".join(f", {key} {metrics[key]:.4f}" for key in ("test/acc", "final/test/acc") if key in metrics)
        print(f"run {run_dir} is complete ({record.get('epochs')} epochs{shown}): nothing to train; its record is kept "
              f"as it is (trainer.max_epochs=<more> trains more epochs)", flush=True)
    else:
        print(f"run {run_dir} failed ({record.get('error') or 'no reason recorded'}); kept as failed: retry_failed=true "
              "runs it again from its last good checkpoint", flush=True)
    return metrics


def start_run(cfg: DictConfig) -> RunStart:
    """Seed, build the data module, the module, the loggers and the trainer, and start the run record (`cfg` is
    validated); nothing is written before every check has passed."""
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    hydra_cfg = current_hydra_config()
    threads, threads_why = use_torch_threads(hydra_cfg.get("launcher") if hydra_cfg is not None else None)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg.data, cfg.seed, cfg.get("augmentation"))
    # Split sizes and files are checked here, before any logger starts; a class-weighted loss needs the counts.
    datamodule.prepare_data()
    datamodule.setup("fit")
    validate_epoch_length(cfg.trainer, len(datamodule.train_set), datamodule.batch_size)
    module = build_module(cfg, datamodule)
    prepare_run_dir(run_dir, count_parameters(module.net))
    lock_run_dir(run_dir)
    resume_from = checkpoint_to_resume(cfg.get("ckpt_path"), cfg.get("resume", False), cfg.get("resume_dir"), run_dir,
                                       in_sweep=in_multirun())
    if resume_from is not None:
        contents = check_checkpoint_fits(resume_from, module.hparams.model, datamodule.info.name, split_spec(datamodule))
        check_resumable(contents, module, resume_from)
    # Every check passed: only now is anything of this run written (a refused start left the run dir as it was).
    start_accepted()
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    loggers = build_loggers(cfg.get("logger"), cfg.task_name, resume_from is not None,
                            resumed_wandb_id(run_dir) if resume_from else None,
                            smoke_check=str(cfg.trainer.get("fast_dev_run", False)).lower() not in ("false", "0"))
    trainer = build_trainer(cfg, loggers, build_callbacks(cfg.get("callbacks"), bool(loggers)))
    save_and_load_checkpoints_safely(trainer)
    if trainer.is_global_zero and resume_from is None and measures_on(cfg):
        save_initial_weights(module.net, run_dir)  # built, not yet trained: the distance-from-init measure's origin
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        remember_wandb_run(loggers, run_dir)
        for logger in wandb_loggers(loggers):
            logger.summarise_best_epochs()
    record = {
        "schema_version": SCHEMA_VERSION,
        "task_name": cfg.task_name,
        "seed": cfg.seed,
        "model": model_record(module),
        "data": data_record(datamodule),
        "augmentation": (cfg.get("augmentation") or {}).get("name", "none"),
        "started_at": started.isoformat(),
        "command": sys.argv,
        "git": git_state(),
        "packages": package_versions(),
        "torch_threads": {"threads": threads, "why": threads_why},
    }
    return RunStart(cfg, run_dir, datamodule, module, loggers, trainer, record, resume_from, t0)


RUN_FILES_FOR_WANDB = ("results.json", "config.yaml")


def write_run_record(trainer: L.Trainer, run_dir: Path, loggers: list[Any], record: dict[str, Any], t0: float,
                     **outcome: Any) -> None:
    """results.json with the run's outcome, its epochs and wall time, kept with the W&B run too."""
    record.update(**outcome, epochs=trainer.current_epoch, wall_time_s=time.perf_counter() - t0)
    if trainer.is_global_zero:
        write_json_atomic(run_dir / "results.json", record)
        for logger in wandb_loggers(loggers):
            logger.save_files([run_dir / name for name in RUN_FILES_FOR_WANDB])
            logger.log_run_facts(run_facts(record))
            logger.log_tested_checkpoints(checkpoints_to_log(logger.checkpoints_to_log, record, run_dir))


def run_facts(record: dict[str, Any]) -> dict[str, Any]:
    """What a dashboard groups and filters runs on beside their metrics, from the run record (lightning-hydra-template's
    names for the parameter counts)."""
    facts = {"model/params/total": record["model"]["params"], "model/params/trainable": record["model"]["trainable"],
             "model/params/non_trainable": record["model"]["params"] - record["model"]["trainable"],
             "model/flops": record["model"]["flops"], "torch_threads": record["torch_threads"]["threads"],
             **{f"data/{split}_size": record["data"][f"{split}_size"] for split in ("train", "val", "test")}}
    for name, tested in (record.get("tested") or {}).items():
        facts[f"tested/{name}_epoch"] = tested["epoch"]
    return facts


def checkpoints_to_log(policy: bool | str, record: dict[str, Any], run_dir: Path) -> list[tuple[Path, list[str], dict]]:
    """logger.wandb.log_model's checkpoints, each with its aliases and metadata (what was tested on it, the run's
    status): `best` the tested best checkpoint, `true` it and last.ckpt, `all` every checkpoint the run kept."""
    if not policy:
        return []
    folder = run_dir / CHECKPOINT_DIR
    tested = record.get("tested") or {}
    best = record.get("best_checkpoint")
    chosen: dict[Path, list[str]] = {}
    if best:
        chosen.setdefault(Path(best), []).append("best")
    if policy is True or policy == "all":
        if (folder / "last.ckpt").is_file():
            chosen.setdefault(folder / "last.ckpt", []).append("last")
    if policy == "all":
        for path in sorted(folder.glob("*.ckpt")):
            chosen.setdefault(path, [])
    status = record.get("status")
    logged = []
    for path, aliases in chosen.items():
        weights = tested.get("test" if "best" in aliases else "final", {}) if aliases else {}
        logged.append((path, aliases, {"status": status, "file": path.name, **weights}))
    return logged


def fit_and_record(cfg: DictConfig, trainer: L.Trainer, module: ImageClassifier, datamodule: ImageDataModule,
                   run_dir: Path, loggers: list[Any], resume_from: Path | None, record: dict[str, Any],
                   t0: float) -> tuple[dict[str, float], str | None, dict[str, float]]:
    """`fit_and_test`, then results.json whatever the outcome (completed, failed on a non-finite loss, interrupted),
    kept with the W&B run too; a failed or interrupted run raises RunFailed after writing it."""
    def write_results(**outcome: Any) -> None:
        write_run_record(trainer, run_dir, loggers, record, t0, **outcome)

    try:
        metrics, best, per_class, measured = fit_and_test(cfg, trainer, module, datamodule, run_dir, loggers, resume_from)
    except NonFiniteLoss as err:
        last_good = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        write_results(status="failed", error=str(err), metrics={}, last_checkpoint=last_good or None)
        raise RunFailed(f"{err}. Marked failed in {run_dir / 'results.json'}") from err
    except INTERRUPTIONS as err:
        if not trainer.interrupted:
            raise
        how = resume_command(run_dir)
        write_results(status="interrupted", error=f"interrupted ({type(err).__name__}) at step {trainer.global_step}",
                      metrics={}, resume_command=how)
        raise RunFailed(f"interrupted at step {trainer.global_step}; checkpoint saved. Resume with: {how}") from None
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Checkpoints are written whole or not at all, so the ones before are good; the partial one was removed, which
        # leaves room for results.json.
        last_good = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        why = f"out of disk space in {run_dir} at step {trainer.global_step} ({err.strerror})"
        try:
            write_results(status="failed", error=why, metrics={}, last_checkpoint=last_good or None)
            marked = f"marked failed in {run_dir / 'results.json'}"
        except OSError:
            marked = "results.json could not be written either"
        raise RunFailed(f"{why}; {marked}. Free some space, then resume with: {resume_command(run_dir)}") from err
    write_results(status="completed", metrics=metrics, per_class_acc=per_class, best_checkpoint=best,
                  tested=tested_weights(cfg, trainer, best), optimization=optimization_record(trainer, module),
                  **({"measures": measured} if measured else {}))
    return metrics, best, per_class


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint on its data set with the same pieces `run` uses; writes eval_results.json."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path", cfg.get("ckpt_path"), "the path of a checkpoint (.ckpt) to evaluate")
    ckpt = Path(cfg.ckpt_path)
    if not ckpt.is_file():
        raise ConfigError("ckpt_path", str(ckpt), "an existing checkpoint file")
    validate_data(cfg.data)
    augmentation = cfg.get("augmentation")
    if augmentation is not None:
        validate_augmentation(augmentation, cfg.data)
    t0 = time.perf_counter()
    tta = bool(augmentation.tta) if augmentation is not None else False
    # Read with weights_only (a crafted checkpoint runs nothing; a truncated or corrupted one is one line) and every
    # value used below checked, then Lightning's own load. One pass over the test set: compiling a network trained
    # with model.compile would cost more than it saves.
    check_loadable(read_checkpoint(ckpt), ckpt, cfg.data, tta=tta, compile=False)
    with checkpoint_globals():
        module = ImageClassifier.load_from_checkpoint(ckpt, map_location="cpu", tta=tta, compile=False, weights_only=True)
    trained_on = module.hparams.data
    if cfg.data.name != trained_on["name"]:
        raise ConfigError("data", cfg.data.name, f"data={trained_on['name']}, the data set this checkpoint was trained on")
    seed = cfg.seed if cfg.get("seed") is not None else trained_on["seed"]
    # train_eval must come from the training set the model saw: the val_size or fold and the seed that carved out its
    # val split, its subset, long tail and noisy labels. Checkpoints from before val_size was kept fall back to
    # data.val_size; those from before the split seed was kept drew their split with the run's seed.
    plan = TrainingSetPlan.from_saved(trained_on)
    split = {key: trained_on.get(key) for key in SPLIT_KEYS}
    split["split_seed"] = trained_on["seed"] if split["split_seed"] is None else split["split_seed"]
    datamodule = build_datamodule(cfg.data, seed, plan=plan, val_size=trained_on.get("val_size"), split=split)
    if datamodule.info.num_classes != module.num_classes:
        raise ConfigError("data", dict(datamodule.options), f"the options the checkpoint was trained with "
                          f"({trained_on.get('options')}): it predicts {module.num_classes} classes, not {datamodule.info.num_classes}")
    if trained_on.get("normalization"):  # the inputs as the model saw them in training, not as a new split's stats say
        datamodule.use_normalization(trained_on["normalization"]["mean"], trained_on["normalization"]["std"])
    start_accepted()
    trainer = build_trainer(cfg, [], build_callbacks(cfg.get("callbacks"), have_loggers=False))
    metrics = test_metrics(trainer, module, datamodule, ckpt_path=None)
    run_dir = Path(cfg.paths.output_dir)
    record = {"schema_version": SCHEMA_VERSION, "status": "completed", "checkpoint": str(ckpt.resolve()), "seed": seed,
              "metrics": metrics, "model": model_record(module), "data": data_record(datamodule),
              "wall_time_s": time.perf_counter() - t0, "git": git_state(), "packages": package_versions()}
    write_json_atomic(run_dir / "eval_results.json", record)
    print_summary("Evaluation", metrics, record, run_dir, [])
    return metrics
