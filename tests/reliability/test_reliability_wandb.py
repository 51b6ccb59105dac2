"""W&B without a network: with a key set, the start waits a bounded time (logger.wandb.init_timeout, not W&B's 90 s),
then the run logs offline and says so, and how to sync, in one line; the key is never written."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from genlab.training.loggers import ResilientWandbLogger

from scripts import run_script

FAKE_KEY = "local-fake0123456789abcdef0123456789abcdef01"  # never valid anywhere: tests stay off the network


def test_the_wait_for_the_wandb_server_is_a_setting(make_cfg, tmp_path):
    cfg = make_cfg("logger=wandb", fast=False)
    assert 0 < cfg.logger.wandb.init_timeout <= 10
    logger = ResilientWandbLogger(project="genlab", save_dir=str(tmp_path), offline=False, init_timeout=3)
    assert logger._wandb_init["settings"]["init_timeout"] == 3


def test_going_offline_is_one_line_with_the_sync_command(tmp_path, monkeypatch, capsys):
    import wandb

    def init(**kwargs):
        if kwargs.get("mode") != "offline":  # W&B's errors span lines: the request, then each retry
            raise wandb.errors.CommError("Failed to get resume status: context deadline exceeded\nwhile retrying: "
                                         "Post \"http://127.0.0.1:9/graphql\": connection refused")
        return SimpleNamespace(id=kwargs.get("id") or "abc123", dir=str(tmp_path / "wandb" / "offline-run-x-abc123" / "files"))

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(wandb, "run", None)
    logger = ResilientWandbLogger(project="genlab", save_dir=str(tmp_path), offline=False, init_timeout=2)
    assert logger.experiment.id == "abc123"
    (message,) = capsys.readouterr().err.strip().splitlines()
    assert message.startswith("warning: W&B could not start online within 2 s (logger.wandb.init_timeout): Failed to "
                              "get resume")
    assert logger._wandb_init["settings"]["silent"] is True  # W&B's own lines about the offline run stay unsaid
    assert f"upload later with: wandb sync {tmp_path}/wandb/offline-run-*" in message and logger.offline


@pytest.mark.slow
def test_a_key_and_no_network_goes_offline_after_the_timeout_and_writes_no_key(tmp_path):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_API_KEY": FAKE_KEY,
           "WANDB_BASE_URL": "http://127.0.0.1:9"}  # loopback's discard port: refused at once, nothing leaves the machine
    env.pop("WANDB_MODE", None)
    run_dir = tmp_path / "run"
    result = run_script("train.py", "logger=wandb", "logger.wandb.init_timeout=2", "trainer.max_epochs=1",
                        "analysis.robustness=false", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    said = [line for line in (result.stderr + result.stdout).splitlines() if "W&B could not start online" in line]
    assert len(said) == 1 and "within 2 s" in said[0] and f"wandb sync {run_dir}/wandb/offline-run-" in said[0], said
    assert not [line for line in result.stderr.splitlines() if line.startswith("wandb:") or "rank_zero_warn" in line]
    assert list((run_dir / "wandb").glob("offline-run-*"))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not [p for p in written if FAKE_KEY.encode() in p.read_bytes()]


@pytest.mark.parametrize(("host", "base_url", "found"), [
    ("api.forge.coreweave.com", None, True),  # wandb >= 0.28's `wandb login` stores the key here
    ("api.wandb.ai", None, True),  # older clients' logins still count
    ("wandb.example.org", "https://wandb.example.org", True),  # a server of one's own (WANDB_BASE_URL)
    ("wandb.example.org", None, False)])
def test_a_wandb_login_is_found_under_the_host_the_client_logs_in_to(tmp_path, monkeypatch, host, base_url, found):
    """genlab looked only under api.wandb.ai: after `wandb login` with wandb 0.31, every run went offline."""
    from genlab.training.loggers import wandb_credentials_available

    (tmp_path / ".netrc").write_text(f"machine {host}\n  login user\n  password {'k' * 40}\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    if base_url:
        monkeypatch.setenv("WANDB_BASE_URL", base_url)
    else:
        monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    assert wandb_credentials_available() is found
