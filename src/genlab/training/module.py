"""The LightningModule: the training logic, and nothing else."""
from __future__ import annotations

import platform
from typing import Any, Callable

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from genlab.analysis.evaluation import test_time_logits
from genlab.models import LogitsWithAux, build_model
from genlab.training.losses import Objective
from genlab.training.mixing import BatchMixing
from genlab.training.optim import (build_optimizer, build_scheduler, clips_under_mixed_precision, scale_learning_rate,
                                  scales_learning_rate)
from genlab.training.regularization import l1_penalty

EVAL_METRIC_STAGES = ("val", "train_eval", "test")
# dataloader index -> metric prefix, per stage; index 1 is always the fixed train_eval subset.
EVAL_STAGES = {"val": ("val", "train_eval"), "test": ("test", "train_eval")}


CALIBRATION_BINS = 15


class CompiledOrEager:
    """Calls `net` through torch.compile; where compiling is unsupported, or fails when a call compiles, it warns once
    and calls `net` eagerly from then on, so the run continues uncompiled.

    A plain object, not an nn.Module: the compiled wrapper never becomes a submodule, so checkpoints keep the
    `net.*` keys of an uncompiled run and eval and resume load them either way.
    """

    def __init__(self, net: nn.Module):
        self.eager: Callable[[torch.Tensor], Any] = net
        self.compiled: Callable[[torch.Tensor], Any] | None = None
        if torch._dynamo.is_dynamo_supported():
            self.compiled = torch.compile(net)  # lazy: the work (and any failure) comes at the first call
        else:
            self._fall_back(f"torch.compile does not support Python {platform.python_version()} on {platform.system()}")

    def __call__(self, x: torch.Tensor) -> Any:
        if self.compiled is None:
            return self.eager(x)
        try:
            return self.compiled(x)
        # Any compile failure (no C++ compiler or Triton for the backend, an unsupported operation) must not end the
        # run; a genuine error of the network raises again from the eager call.
        except Exception as err:
            first_line = next(iter(str(err).strip().splitlines()), "")[:300]
            self._fall_back(f"compiling failed ({type(err).__name__}: {first_line})")
            return self.eager(x)

    def _fall_back(self, why: str) -> None:
        self.compiled = None
        rank_zero_warn(f"model.compile: {why}; the run continues uncompiled (eager).")


def accuracy_names(num_classes: int) -> list[str]:
    """The accuracies each stage measures: top-1, balanced, and top-5 where there are more than 5 classes."""
    return ["acc", "acc_balanced", *(["acc_top5"] if num_classes > 5 else [])]


def monitorable_metrics(num_classes: int) -> list[str]:
    """What every epoch logs, by the end of its validation: the names a checkpoint or early-stopping callback can
    monitor (validate checks `monitor` against these before anything runs)."""
    return [*(f"{stage}/{name}" for stage in ("val", "train_eval") for name in [*accuracy_names(num_classes), "loss"]),
            "val/acc_best", "gap_val/acc", "train/loss_epoch", "train/acc"]


def accuracy_metrics(num_classes: int, prefix: str, calibration: bool = False) -> MetricCollection:
    """Top-1 accuracy, balanced accuracy (mean per-class recall), top-5 when there are more than 5 classes, and
    optionally expected calibration error; each is updated with class probabilities (see `ImageClassifier._evaluate`)."""
    # validate_args=False: the inputs are the module's own logits and labels, and checking them on every update
    # costs more than the update itself on small models.
    fast = {"validate_args": False}
    builders = {"acc": lambda: MulticlassAccuracy(num_classes, top_k=1, average="micro", **fast),
                "acc_balanced": lambda: MulticlassAccuracy(num_classes, top_k=1, average="macro", **fast),
                "acc_top5": lambda: MulticlassAccuracy(num_classes, top_k=5, average="micro", **fast)}
    metrics = {name: builders[name]() for name in accuracy_names(num_classes)}
    if calibration:
        metrics["ece"] = MulticlassCalibrationError(num_classes, n_bins=CALIBRATION_BINS, norm="l1", **fast)
    # compute_groups=False: torchmetrics merges metrics whose states are equal after the first update into one group,
    # and a first batch that is all top-1 correct makes top-1, top-5 and balanced states equal: from then on they
    # share one state and report one value.
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


class ImageClassifier(L.LightningModule):
    """Classifies images with a registry model; `model` is the full build spec, so a checkpoint rebuilds its network.

    Args:
        model: `build_model` arguments: name, in_channels, num_classes, image_size and the family's knobs.
        optimizer: the optimizer config (see `build_optimizer`).
        scheduler: the scheduler config (see `build_scheduler`).
        data: what the model was trained on (data set name, seed, training-set strategy), kept so eval and resume
            can check it.
        loss: the training objective: name (cross_entropy | focal), label_smoothing, l1, and gamma for focal.
        mixing: `BatchMixing` arguments (mixup/cutmix); None = no mixing.
        class_weights: per-class weights of the training loss (class-balanced loss); None = unweighted.
        class_priors: the training set's class frequencies, for loss.logit_adjustment; None where it is off.
        tta: at test time, average the predictions of each image and its mirror image.
        channels_last: keep the network's weights, and put its inputs, in NHWC memory layout.
        compile: run the network through torch.compile (see `CompiledOrEager`).
    """

    def __init__(self, model: dict[str, Any], optimizer: dict[str, Any], scheduler: dict[str, Any], data: dict[str, Any],
                 loss: dict[str, Any] | None = None, mixing: dict[str, float] | None = None,
                 class_weights: list[float] | None = None, tta: bool = False, channels_last: bool = False,
                 compile: bool = False, class_priors: list[float] | None = None):
        super().__init__()
        # logger=False: the run logs its whole resolved config itself; Lightning logging these after it would
        # overwrite the config's data, model and optimizer sections with the module's narrower ones.
        self.save_hyperparameters(logger=False)
        self.net = build_model(**model)
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)  # moving to a device later keeps the layout
        self.compiled_net = CompiledOrEager(self.net) if compile else None
        loss = dict(loss or {})
        self.l1 = loss.pop("l1", 0.0)
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        priors = torch.tensor(class_priors, dtype=torch.float64).float() if class_priors else None
        self.objective = Objective(**loss, class_weights=weights, class_priors=priors)
        self.mixing = BatchMixing(**(mixing or {}))
        self.sharpness_aware = optimizer.get("sam_rho", 0.0) > 0  # two passes per step (genlab.training.sam)
        self._first_pass_inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.num_classes = num_classes = model["num_classes"]
        # keyed "on_<stage>": a bare "train" key would shadow nn.Module.train
        self.metrics = nn.ModuleDict({f"on_{s}": accuracy_metrics(num_classes, f"{s}/", calibration=s == "test")
                                      for s in EVAL_METRIC_STAGES})
        # Mean losses weighted by batch size and summed across processes: Lightning's own epoch mean of a logged
        # value divides by rank zero's image count only, which is off when the processes' shards differ in size.
        self.losses = nn.ModuleDict({f"on_{s}": MeanMetric() for s in EVAL_METRIC_STAGES})
        # Training steps only add up (loss x images, correct, images): a torchmetrics update costs ~70-90 us, a
        # noticeable share of a small model's step. Balanced and top-5 accuracy of the training set are measured in
        # eval mode on train_eval, the generalization gap's training side. Persistent, like the best val accuracy, so
        # a run resumed mid-epoch logs the same epoch metrics and keeps the same best as one that never stopped.
        self.register_buffer("train_totals", torch.zeros(3))
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)
        # Prefixes the test metrics' names: the pipeline tests two sets of weights, and each pass needs its own names.
        self.test_prefix = ""

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets _current_fx_name ~40 times per training step. nn.Module.__setattr__ (which looks for
        # parameters, buffers and submodules first) costs ~4 us a call: ~0.15 ms per step, 2-3 % of a small model's.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor | LogitsWithAux:
        """The net's output: logits, or in training mode `LogitsWithAux` for nets with auxiliary classifiers."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self.compiled_net or self.net)(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        targets = labels
        # SAM's second pass (at w + e) sees the first pass's batch, mixed as it was, and counts and logs nothing.
        perturbed = self.sharpness_aware and self.optimizers(use_pl_optimizer=False).perturbed
        if perturbed:
            images, targets = self._first_pass_inputs
        elif self.mixing.enabled:
            images, targets = self.mixing(images, labels, self.num_classes)
        if self.sharpness_aware and not perturbed:
            self._first_pass_inputs = images, targets
        output = self(images)
        logits = output.logits if isinstance(output, LogitsWithAux) else output
        loss = self.objective(logits, targets)
        if not perturbed:
            # accuracy against the hard labels; train/loss is the main head's only, comparable with val/loss
            self.train_totals.add_(torch.stack([loss.detach() * labels.shape[0], (logits.argmax(-1) == labels).sum(),
                                                 labels.new_full((), labels.shape[0])]))  # a fill: no host-to-GPU copy
            if self._logs_this_step():
                self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        if isinstance(output, LogitsWithAux):
            aux_loss = output.aux_weight * sum(self.objective(aux, targets) for aux in output.aux)
            if not perturbed:
                self.log("train/aux_loss", aux_loss.detach(), on_step=True, on_epoch=True, batch_size=labels.shape[0])
            loss = loss + aux_loss
        if self.l1:
            loss = loss + self.l1 * l1_penalty(self.net)
        return loss

    def _logs_this_step(self) -> bool:
        """Whether the loggers record this training step: a self.log call costs ~0.5 ms of Lightning's bookkeeping."""
        trainer = self._trainer
        return trainer is not None and (self.global_step + 1) % max(1, trainer.log_every_n_steps) == 0

    def on_train_epoch_end(self) -> None:
        self._log_global(self.train_epoch_metrics(self.trainer.strategy.reduce(self.train_totals, reduce_op="sum")))

    def train_epoch_metrics(self, totals: torch.Tensor) -> dict[str, float]:
        """train/loss_epoch and train/acc from the epoch's (loss x images, correct, images) totals, which are reset;
        nothing when the epoch had no training batches (limit_train_batches=0)."""
        loss_sum, correct, images = totals.tolist()
        self.train_totals.zero_()
        return {"train/loss_epoch": loss_sum / images, "train/acc": correct / images} if images else {}

    def on_validation_epoch_end(self) -> None:
        values = self.validation_epoch_metrics(candidate_for_best=not self.trainer.sanity_checking)
        self._log_global({k: v for k, v in values.items() if not k.startswith("val/") or k == "val/acc_best"})
        self._log_global({k: v for k, v in values.items() if k.startswith("val/") and k != "val/acc_best"},
                         prog_bar=True)

    def validation_epoch_metrics(self, candidate_for_best: bool = True) -> dict[str, torch.Tensor]:
        """val/*, train_eval/*, the best val accuracy so far and the gap between train_eval and val accuracy, computed
        over the epoch; the epoch's metric states are reset."""
        val_acc = self.metrics["on_val"]["acc"].compute()
        values = {}
        if candidate_for_best:  # the sanity check scores untrained weights: no candidate for the best
            self.val_acc_best.update(val_acc)
            values["val/acc_best"] = self.val_acc_best.compute()
        # The test set is only touched at the end, so during training the gap is measured against val.
        values["gap_val/acc"] = self.metrics["on_train_eval"]["acc"].compute() - val_acc
        return {**values, **self.epoch_metrics("val", "train_eval")}

    def on_test_epoch_end(self) -> None:
        self._log_global(self.epoch_metrics("test", "train_eval", prefix=self.test_prefix))

    def epoch_metrics(self, *stages: str, prefix: str = "") -> dict[str, torch.Tensor]:
        """Each stage's metrics computed over the epoch (torchmetrics syncs them across processes), then reset.

        Steps only update the metrics: logging the metric objects every step instead costs about a millisecond per
        call in Lightning's bookkeeping, which halved the throughput of small models.
        """
        values = {}
        for stage in stages:
            metrics, loss = self.metrics[f"on_{stage}"], self.losses[f"on_{stage}"]
            values.update({f"{prefix}{key}": value for key, value in metrics.compute().items()})
            values[f"{prefix}{stage}/loss"] = loss.compute()
            metrics.reset()
            loss.reset()
        return values

    def _log_global(self, values: dict[str, Any], prog_bar: bool = False) -> None:
        """Log epoch values that are already the same on every process: torchmetrics syncs its states in compute(),
        and the train totals are reduced by the strategy. Under DDP Lightning warns, per key, about epoch values logged
        unsynced; syncing them with max tells it they are global and leaves each exactly as it is, where Lightning's
        mean of N identical copies can move the last bit when N is not a power of two."""
        self.log_dict(values, prog_bar=prog_bar, sync_dist=True, reduce_fx="max")

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(EVAL_STAGES["val"][dataloader_idx], batch)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(EVAL_STAGES["test"][dataloader_idx], batch, flip_average=self.hparams.tta)

    def _evaluate(self, stage: str, batch, flip_average: bool = False) -> None:
        images, labels = batch
        logits = test_time_logits(self, images, flip_average)
        # Probabilities, not logits: torchmetrics takes inputs that all lie in [0, 1] as probabilities as they are, so
        # small logits would give a wrong calibration error; accuracies rank the same either way.
        self.metrics[f"on_{stage}"].update(logits.softmax(-1), labels)
        self.losses[f"on_{stage}"].update(F.cross_entropy(logits, labels), weight=labels.shape[0])

    def global_batch_size(self) -> int:
        """Images per optimizer step over all processes: the per-device batch (hparams.data.batch_size) x the trainer's
        real world size x the accumulated batches (`trainer.devices` can be `auto` or a list: only the trainer knows)."""
        trainer = self.trainer
        return self.hparams.data["batch_size"] * trainer.world_size * trainer.accumulate_grad_batches

    def configure_optimizers(self):
        # Built here, with the parameters already on their device: auto picks a fused kernel for that device.
        trainer = self.trainer
        batch = self.global_batch_size() if scales_learning_rate(self.hparams.optimizer) else None
        return self.optimizer_and_schedule(batch, trainer.precision, trainer.gradient_clip_val,
                                           int(trainer.estimated_stepping_batches), trainer.max_epochs or 1)

    def optimizer_and_schedule(self, global_batch_size: int | None, precision: str | int,
                               gradient_clip_val: float | None, total_steps: int, max_epochs: int):
        """The optimizer and its per-step schedule, as Lightning's configure_optimizers returns them; the global batch
        size is read only when optimizer.lr_scaling is not none."""
        config = self.hparams.optimizer
        config = scale_learning_rate(config, global_batch_size)
        optimizer = build_optimizer(self.net, config, clips_under_mixed_precision(precision, gradient_clip_val))
        scheduler = build_scheduler(optimizer, self.hparams.scheduler, total_steps, max_epochs)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
