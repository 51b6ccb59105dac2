"""Checkpoint files whose names mean what they say, written whole or not at all, and read without running code."""
from __future__ import annotations

import contextlib
import inspect
import io
import math
import numbers
import pickle
import random
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from genlab.config import MAX_SEED, require, validate_data
from genlab.data.datamodule import SPLIT_KEYS, ImageDataModule
from genlab.data.strategies import TrainingSetPlan
from genlab.errors import ConfigError
from genlab.models.registry import DATA_ARGS
from genlab.records import write_atomic
from genlab.resume import corrupt_member
from genlab.training.module import ImageClassifier
from genlab.training.optim import build_scheduler, parameter_groups
from genlab.training.random_state import CHECKPOINT_KEY as RANDOM_STATES

# Everything genlab saves in a checkpoint is tensors and plain values (dicts, lists, tuples, str, numbers, None; the
# random states are kept as tensors and tuples for this reason), which torch.load(weights_only=True) reads without an
# allow-list. Numbers that NumPy made (an np.float64 in a hyperparameter) are the one thing more a checkpoint may hold:
# NumPy's scalar rebuilds a number from its dtype and bytes, and runs nothing.
CHECKPOINT_GLOBALS = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64)),
                      type(np.dtype(np.int32)), type(np.dtype(np.bool_)), np.int64(0).__reduce__()[0]]


@contextlib.contextmanager
def checkpoint_globals() -> Iterator[None]:
    """torch.load(weights_only=True) inside accepts what genlab's checkpoints hold, and nothing that runs code."""
    with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
        yield


# What torch's weights-only unpickler raises on a pickle that is well formed zip-wise but not pickle-wise (a crafted
# or damaged data.pkl that a CRC-32 does not catch: one written so, or a legacy, non-zip checkpoint).
MALFORMED_PICKLE = (KeyError, IndexError, TypeError, AttributeError, OverflowError, MemoryError)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint's contents, loaded with weights_only=True: a file that would run code when unpickled (a crafted
    checkpoint), is cut short or corrupted, or is not a Lightning checkpoint is refused in one line."""
    corrupt = corrupt_member(Path(path))
    if corrupt is not None:
        raise ConfigError("ckpt_path", str(path), f"a readable checkpoint: the file is corrupt ({corrupt} fails its "
                          "CRC-32 check: bytes changed on disk or in a copy since it was saved)")
    try:
        with checkpoint_globals():
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL (\S+)", str(err))
        if named:
            raise ConfigError("ckpt_path", str(path), f"a checkpoint of tensors and plain values, as genlab saves: this "
                              f"file would call {named.group(1)} when loaded, so it is not loaded") from err
        raise ConfigError("ckpt_path", str(path), "a readable checkpoint: the file is corrupt or not a checkpoint") from err
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise ConfigError("ckpt_path", str(path), "a readable checkpoint: the file is truncated (a full disk or a kill "
                          "while saving) or not a checkpoint") from err
    except MALFORMED_PICKLE as err:
        raise ConfigError("ckpt_path", str(path), "a readable checkpoint: the file is corrupt or not a checkpoint") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError("ckpt_path", str(path), "a checkpoint saved by train.py (this file has no state_dict)")
    for key, allowed in (("state_dict", "a dict of tensors"), ("hyper_parameters", "a dict of the run's settings")):
        if key in checkpoint and not isinstance(checkpoint[key], dict):
            raise malformed(path, key, allowed, checkpoint[key])
    return checkpoint


def describe(value: Any) -> str:
    """An untrusted value as one line names it: a tensor by its shape, anything else by its (cut) repr and type."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    shown = repr(value)
    return f"{shown[:60]}{'...' if len(shown) > 60 else ''} ({type(value).__name__})"


def malformed(path: str | Path, field: str, allowed: str, value: Any) -> ConfigError:
    """The one-line refusal of a checkpoint whose `field` holds `value` where train.py saves `allowed`."""
    return ConfigError("ckpt_path", str(path), f"a checkpoint saved by train.py, whose {field} is {allowed}; this "
                       f"one's is {describe(value)}")


@contextlib.contextmanager
def values_of(path: str | Path, field: str) -> Iterator[None]:
    """A ConfigError raised by a check (or a build) on values that `field` of the checkpoint holds names the
    checkpoint, and the value as that field's: `model.width` becomes hyper_parameters.model.width."""
    try:
        yield
    except ConfigError as err:
        if err.key == "ckpt_path":
            raise
        key = f"model.{err.key[len('data.'):]}" if err.key.removeprefix("data.") in DATA_ARGS else err.key
        raise malformed(path, f"{field}.{key}", err.expected, err.value) from err


def is_setting(value: Any) -> bool:
    """A value a config setting can have (what a network's knobs are), so comparing two of them is plain equality."""
    return value is None or isinstance(value, (str, numbers.Real))


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def saved_hyper_parameters(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The checkpoint's hyper_parameters, where a resume and eval.py read them: the network's build spec (the family's
    name, the data's shape and the knobs) and the data set it was trained on."""
    saved = checkpoint.get("hyper_parameters")
    model = (saved or {}).get("model")
    if not model:
        raise ConfigError("ckpt_path", str(path), "a checkpoint saved by train.py (this one records no model)")
    if not isinstance(model, dict) or not all(isinstance(key, str) for key in model):
        raise malformed(path, "hyper_parameters.model", "a dict of the network's build settings", model)
    for key, value in model.items():
        if not is_setting(value):
            raise malformed(path, f"hyper_parameters.model.{key}", "a number, a string, a boolean or null", value)
    if not isinstance(model.get("name"), str):
        raise malformed(path, "hyper_parameters.model.name", "a model family's name", model.get("name"))
    for key in DATA_ARGS:
        if not is_count(model.get(key)) or model[key] == 0:
            raise malformed(path, f"hyper_parameters.model.{key}", "an integer >= 1", model.get(key))
    data = saved.get("data", {})
    if not isinstance(data, dict) or not isinstance(data.get("name", ""), str):
        raise malformed(path, "hyper_parameters.data", "a dict naming the data set it was trained on", data)
    return saved


def weight_differences(saved: dict[str, Any], expected: dict[str, torch.Tensor]) -> list[str]:
    """What keeps `saved` from loading strictly into a module whose state_dict is `expected`, as torch would find it,
    one phrase each: a missing or unexpected key, a value that is no tensor, a tensor of another shape."""
    if not saved:
        return ["the checkpoint holds none"]
    found = []
    for key, tensor in expected.items():
        value = saved.get(key)
        if key not in saved:
            found.append(f"{key} is missing")
        elif not isinstance(value, torch.Tensor):
            found.append(f"{key} is {describe(value)}, not a tensor")
        elif value.shape != tensor.shape:
            found.append(f"{key} has shape {tuple(value.shape)} in the checkpoint and {tuple(tensor.shape)} in the network")
    found.extend(f"{key} is no weight of the network" for key in saved if key not in expected)
    return found


def listed(phrases: list[str], most: int = 3) -> str:
    """Up to `most` phrases joined for one line, and how many more there are."""
    more = f"; and {len(phrases) - most} more" if len(phrases) > most else ""
    return "; ".join(phrases[:most]) + more


def check_weights_fit(checkpoint: dict[str, Any], module: torch.nn.Module, path: str | Path) -> None:
    """Refuse a state_dict that the module would not load strictly (torch's `size mismatch` or `Missing key(s)`
    traceback, or, with no weights at all, Lightning testing an untrained network), naming each difference."""
    differences = weight_differences(checkpoint["state_dict"], module.state_dict())
    if differences:
        raise ConfigError("ckpt_path", str(path), f"weights that fit the network its settings build: {listed(differences)}")


# The module's settings that its __init__ unpacks or iterates, by what they must be for it to get that far.
MODULE_SETTINGS = {"optimizer": (dict, "a dict"), "scheduler": (dict, "a dict"), "data": (dict, "a dict"),
                   "loss": ((dict, type(None)), "a dict or null"), "mixing": ((dict, type(None)), "a dict or null"),
                   "class_weights": ((list, type(None)), "a list of per-class weights or null"),
                   "class_priors": ((list, type(None)), "a list of class frequencies or null")}


def module_to_load(checkpoint: dict[str, Any], path: str | Path, **overrides: Any) -> ImageClassifier:
    """The module Lightning's load_from_checkpoint would build from the checkpoint's hyper_parameters (with
    `overrides`), built on the meta device (shapes only: no memory, no init time), or a one-line refusal of settings
    that build none."""
    saved = saved_hyper_parameters(checkpoint, path)
    if checkpoint.get("hparams_name", "kwargs") != "kwargs":  # another name makes Lightning pass them as one argument
        raise malformed(path, "hparams_name", "'kwargs' (as save_hyperparameters writes it)", checkpoint["hparams_name"])
    arguments = set(inspect.signature(ImageClassifier.__init__).parameters) - {"self"}
    settings = {key: value for key, value in saved.items() if key in arguments}  # as Lightning filters them
    for key, (kinds, allowed) in MODULE_SETTINGS.items():
        if not isinstance(settings.get(key), kinds):
            raise malformed(path, f"hyper_parameters.{key}", allowed, settings.get(key))
    try:
        with values_of(path, "hyper_parameters"), torch.device("meta"):
            return ImageClassifier(**{**settings, **overrides})
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as err:
        first_line = next(iter(str(err).splitlines()), "")[:120]
        raise ConfigError("ckpt_path", str(path), f"a checkpoint saved by train.py, whose hyper_parameters build the "
                          f"module it was trained as; this one's fail to ({type(err).__name__}: {first_line})") from err


def check_loadable(checkpoint: dict[str, Any], path: str | Path, data: DictConfig, **overrides: Any) -> None:
    """What eval.py reads from a checkpoint, checked before Lightning loads it: the hyper_parameters build the module
    and the weights fit it, the data spec holds the seed, split and training-set plan to rebuild (checked as
    data.* settings on top of `data`, the eval's own) and the normalisation of the model's input channels."""
    module = module_to_load(checkpoint, path, **overrides)
    check_weights_fit(checkpoint, module, path)
    trained_on = checkpoint["hyper_parameters"].get("data", {})
    if "name" not in trained_on:
        raise malformed(path, "hyper_parameters.data", "a dict naming the data set it was trained on", trained_on)
    with values_of(path, "hyper_parameters"):
        seed = trained_on.get("seed")
        require("data.seed", seed, is_count(seed) and seed <= MAX_SEED, f"an integer in [0, {MAX_SEED}]")
        plan = asdict(TrainingSetPlan.from_saved(trained_on))
        split = {"val_size": trained_on["val_size"]} if trained_on.get("val_size") is not None else {}
        split.update({key: trained_on[key] for key in SPLIT_KEYS if key in trained_on})  # older checkpoints: absent
        saved = {**plan, **split}
        for key, value in saved.items():
            require(f"data.{key}", value, is_setting(value), "a number, a string or null")
        validate_data(OmegaConf.merge(data, saved))
    check_normalization(trained_on.get("normalization"), module.hparams.model["in_channels"], path)


def check_normalization(normalization: Any, channels: int, path: str | Path) -> None:
    """The input normalisation eval.py applies: None, or a finite mean and a positive std per input channel."""
    if normalization is None:
        return
    stats = (normalization.get("mean"), normalization.get("std")) if isinstance(normalization, dict) else (None, None)
    per_channel = all(isinstance(values, (list, tuple)) and len(values) == channels
                      and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values)
                      for values in stats)
    if not per_channel or min(stats[1]) <= 0:
        raise malformed(path, "hyper_parameters.data.normalization", f"{{'mean': [...], 'std': [...]}}, each with a "
                        f"finite number per input channel ({channels}), std > 0", normalization)


# What Lightning reads to continue a run, beside the weights: an entry it lacks or of another type ends the resume in
# a traceback (a KeyError for a checkpoint saved with save_weights_only=true), or, for `loops`, quietly restarts at
# epoch 0. What the loops and callbacks hold inside is Lightning's to load.
TRAINING_STATE = {"epoch": (int, "an epoch number"), "global_step": (int, "a step count"),
                  "optimizer_states": (list, "a list of optimizer states"), "lr_schedulers": (list, "a list of schedules"),
                  "loops": (dict, "the loops' progress"), "callbacks": (dict, "the callbacks' states")}


def check_resumable(checkpoint: dict[str, Any], module: ImageClassifier, path: str | Path) -> None:
    """What a resume reads from a checkpoint (whose network spec fits the config, see resume.check_checkpoint_fits),
    checked before anything of the run is written: the training state Lightning continues, weights, optimizer state and
    schedule that fit `module`, the random streams and the data module's position."""
    for key, (kind, what) in TRAINING_STATE.items():
        if key not in checkpoint:
            raise ConfigError("ckpt_path", str(path), f"a checkpoint with the state to continue training from; this one "
                              f"has no {key} (saved with callbacks.model_checkpoint.save_weights_only=true?): eval.py "
                              "tests it, a new run trains afresh")
        value = checkpoint[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise malformed(path, key, what, value)
    if not isinstance(checkpoint["loops"].get("fit_loop"), dict):
        raise malformed(path, "loops.fit_loop", "the training loop's progress", checkpoint["loops"].get("fit_loop"))
    check_weights_fit(checkpoint, module, path)
    check_same_optimizer(checkpoint["hyper_parameters"].get("optimizer"), module.hparams.optimizer, path)
    check_optimizer_state_fits(checkpoint["optimizer_states"], module, path)
    check_schedule_fits(checkpoint["lr_schedulers"], module, checkpoint["hyper_parameters"].get("scheduler"), path)
    if RANDOM_STATES in checkpoint:
        check_random_states(checkpoint[RANDOM_STATES], path)
    position = checkpoint.get(ImageDataModule.__qualname__, {})
    if not is_sampler_position(position):
        raise malformed(path, ImageDataModule.__qualname__, "{'epoch': <count>, 'batches_done': <count>} or {}", position)


def is_sampler_position(value: Any) -> bool:
    """What ImageDataModule.state_dict saves: where the sampler's order continues, or {} outside fitting."""
    return isinstance(value, dict) and (value == {} or (set(value) == {"epoch", "batches_done"}
                                                        and all(is_count(v) for v in value.values())))


def check_same_optimizer(saved: Any, config: dict[str, Any], path: str | Path) -> None:
    """An optimizer's state is its class's own (SGD resumed from AdamW's state failed at its first step, with a
    KeyError for 'momentum'), so a resume keeps the optimizer class the checkpoint recorded."""
    theirs = saved.get("_target_") if isinstance(saved, dict) else None
    if theirs is not None and theirs != config["_target_"]:
        raise ConfigError("ckpt_path", str(path), f"a checkpoint of this run's optimizer, whose state it holds: "
                          f"optimizer._target_ is {config['_target_']!r} here and {theirs!r} in the checkpoint (resume "
                          "with the checkpoint's optimizer, or start a new run)")


def optimizer_groups(module: ImageClassifier) -> list[list[torch.nn.Parameter]]:
    """The parameters of each group of the run's optimizer, grouped as build_optimizer groups them (without building
    it: its kernel choice needs the device the run trains on)."""
    config = module.hparams.optimizer
    groups = parameter_groups(module.net, config.get("weight_decay", 0.0), config.get("decay_norm_and_bias", False))
    return [group["params"] for group in groups]


def check_optimizer_state_fits(states: list[Any], module: ImageClassifier, path: str | Path) -> None:
    """The optimizer state Lightning hands to torch: one optimizer, its parameter groups as this run's optimizer makes
    them (torch refuses others, with a traceback, once the run has started), and per parameter, tensors that fit the
    parameter (torch takes any, and the first step then fails)."""
    groups = optimizer_groups(module)
    state = states[0] if len(states) == 1 else None
    saved_groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(state, dict) or not isinstance(state.get("state"), dict) or not isinstance(saved_groups, list) \
            or not all(isinstance(group, dict) and isinstance(group.get("params"), list)
                       and all(is_count(i) for i in group["params"]) for group in saved_groups):
        raise malformed(path, "optimizer_states", "a list of one optimizer's state (its state and param_groups)", states)
    sizes, saved_sizes = [len(group) for group in groups], [len(group["params"]) for group in saved_groups]
    if sizes != saved_sizes:
        raise ConfigError("ckpt_path", str(path), f"an optimizer state that fits this run's optimizer: the checkpoint's "
                          f"parameter groups hold {saved_sizes} parameters and this run's {sizes} (optimizer.weight_decay "
                          "and optimizer.decay_norm_and_bias group them: resume with the checkpoint's)")
    names = {id(parameter): name for name, parameter in module.named_parameters()}
    parameters = dict(zip((i for group in saved_groups for i in group["params"]), (p for group in groups for p in group)))
    for index, values in state["state"].items():
        parameter = parameters.get(index)
        if parameter is None:
            continue  # torch keeps the state of an index no group names, and no step reads it
        if not isinstance(values, dict):
            raise malformed(path, f"optimizer_states[0].state[{index}]", "a dict of the parameter's state", values)
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and not broadcasts_to(value.shape, parameter.shape):
                raise ConfigError("ckpt_path", str(path), f"an optimizer state that fits the network: the state of "
                                  f"{names[id(parameter)]} holds {key} of shape {tuple(value.shape)}, for a parameter of "
                                  f"shape {tuple(parameter.shape)}")


def broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether a state tensor of `shape` fits a parameter of shape `target`: the same shape or a scalar (most
    optimizers), or one that broadcasts to it (Adafactor keeps row and column statistics)."""
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def check_schedule_fits(states: list[Any], module: ImageClassifier, saved_scheduler: Any, path: str | Path) -> None:
    """This run's scheduler reads its position and its old length back from the saved schedule (KeepsOwnLength), so a
    schedule of another kind (onecycle's resumed from cosine's: KeyError 'total_steps', once the run had started) is
    refused. With no schedule on either side there is nothing to continue; Lightning then starts or drops one."""
    config = module.hparams.scheduler
    # Built on a stand-in optimizer with the run's groups: only the scheduler's kind matters here, not the learning rate.
    stand_in = torch.optim.SGD([{"params": group} for group in optimizer_groups(module)], lr=1.0)
    built = build_scheduler(stand_in, config, total_steps=2, max_epochs=1)
    if built is None or not states:
        return
    lacking = [key for key in built["scheduler"].LENGTH_KEYS if not isinstance(states[0], dict) or key not in states[0]]
    if lacking:
        theirs = saved_scheduler.get("name") if isinstance(saved_scheduler, dict) else None
        saved_by = (f" (scheduler.name is {config['name']!r} here and {theirs!r} in the checkpoint)"
                    if theirs not in (None, config["name"]) else "")
        raise ConfigError("ckpt_path", str(path), f"a learning-rate schedule that this run's scheduler continues: the "
                          f"checkpoint's lr_schedulers[0] lacks {', '.join(lacking)}{saved_by}")


def check_cuda_states(states: Any) -> None:
    if not all(isinstance(state, torch.Tensor) and state.dtype == torch.uint8 for state in states):
        raise TypeError("CUDA states are byte tensors")


# How RandomStateInCheckpoint's set_random_states restores each stream, here on a generator of its own.
RESTORE_ON_A_NEW_GENERATOR = {
    "python": lambda state: random.Random().setstate((state[0], tuple(state[1]), state[2])),
    "numpy": lambda state: np.random.RandomState().set_state((state[0], state[1].numpy().astype(np.uint32), *state[2:])),
    "torch": lambda state: torch.Generator().set_state(state),
    "cuda": check_cuda_states,  # restored only where there is a GPU; their size is the device's
}


def check_random_states(states: Any, path: str | Path) -> None:
    """The random streams RandomStateInCheckpoint restores at the first resumed batch, each tried on a generator of
    its own, so that one that cannot be restored is refused now, not after the run has started."""
    if not isinstance(states, dict):
        raise malformed(path, RANDOM_STATES, "a dict of the random streams", states)
    for stream, restore in RESTORE_ON_A_NEW_GENERATOR.items():
        try:
            restore(states[stream])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError) as err:
            raise malformed(path, f"{RANDOM_STATES}.{stream}", f"a {stream} random state as genlab saves it "
                            f"({type(err).__name__}: {str(err)[:80]})", states.get(stream)) from err


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, but a checkpoint is written to a temp file and renamed into place (a full disk or a
    kill while saving leaves the previous file whole, never a truncated one), with the user's umask, and read with
    weights_only=True and genlab's allow-list, whatever the caller asks for."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getbuffer())

    def load_checkpoint(self, path: Any, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            with checkpoint_globals():
                return super().load_checkpoint(path, map_location, weights_only=True)
        return read_checkpoint(path, map_location)


def save_and_load_checkpoints_safely(trainer: L.Trainer) -> None:
    """Have the trainer write and read its checkpoints through SafeCheckpointIO (unless a plugin of the config's own
    handles them)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = SafeCheckpointIO()


class LastEpochCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, with `last.ckpt` (save_last=true) rewritten every time Lightning checks for a new best.

    Lightning 2.6 writes last.ckpt only in a step where it also saves a top-k checkpoint, so once the monitored metric
    stops improving, last.ckpt falls behind: a 30-epoch run's was epoch 19, and `eval.py` or `ckpt_path=last` after a
    hard kill then used stale weights. Here it is always the newest epoch's.

    It also remembers the epoch of each checkpoint it keeps, so a run can say which epoch its best checkpoint is.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.saved_epochs: dict[str, int] = {}  # checkpoint path -> the epoch it holds

    def epoch_of(self, path: str | None) -> int | None:
        return self.saved_epochs.get(path) if path else None

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self.saved_epochs[filepath] = trainer.current_epoch  # before saving: the callback's state goes into the file
        kept = {self.best_model_path, self.last_model_path, filepath, *self.best_k_models}
        self.saved_epochs = {path: epoch for path, epoch in self.saved_epochs.items() if path in kept}
        super()._save_checkpoint(trainer, filepath)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "saved_epochs": dict(self.saved_epochs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.saved_epochs.update(state_dict.get("saved_epochs", {}))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def _keep_last_current(self, trainer: L.Trainer) -> None:
        # In the hook where Lightning saves its own checkpoints (at the epoch's end after the module's hooks, or after
        # validation when it runs several times an epoch or not every epoch), so the state saved is the one exact
        # resume expects. Skipped where this step is already saved (a new best brings last.ckpt with it), in sanity
        # checks and in fast_dev_run, as Lightning skips its own saves.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
