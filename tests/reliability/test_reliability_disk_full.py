"""A full disk: checkpoints are written whole or not at all, the run ends with one line and a results.json that says
so, and a resume picks the newest checkpoint that can be read, passing over one cut short."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from genlab.errors import ConfigError, RunFailed
from genlab.pipeline import run
from genlab.resume import checkpoint_to_resume, newest_checkpoint

from conftest import FAST, compose_config


def test_a_full_disk_leaves_whole_checkpoints_and_a_failed_results_json(tmp_path, monkeypatch):
    """The disk fills while the second epoch's checkpoint is written (the write reports ENOSPC when it is flushed, as
    file systems with delayed allocation do): the first epoch's checkpoints stay whole and loadable, no partial file is
    left, and results.json says the run failed for lack of space."""
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    real_fsync, flushed = os.fsync, []

    def fsync_until_full(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if Path(path).parent == checkpoints:
            flushed.append(path)
            if len(flushed) > 2:  # epoch 0 wrote its best checkpoint and last.ckpt; the disk is full from here on
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    with pytest.raises(RunFailed, match=r"out of disk space in .* at step \d+ \(No space left on device\); marked failed"):
        run(compose_config([*FAST, "trainer.max_epochs=3", "analysis.robustness=false"], run_dir))
    monkeypatch.setattr(os, "fsync", real_fsync)

    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "failed" and "out of disk space" in record["error"]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]  # no temp file left
    for path in checkpoints.iterdir():
        assert torch.load(path, map_location="cpu", weights_only=True)["epoch"] == 0
    assert record["last_checkpoint"] == str(checkpoints / "last.ckpt")


def test_resume_picks_the_newest_readable_checkpoint(tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"state_dict": {}, "epoch": 4}, checkpoints / "epoch_004.ckpt")
    whole = (checkpoints / "epoch_004.ckpt").read_bytes()
    (checkpoints / "last.ckpt").write_bytes(whole[: len(whole) // 2])  # newer, cut short by a full disk
    os.utime(checkpoints / "epoch_004.ckpt", (1, 1))
    assert newest_checkpoint(tmp_path / "run") == checkpoints / "epoch_004.ckpt"
    assert checkpoint_to_resume("last", False, None, tmp_path / "run") == checkpoints / "epoch_004.ckpt"

    (checkpoints / "epoch_004.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"checkpoints has only unreadable ones \(epoch_004.ckpt, last.ckpt\)"):
        checkpoint_to_resume("last", False, None, tmp_path / "run")
