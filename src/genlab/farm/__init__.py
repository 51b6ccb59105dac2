"""The seed farm: the jobs of a multirun that share a network, data set and trainer, trained in one process
(`hydra/launcher=farm`, conf/hydra/launcher/farm.yaml). See engine.py for how, packing.py for which jobs pack."""
from __future__ import annotations

import torch
from omegaconf import DictConfig

from genlab.errors import RunFailed
from genlab.farm.engine import Member, build_member, train_farm
from genlab.pipeline import save_preview, start_run, test_and_analyse, tested_weights, write_run_record
from genlab.summary import print_summary
from genlab.training.loggers import finish_wandb, offline_sync_hints


def enroll(cfg: DictConfig) -> Member:
    """A job of the farm, assembled as `train.py` assembles it (validated, seeded, nothing written before that)."""
    start = start_run(cfg, farm=True)
    member = build_member(start, cfg.trainer.max_epochs)
    save_preview(cfg, start.datamodule, start.run_dir, start.loggers)
    return member


def reached(member: Member) -> None:
    """Tell the member's trainer, which never ran fit, the epoch and step the member reached and its best checkpoint:
    its test passes log at them, and its record says them (`pipeline.tested_weights`)."""
    trainer = member.start.trainer
    epoch_loop = trainer.fit_loop.epoch_loop
    trainer.fit_loop.epoch_progress.current.completed = member.epochs_done
    epoch_loop._batches_that_stepped = member.global_step  # the step Lightning logs at
    epoch_loop.automatic_optimization.optim_progress.optimizer.step.total.completed = member.global_step  # global_step
    callback, best = trainer.checkpoint_callback, member.best
    if callback is not None and best.path is not None:
        callback.best_model_path, callback.best_model_score = best.path, torch.tensor(best.score)
        if hasattr(callback, "saved_epochs"):  # LastEpochCheckpoint's: which epoch each kept file holds
            callback.saved_epochs[best.path] = best.epoch


def record_interruption(member: Member, why: str, resume_command: str) -> None:
    """results.json says `interrupted` and how to resume, as an interrupted run's does; the W&B run is closed."""
    start = member.start
    reached(member)
    try:
        if member.outcome.status != "failed":
            write_run_record(start.trainer, start.run_dir, start.loggers, start.record, start.t0,
                             status="interrupted", error=why, metrics={}, resume_command=resume_command)
    finally:
        finish_wandb(start.loggers)


def finish(member: Member) -> dict[str, float]:
    """Test and analyse a trained member, write its results.json and print its summary, as a run ends. A member whose
    loss turned non-finite is marked failed (with its last good checkpoint) and raises RunFailed, as its run would."""
    start = member.start
    trainer, module, run_dir, loggers = start.trainer, start.module, start.run_dir, start.loggers
    reached(member)
    last = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
    try:
        if member.outcome.status == "failed":
            write_run_record(trainer, run_dir, loggers, start.record, start.t0, status="failed",
                             error=member.outcome.error, metrics={},
                             last_checkpoint=f"{last}/last.ckpt" if last and member.epochs_done else None)
            raise RunFailed(f"{member.outcome.error}. Marked failed in {run_dir / 'results.json'}")
        metrics, per_class = test_and_analyse(start.cfg, trainer, module, start.datamodule, run_dir, loggers,
                                              member.best.path)
        metrics["val/acc_best"] = float(module.val_acc_best.compute())
        write_run_record(trainer, run_dir, loggers, start.record, start.t0, status="completed", metrics=metrics,
                         per_class_acc=per_class, best_checkpoint=member.best.path,
                         tested=tested_weights(start.cfg, trainer, member.best.path))
        sync_hints = offline_sync_hints(loggers)
    finally:
        finish_wandb(loggers)
    print_summary("Run summary", metrics, start.record["model"], start.record["wall_time_s"], run_dir, sync_hints,
                  start.record["tested"], start.record["torch_threads"])
    return metrics


__all__ = ["Member", "enroll", "finish", "train_farm"]
