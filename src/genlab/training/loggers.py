"""W&B specifics: offline when there are no credentials, how to sync later, and closing the run per job."""
from __future__ import annotations

import netrc
import os
from pathlib import Path

WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"


def wandb_credentials_available() -> bool:
    """True when W&B could log online: WANDB_API_KEY is set or `wandb login` stored a key in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_should_run_offline() -> bool:
    return os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") or not wandb_credentials_available()


WANDB_TAG_MAX = 64  # W&B rejects longer tags


def sweep_group_and_tags(hydra_cfg) -> tuple[str | None, list[str]]:
    """For a job of a Hydra multirun: the sweep dir's name as W&B group, and the job's overrides (seed aside) as tags.

    The group comes from the job's own output dir (<sweep dir>/<job>), which is resolved per job under every launcher.
    """
    if hydra_cfg is None or str(hydra_cfg.mode) != "RunMode.MULTIRUN":
        return None, []
    group = Path(hydra_cfg.runtime.output_dir).parent.name
    tags = [o[:WANDB_TAG_MAX] for o in hydra_cfg.overrides.task if not o.startswith(("seed=", "hydra."))]
    return group, tags


def current_hydra_config():
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def offline_sync_hints(loggers: list) -> list[str]:
    """For each offline W&B run, the command that uploads it later."""
    from lightning.pytorch.loggers import WandbLogger

    if not wandb_should_run_offline():
        return []
    return [f"W&B ran offline; upload later with: wandb sync {Path(lg.experiment.dir).parent}"
            for lg in loggers if isinstance(lg, WandbLogger)]


def finish_wandb(loggers: list) -> None:
    """Close W&B runs so the next job of a multirun starts its own run instead of appending to this one."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()


def log_image_file(loggers: list, key: str, path: Path) -> None:
    """Show an image file (a PNG the pipeline wrote) on the W&B dashboard; other loggers keep it in the run dir."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)])
