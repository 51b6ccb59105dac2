"""W&B sweeps (sweeps/*.yaml) as a `wandb agent` runs them, without a server: the agent's command built by W&B's own
macro code, the environment it sets (WANDB_SWEEP_ID, WANDB_RUN_ID, WANDB_SWEEP_PARAM_PATH), and the offline run read
back from its .wandb file. An agent's run must carry the whole config under the dotted names a plain run has, though
W&B locks the keys the sweep set (issue 21)."""
from __future__ import annotations

import os

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import REPO, compose_config
from scripts import run_script
from wandb_records import wandb_config, wandb_records

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
FAST_RUN = ["trainer.max_epochs=1", "analysis.robustness=false", "analysis.confusion_matrix=false",
            "augmentation.preview_images=0", "callbacks.rich_progress_bar.enabled=false"]


def first_parameter_set(sweep: dict) -> dict:
    """The first run of a grid; for random and Bayesian sweeps, each value list's first entry and each
    distribution's lower end: a deterministic pick of values the agent could send."""
    chosen = {}
    for key, spec in sweep["parameters"].items():
        if "value" in spec:
            chosen[key] = spec["value"]
        elif "values" in spec:
            chosen[key] = spec["values"][0]
        else:
            chosen[key] = spec["min"]
    return chosen


def agent_command(sweep: dict, parameters: dict) -> list[str]:
    """The command `wandb agent` runs for `parameters`, with W&B's own macro expansion (wandb_agent.Agent)."""
    from wandb.sdk.launch.sweeps import utils

    args = utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in parameters.items()}})
    command = []
    for part in utils.create_sweep_command(sweep["command"]):
        if part == "${env}":
            continue  # /usr/bin/env: the environment is passed below
        command += [sweep["program"]] if part == "${program}" else args[part[2:-1]] if part.startswith("${") else [part]
    return command


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_an_agent_run_carries_the_whole_config_under_the_dotted_names_of_a_plain_run(path, tmp_path):
    sweep = yaml.safe_load(path.read_text())
    parameters = first_parameter_set(sweep)
    command = agent_command(sweep, parameters)
    # every sweep runs the checkout's venv by a path the agent resolves from the checkout's root, activated or not
    assert command[0] == ".venv/bin/python" and command[1] == "train.py"
    param_file = tmp_path / "wandb" / "sweep-abc123" / "config-run00001.yaml"
    param_file.parent.mkdir(parents=True)
    param_file.write_text(yaml.safe_dump({k: {"value": v} for k, v in parameters.items()}))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SWEEP_ID": "abc123", "WANDB_RUN_ID": "run00001",
           "WANDB_SWEEP_PARAM_PATH": str(param_file), "NO_ALBUMENTATIONS_UPDATE": "1",
           "WANDB_SILENT": "false"}  # W&B's warnings shown, as an agent's log has them
    result = run_script(*command[1:], *FAST_RUN, f"paths.root_dir={tmp_path}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "was locked by 'sweep'" not in result.stdout + result.stderr  # no update of the sweep's keys was dropped
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    logged = wandb_config(wandb_records(run_dir))
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    for key in ("regularization.name", "data.name", "data.batch_size", "optimizer.lr", "optimizer.weight_decay",
                "model.dropout", "seed", "task_name"):
        assert logged[key] == OmegaConf.select(OmegaConf.create(saved), key), key
    for key, value in parameters.items():  # the sweep's own parameters, as the agent set them
        assert logged[key] == value, key


def test_the_grid_sweep_is_the_same_study_as_its_experiment_preset(tmp_path):
    """sweeps/regularization_grid.yaml says it is experiment=regularization_ablation's twin: the same values, and each
    agent run composes exactly the preset's job of the same values (task_name, tags, compared weights, everything)."""
    sweep = yaml.safe_load((REPO / "sweeps" / "regularization_grid.yaml").read_text())
    preset = OmegaConf.load(REPO / "conf" / "experiment" / "regularization_ablation.yaml")
    swept = {key: str(value).split(",") for key, value in preset.hydra.sweeper.params.items()}
    assert {key: [str(v) for v in sweep["parameters"][key]["values"]] for key in swept} == swept
    literal = [part for part in sweep["command"] if not part.startswith("${")][1:]  # after the interpreter
    for strategy in swept["regularization"]:
        agent_args = agent_command(sweep, {**first_parameter_set(sweep), "regularization": strategy})[2:]
        assert agent_args[-len(literal):] == literal
        by_agent = compose_config(agent_args, tmp_path / "run")
        by_preset = compose_config(["experiment=regularization_ablation", f"regularization={strategy}", "seed=1"],
                                   tmp_path / "run")
        assert OmegaConf.to_container(by_agent) == OmegaConf.to_container(by_preset), strategy
        assert by_agent.task_name == "regularization_ablation" and by_agent.analysis.compared_weights == "last"
