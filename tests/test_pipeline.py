"""The pipeline in-process: real training on real data, the run record, and the loggers."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from genlab.pipeline import run

from conftest import write_cifar10


def test_default_run_learns_digits_and_writes_the_run_record(make_cfg):
    cfg = make_cfg("trainer.max_epochs=8", "analysis.confusion_matrix=true")
    metrics = run(cfg)
    assert metrics["test/acc"] >= 0.9  # real digits, real training
    run_dir = Path(cfg.paths.output_dir)
    record = json.loads((run_dir / "results.json").read_text())
    assert record["schema_version"] == 1 and record["status"] == "completed" and record["seed"] == cfg.seed
    assert record["metrics"] == pytest.approx(metrics)
    assert record["metrics"]["gap/acc"] == pytest.approx(metrics["train_eval/acc"] - metrics["test/acc"])
    assert record["model"]["params"] > 0 and record["wall_time_s"] > 0 and "torch" in record["packages"]
    sizes = {key: record["data"][key] for key in ("name", "train_size", "val_size", "test_size")}
    assert sizes == {"name": "digits", "train_size": 1293, "val_size": 144, "test_size": 360}
    assert Path(record["best_checkpoint"]).is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()
    # generalization analysis: best and final epoch, calibration, robustness, per-class accuracy
    assert {"final/test/acc", "final/gap/acc", "test/ece", "robust/acc_mean", "robust/jpeg_s5"} <= set(metrics)
    assert 0 <= metrics["test/ece"] <= 1 and 0 <= metrics["robust/acc_mean"] <= 1
    assert (run_dir / "confusion_matrix.png").stat().st_size > 0
    per_class = record["per_class_acc"]
    assert list(per_class) == [str(d) for d in range(10)]
    test_counts = [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]  # digits' fixed stratified test split
    hits = sum(acc * n for acc, n in zip(per_class.values(), test_counts))
    assert hits / 360 == pytest.approx(metrics["test/acc"], abs=1e-6)
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    epochs = {row["epoch"] for row in rows if row.get("val/acc")}
    assert len(epochs) == 8 and any(row.get("train_eval/acc") for row in rows)
    assert len({row["epoch"] for row in rows if row.get("gap_val/acc")}) == 8


def test_cifar10_resnet_trains_through_the_official_reader(make_cfg, tmp_path):
    write_cifar10(tmp_path / "data", per_batch=16, test=16)
    cfg = make_cfg("model=resnet", "data=cifar10", f"data.data_dir={tmp_path / 'data'}", "data.num_workers=0",
                   "data.val_size=16", "data.batch_size=32", "model.width=8", "trainer.max_epochs=1",
                   "data.pin_memory=false")
    metrics = run(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and "test/acc_top5" in metrics


def test_command_line_style_overrides_reach_the_run(make_cfg):
    cfg = make_cfg("trainer.max_epochs=1", "data.batch_size=256", "optimizer=sgd", "optimizer.lr=3e-4", "seed=7",
                   "trainer.precision=bf16-mixed", "scheduler=onecycle")
    metrics = run(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert record["seed"] == 7 and "test/acc" in metrics


def test_wandb_runs_offline_without_a_key_and_never_writes_the_key(make_cfg, monkeypatch):
    secret = "dummy0123456789abcdef0123456789abcdef0123"
    monkeypatch.setenv("WANDB_API_KEY", secret)  # present, but WANDB_MODE=offline (conftest) keeps it offline
    cfg = make_cfg("logger=wandb", "trainer.max_epochs=1")
    run(cfg)
    run_dir = Path(cfg.paths.output_dir)
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline_run.glob("*.wandb"))
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_without_credentials_wandb_is_offline(monkeypatch, tmp_path):
    from genlab.training.loggers import wandb_should_run_offline

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert wandb_should_run_offline()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not wandb_should_run_offline()


def test_wandb_runs_are_named_by_their_overrides_and_grouped_by_study_and_sweep():
    from omegaconf import OmegaConf

    from genlab.training.loggers import WandbIdentity, wandb_identity

    def job(mode: str, overrides: list[str], experiment: str | None = None):
        return OmegaConf.create({"mode": mode, "runtime": {"output_dir": "/o/multirun/2026-01-01_10-00-00/3",
                                                           "choices": {"experiment": experiment}},
                                 "overrides": {"task": overrides}})

    swept = wandb_identity(job("RunMode.MULTIRUN", ["regularization=dropout", "seed=2", "hydra.job.num=3", "x=" + "y" * 200],
                               "regularization_ablation"), "train")
    assert swept.name.startswith("regularization=dropout,seed=2,x=yyy") and len(swept.name) == 128
    assert swept.group == "regularization_ablation/2026-01-01_10-00-00"
    assert swept.tags[0] == "regularization=dropout" and len(swept.tags) == 2 and len(swept.tags[1]) == 64
    assert wandb_identity(job("RunMode.MULTIRUN", ["seed=1"]), "my_task").group == "my_task/2026-01-01_10-00-00"
    assert wandb_identity(job("RunMode.RUN", []), "train") == WandbIdentity("train")  # single runs: no group
    assert wandb_identity(job("RunMode.RUN", ["model=resnet"]), "train").name == "model=resnet"
    assert wandb_identity(None, "train") == WandbIdentity()
    # logging and display settings never name or tag a run
    assert wandb_identity(job("RunMode.RUN", ["model=resnet", "logger.wandb.project=study", "tags=[a]",
                                              "trainer.enable_progress_bar=false"]), "train").name == "model=resnet"


def test_a_sweeps_jobs_are_named_and_tagged_by_what_tells_them_apart(tmp_path):
    """Values every job of the sweep shares (trainer.max_epochs=2, analysis.robustness=False) are in no name or tag:
    the sweep's plan says which values vary."""
    from omegaconf import OmegaConf

    from genlab.sweep import Plan
    from genlab.training.loggers import wandb_identity

    shared = ["trainer.max_epochs=2", "analysis.robustness=False", "logger.wandb.group=baseline"]
    Plan(4, [[f"regularization={r}", f"seed={s}", *shared] for r in ("none", "l2") for s in (1, 2)]).write(tmp_path)
    job = OmegaConf.create({"mode": "RunMode.MULTIRUN", "runtime": {"output_dir": str(tmp_path / "2"), "choices": {}},
                            "overrides": {"task": ["regularization=l2", "seed=1", *shared]}})
    identity = wandb_identity(job, "ablation")
    assert identity.name == "regularization=l2,seed=1" and identity.tags == ("regularization=l2",)


def test_wandb_failing_at_init_falls_back_to_offline(make_cfg, monkeypatch, capsys):
    import wandb

    real_init = wandb.init

    def unreachable(**kwargs):
        if kwargs.get("mode") != "offline":
            raise wandb.errors.CommError("network unreachable")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", unreachable)
    monkeypatch.setattr("genlab.pipeline.wandb_should_run_offline", lambda: False)  # as if a key were set
    cfg = make_cfg("logger=wandb", "trainer.max_epochs=1", "analysis.robustness=false")
    metrics = run(cfg)
    assert "test/acc" in metrics and list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    said = [line for line in capsys.readouterr().err.splitlines() if "could not start online" in line]
    assert len(said) == 1 and said[0].startswith("warning: W&B could not start online")


def test_wandb_failing_mid_run_never_stops_training(make_cfg, monkeypatch, capsys):
    from lightning.pytorch.loggers import WandbLogger

    calls = {"n": 0}

    original = WandbLogger.log_metrics

    def flaky(self, metrics, step=None):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise ConnectionError("W&B service died")
        return original(self, metrics, step)

    monkeypatch.setattr(WandbLogger, "log_metrics", flaky)
    cfg = make_cfg("logger=wandb", "trainer.max_epochs=2", "analysis.robustness=false")
    metrics = run(cfg)
    assert "test/acc" in metrics and json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["status"] == "completed"
    assert sum("warning: W&B logging failed offline too" in line for line in capsys.readouterr().err.splitlines()) == 1


def test_non_finite_loss_marks_the_run_failed_and_keeps_the_last_good_checkpoint(make_cfg):
    from genlab.errors import RunFailed

    import torch

    # a sane first epoch, then the step schedule multiplies lr by 1e6: the loss diverges in epoch 1
    cfg = make_cfg("optimizer=sgd", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=1e6", "trainer.max_epochs=3")
    with pytest.raises(RunFailed, match=r"train/loss is (nan|inf) at step \d+ \(epoch 1, batch \d+\)"):
        run(cfg)
    record = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert record["status"] == "failed" and "train/loss is" in record["error"] and record["metrics"] == {}
    state = torch.load(record["last_checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    assert state and all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def test_a_failed_run_ends_its_wandb_run_failed(make_cfg):
    """A run whose loss turns NaN must not look finished on the dashboard: exit code 1, status in the summary."""
    from genlab.errors import RunFailed
    from wandb_records import wandb_records

    cfg = make_cfg("logger=wandb", "optimizer=sgd", "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=1e6",
                   "trainer.max_epochs=3")
    with pytest.raises(RunFailed):
        run(cfg)
    records = wandb_records(Path(cfg.paths.output_dir))
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    statuses = [json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "summary"
                for item in r.summary.update if item.key == "status"]
    assert exit_record.exit_code == 1 and statuses == ["failed"]


def test_a_fast_dev_run_opens_no_wandb_run(make_cfg):
    cfg = make_cfg("logger=default", "++trainer.fast_dev_run=true")
    run(cfg)
    assert not (Path(cfg.paths.output_dir) / "wandb").exists()


def test_unwritable_output_dir_is_rejected_before_training(make_cfg, tmp_path):
    from genlab.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = make_cfg()
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(ConfigError, match=r"paths.output_dir: got '.*file/run', expected a writable directory"):
        run(cfg)


@pytest.mark.parametrize("kind", ["uniform", "other_class"])
def test_the_kind_of_label_noise_reaches_the_training_set_and_its_record(make_cfg, kind):
    from genlab.pipeline import build_datamodule

    cfg = make_cfg("data.label_noise=1.0", f"data.label_noise_kind={kind}")
    datamodule = build_datamodule(cfg.data, cfg.seed)
    datamodule.setup("fit")
    assert datamodule.plan.label_noise_kind == kind and datamodule.plan_record["label_noise_kind"] == kind
    # other_class makes every training label wrong; uniform leaves about 1 in 10 right by chance
    wrong = datamodule.plan_record["wrong_labels"]
    assert wrong == len(datamodule.train_set) if kind == "other_class" else 0.8 * len(datamodule.train_set) < wrong < len(datamodule.train_set)
