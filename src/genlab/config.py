"""Validation of every config value, before any data is read or any model is built."""
from __future__ import annotations

import math
import numbers
import os
import re

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from genlab.data.augment import MAX_MAGNITUDE, PRESETS
from genlab.data.catalog import available_datasets, dataset_info, dataset_options, options_in
from genlab.data.strategies import BALANCE_MODES, LABEL_NOISE_KINDS
from genlab.errors import ConfigError
from genlab.models import check_knob
from genlab.resume import check_task_name
from genlab.training.loggers import WANDB_LOGGER
from genlab.training.losses import LOSSES
from genlab.training.optim import LR_SCALING, SCHEDULERS, check_implementation, clips_under_mixed_precision

# Model keys that say how the network runs, not what it is (conf/model_common.yaml): not build_model knobs.
MODEL_RUN_KEYS = ("channels_last", "compile")
# "16" and "bf16" are Lightning's own aliases of 16-mixed and bf16-mixed.
PRECISIONS = ("32", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "64-true", "16", "bf16")
CUDA_ONLY_PRECISIONS = ("16-mixed", "16-true", "16")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite real number: inf and nan are never a meaningful setting (lr=inf trains to NaN)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def require(key: str, value: object, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(key, value, expected)


LOADERS = ("cpu", "gpu")
COMPARED_WEIGHTS = ("best", "last")
# Keys every data config has; any other key must be an option of its data set's reader.
DATA_KEYS = ("name", "data_dir", "download", "batch_size", "val_size", "split_seed", "folds", "fold", "loader",
             "num_workers", "pin_memory", "train_fraction", "train_size", "imbalance", "balance", "balance_beta",
             "label_noise", "label_noise_kind")
# Data-set options (reader keyword arguments), checked by name: (is it valid?, what is expected).
DATA_OPTIONS = {
    "labels": (lambda v: v in ("fine", "coarse"), "fine or coarse"),
    "extra": (lambda v: isinstance(v, bool), "true or false"),
    "image_size": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "channels": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "num_classes": (lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
    "num_train": (lambda v: _is_int(v) and v >= 2, "an integer >= 2"),
    "num_test": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "flips_keep_label": (lambda v: isinstance(v, bool), "true or false"),
    "test_split": (lambda v: isinstance(v, str) and v not in ("", "train") and "/" not in v,
                   "the name of a folder beside train/ (e.g. test or val)"),
}


def validate_data(data: DictConfig) -> None:
    require("data.name", data.name, data.name in available_datasets(), f"one of {available_datasets()}")
    require("data.batch_size", data.batch_size, _is_int(data.batch_size) and data.batch_size >= 1, "an integer >= 1")
    v = data.val_size
    require("data.val_size", v, (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v < 1),
            "a count >= 1 or a fraction in (0, 1) of the training set")
    validate_split(data.get("split_seed"), data.get("folds"), data.get("fold"))
    require("data.loader", data.get("loader", "cpu"), data.get("loader", "cpu") in LOADERS, f"one of {list(LOADERS)}")
    w = data.num_workers
    require("data.num_workers", w, w == "auto" or (_is_int(w) and w >= 0), "auto or an integer >= 0")
    require("data.pin_memory", data.pin_memory, data.pin_memory == "auto" or isinstance(data.pin_memory, bool),
            "auto, true or false")
    f = data.get("train_fraction", 1.0)
    require("data.train_fraction", f, _is_number(f) and 0 < f <= 1, "a fraction in (0, 1]")
    size = data.get("train_size")
    require("data.train_size", size, size is None or (_is_int(size) and size >= 1), "null or an integer >= 1")
    require("data.train_size", size, size is None or f == 1, f"null when data.train_fraction is set (got {f}): choose one")
    r = data.get("imbalance", 1.0)
    require("data.imbalance", r, _is_number(r) and r >= 1, "a max/min class-count ratio >= 1 (1 = unchanged)")
    b = data.get("balance", "none")
    require("data.balance", b, b in BALANCE_MODES, f"one of {list(BALANCE_MODES)}")
    beta = data.get("balance_beta", 0.9999)
    require("data.balance_beta", beta, _is_number(beta) and 0 <= beta < 1, "a number in [0, 1)")
    noise = data.get("label_noise", 0.0)
    require("data.label_noise", noise, _is_number(noise) and 0 <= noise <= 1, "a fraction in [0, 1]")
    kind = data.get("label_noise_kind", "uniform")
    require("data.label_noise_kind", kind, kind in LABEL_NOISE_KINDS, f"one of {list(LABEL_NOISE_KINDS)}")
    options = dataset_options(data.name)
    for key in data:
        require(f"data.{key}", data[key], key in DATA_KEYS or key in options,
                f"a key of every data set {list(DATA_KEYS)} or an option of {data.name}: {sorted(options)}")
        if key in options and key in DATA_OPTIONS:
            ok, expected = DATA_OPTIONS[key]
            require(f"data.{key}", data[key], ok(data[key]), expected)
    if data.name == "imagefolder":
        require("data.channels", data.channels, data.channels in (1, 3), "1 (grayscale) or 3 (RGB) for an image folder")


def validate_split(split_seed: object, folds: object, fold: object) -> None:
    """data.split_seed, and data.folds with data.fold: both or neither, the fold one of the folds."""
    require("data.split_seed", split_seed, split_seed is None or (_is_int(split_seed) and 0 <= split_seed <= MAX_SEED),
            f"null (the run's seed) or an integer in [0, {MAX_SEED}]")
    require("data.folds", folds, folds is None or (_is_int(folds) and folds >= 2), "null or an integer >= 2")
    if folds is None:
        require("data.fold", fold, fold is None, "null without data.folds (set data.folds=K for K-fold)")
        return
    require("data.fold", fold, _is_int(fold) and 0 <= fold < folds,
            f"an integer in [0, {folds - 1}] with data.folds={folds} (sweep them: data.fold={','.join(map(str, range(folds)))})")


def _probability(key: str, value: object) -> None:
    require(key, value, _is_number(value) and 0 <= value <= 1, "a probability in [0, 1]")


def _fraction(key: str, value: object) -> None:
    require(key, value, _is_number(value) and 0 <= value < 1, "a fraction in [0, 1)")


def validate_augmentation(aug: DictConfig, data: DictConfig) -> None:
    """The preset's knobs, the batch-mixing knobs, and test-time flips only where flips keep labels."""
    require("augmentation.name", aug.name, aug.name in PRESETS, f"one of {list(PRESETS)}")
    for key in ("mixup_alpha", "cutmix_alpha"):
        require(f"augmentation.{key}", aug[key], _is_number(aug[key]) and aug[key] >= 0, "a number >= 0 (0 = off)")
    _probability("augmentation.mix_prob", aug.mix_prob)
    _probability("augmentation.switch_prob", aug.switch_prob)
    require("augmentation.tta", aug.tta, isinstance(aug.tta, bool), "true or false")
    n = aug.preview_images
    require("augmentation.preview_images", n, _is_int(n) and 0 <= n <= 1024, "an integer in [0, 1024] (0 = no preview)")
    if "crop_padding" in aug:  # standard and the presets built on it (strong, randaugment, trivialaugment)
        _fraction("augmentation.crop_padding", aug.crop_padding)
        require("augmentation.hflip", aug.hflip, isinstance(aug.hflip, bool), "true or false")
        size = aug.cutout_size
        require("augmentation.cutout_size", size, _is_number(size) and 0 < size <= 1, "a fraction of the side in (0, 1]")
        _probability("augmentation.cutout_prob", aug.cutout_prob)
        _probability("augmentation.erasing_prob", aug.get("erasing_prob", 0.0))
    erasing = aug.get("erasing_prob", 0.0)
    require("augmentation.erasing_prob", erasing, "crop_padding" in aug or erasing == 0,
            f"0 with augmentation={aug.name}: random erasing follows the ops of standard, strong, randaugment or "
            "trivialaugment")
    if aug.name == "strong":
        for key in ("shift", "scale", "brightness", "contrast", "saturation"):
            _fraction(f"augmentation.{key}", aug[key])
        require("augmentation.rotate", aug.rotate, _is_number(aug.rotate) and 0 <= aug.rotate <= 180, "degrees in [0, 180]")
        require("augmentation.hue", aug.hue, _is_number(aug.hue) and 0 <= aug.hue <= 0.5, "a number in [0, 0.5]")
        for key in ("affine_prob", "colour_prob"):
            _probability(f"augmentation.{key}", aug[key])
    if aug.name == "randaugment":
        require("augmentation.num_ops", aug.num_ops, _is_int(aug.num_ops) and aug.num_ops >= 0, "an integer >= 0")
        m = aug.magnitude
        require("augmentation.magnitude", m, _is_number(m) and 0 <= m <= MAX_MAGNITUDE, f"a number in [0, {MAX_MAGNITUDE}]")
    if aug.name == "custom":
        specs = aug.get("transforms")
        require("augmentation.transforms", specs, specs is not None and hasattr(specs, "__len__") and not isinstance(specs, str),
                "a list of transforms, each with a _target_")
        for i, spec in enumerate(specs):
            require(f"augmentation.transforms[{i}]", spec, hasattr(spec, "get") and isinstance(spec.get("_target_"), str),
                    "a transform with a _target_ (e.g. albumentations.HorizontalFlip) and its arguments")
    if aug.tta:
        info = dataset_info(data.name, data.data_dir, **options_in(data.name, data))
        require("augmentation.tta", aug.tta, info.flips_keep_label,
                f"false for {data.name}: a mirrored image changes its label, so flip averaging would hurt")


def validate_model(model: DictConfig) -> None:
    if model.get("name") is None:  # keys alone, no family (as conf/model_common.yaml holds): nothing to build
        raise ConfigError("model", hydra_choice("model") or "a model config without a name", f"one of {available_models()}")
    for key in model:
        if key != "name" and key not in MODEL_RUN_KEYS:
            check_knob(model.name, key, model[key])  # a knob the family lacks only as "off" (0 or none)
    for key in MODEL_RUN_KEYS:
        value = model.get(key, False)
        require(f"model.{key}", value, isinstance(value, bool), "true or false")


def validate_optimization(optimizer: DictConfig, scheduler: DictConfig, trainer: DictConfig) -> None:
    try:
        optimizer_class = get_class(optimizer._target_)
    except (ImportError, ValueError) as err:
        raise ConfigError("optimizer._target_", optimizer._target_, "an optimizer class such as torch.optim.SGD") from err
    require("optimizer.lr", optimizer.lr, _is_number(optimizer.lr) and optimizer.lr > 0, "a number > 0")
    wd = optimizer.get("weight_decay", 0.0)
    require("optimizer.weight_decay", wd, _is_number(wd) and wd >= 0, "a number >= 0")
    require("optimizer.lr_scaling", optimizer.lr_scaling, optimizer.lr_scaling in LR_SCALING, f"one of {list(LR_SCALING)}")
    base = optimizer.base_batch_size
    require("optimizer.base_batch_size", base, _is_int(base) and base >= 1, "an integer >= 1")
    check_implementation(optimizer.get("implementation", "auto"), optimizer_class,
                         clips_under_mixed_precision(trainer.precision, trainer.get("gradient_clip_val")))
    validate_sharpness_aware(optimizer, trainer)
    require("scheduler.name", scheduler.name, scheduler.name in SCHEDULERS, f"one of {list(SCHEDULERS)}")
    warmup = scheduler.get("warmup_epochs", 0)
    require("scheduler.warmup_epochs", warmup, _is_number(warmup) and 0 <= warmup <= trainer.max_epochs,
            f"a number in [0, trainer.max_epochs={trainer.max_epochs}]")


def validate_sharpness_aware(optimizer: DictConfig, trainer: DictConfig) -> None:
    """SAM's radius, and the trainer settings its second pass cannot work under."""
    rho = optimizer.get("sam_rho", 0.0)
    require("optimizer.sam_rho", rho, _is_number(rho) and rho >= 0, "a number >= 0 (0 = off)")
    adaptive = optimizer.get("sam_adaptive", False)
    require("optimizer.sam_adaptive", adaptive, isinstance(adaptive, bool), "true or false")
    if not rho:
        return
    # Lightning's 16-mixed runs the closure before step() to unscale the gradients and steps without it: no second pass.
    require("trainer.precision", trainer.precision, str(trainer.precision) not in ("16-mixed", "16"),
            "32, bf16-mixed or a *-true precision with optimizer.sam_rho > 0: under 16-mixed Lightning's gradient "
            "scaler steps the optimizer without the closure SAM's second pass needs")
    accumulate = trainer.get("accumulate_grad_batches", 1)
    require("trainer.accumulate_grad_batches", accumulate, accumulate == 1, "1 with optimizer.sam_rho > 0: the "
            "second pass would add one batch's gradient at w + e to the accumulated ones at w")


def available_models() -> list[str]:
    from genlab.models.registry import available_models as registered

    return sorted(registered())


def hydra_choice(group: str) -> str | None:
    """The option chosen for a config group on the command line, when Hydra composed this config."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


# Strategies that start the ranks from inside trainer.fit (spawn/fork): each stage is a new set of processes whose
# results Lightning passes back to the main one, and the test stage's metrics never reach the run's CSV record or
# results.json. trainer=ddp starts every rank as a process of its own instead.
SPAWNING_STRATEGIES = re.compile(r"ddp_(spawn|fork|notebook).*|.*_spawn")


def validate_trainer(trainer: DictConfig, cuda_available: bool) -> None:
    epochs = trainer.max_epochs
    require("trainer.max_epochs", epochs, _is_int(epochs) and epochs >= 1, "an integer >= 1")
    strategy = trainer.get("strategy", "auto")
    start_method = strategy.get("start_method") if hasattr(strategy, "get") else None
    require("trainer.strategy", strategy, not (isinstance(strategy, str) and SPAWNING_STRATEGIES.fullmatch(strategy))
            and start_method in (None, "popen"), "ddp (trainer=ddp; on the CPU: trainer=ddp trainer.accelerator=cpu "
            "trainer.devices=2): a spawned strategy's test stage never reaches metrics.csv and results.json")
    # Every run trains, validates (the best checkpoint and val/acc_best come from validation) and tests.
    for key, stage in (("limit_train_batches", "trains"), ("limit_val_batches", "validates"),
                       ("limit_test_batches", "tests")):
        limit = trainer.get(key)
        require(f"trainer.{key}", limit, limit is None or (_is_number(limit) and limit > 0
                and (limit <= 1 or float(limit).is_integer())),
                f"null (all), a fraction in (0, 1] or a whole number of batches >= 1: every run {stage} "
                "(eval.py tests a checkpoint without training)")
    every = trainer.get("check_val_every_n_epoch", 1)
    require("trainer.check_val_every_n_epoch", every, every is None or (_is_int(every) and 1 <= every <= epochs),
            f"an integer in [1, trainer.max_epochs={epochs}]: the best checkpoint and val/acc_best come from validation")
    interval = trainer.get("val_check_interval")
    require("trainer.val_check_interval", interval, interval is None or (_is_number(interval) and interval > 0 and
            (interval <= 1 or float(interval).is_integer())),
            "null (once an epoch), a fraction of the epoch in (0, 1] or a whole number of training batches >= 1")
    clip = trainer.get("gradient_clip_val")
    require("trainer.gradient_clip_val", clip, clip is None or (_is_number(clip) and clip >= 0),
            "null or 0 (off) or a number > 0 (the largest gradient norm, or value with gradient_clip_algorithm=value)")
    algorithm = trainer.get("gradient_clip_algorithm")
    require("trainer.gradient_clip_algorithm", algorithm, algorithm in (None, "norm", "value"), "null, norm or value")
    validate_accelerator(trainer.get("accelerator", "auto"), trainer.get("devices", "auto"), cuda_available)
    precision = str(trainer.precision)
    require("trainer.precision", trainer.precision, precision in PRECISIONS, f"one of {list(PRECISIONS)}")
    on_cpu = trainer.accelerator == "cpu" or (trainer.accelerator == "auto" and not cuda_available)
    require("trainer.precision", trainer.precision, not (on_cpu and precision in CUDA_ONLY_PRECISIONS),
            "bf16-mixed or 32 on the CPU (float16 autocast needs a CUDA GPU)")


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def validate_accelerator(accelerator: object, devices: object, cuda_available: bool) -> None:
    """An accelerator this machine has, and a device count it can give (Lightning checks both only when the Trainer is
    built, after the data is read)."""
    import importlib.util

    import torch

    require("trainer.accelerator", accelerator, accelerator in ACCELERATORS, f"one of {list(ACCELERATORS)}")
    found = {"gpu": cuda_available, "cuda": cuda_available, "tpu": importlib.util.find_spec("torch_xla") is not None,
             "mps": torch.backends.mps.is_available()}
    require("trainer.accelerator", accelerator, found.get(accelerator, True),
            f"an accelerator this machine has: {accelerator} needs "
            f"{'torch_xla' if accelerator == 'tpu' else 'a CUDA GPU' if accelerator in ('gpu', 'cuda') else 'Apple MPS'}"
            " (auto picks one)")
    ok = (devices == "auto" or (_is_int(devices) and (devices >= 1 or devices == -1))
          or (isinstance(devices, str) and devices.strip() not in ("", "0"))
          or (hasattr(devices, "__len__") and not isinstance(devices, str) and len(devices) > 0))
    require("trainer.devices", devices, ok, "auto, -1 (all), a count >= 1 or a list of device ids")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and cuda_available)
    if on_gpu and torch.cuda.is_available() and _is_int(devices) and devices >= 1:
        count = torch.cuda.device_count()
        require("trainer.devices", devices, devices <= count, f"at most the {count} CUDA GPU(s) this machine has")


def validate_loss(loss: DictConfig) -> None:
    require("loss.name", loss.name, loss.name in LOSSES, f"one of {list(LOSSES)}")
    ls = loss.label_smoothing
    require("loss.label_smoothing", ls, _is_number(ls) and 0 <= ls < 1, "a number in [0, 1)")
    require("loss.l1", loss.l1, _is_number(loss.l1) and loss.l1 >= 0, "a number >= 0")
    tau = loss.get("logit_adjustment", 0.0)
    require("loss.logit_adjustment", tau, _is_number(tau) and tau >= 0, "a number >= 0 (0 = off; 1 is Menon et al.'s)")
    gamma = loss.get("gamma", 0.0)
    require("loss.gamma", gamma, _is_number(gamma) and gamma >= 0, "a number >= 0")


# Where the strategy knobs that the `regularization` group once forwarded are set now (its presets set these keys).
STRATEGY_KEYS = {"dropout": "model.dropout", "drop_path": "model.drop_path", "norm": "model.norm",
                 "weight_decay": "optimizer.weight_decay", "l1": "loss.l1", "label_smoothing": "loss.label_smoothing",
                 "mixup_alpha": "augmentation.mixup_alpha", "cutmix_alpha": "augmentation.cutmix_alpha",
                 "early_stopping": "callbacks.early_stopping.enabled and .patience",
                 "max_grad_norm": "trainer.gradient_clip_val"}


def validate_regularization(regularization: DictConfig) -> None:
    """The group records only its preset's name: a knob under it would be read by nothing, so it is refused."""
    for key in regularization:
        where = STRATEGY_KEYS.get(key, "the key of the group it belongs to (model., optimizer., loss., …)")
        require(f"regularization.{key}", regularization[key], key == "name", f"no such key: set {where}, which the "
                "presets set and an explicit value overrides")


def validate_callbacks(callbacks: DictConfig) -> None:
    """An enabled entry needs a callback to build: regularization=early_stopping with callbacks=none has none."""
    for name, spec in callbacks.items():
        if hasattr(spec, "get") and spec.get("enabled", True) and "_target_" not in spec:
            raise ConfigError(f"callbacks.{name}.enabled", True, f"false: the callbacks group has no {name} callback "
                              "(callbacks=default has early_stopping; regularization=early_stopping needs it)")


def validate_weight_averaging(callbacks: DictConfig) -> None:
    """callbacks.weight_averaging's kind and dose, where it is on."""
    from genlab.training.averaging import AVERAGING_KINDS

    spec = callbacks.get("weight_averaging")
    if not hasattr(spec, "get") or not spec.get("enabled", False):
        return
    require("callbacks.weight_averaging.kind", spec.kind, spec.kind in AVERAGING_KINDS, f"one of {list(AVERAGING_KINDS)}")
    _fraction("callbacks.weight_averaging.swa_start", spec.swa_start)
    decay = spec.ema_decay
    require("callbacks.weight_averaging.ema_decay", decay, _is_number(decay) and 0 < decay < 1, "a number in (0, 1)")


def validate_analysis(analysis: DictConfig) -> None:
    from genlab.analysis.corruptions import CORRUPTIONS

    for name in analysis.corruptions:
        require("analysis.corruptions", name, name in CORRUPTIONS, f"names from {list(CORRUPTIONS)}")
    for severity in analysis.severities:
        require("analysis.severities", severity, _is_int(severity) and 1 <= severity <= 5, "integers in 1..5")
    weights = analysis.get("compared_weights", "best")
    require("analysis.compared_weights", weights, weights in COMPARED_WEIGHTS, f"one of {list(COMPARED_WEIGHTS)}")
    validate_measures(analysis.get("measures") or {"name": "none"})
    landscape = analysis.get("landscape", False)
    require("analysis.landscape", landscape, isinstance(landscape, bool), "true or false")


# analysis/measures=all: key -> (is it valid?, what is expected)
COSTLY_MEASURE_SETTINGS = {
    "hessian_iterations": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "hessian_tolerance": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "flatness_bound": (lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "flatness_samples": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "flatness_tolerance": (lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
}


def validate_measures(measures: DictConfig) -> None:
    from genlab.analysis.measures import MEASURE_SETS

    name = measures.get("name")
    require("analysis.measures.name", name, name in MEASURE_SETS, f"one of {list(MEASURE_SETS)}")
    if name != "all":
        return
    for key, (valid, expected) in COSTLY_MEASURE_SETTINGS.items():
        value = measures.get(key)
        require(f"analysis.measures.{key}", value, valid(value), expected)


def validate_monitors(callbacks: DictConfig, num_classes: int) -> None:
    """A checkpoint or early-stopping callback monitors a metric that every epoch logs (Lightning finds out only after
    the first epoch, when a misspelt name has already cost it)."""
    from genlab.training.module import monitorable_metrics

    logged = monitorable_metrics(num_classes)
    for name, spec in callbacks.items():
        if hasattr(spec, "get") and spec.get("enabled", True) and "monitor" in spec and spec.monitor is not None:
            require(f"callbacks.{name}.monitor", spec.monitor, spec.monitor in logged, f"a metric every epoch logs: {logged}")
            require(f"callbacks.{name}.mode", spec.get("mode", "min"), spec.get("mode", "min") in ("min", "max"),
                    "min or max")


# Bytes per parameter while training: the float32 weights, their gradients, two optimizer moments (Adam's; SGD with
# momentum keeps one), and a copy while a checkpoint is serialised.
TRAINING_BYTES_PER_PARAMETER = 4 * 5


def available_memory(on_gpu: bool) -> int | None:
    """Bytes this run could still allocate: free GPU memory, or the system's available memory (None if unknown)."""
    import torch

    if on_gpu and torch.cuda.is_available():
        return torch.cuda.mem_get_info()[0]
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def validate_model_fits(model: DictConfig, data: DictConfig, trainer: DictConfig, cuda_available: bool) -> None:
    """Count the network's parameters on the meta device (no memory) and refuse one whose training state cannot fit in
    the memory there is: a huge width would otherwise try to allocate it, after the data is read."""
    import torch

    from genlab.models import build_model, count_parameters

    info = dataset_info(data.name, data.data_dir, **options_in(data.name, data))
    knobs = {k: v for k, v in OmegaConf.to_container(model, resolve=True).items() if k not in (*MODEL_RUN_KEYS, "name")}
    with torch.device("meta"):
        params = count_parameters(build_model(model.name, info.channels, info.num_classes, info.image_size, **knobs))
    on_gpu = trainer.get("accelerator") in ("gpu", "cuda") or (trainer.get("accelerator") == "auto" and cuda_available)
    free = available_memory(on_gpu)
    needed = params * TRAINING_BYTES_PER_PARAMETER
    require("model", f"{model.name} with {params:,} parameters", free is None or needed <= free,
            f"a network whose training state (about {needed / 2**30:,.1f} GiB: weights, gradients, optimizer state) fits "
            f"in the {(free or 0) / 2**30:,.1f} GiB of {'GPU' if on_gpu else ''} memory available".replace("of  ", "of "))


def validate_epoch_length(trainer: DictConfig, train_images: int, batch_size: int) -> None:
    """Settings that count training batches, against the epoch the data gives (known once the splits are drawn)."""
    batches = math.ceil(train_images / batch_size)
    limit = trainer.get("limit_train_batches")
    if limit is not None:
        batches = min(batches, int(limit)) if float(limit).is_integer() and limit >= 1 else max(1, int(batches * limit))
    interval = trainer.get("val_check_interval")
    if interval is not None and interval > 1:
        require("trainer.val_check_interval", interval, interval <= batches,
                f"at most the {batches} training batches of an epoch ({train_images} images / data.batch_size="
                f"{batch_size}), or a fraction of the epoch in (0, 1]")
    accumulate = trainer.get("accumulate_grad_batches", 1)
    require("trainer.accumulate_grad_batches", accumulate, _is_int(accumulate) and 1 <= accumulate <= batches,
            f"an integer in [1, {batches}] (the training batches of an epoch)")


def validate(cfg: DictConfig, cuda_available: bool | None = None) -> None:
    """Check a composed config; raise ConfigError naming the first bad key."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    require("seed", cfg.seed, _is_int(cfg.seed) and 0 <= cfg.seed <= MAX_SEED, f"an integer in [0, {MAX_SEED}]")
    check_task_name(cfg.task_name, cfg.paths.log_dir if "paths" in cfg else ".")
    validate_data(cfg.data)
    if cfg.get("augmentation") is not None:
        validate_augmentation(cfg.augmentation, cfg.data)
    validate_model(cfg.model)
    validate_model_fits(cfg.model, cfg.data, cfg.trainer, cuda_available)
    if cfg.get("regularization") is not None:
        validate_regularization(cfg.regularization)
    if cfg.get("callbacks") is not None:
        validate_callbacks(cfg.callbacks)
        validate_weight_averaging(cfg.callbacks)
        validate_monitors(cfg.callbacks, dataset_info(cfg.data.name, cfg.data.data_dir,
                                                      **options_in(cfg.data.name, cfg.data)).num_classes)
    validate_trainer(cfg.trainer, cuda_available)
    validate_optimization(cfg.optimizer, cfg.scheduler, cfg.trainer)
    validate_loss(cfg.loss)
    validate_analysis(cfg.analysis)
    if cfg.get("logger") is not None:
        validate_loggers(cfg.logger)


MAX_SEED = 2**32 - 1  # NumPy's seeds, and so Lightning's seed_everything, are unsigned 32-bit
WANDB_PROJECT_FORBIDDEN = "/\\#?%:"  # as wandb.Settings refuses them, at wandb.init (after data and model are built)
WANDB_ENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def validate_loggers(loggers: DictConfig) -> None:
    """W&B's project and entity names and its start-up wait, before training (W&B itself checks them only when the
    run starts, and a bad name then sends the run offline)."""
    for key, spec in loggers.items():
        if not hasattr(spec, "get") or spec.get("_target_") != WANDB_LOGGER or not spec.get("enabled", True):
            continue
        project = spec.get("project")
        require(f"logger.{key}.project", project, isinstance(project, str) and 0 < len(project) <= 128
                and project.strip() == project and not any(c in project for c in WANDB_PROJECT_FORBIDDEN),
                f"a W&B project name: 1 to 128 characters, none of {' '.join(WANDB_PROJECT_FORBIDDEN)}, no leading or "
                "trailing space")
        entity = spec.get("entity")
        require(f"logger.{key}.entity", entity, entity is None or (isinstance(entity, str) and WANDB_ENTITY.fullmatch(entity)),
                "null (your default entity) or a W&B user or team name: letters, digits, '_', '-' and '.'")
        log_model = spec.get("log_model", False)
        require(f"logger.{key}.log_model", log_model, isinstance(log_model, bool) or log_model in ("all", "best"),
                "false, best (the tested best checkpoint), true (best and last) or all (every checkpoint kept)")
        timeout = spec.get("init_timeout", 10)
        require(f"logger.{key}.init_timeout", timeout, _is_number(timeout) and timeout > 0, "seconds > 0")
