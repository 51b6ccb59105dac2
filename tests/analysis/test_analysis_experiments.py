"""Experiment presets compose with their sweep; each _smoke twin sweeps on digits; every job config validates."""
from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir

from genlab.config import validate
from genlab.training.regularization import apply_regularization

from conftest import CONF_DIR, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def sweep_of(name: str) -> dict[str, list[str]]:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}"], return_hydra_config=True)
    return {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}


def test_every_preset_has_a_smoke_twin():
    full = [e for e in EXPERIMENTS if not e.endswith("_smoke")]
    assert {f"{e}_smoke" for e in full} <= set(EXPERIMENTS) and len(full) >= 6


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_the_sweep_composes_and_validates(name, tmp_path):
    params = sweep_of(name)
    jobs = list(itertools.product(*[[f"{k}={v}" for v in values] for k, values in params.items()]))
    assert len(jobs) >= 2
    for i, job in enumerate(jobs[:6] if not name.endswith("_smoke") else jobs):
        cfg = compose_config([f"experiment={name}", *job], tmp_path / str(i))
        apply_regularization(cfg)
        validate(cfg, cuda_available=False)
        if name.endswith("_smoke"):
            assert cfg.data.name == "digits" and cfg.trainer.max_epochs <= 4
