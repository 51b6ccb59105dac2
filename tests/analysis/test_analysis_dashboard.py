"""compare.py --dashboard: the study's W&B workspace, offline: its spec's groups, filters and panel keys, the JSON
written without a key, the command that saves it later, and the one-line refusals. (The panel keys against a real
offline run's W&B record: tests/test_run_record.py.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from genlab.analysis import dashboard
from genlab.analysis.report import main
from genlab.analysis.runs import find_run_dirs, load_local_runs

SWEEP = "2026-01-01_10-00-00_ablation"


def write_job(sweep: Path, number: int, regularization: str, seed: int, acc: float, project: str = "genlab",
              mode: str = "MULTIRUN") -> Path:
    """A sweep job's run dir as the pipeline leaves it: results.json, config.yaml, the W&B run id, and Hydra's saved
    config of the job (.hydra/hydra.yaml) that says which sweep and experiment it belongs to."""
    run_dir = sweep / str(number)
    (run_dir / ".hydra").mkdir(parents=True)
    metrics = {"final/test/acc": acc, "final/train_eval/acc": acc + 0.02, "final/gap/acc": 0.02,
               "final/test/ece": 0.05, "test/acc": acc}
    (run_dir / "results.json").write_text(json.dumps({"schema_version": 1, "status": "completed", "metrics": metrics}))
    config = {"seed": seed, "task_name": "ablation", "regularization": {"name": regularization},
              "analysis": {"compared_weights": "last"}, "logger": {"wandb": {"project": project, "entity": None}}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "wandb_run_id").write_text(f"run{number}")
    hydra = {"hydra": {"mode": mode, "runtime": {"output_dir": str(run_dir), "choices": {"experiment": "ablation"}}}}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    return run_dir


@pytest.fixture
def sweep(tmp_path) -> Path:
    folder = tmp_path / "multirun" / SWEEP
    for i, (regularization, seed, acc) in enumerate([("none", 1, 0.90), ("none", 2, 0.92), ("dropout", 1, 0.95),
                                                      ("dropout", 2, 0.96)]):
        write_job(folder, i, regularization, seed, acc)
    return folder


@pytest.fixture
def no_wandb_key(tmp_path, monkeypatch):
    """No key anywhere W&B looks (the environment, ~/.netrc, its settings), and W&B not forced offline."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "wandb"))


def runset_and_panels(spec: dict) -> tuple[dict, dict[str, list[dict]]]:
    section = spec["spec"]["section"]
    panels = {s["name"]: s["panels"] for s in section["panelBankConfig"]["sections"]}
    return section["runSets"][0], panels


def test_without_a_key_the_spec_is_written_beside_the_report_and_one_line_says_how_to_save_it(sweep, tmp_path,
                                                                                             no_wandb_key, capsys):
    out = main([str(sweep), "--dashboard", "my-team/genlab", "--out", str(tmp_path / "report")])
    path = out / "dashboard.json"
    lines = [line for line in capsys.readouterr().err.splitlines() if "--dashboard" in line]
    assert lines == [f"warning: --dashboard my-team/genlab: not saved to W&B (no W&B key: set WANDB_API_KEY or run "
                     f"`wandb login`); its spec is in {path}, save it when online with: python -m "
                     f"genlab.analysis.dashboard {path}"]
    spec = json.loads(path.read_text())
    assert (spec["entity"], spec["project"], spec["displayName"]) == ("my-team", "genlab", f"genlab study: ablation/{SWEEP}")
    runset, panels = runset_and_panels(spec)
    # the runs of the sweep's W&B group, `<experiment>/<sweep dir>` as wandb_identity names it, that finished
    assert runset["filters"]["filters"] == [
        {"key": {"section": "run", "name": "group"}, "op": "IN", "value": [f"ablation/{SWEEP}"], "disabled": False},
        {"key": {"section": "run", "name": "state"}, "op": "=", "value": "finished", "disabled": False,
         "connector": "AND"}]
    # grouped by what the report groups by, under the key W&B keeps genlab's flat dotted config key at
    assert runset["grouping"] == [{"section": "config", "name": "regularization.name.value"}]
    assert "regularization.name=dropout" in (out / "report.md").read_text()
    curves, bars, per_class = panels.values()
    assert [(p["config"]["xAxis"], p["config"]["metrics"], p["config"]["groupAgg"], p["config"]["groupArea"])
            for p in curves] == [("trainer/global_step", ["val/acc"], "mean", "stddev"),
                                 ("trainer/global_step", ["val/loss"], "mean", "stddev")]
    # the study compares the last epoch's weights: their accuracy, gap and ECE
    assert [(p["config"]["metrics"], p["config"]["groupArea"]) for p in bars] == [
        (["final/test/acc"], "stddev"), (["final/gap/acc"], "stddev"), (["final/test/ece"], "stddev")]
    assert [p["viewType"] for p in per_class] == ["Weave", "Vega2", "Media Browser"]
    assert '"per_class_acc"' in json.dumps(per_class[0]) and per_class[2]["config"]["mediaKeys"] == ["confusion_matrix"]
    assert per_class[1]["config"]["panelDefId"] == "wandb/confusion_matrix/v1"
    assert '"confusion_matrix_plot_table"' in json.dumps(per_class[1])


def test_the_saved_spec_loads_back_into_the_same_workspace_and_the_printed_command_saves_it(sweep, tmp_path,
                                                                                           monkeypatch):
    import wandb_workspaces.workspaces as ws

    runs, _ = load_local_runs(find_run_dirs([str(sweep)]))
    workspace = dashboard.build_workspace(dashboard.plan_study("e/genlab", runs, ["regularization.name"],
                                                               "final/test/acc", None))
    monkeypatch.setenv("WANDB_MODE", "offline")
    line = dashboard.publish(workspace, tmp_path, "e/genlab")
    assert line.endswith(f"(WANDB_MODE=offline); its spec is in {tmp_path / 'dashboard.json'}, save it when online "
                         f"with: python -m genlab.analysis.dashboard {tmp_path / 'dashboard.json'}")
    loaded = dashboard.load_spec(tmp_path / "dashboard.json")
    assert dashboard.spec_json(loaded) == dashboard.spec_json(workspace) == (tmp_path / "dashboard.json").read_text()
    saved = []
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # never sent: save is W&B's, replaced here
    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(dashboard.spec_json(self)) or self)
    monkeypatch.setattr(ws.Workspace, "url", property(lambda self: f"https://wandb.ai/{self.entity}/{self.project}"))
    assert dashboard.main([str(tmp_path / "dashboard.json")]) == "dashboard: https://wandb.ai/e/genlab"
    assert saved == [dashboard.spec_json(workspace)]
    # online, compare.py saves it itself and writes no spec
    (tmp_path / "dashboard.json").unlink()
    monkeypatch.delenv("WANDB_MODE")
    assert dashboard.publish(workspace, tmp_path, "e/genlab") == "dashboard: https://wandb.ai/e/genlab"
    assert not (tmp_path / "dashboard.json").exists() and len(saved) == 2


def test_runs_without_a_sweep_group_are_picked_by_run_id_and_one_group_by_its_w_and_b_group(tmp_path):
    for i, seed in enumerate([1, 2]):
        write_job(tmp_path / "runs", i, "none", seed, 0.9, mode="RUN")  # single runs: W&B gives them no group
    runs, _ = load_local_runs(find_run_dirs([str(tmp_path / "runs")]))
    study = dashboard.plan_study("e/genlab", runs, [], "final/test/acc", None)
    assert (study.groups, study.run_ids) == ((), ("run0", "run1"))
    assert dashboard.build_workspace(study).name == "genlab study: 2 runs"
    runset, _ = runset_and_panels(json.loads(dashboard.spec_json(dashboard.build_workspace(study))))
    assert runset["filters"]["filters"][0] == {"key": {"section": "run", "name": "name"}, "op": "IN",
                                               "value": ["run0", "run1"], "disabled": False}
    assert runset["grouping"] == [{"section": "run", "name": "group"}]  # one group in the report: no key to group on
    # logger.wandb.group names the group itself; --wandb --group names the runs read from W&B
    config = yaml.safe_load((tmp_path / "runs" / "0" / "config.yaml").read_text())
    config["logger"]["wandb"]["group"] = "baseline"
    (tmp_path / "runs" / "0" / "config.yaml").write_text(yaml.safe_dump(config))
    runs, _ = load_local_runs(find_run_dirs([str(tmp_path / "runs" / "0")]))
    assert dashboard.plan_study("e/genlab", runs, [], "test/acc", None).groups == ("baseline",)
    assert dashboard.plan_study("e/genlab", runs, [], "test/acc", "g1").groups == ("g1",)
    assert dashboard.Study("e", "p", (), (), (), "test/acc").bars == ["test/acc", "gap/acc", "test/ece"]
    two_sweeps = dashboard.Study("e", "p", ("s/1", "s/2"), (), (), "test/acc")
    assert dashboard.build_workspace(two_sweeps).name == "genlab study: s/1 and 1 more"


def test_the_group_is_the_one_the_w_and_b_logger_gave_the_job(sweep):
    from omegaconf import OmegaConf

    from genlab.training.loggers import wandb_identity

    runs, _ = load_local_runs(find_run_dirs([str(sweep)]))
    saved = OmegaConf.load(sweep / "0" / ".hydra" / "hydra.yaml").hydra
    live = OmegaConf.create({"mode": "RunMode.MULTIRUN", "runtime": OmegaConf.to_container(saved.runtime),
                             "overrides": {"task": ["regularization=none", "seed=1"]}})  # as HydraConfig has it
    assert dashboard.wandb_group(runs[0]) == wandb_identity(live, "ablation").group == f"ablation/{SWEEP}"


@pytest.mark.parametrize("argv, says", [
    (["--dashboard", "genlab"], "argument --dashboard: got 'genlab', expected ENTITY/PROJECT (e.g. my-team/genlab)"),
    (["--dashboard", "a/b/c"], "expected ENTITY/PROJECT"),
    (["--dashboard", "my-team/other"], "error: --dashboard my-team/other: the runs logged to W&B project genlab "
                                       "(logger.wandb.project), and a workspace in other would show none of them; "
                                       "give --dashboard my-team/genlab"),
])
def test_a_bad_dashboard_target_is_one_line_before_any_report(sweep, tmp_path, argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(sweep), *argv, "--out", str(tmp_path / "report")])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert says in line and not (tmp_path / "report").exists()


def test_runs_that_never_logged_to_w_and_b_and_a_missing_package_are_refused_in_one_line(sweep, tmp_path,
                                                                                         monkeypatch, capsys):
    for number in range(4):
        (sweep / str(number) / "wandb_run_id").unlink()
    with pytest.raises(SystemExit) as exit_:
        main([str(sweep), "--dashboard", "e/genlab", "--out", str(tmp_path / "report")])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip() == ("error: --dashboard e/genlab: none of the 4 runs logged to W&B "
                                               "(logger=default or logger=wandb logs them), so a workspace would show "
                                               "nothing; leave out --dashboard")
    monkeypatch.setitem(__import__("sys").modules, "wandb_workspaces.workspaces", None)  # not installed
    with pytest.raises(SystemExit) as exit_:
        main([str(sweep), "--dashboard", "e/genlab", "--out", str(tmp_path / "report")])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --dashboard needs the wandb-workspaces package (")
    assert line.endswith("install it with: pip install -e '.[dashboard]' (or make install)")
    assert not (tmp_path / "report").exists()


def test_a_file_that_is_no_spec_is_one_line(tmp_path, capsys):
    (tmp_path / "dashboard.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_:
        dashboard.main([str(tmp_path / "dashboard.json")])
    assert exit_.value.code == 2
    assert str(exit_.value).startswith(f"error: {tmp_path / 'dashboard.json'}: ")
    assert str(exit_.value).endswith("expected the dashboard.json compare.py --dashboard wrote")
