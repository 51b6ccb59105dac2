"""The seed farm's training loop: several runs of one study trained in one process, taking their steps in turn.

Each member is the run `train.py` makes of its config (`pipeline.start_run`): its own data module (split, order and
augmentation draws from its seed), network and initialisation, optimizer, schedule, torch random stream (dropout masks,
mixup draws), loggers, checkpoints and results.json. A member's step runs the same operations on the same tensors as
its separate run's step, so its numbers are its separate run's, bit for bit (tests/farm/). What the members share is
one process start (~7 s of imports on a laptop CPU) and a loop without Lightning's per-step bookkeeping (~1.2 ms).

Stacking the members into one vmapped network was measured too (README "Seed farm"): on a 2-core CPU it was about as
fast as taking the steps in turn, and its float32 results drifted from the separate runs'.
"""
from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch.callbacks import LearningRateMonitor

from genlab.errors import ConfigError
from genlab.pipeline import RunStart
from genlab.resume import FARM_STATE
from genlab.training.checkpoints import SafeCheckpointIO, read_checkpoint
from genlab.training.guards import INTERRUPTED_CHECKPOINT
from genlab.training.random_state import CHECKPOINT_KEY, random_states

LAST = "last.ckpt"


class FarmInterrupted(Exception):
    """Ctrl+C or SIGTERM reached the farm: every member saved interrupted.ckpt after the round of steps it was in."""

    def __init__(self, signum: int, epoch: int, batches_done: int):
        # named as an interrupted run names it (the type of what Lightning raises), which the sweep's exit code reads
        kind = "SIGTERMException" if signum == signal.SIGTERM else "KeyboardInterrupt"
        super().__init__(f"interrupted ({kind}) at epoch {epoch}, batch {batches_done}")
        self.signum = signum


@dataclass
class Outcome:
    """How a member's training ended: completed (also when stopped early) or failed, and why."""

    status: str = "training"
    error: str | None = None
    stopped_early_at: int | None = None


@dataclass
class BestCheckpoint:
    """The member's best epoch by its checkpoint callback's monitor (strictly better, as Lightning's top-1 keeps it)."""

    path: str | None = None
    score: float | None = None
    epoch: int | None = None

    def improved_by(self, score: float, mode: str) -> bool:
        if math.isnan(score):
            return False
        return self.score is None or (score < self.score if mode == "min" else score > self.score)


@dataclass
class Member:
    """One run of the farm and the state its Lightning trainer would otherwise keep."""

    start: RunStart
    optimizer: torch.optim.Optimizer
    scheduler: Any
    clip: float | None
    log_every_n_steps: int
    best: BestCheckpoint = field(default_factory=BestCheckpoint)
    rng: torch.Tensor = field(default_factory=torch.get_rng_state)  # its torch stream between its own steps
    outcome: Outcome = field(default_factory=Outcome)
    global_step: int = 0
    epochs_done: int = 0
    position: tuple[int, int] = (0, 0)  # (epoch, batches done in it) where its training continues

    @property
    def training(self) -> bool:
        return self.outcome.status == "training"


def build_member(start: RunStart, max_epochs: int) -> Member:
    """The member of `start`: its optimizer and schedule built as Lightning's configure_optimizers would build them,
    its checkpoint and early-stopping rules from its own callbacks config. Call right after `start_run`: the random
    stream kept is the one its separate run starts training with."""
    cfg, module = start.cfg, start.module
    steps = len(start.datamodule.train_dataloader()) * max_epochs
    built = module.optimizer_and_schedule(start.datamodule.batch_size, cfg.trainer.precision,
                                          cfg.trainer.gradient_clip_val, steps, max_epochs)
    optimizer, scheduler = (built["optimizer"], built["lr_scheduler"]["scheduler"]) if isinstance(built, dict) else (built, None)
    member = Member(start, optimizer, scheduler, cfg.trainer.gradient_clip_val, cfg.trainer.log_every_n_steps)
    if start.resume_from is not None:
        restore(member, read_checkpoint(start.resume_from))
    return member


def restore(member: Member, checkpoint: dict[str, Any]) -> None:
    """Continue `member` exactly where its checkpoint (one the farm wrote: `check_checkpoint_fits`) left it."""
    member.start.module.load_state_dict(checkpoint["state_dict"])
    member.optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    if member.scheduler is not None:
        member.scheduler.load_state_dict(checkpoint["lr_schedulers"][0])
    state = checkpoint[FARM_STATE]
    member.rng, member.global_step = checkpoint[CHECKPOINT_KEY]["torch"], checkpoint["global_step"]
    member.position, member.epochs_done = tuple(state["position"]), state["epochs_done"]
    member.best = BestCheckpoint(**state["best"])
    stopping = member.start.trainer.early_stopping_callback
    if stopping is not None and state["early_stopping"]:
        stopping.load_state_dict(state["early_stopping"])
    member.outcome = Outcome(**state["outcome"])
    failed = previous_failure(member.start.run_dir)
    if failed is not None:  # its loss turned non-finite: resumed from its last good checkpoint it would again
        member.outcome = Outcome("failed", failed)


def previous_failure(run_dir: Path) -> str | None:
    """The error of a run whose results.json says it failed, else None."""
    try:
        record = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return str(record.get("error")) if record.get("status") == "failed" else None


def train_step(member: Member, batch: Any, batch_idx: int, epoch: int) -> None:
    """One optimizer step of `member`, as Lightning's automatic optimization takes it, in the member's random stream."""
    module, datamodule = member.start.module, member.start.datamodule
    torch.set_rng_state(member.rng)
    module.train()
    loss = module.training_step(datamodule.on_after_batch_transfer(batch, 0), batch_idx)
    if not torch.isfinite(loss):
        member.outcome = Outcome("failed", f"train/loss is {loss.item()} at step {member.global_step} (epoch {epoch}, "
                                           f"batch {batch_idx}); try a lower optimizer.lr or trainer.gradient_clip_val")
        return
    member.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if member.clip:  # Lightning's norm clipping, over the parameters in the optimizer's order
        params = [p for group in member.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, member.clip)
    member.optimizer.step()
    if member.scheduler is not None:
        member.scheduler.step()
    member.global_step += 1
    member.rng = torch.get_rng_state()
    if member.global_step % max(1, member.log_every_n_steps) == 0:
        log(member, {"train/loss_step": loss.item()}, epoch)


def log(member: Member, values: dict[str, Any], epoch: int | None, step: int | None = None, raw: bool = False) -> None:
    """Log to the member's own loggers, at its step and epoch, as Lightning's logger connector would: as float32
    values (what `self.log` makes of a Python float) unless `raw` (callbacks log to the loggers directly), the epoch
    with them unless None."""
    metrics = {key: value if isinstance(value, float) and raw else torch.as_tensor(value, dtype=torch.float32).item()
               for key, value in values.items()}
    if epoch is not None:
        metrics["epoch"] = epoch
    for logger in member.start.loggers:
        logger.log_metrics(metrics, step=max(0, member.global_step - 1) if step is None else step)


def log_learning_rates(member: Member) -> None:
    """What callbacks.lr_monitor logs at an epoch's start: each parameter group's lr, named as Lightning names them."""
    if not any(isinstance(c, LearningRateMonitor) for c in member.start.trainer.callbacks) or not member.start.loggers:
        return
    groups = member.optimizer.param_groups
    name = f"lr-{type(member.optimizer).__name__}"
    rates = {f"{name}/pg{i + 1}" if len(groups) > 1 else name: group["lr"] for i, group in enumerate(groups)}
    log(member, rates, epoch=None, step=member.global_step, raw=True)


@torch.inference_mode()
def validate(member: Member) -> dict[str, torch.Tensor]:
    """The member's val and train_eval passes (its module's own validation_step and epoch metrics)."""
    module, datamodule = member.start.module, member.start.datamodule
    module.eval()
    for loader_idx, loader in enumerate(datamodule.val_dataloader()):
        for batch_idx, batch in enumerate(loader):
            module.validation_step(datamodule.on_after_batch_transfer(batch, loader_idx), batch_idx, loader_idx)
    return module.validation_epoch_metrics()


def end_epoch(member: Member, epoch: int) -> None:
    """Validate, log the epoch's metrics, save checkpoints and apply early stopping, in Lightning's order."""
    module = member.start.module
    values = {**validate(member), **module.train_epoch_metrics(module.train_totals)}
    log(member, values, epoch)
    member.epochs_done = epoch + 1
    save_checkpoints(member, values, epoch)
    stopping = member.start.trainer.early_stopping_callback
    if stopping is not None:
        # Lightning's own rule and counters (patience, min_delta, thresholds), fed the member's monitored value.
        should_stop, _ = stopping._evaluate_stopping_criteria(values[stopping.monitor].detach().clone())
        if should_stop:
            member.outcome = Outcome("completed", stopped_early_at=epoch)


def checkpoint_contents(member: Member, epoch: int, position: tuple[int, int]) -> dict[str, Any]:
    """What Lightning writes for the member's module (as far as eval.py reads it), and what the farm needs to continue
    it from `position` (epoch, batches done)."""
    module, stopping = member.start.module, member.start.trainer.early_stopping_callback
    return {"epoch": epoch, "global_step": member.global_step, "pytorch-lightning_version": lightning.__version__,
            "state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "hparams_name": "kwargs",
            "optimizer_states": [member.optimizer.state_dict()],
            "lr_schedulers": [] if member.scheduler is None else [member.scheduler.state_dict()],
            CHECKPOINT_KEY: {**random_states(), "torch": member.rng},
            FARM_STATE: {"position": list(position), "epochs_done": member.epochs_done, "best": asdict(member.best),
                         "early_stopping": stopping.state_dict() if stopping is not None else {},
                         "outcome": asdict(member.outcome)}}


def save_checkpoints(member: Member, values: dict[str, torch.Tensor], epoch: int) -> None:
    """The member's checkpoint callback's files: the best epoch by its monitor, and last.ckpt after every epoch."""
    callback = member.start.trainer.checkpoint_callback
    if callback is None:
        return
    writer, replaced = SafeCheckpointIO(), None
    score = values.get(callback.monitor)
    if score is not None and member.best.improved_by(float(score), callback.mode):
        path = callback.format_checkpoint_name({**values, "epoch": torch.tensor(epoch),
                                                "step": torch.tensor(member.global_step)})
        replaced = member.best.path if member.best.path != path else None
        member.best = BestCheckpoint(path, float(score), epoch)  # before the contents: they carry the best too
    contents = checkpoint_contents(member, epoch, (epoch + 1, 0))
    if member.best.epoch == epoch:
        writer.save_checkpoint(contents, member.best.path)
        if replaced:
            Path(replaced).unlink(missing_ok=True)
    writer.save_checkpoint(contents, str(Path(callback.dirpath) / LAST))


def save_interrupted(members: list[Member], epoch: int, batches_done: int) -> None:
    """interrupted.ckpt in each member's checkpoints dir (failed members keep their last good one)."""
    for member in members:
        if member.outcome.status != "failed":
            contents = checkpoint_contents(member, epoch, (epoch, batches_done))
            path = member.start.run_dir / "checkpoints" / INTERRUPTED_CHECKPOINT
            SafeCheckpointIO().save_checkpoint(contents, str(path))


def train_farm(members: list[Member], max_epochs: int) -> float:
    """Train every member for `max_epochs` (or until it fails or stops early), a step of each in turn, from where each
    was (a resumed farm); the wall time. Ctrl+C or SIGTERM end the round of steps under way, save every member and
    raise FarmInterrupted."""
    t0 = time.perf_counter()
    signals = []
    previous = {signum: signal.signal(signum, lambda number, frame: signals.append(number))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        train_epochs(members, max_epochs, signals)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for member in members:
        if member.training:
            member.outcome = Outcome("completed")
        for logger in member.start.loggers:
            logger.save()
    return time.perf_counter() - t0


def train_epochs(members: list[Member], max_epochs: int, signals: list[int]) -> None:
    loaders = {id(member): member.start.datamodule.train_dataloader() for member in members}
    training = [member for member in members if member.training]
    first_epoch, first_batch = min((member.position for member in training), default=(max_epochs, 0))
    behind = [member for member in training if member.position != (first_epoch, first_batch)]
    if behind:  # a farm stops all its members at once: one elsewhere lost its interrupted.ckpt, or is another run's
        where = ", ".join(f"{m.start.run_dir} at epoch {m.position[0]}, batch {m.position[1]}" for m in training)
        raise ConfigError("ckpt_path", "last", f"members that all continue from the same step; their newest checkpoints "
                          f"are at different ones ({where})")
    for epoch in range(first_epoch, max_epochs):
        active = [member for member in members if member.training]
        if not active:
            break
        start = first_batch if epoch == first_epoch else 0
        for member in active:
            batches = loaders[id(member)].batch_sampler
            batches.sampler.set_epoch(epoch)
            if start:
                batches.resume_at(epoch, start)
            else:
                log_learning_rates(member)
        for batch_idx, batches in enumerate(zip(*(loaders[id(member)] for member in active)), start=start):
            for member, batch in zip(active, batches):
                if member.training:
                    train_step(member, batch, batch_idx, epoch)
            if signals:
                save_interrupted(members, epoch, batch_idx + 1)
                raise FarmInterrupted(signals[0], epoch, batch_idx + 1)
        for member in active:
            if member.training:
                end_epoch(member, epoch)
