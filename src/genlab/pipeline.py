"""The one place where a run is assembled: config -> data -> model -> module -> trainer -> results."""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning.pytorch as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from genlab.config import validate
from genlab.data.catalog import DatasetInfo
from genlab.data.datamodule import ImageDataModule
from genlab.errors import ConfigError
from genlab.models import count_flops, count_parameters
from genlab.records import SCHEMA_VERSION, git_state, package_versions, write_json_atomic
from genlab.summary import print_summary
from genlab.training.loggers import WANDB_LOGGER, finish_wandb, offline_sync_hints, wandb_should_run_offline
from genlab.training.module import ImageClassifier

def build_datamodule(data: DictConfig, seed: int) -> ImageDataModule:
    return ImageDataModule(
        name=data.name, data_dir=data.data_dir, batch_size=data.batch_size, val_size=data.val_size,
        num_workers=data.num_workers, pin_memory=data.pin_memory, download=data.download, seed=seed,
    )


def build_module(cfg: DictConfig, info: DatasetInfo) -> ImageClassifier:
    """The LightningModule, with the model shaped by the data set (channels, size, classes), never by hand."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.update(in_channels=info.channels, num_classes=info.num_classes, image_size=info.image_size)
    return ImageClassifier(
        model=model,
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        data={"name": info.name, "seed": cfg.seed},
    )


def model_record(module: ImageClassifier) -> dict[str, Any]:
    """The run record's model entry: family, size, and FLOPs of one forward pass on one image of the data set."""
    spec = module.hparams.model
    return {"name": spec["name"], "params": count_parameters(module.net),
            "flops": count_flops(module.net, spec["in_channels"], spec["image_size"])}


def instantiate_enabled(section: DictConfig | None, **overrides: Any) -> list[Any]:
    """Instantiate every `_target_` entry of a config section whose `enabled` flag is not false."""
    objects = []
    for key, spec in (section or {}).items():
        if spec is None or "_target_" not in spec or not spec.get("enabled", True):
            continue
        kwargs = {k: v for k, v in OmegaConf.to_container(spec, resolve=True).items() if k != "enabled"}
        objects.append(instantiate(kwargs, **overrides.get(key, {})))
    return objects


def build_loggers(section: DictConfig | None) -> list[Any]:
    offline = {key: {"offline": wandb_should_run_offline()} for key, spec in (section or {}).items()
               if spec and spec.get("_target_") == WANDB_LOGGER}
    return instantiate_enabled(section, **offline)


def build_callbacks(section: DictConfig | None, have_loggers: bool) -> list[L.Callback]:
    from lightning.pytorch.callbacks import LearningRateMonitor

    callbacks = instantiate_enabled(section)
    # The LR monitor logs through a logger and refuses to start without one (logger=none).
    return [c for c in callbacks if have_loggers or not isinstance(c, LearningRateMonitor)]


def build_trainer(cfg: DictConfig, loggers: list[Any], callbacks: list[L.Callback]) -> L.Trainer:
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)


def test_metrics(trainer: L.Trainer, module: L.LightningModule, datamodule: ImageDataModule, ckpt_path: str | None) -> dict[str, float]:
    """Test-set and train_eval metrics of the given checkpoint, plus the generalization gap."""
    per_loader = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    metrics = {k: float(v) for results in per_loader for k, v in results.items()}
    metrics["gap/acc"] = metrics["train_eval/acc"] - metrics["test/acc"]
    metrics["gap/loss"] = metrics["test/loss"] - metrics["train_eval/loss"]
    return metrics


def run(cfg: DictConfig) -> dict[str, float]:
    """Train, test the best checkpoint, write results.json, and return the metrics (for Hydra sweepers)."""
    validate(cfg)
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg.data, cfg.seed)
    module = build_module(cfg, datamodule.info)
    loggers = build_loggers(cfg.get("logger"))
    trainer = build_trainer(cfg, loggers, build_callbacks(cfg.get("callbacks"), bool(loggers)))
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        val_acc_best = float(trainer.callback_metrics["val/acc_best"])
        best = (trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else "") or None
        metrics = {**test_metrics(trainer, module, datamodule, best), "val/acc_best": val_acc_best}
        for logger in loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if k.startswith("gap/")}, step=trainer.global_step)
        sync_hints = offline_sync_hints(loggers)
    finally:
        finish_wandb(loggers)
    if not trainer.is_global_zero:
        return metrics
    record = {
        "schema_version": SCHEMA_VERSION,
        "status": "completed",
        "task_name": cfg.task_name,
        "seed": cfg.seed,
        "metrics": metrics,
        "model": model_record(module),
        "data": {"name": datamodule.info.name, "train_size": len(datamodule.train_set), "val_size": len(datamodule.val_set),
                 "test_size": len(datamodule.test_set)},
        "epochs": trainer.current_epoch,
        "best_checkpoint": best,
        "wall_time_s": time.perf_counter() - t0,
        "started_at": started.isoformat(),
        "command": sys.argv,
        "git": git_state(),
        "packages": package_versions(),
    }
    write_json_atomic(run_dir / "results.json", record)
    print_summary("Run summary", metrics, record["model"], record["wall_time_s"], run_dir, sync_hints)
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint on its data set with the same pieces `run` uses; writes eval_results.json."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path", cfg.get("ckpt_path"), "the path of a checkpoint (.ckpt) to evaluate")
    ckpt = Path(cfg.ckpt_path)
    if not ckpt.is_file():
        raise ConfigError("ckpt_path", str(ckpt), "an existing checkpoint file")
    t0 = time.perf_counter()
    module = ImageClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    trained_on = module.hparams.data
    seed = cfg.seed if cfg.get("seed") is not None else trained_on["seed"]
    if cfg.data.name != trained_on["name"]:
        raise ConfigError("data", cfg.data.name, f"data={trained_on['name']}, the data set this checkpoint was trained on")
    datamodule = build_datamodule(cfg.data, seed)
    trainer = build_trainer(cfg, [], build_callbacks(cfg.get("callbacks"), have_loggers=False))
    metrics = test_metrics(trainer, module, datamodule, ckpt_path=None)
    run_dir = Path(cfg.paths.output_dir)
    record = {"schema_version": SCHEMA_VERSION, "status": "completed", "checkpoint": str(ckpt.resolve()), "seed": seed,
              "metrics": metrics, "model": model_record(module),
              "wall_time_s": time.perf_counter() - t0, "git": git_state(), "packages": package_versions()}
    write_json_atomic(run_dir / "eval_results.json", record)
    print_summary("Evaluation", metrics, record["model"], record["wall_time_s"], run_dir, [])
    return metrics
