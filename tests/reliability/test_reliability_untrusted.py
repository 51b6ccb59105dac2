"""Untrusted files: a crafted checkpoint runs no code, by resume or eval.py; checkpoints are only ever loaded with
weights_only=True, and genlab's own (finished, resumed, interrupted) load so; truncated or random files are one line;
task_name cannot leave the outputs folder; result files get the user's umask."""
from __future__ import annotations

import builtins
import os
import signal
import stat
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch

import genlab.pipeline as pipeline
from genlab.errors import ConfigError, RunFailed
from genlab.pipeline import evaluate, run
from genlab.records import write_json_atomic
from genlab.resume import newest_checkpoint, run_dir_for
from genlab.training.checkpoints import CHECKPOINT_GLOBALS, read_checkpoint
from genlab.training.module import ImageClassifier

from conftest import FAST, compose_config
from scripts import run_script

QUICK = [*FAST, "analysis.robustness=false", "analysis.confusion_matrix=false", "augmentation.preview_images=0"]


class Payload:
    """What a crafted checkpoint carries: unpickling it calls open(<marker>, "w"), so the marker exists if code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "hyper_parameters": {"model": {"name": "simple_cnn"}, "x": Payload(marker)}}, path)
    return path


def test_a_crafted_checkpoint_runs_nothing_on_resume_or_in_eval(tmp_path):
    marker = tmp_path / "payload-ran"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    refused = r"^ckpt_path: got '.*evil.ckpt', expected a checkpoint of tensors and plain values, .* would call io.open when loaded"
    with pytest.raises(ConfigError, match=refused):
        run(compose_config([*QUICK, f"ckpt_path={evil}"], tmp_path / "train"))
    assert not marker.exists()
    with pytest.raises(ConfigError, match=refused):
        evaluate(compose_config([f"ckpt_path={evil}"], tmp_path / "eval", config_name="eval"))
    assert not marker.exists()
    assert not (tmp_path / "train" / "results.json").exists() and not (tmp_path / "eval" / "eval_results.json").exists()


@pytest.mark.parametrize("content", [b"", b"\x89garbage" * 64, "truncated"], ids=["empty", "random", "truncated"])
def test_unreadable_checkpoints_are_one_line_for_train_and_eval(tmp_path, content):
    bad = tmp_path / "bad.ckpt"
    if content == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, bad)
        content = bad.read_bytes()[:-300]
    bad.write_bytes(content)
    refused = r"^ckpt_path: got '.*bad.ckpt', expected a readable checkpoint: the file is (truncated|corrupt)"
    with pytest.raises(ConfigError, match=refused):
        run(compose_config([*QUICK, f"ckpt_path={bad}"], tmp_path / "train"))
    with pytest.raises(ConfigError, match=refused):
        evaluate(compose_config([f"ckpt_path={bad}"], tmp_path / "eval", config_name="eval"))


class SigtermAt(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_genlab_checkpoints_load_with_weights_only_as_saved_finished_interrupted_and_resumed(tmp_path, monkeypatch):
    """Every state genlab keeps (optimizer, onecycle scheduler, early stopping, checkpoint callback, loops, RNG states,
    mixing) loads with weights_only=True, and every load of a checkpoint, genlab's and Lightning's, asks for it."""
    config = [*QUICK, "trainer.max_epochs=2", "optimizer=sgd", "scheduler=onecycle", "augmentation.mixup_alpha=0.2",
              "callbacks.early_stopping.enabled=true"]
    build_callbacks = pipeline.build_callbacks
    monkeypatch.setattr(pipeline, "build_callbacks", lambda *a, **k: [*build_callbacks(*a, **k), SigtermAt(30)])
    with pytest.raises(RunFailed, match="interrupted at step 30"):
        run(compose_config(config, tmp_path / "run"))
    monkeypatch.setattr(pipeline, "build_callbacks", build_callbacks)
    assert newest_checkpoint(tmp_path / "run").name == "interrupted.ckpt"

    loads, real_load = [], torch.load
    def recording_load(f, *args, **kwargs):
        loads.append((str(f), kwargs.get("weights_only")))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    run(compose_config([*config, "ckpt_path=last", "trainer.max_epochs=3"], tmp_path / "run"))
    checkpoint_loads = [(f, w) for f, w in loads if f.endswith(".ckpt")]
    assert any(f.endswith("interrupted.ckpt") for f, _ in checkpoint_loads)  # the resume itself
    assert checkpoint_loads and all(w is True for _, w in checkpoint_loads), checkpoint_loads

    saved = sorted((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in saved} >= {"interrupted.ckpt", "last.ckpt"}
    for path in saved:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            checkpoint = real_load(path, map_location="cpu", weights_only=True)
        assert {"state_dict", "optimizer_states", "lr_schedulers", "loops", "callbacks", "genlab_rng_states"} <= set(checkpoint)
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []  # nothing beyond tensors and plain values
    with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
        module = ImageClassifier.load_from_checkpoint(saved[0], map_location="cpu", weights_only=True)
    assert module.hparams.model["name"] == "simple_cnn"
    assert stat.S_IMODE(saved[0].stat().st_mode) == 0o666 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_checkpoint_with_numpy_numbers_in_its_hyperparameters_loads(tmp_path):
    """NumPy scalars (np.float64 statistics in a hyperparameter) are on the allow-list: they rebuild numbers only."""
    path = tmp_path / "np.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"data": {"mean": [np.float64(0.5), np.float32(0.25)],
                                                               "count": np.int64(3)}}}, path)
    assert read_checkpoint(path)["hyper_parameters"]["data"]["mean"] == [0.5, 0.25]


@pytest.mark.parametrize("name", ["../../../x", "../../etc", "a/b", "..", "a\\b", "x" * 300, ""])
def test_task_name_cannot_leave_the_runs_folder(tmp_path, name):
    outputs = tmp_path / "deep" / "outputs"
    with pytest.raises(ConfigError, match=r"^task_name: got .*, expected (a plain name|at most \d+ characters)"):
        run_dir_for(str(outputs), name, "false", None, None, "2026-01-01_10-00-00")
    assert not [p for p in tmp_path.rglob("*") if p.is_dir() and p.name not in ("deep", "outputs", "runs")]
    with pytest.raises(ConfigError, match=r"^task_name: got "):
        pipeline.validate(compose_config([*QUICK, f"task_name='{name}'"], tmp_path / "run"))


def test_a_task_name_is_matched_as_a_name_not_a_pattern(tmp_path):
    """task_name='*' with ckpt_path=last once continued (and rewrote) the newest run of any task."""
    other = tmp_path / "runs" / "2026-01-01_10-00-00_other"
    (other / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}}, other / "checkpoints" / "last.ckpt")
    chosen = run_dir_for(str(tmp_path), "*", "false", "last", None, "2026-01-02_10-00-00")
    assert chosen == str(tmp_path / "runs" / "2026-01-02_10-00-00_*")
    chosen = run_dir_for(str(tmp_path), "other", "false", "last", None, "2026-01-02_10-00-00")
    assert chosen == str(other)
    chosen = run_dir_for(str(tmp_path), "her", "false", "last", None, "2026-01-02_10-00-00")  # a suffix of another task
    assert chosen != str(other)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_results_json_gets_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "results.json", {"status": "completed"})
        (tmp_path / "plain").write_text("")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == 0o666 & ~umask


@pytest.mark.slow
def test_eval_of_a_truncated_checkpoint_is_one_line_exit_2_and_leaves_no_run_dir(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "offline"}
    result = run_script("eval.py", f"ckpt_path={bad}", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"error: ckpt_path: got '{bad}', expected a readable checkpoint: the "
                                                  "file is truncated (a full disk or a kill while saving) or not a checkpoint"]
    assert not list((tmp_path / "outputs" / "runs").iterdir())  # the eval run dir Hydra made is gone again
