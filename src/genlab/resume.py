"""Resuming runs: which run dir to continue, which checkpoint to load, and whether it fits the model."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genlab.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"


def wants_resume(resume: bool, ckpt_path: str | None, resume_dir: str | None) -> bool:
    """`resume=true`, `ckpt_path=last` and `resume_dir=<dir>` all mean: continue a run in its own dir."""
    return bool(resume) or ckpt_path == "last" or bool(resume_dir)


def run_dir_for(log_dir: str, task_name: str, resume: Any, ckpt_path: Any, resume_dir: Any, stamp: str) -> str:
    """Hydra's run dir (a resolver, `genlab_run_dir`): the named or newest resumable run of the task, or a new one."""
    if resume_dir not in (None, "None", "null", ""):
        return str(Path(resume_dir).expanduser().resolve())
    if wants_resume(str(resume).lower() == "true", ckpt_path, None):
        candidates = [d for d in Path(log_dir, "runs").glob(f"*_{task_name}") if newest_checkpoint(d) is not None]
        if candidates:
            return str(max(candidates, key=lambda d: newest_checkpoint(d).stat().st_mtime))
    return str(Path(log_dir, "runs", f"{stamp}_{task_name}"))


def resume_command(run_dir: Path) -> str:
    """The command that continues `run_dir` with exactly its own config (saved by Hydra in .hydra/)."""
    return f"python train.py --config-dir {run_dir / '.hydra'} --config-name config hydra.run.dir={run_dir} ckpt_path=last"


def newest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = list((Path(run_dir) / CHECKPOINT_DIR).glob("*.ckpt"))
    return max(checkpoints, key=lambda p: p.stat().st_mtime) if checkpoints else None


def requeued() -> bool:
    """True when SLURM restarted this job (preemption or timeout requeue)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def checkpoint_to_resume(ckpt_path: str | None, resume: bool, resume_dir: str | None, run_dir: Path) -> Path | None:
    """The checkpoint training continues from, or None for a fresh start."""
    if ckpt_path not in (None, "last"):
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise ConfigError("ckpt_path", ckpt_path, "an existing .ckpt file, or 'last' for the run dir's newest checkpoint")
        return path
    newest = newest_checkpoint(run_dir)
    if wants_resume(resume, ckpt_path, resume_dir):
        if newest is None:
            raise ConfigError("ckpt_path" if ckpt_path == "last" else "resume", ckpt_path or resume,
                              f"a run dir with checkpoints to resume; {run_dir / CHECKPOINT_DIR} has none")
        return newest
    return newest if requeued() else None


def check_checkpoint_fits(checkpoint: Path, model: dict[str, Any], data_name: str) -> None:
    """Refuse a checkpoint trained for another model, input shape, class count or data set, naming the mismatch."""
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    saved_model, saved_data = saved.get("model", {}), saved.get("data", {})
    for key in ("name", "in_channels", "num_classes", "image_size"):
        if saved_model.get(key) != model.get(key):
            raise ConfigError(f"model.{key}" if key == "name" else f"checkpoint {key}", model.get(key),
                              f"{saved_model.get(key)!r}, as in {checkpoint}")
    if saved_data.get("name") not in (None, data_name):
        raise ConfigError("data", data_name, f"data={saved_data['name']}, the data set {checkpoint} was trained on")
