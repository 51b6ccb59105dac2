"""Each W&B sweep file parses, follows the sweep schema genlab relies on, and its command line composes and validates."""
from __future__ import annotations

import pytest
import yaml

from genlab.config import validate

from conftest import REPO

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def overrides_from(parameters: dict) -> list[str]:
    """The `${args_no_hyphens}` W&B would pass for one sample: a value from each parameter, as key=value."""
    out = []
    for key, spec in parameters.items():
        if "value" in spec:
            value = spec["value"]
        elif "values" in spec:
            value = spec["values"][-1]
        else:
            value = spec["min"]
        out.append(f"{key}={value}")
    return out


def test_there_are_sweeps():
    assert len(SWEEPS) >= 3


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_file_is_a_valid_wandb_sweep_over_train_py(path):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["program"] == "train.py" and (REPO / sweep["program"]).is_file()
    assert sweep["method"] in ("grid", "random", "bayes")
    assert sweep["metric"]["goal"] in ("maximize", "minimize") and not sweep["metric"]["name"].startswith("test/")
    # the checkout's venv, whether or not the agent's shell activated it; anything after the parameters is an override
    assert sweep["command"][:4] == ["${env}", ".venv/bin/python", "${program}", "${args_no_hyphens}"]
    assert all("=" in part and not part.startswith("$") for part in sweep["command"][4:])
    for spec in sweep["parameters"].values():
        assert {"value", "values", "distribution"} & set(spec)
        if sweep["method"] == "grid":
            assert "distribution" not in spec  # grid search needs finite lists


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_sweep_command_line_composes_as_a_valid_config(path, make_cfg):
    sweep = yaml.safe_load(path.read_text())
    cfg = make_cfg(*overrides_from(sweep["parameters"]))
    validate(cfg, cuda_available=False)
