"""Validation of every config value, before any data is read or any model is built."""
from __future__ import annotations

import numbers

from omegaconf import DictConfig

from genlab.data.catalog import available_datasets
from genlab.errors import ConfigError
from genlab.models import model_knobs
from genlab.training.losses import LOSSES
from genlab.training.optim import LR_SCALING, SCHEDULERS

PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "64-true")
CUDA_ONLY_PRECISIONS = ("16-mixed", "16-true")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require(key: str, value: object, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(key, value, expected)


def validate_data(data: DictConfig) -> None:
    require("data.name", data.name, data.name in available_datasets(), f"one of {available_datasets()}")
    require("data.batch_size", data.batch_size, _is_int(data.batch_size) and data.batch_size >= 1, "an integer >= 1")
    v = data.val_size
    require("data.val_size", v, (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v < 1),
            "a count >= 1 or a fraction in (0, 1) of the training set")
    require("data.num_workers", data.num_workers, _is_int(data.num_workers) and data.num_workers >= 0, "an integer >= 0")


def validate_model(model: DictConfig) -> None:
    knobs = model_knobs(model.name)
    for key in model:
        require(f"model.{key}", model[key], key == "name" or key in knobs, f"a knob of {model.name}: one of {sorted(knobs)}")


def validate_optimization(optimizer: DictConfig, scheduler: DictConfig, max_epochs: int) -> None:
    require("optimizer.lr", optimizer.lr, _is_number(optimizer.lr) and optimizer.lr > 0, "a number > 0")
    wd = optimizer.get("weight_decay", 0.0)
    require("optimizer.weight_decay", wd, _is_number(wd) and wd >= 0, "a number >= 0")
    require("optimizer.lr_scaling", optimizer.lr_scaling, optimizer.lr_scaling in LR_SCALING, f"one of {list(LR_SCALING)}")
    base = optimizer.base_batch_size
    require("optimizer.base_batch_size", base, _is_int(base) and base >= 1, "an integer >= 1")
    require("scheduler.name", scheduler.name, scheduler.name in SCHEDULERS, f"one of {list(SCHEDULERS)}")
    warmup = scheduler.get("warmup_epochs", 0)
    require("scheduler.warmup_epochs", warmup, _is_number(warmup) and 0 <= warmup <= max_epochs,
            f"a number in [0, trainer.max_epochs={max_epochs}]")


def validate_trainer(trainer: DictConfig, cuda_available: bool) -> None:
    epochs = trainer.max_epochs
    require("trainer.max_epochs", epochs, _is_int(epochs) and epochs >= 1, "an integer >= 1")
    precision = str(trainer.precision)
    require("trainer.precision", trainer.precision, precision in PRECISIONS, f"one of {list(PRECISIONS)}")
    on_cpu = trainer.accelerator == "cpu" or (trainer.accelerator == "auto" and not cuda_available)
    require("trainer.precision", trainer.precision, not (on_cpu and precision in CUDA_ONLY_PRECISIONS),
            "bf16-mixed or 32 on the CPU (float16 autocast needs a CUDA GPU)")


def validate_loss(loss: DictConfig) -> None:
    require("loss.name", loss.name, loss.name in LOSSES, f"one of {list(LOSSES)}")
    ls = loss.label_smoothing
    require("loss.label_smoothing", ls, _is_number(ls) and 0 <= ls < 1, "a number in [0, 1)")
    require("loss.l1", loss.l1, _is_number(loss.l1) and loss.l1 >= 0, "a number >= 0")
    gamma = loss.get("gamma", 0.0)
    require("loss.gamma", gamma, _is_number(gamma) and gamma >= 0, "a number >= 0")


def validate_analysis(analysis: DictConfig) -> None:
    from genlab.analysis.corruptions import CORRUPTIONS

    for name in analysis.corruptions:
        require("analysis.corruptions", name, name in CORRUPTIONS, f"names from {list(CORRUPTIONS)}")
    for severity in analysis.severities:
        require("analysis.severities", severity, _is_int(severity) and 1 <= severity <= 5, "integers in 1..5")


def validate(cfg: DictConfig, cuda_available: bool | None = None) -> None:
    """Check a composed config; raise ConfigError naming the first bad key."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    require("seed", cfg.seed, _is_int(cfg.seed), "an integer")
    validate_data(cfg.data)
    validate_model(cfg.model)
    validate_trainer(cfg.trainer, cuda_available)
    validate_optimization(cfg.optimizer, cfg.scheduler, cfg.trainer.max_epochs)
    validate_loss(cfg.loss)
    validate_analysis(cfg.analysis)
