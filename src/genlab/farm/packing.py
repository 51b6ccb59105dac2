"""Which jobs of a multirun train together in one farm: those whose configs differ only in what each member keeps for
itself (its seed, optimizer, schedule, loss, augmentation and early stopping), and that the farm's loop can train."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

# Each member has its own: anything else (network, data set and its split sizes, batch size, epochs, trainer) is shared.
MEMBER_KEYS = ("seed", "optimizer", "scheduler", "loss", "augmentation", "regularization", "tags", "analysis")
MEMBER_CALLBACKS = ("early_stopping",)
NOT_COMPARED = ("hydra", "paths")  # where each job writes: its own dir by construction


def farm_blocker(cfg: DictConfig) -> str | None:
    """Why this job cannot be a farm member (one phrase), or None."""
    trainer = cfg.trainer
    checks = [
        # ckpt_path=last continues each job in its own dir: an interrupted farm resumes so, as a farm
        (cfg.get("ckpt_path") not in (None, "last") or cfg.get("resume") or cfg.get("resume_dir"),
         "it resumes from a given checkpoint or run dir"),
        (str(trainer.get("strategy", "auto")) not in ("auto", "single_device") or trainer.get("devices", 1) not in (1, "1"),
         "it trains on several devices"),
        (str(trainer.get("accelerator", "auto")) not in ("auto", "cpu") or _cuda_available(), "the farm trains on the CPU only"),
        (str(trainer.precision) not in ("32-true", "32"), f"trainer.precision={trainer.precision}: the farm trains in 32-bit"),
        (trainer.get("accumulate_grad_batches", 1) != 1, "it accumulates gradients"),
        (bool(trainer.get("fast_dev_run")) or trainer.get("limit_train_batches") is not None
         or trainer.get("limit_val_batches") is not None or trainer.get("max_steps", -1) not in (-1, None)
         or trainer.get("val_check_interval") is not None or trainer.get("check_val_every_n_epoch", 1) != 1,
         "it limits or reschedules the loops (debug settings)"),
        (trainer.get("gradient_clip_algorithm") not in (None, "norm"), "the farm clips gradients by norm only"),
        (bool(trainer.get("min_epochs")), "trainer.min_epochs holds early stopping back, which the farm does not"),
        (_callback_on(cfg, "grad_stats"), "callbacks.grad_stats needs Lightning's hooks"),
        (_checkpoint_setting(cfg), "callbacks.model_checkpoint keeps more than the best and the last checkpoint"),
    ]
    return next((why for blocked, why in checks if blocked), None)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _callback_on(cfg: DictConfig, name: str) -> bool:
    spec = (cfg.get("callbacks") or {}).get(name)
    return spec is not None and bool(spec.get("enabled", True))


def _checkpoint_setting(cfg: DictConfig) -> bool:
    spec = (cfg.get("callbacks") or {}).get("model_checkpoint")
    return spec is not None and spec.get("enabled", True) and (spec.get("save_top_k", 1) != 1 or not spec.get("save_last", True))


def shared_part(cfg: DictConfig) -> str:
    """The part of a job's config every member of its farm must have the same (as written: interpolations unresolved,
    so two jobs only pack when their settings are the same text)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    for key in (*MEMBER_KEYS, *NOT_COMPARED):
        container.pop(key, None)
    for key in MEMBER_CALLBACKS:
        (container.get("callbacks") or {}).pop(key, None)
    return json.dumps(container, sort_keys=True, default=str)


@dataclass
class Plan:
    farms: list[list[int]] = field(default_factory=list)  # job indices, each list one farm
    alone: dict[int, str] = field(default_factory=dict)  # job index -> why it runs as an ordinary job


def plan(configs: list[DictConfig], max_members: int) -> Plan:
    """Group the jobs into farms of at most `max_members`; a job that cannot join one runs alone, with the reason."""
    result, groups = Plan(), {}
    for index, cfg in enumerate(configs):
        blocker = farm_blocker(cfg)
        if blocker:
            result.alone[index] = blocker
        else:
            groups.setdefault(shared_part(cfg), []).append(index)
    for members in groups.values():
        if len(members) == 1:
            result.alone[members[0]] = "no other job shares its network, data and trainer settings"
            continue
        for first in range(0, len(members), max_members):
            chunk = members[first:first + max_members]
            if len(chunk) == 1:
                result.alone[chunk[0]] = f"the farms before it are full (hydra.launcher.max_members={max_members})"
            else:
                result.farms.append(chunk)
    return result
