"""Every number a run writes means what it says: last.ckpt, the two test passes' names, metrics.csv, the W&B record,
eval.py's splits and a resume for more epochs; each checked against the files themselves."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from genlab.pipeline import evaluate, run

from conftest import FAST, compose_config
from wandb_records import wandb_config, wandb_records

def history_keys(records: list) -> list[set[str]]:
    return [{item.key or "/".join(item.nested_key) for item in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]


def csv_values(run_dir: Path, key: str) -> list[float]:
    return [float(row[key]) for row in csv.DictReader(open(run_dir / "metrics.csv")) if row.get(key)]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """Digits for 3 epochs with the best checkpoint chosen by the *highest* val loss, so the best is an early epoch
    and last.ckpt must not follow it; val_size 0.3 where eval.py's default is 0.1; W&B offline beside the CSV, logging
    the tested checkpoints (staged by W&B in the test's own data dir)."""
    run_dir = tmp_path_factory.mktemp("record") / "run"
    cfg = compose_config([*FAST, "logger=default", "trainer.max_epochs=3", "callbacks.model_checkpoint.mode=max",
                          "data.val_size=0.3", "analysis.corruptions=[contrast]", "analysis.severities=[1]",
                          "analysis.confusion_matrix=true", "logger.wandb.log_model=true"], run_dir)
    before = os.environ.get("WANDB_DATA_DIR")
    os.environ["WANDB_DATA_DIR"] = str(run_dir.parent / "wandb-data")
    try:
        metrics = run(cfg)
    finally:
        os.environ.pop("WANDB_DATA_DIR") if before is None else os.environ.__setitem__("WANDB_DATA_DIR", before)
    return run_dir, metrics, json.loads((run_dir / "results.json").read_text())


def test_last_ckpt_is_the_last_epoch_even_when_the_best_is_early(finished_run):
    run_dir, _, record = finished_run
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=False)
    assert best["epoch"] < 2 and last["epoch"] == 2 == record["epochs"] - 1
    # the record names the weights each pass tested, with the epochs the checkpoint files hold
    assert record["tested"]["test"] == {"weights": "best", "epoch": best["epoch"], "monitor": "val/loss", "mode": "max",
                                        "score": pytest.approx(max(csv_values(run_dir, "val/loss")))}
    assert record["tested"]["final"] == {"weights": "last", "epoch": last["epoch"]}


def test_both_test_passes_have_their_own_names_in_results_csv_and_wandb(finished_run):
    run_dir, metrics, record = finished_run
    for key in ("test/acc", "final/test/acc", "test/ece", "final/train_eval/acc", "gap/acc", "final/gap/acc",
                "robust/acc_mean", "robust/contrast_s1"):
        assert csv_values(run_dir, key) == pytest.approx([record["metrics"][key]]), key  # logged once, as recorded
    assert metrics["gap/acc"] == pytest.approx(metrics["train_eval/acc"] - metrics["test/acc"])
    assert metrics["final/gap/acc"] == pytest.approx(metrics["final/train_eval/acc"] - metrics["final/test/acc"])
    logged = history_keys(wandb_records(run_dir))
    assert sum("test/acc" in keys for keys in logged) == 1 and sum("final/test/acc" in keys for keys in logged) == 1


def test_the_wandb_config_is_the_runs_whole_resolved_config(finished_run):
    from genlab.training.loggers import dotted

    run_dir, _, _ = finished_run
    records = wandb_records(run_dir)
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    # under dotted keys, as W&B shows nested ones and as a sweep agent's runs get them (tests/test_wandb_sweeps.py)
    assert wandb_config(records) == json.loads(json.dumps(dotted(saved)))  # as JSON: W&B stores tuples as lists
    assert wandb_config(records)["data.val_size"] == 0.3 and "optimizer.lr_scaling" in wandb_config(records)


def test_wandb_keeps_the_run_files_best_epoch_summaries_and_class_results(finished_run):
    run_dir, _, record = finished_run
    (files,) = run_dir.glob("wandb/offline-run-*/files")
    assert json.loads((files / "genlab" / "results.json").read_text()) == record
    assert (files / "genlab" / "config.yaml").read_text() == (run_dir / "config.yaml").read_text()
    records = wandb_records(run_dir)
    summaries = {r.metric.name: r.metric.summary for r in records if r.WhichOneof("record_type") == "metric"}
    assert summaries["val/acc"].max and summaries["val/loss"].min
    logged = set().union(*history_keys(records))
    assert {"per_class_acc/_type", "confusion_matrix_plot_table/_type"} <= logged
    (table,) = files.glob("media/table/per_class_acc_*.table.json")
    assert {name: acc for name, acc in json.loads(table.read_text())["data"]} == pytest.approx(record["per_class_acc"])


def test_eval_rebuilds_the_training_runs_splits_and_normalisation(finished_run, tmp_path):
    run_dir, _, record = finished_run
    cfg = compose_config([f"ckpt_path={record['best_checkpoint']}"], tmp_path / "eval", config_name="eval")
    assert cfg.data.val_size == 0.1  # eval's own default; the checkpoint says 0.3
    metrics = evaluate(cfg)
    for key in ("test/acc", "test/loss", "train_eval/acc", "train_eval/loss", "gap/acc"):
        assert metrics[key] == pytest.approx(record["metrics"][key], abs=1e-6), key
    evaluated = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert evaluated["data"]["val_size"] == record["data"]["val_size"] == 431  # 30 % of digits' 1437 training images


def test_resuming_with_more_epochs_continues_on_a_schedule_for_the_new_length(tmp_path):
    # LHT's "train 1 epoch, then ckpt_path=... trainer.max_epochs=2": the extra epoch trained at lr 0 before.
    run_dir = tmp_path / "run"
    common = [*FAST, "analysis.robustness=false", "analysis.confusion_matrix=false", "scheduler.warmup_epochs=0"]
    run(compose_config([*common, "trainer.max_epochs=1"], run_dir))
    with pytest.warns(UserWarning, match=r"trainer.max_epochs changed on resume: the learning-rate schedule is rebuilt"):
        run(compose_config([*common, "trainer.max_epochs=2", "ckpt_path=last", f"resume_dir={run_dir}"], run_dir))
    rows = [row for row in csv.DictReader(open(run_dir / "metrics.csv")) if row.get("lr-AdamW/pg1")]
    steps = [int(row["step"]) for row in rows]
    lrs = [float(row["lr-AdamW/pg1"]) for row in rows]
    per_epoch = steps[1]  # logged at each epoch's first step
    assert steps == [0, per_epoch]
    # cosine from 3e-3 to 0 over 2 epochs, at the start of the second: half-way
    assert lrs == pytest.approx([3e-3, 3e-3 * 0.5 * (1 + math.cos(math.pi * per_epoch / (2 * per_epoch)))])
    assert len(csv_values(run_dir, "val/acc")) == 2
    record = json.loads((run_dir / "results.json").read_text())  # the tested epoch survives the resume
    best = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=False)
    assert record["tested"]["test"]["epoch"] == best["epoch"] and record["tested"]["final"]["epoch"] == 1


def test_a_study_of_last_epochs_analyses_the_last_epochs_weights(tmp_path):
    # Robustness and per-class accuracy describe the weights the study compares: with compared_weights=last and a best
    # checkpoint chosen early (the highest val loss), the per-class accuracies add up to final/test/acc, not test/acc.
    run_dir = tmp_path / "run"
    run(compose_config([*FAST, "trainer.max_epochs=3", "callbacks.model_checkpoint.mode=max",
                        "analysis.compared_weights=last", "analysis.corruptions=[contrast]", "analysis.severities=[1]",
                        "analysis.confusion_matrix=true"],
                       run_dir))
    record = json.loads((run_dir / "results.json").read_text())
    assert record["tested"]["analysis"] == record["tested"]["final"] == {"weights": "last", "epoch": 2}
    metrics = record["metrics"]
    assert metrics["final/test/acc"] != metrics["test/acc"]  # the two sets of weights really differ here
    test_counts = [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]  # digits' fixed stratified test split
    hits = sum(acc * n for acc, n in zip(record["per_class_acc"].values(), test_counts))
    assert hits / 360 == pytest.approx(metrics["final/test/acc"], abs=1e-6)


def test_every_metric_a_callback_may_monitor_is_logged_every_epoch(finished_run):
    """validate refuses a `monitor` outside genlab.training.module.monitorable_metrics before anything runs: each of
    those names must really be in every epoch's record (digits: 10 classes, so top-5 too)."""
    from genlab.training.module import monitorable_metrics

    run_dir, _, record = finished_run
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    for name in monitorable_metrics(10):
        epochs = {int(row["epoch"]) for row in rows if row.get(name)}
        assert set(range(record["epochs"])) <= epochs, name  # (the test passes log train_eval/* once more, at the end)


def test_wandb_keeps_the_tested_checkpoints_and_the_runs_facts_offline(finished_run):
    """logger.wandb.log_model=true offline (Lightning refuses it before training): the best and the last checkpoint as
    versions of the run's model artifact, each with the epoch and score results.json says were tested on it; and the
    parameter count (lightning-hydra-template's names), FLOPs, data sizes, tested epochs and threads in the summary."""
    run_dir, _, record = finished_run
    records = wandb_records(run_dir)
    models = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "model"]
    by_alias = {alias: json.loads(a.metadata) for a in models for alias in a.aliases if alias in ("best", "last")}
    best, last = record["tested"]["test"], record["tested"]["final"]
    assert by_alias["best"]["epoch"] == best["epoch"] and by_alias["best"]["score"] == pytest.approx(best["score"])
    assert by_alias["best"]["file"] == Path(record["best_checkpoint"]).name and by_alias["best"]["status"] == "completed"
    assert by_alias["last"] == {"status": "completed", "file": "last.ckpt", **last}
    assert best["epoch"] < last["epoch"] == 2  # two checkpoints, two versions
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.summary.update})
    params = record["model"]["params"]
    assert summary["model/params/total"] == params == summary["model/params/trainable"]
    assert summary["model/params/non_trainable"] == 0 and summary["model/flops"] == record["model"]["flops"]
    assert summary["data/train_size"] == record["data"]["train_size"] and summary["tested/test_epoch"] == best["epoch"]
    assert summary["torch_threads"] == record["torch_threads"]["threads"] and summary["status"] == "completed"
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 0


def test_the_dashboards_panels_show_keys_the_run_logged_to_wandb(finished_run):
    """Every key a panel of compare.py --dashboard reads, and the run it filters on, are in the W&B record."""
    from genlab.analysis import dashboard
    from genlab.analysis.runs import load_local_run

    run_dir, _, _ = finished_run
    records = wandb_records(run_dir)
    logged = {item.key or item.nested_key[0] for r in records if r.WhichOneof("record_type") == "history"
              for item in r.history.item}  # media and tables are nested: <key>/_type, <key>/path…
    run = load_local_run(run_dir)
    for metric in ("test/acc", "final/test/acc"):
        study = dashboard.plan_study("me/genlab", [run], ["model.name"], metric, None)
        assert study.run_ids == (next(r for r in records if r.WhichOneof("record_type") == "run").run.run_id,)
        shown = [dashboard.STEP, *dashboard.CURVES, *study.bars, dashboard.PER_CLASS_TABLE, dashboard.CONFUSION_PLOT,
                 dashboard.CONFUSION_IMAGE]
        assert set(shown) <= logged, set(shown) - logged
        spec = dashboard.spec_json(dashboard.build_workspace(study))
        assert all(json.dumps(key) in spec for key in shown)
    assert "model.name" in wandb_config(records)  # the key the runs are grouped on, as W&B keeps it
