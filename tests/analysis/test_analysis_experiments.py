"""Experiment presets compose with their sweep; each _smoke twin runs on digits; every job config validates; the
single-run speed preset composes to its recipe and its smoke twin trains; the batch-size and label-noise studies use
the rules their papers do."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from genlab.config import validate
from genlab.data.strategies import TrainingSetPlan
from genlab.pipeline import run
from genlab.training.optim import scale_learning_rate

from conftest import CONF_DIR, FAST, compose_config

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
SINGLE_RUNS = ("cifar10_speed", "cifar10_speed_smoke")  # presets of one run, not a sweep
# Smoke twins whose effect needs more than a few epochs to show (on a smaller training set, so no longer to run)
SMOKE_EPOCHS = {"label_noise_smoke": 30, "generalization_measures_smoke": 8}


def sweep_of(name: str) -> dict[str, list[str]]:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}"], return_hydra_config=True)
    return {k: str(v).split(",") for k, v in (cfg.hydra.sweeper.params or {}).items()}


def test_every_preset_has_a_smoke_twin():
    full = [e for e in EXPERIMENTS if not e.endswith("_smoke")]
    assert {f"{e}_smoke" for e in full} <= set(EXPERIMENTS) and len(full) >= 6


@pytest.mark.parametrize("name", [e for e in EXPERIMENTS if e not in SINGLE_RUNS])
def test_every_value_of_the_sweep_composes_and_validates(name, tmp_path):
    params = sweep_of(name)
    assert math.prod(len(values) for values in params.values()) >= 2
    # Jobs that between them set every value of every swept key (9 for 9 presets x 3 seeds): what one key's value can
    # break shows in any job with it, and the 27 compositions of the whole product would cost ~8 s.
    width = max(len(values) for values in params.values())
    jobs = [[f"{key}={values[i % len(values)]}" for key, values in params.items()] for i in range(width)]
    for i, job in enumerate(jobs):
        cfg = compose_config([f"experiment={name}", *job], tmp_path / str(i))
        validate(cfg, cuda_available=False)
        if name.endswith("_smoke"):
            assert cfg.data.name == "digits" and cfg.trainer.max_epochs <= SMOKE_EPOCHS.get(name, 4)


def test_the_speed_preset_is_one_run_of_the_records_recipe_and_validates(tmp_path):
    assert sweep_of("cifar10_speed") == {} and sweep_of("cifar10_speed_smoke") == {}
    assert compose_config(["experiment=cifar10_speed"], tmp_path).data.loader == "gpu"
    cfg = compose_config(["experiment=cifar10_speed"], tmp_path)
    validate(cfg, cuda_available=True)
    recipe = {"data.name": "cifar10", "data.batch_size": 512, "model.name": "wide_resnet", "model.depth": 16,
              "model.width": 4, "model.norm": "batch", "model.channels_last": True,
              "optimizer._target_": "torch.optim.SGD", "optimizer.nesterov": True, "scheduler.name": "cosine",
              "scheduler.warmup_epochs": 2, "loss.label_smoothing": 0.2, "augmentation.name": "standard",
              "augmentation.crop_padding": 0.0625, "augmentation.hflip": True, "trainer.accelerator": "gpu",
              "trainer.precision": "bf16-mixed", "trainer.max_epochs": 10}
    assert {key: OmegaConf.select(cfg, key) for key in recipe} == recipe


def test_the_speed_smoke_twin_trains_on_the_cpu_in_process(tmp_path):
    cfg = compose_config([*FAST, "experiment=cifar10_speed_smoke"], tmp_path / "run")
    assert cfg.data.name == "digits" and cfg.trainer.accelerator == "cpu" and cfg.trainer.precision == "bf16-mixed"
    assert cfg.model.channels_last and cfg.model.name == "wide_resnet"
    metrics = run(cfg)
    assert all(math.isfinite(v) for v in metrics.values()) and 0 <= metrics["test/acc"] <= 1
    assert (tmp_path / "run" / "results.json").is_file()


@pytest.mark.parametrize("name", ["batch_size", "batch_size_smoke"])
def test_the_batch_size_study_scales_adams_learning_rate_by_the_square_root(name, tmp_path):
    """Adam-family optimizers scale lr with sqrt(batch) (Malladi et al. 2022); linear (SGD's rule, Goyal et al. 2017)
    took AdamW to 8x its lr at batch 1024, so the largest batches measured divergence, not batch size."""
    cfg = compose_config([f"experiment={name}", "data.batch_size=1024"], tmp_path)
    assert cfg.optimizer._target_ == "torch.optim.AdamW"
    lr = scale_learning_rate(OmegaConf.to_container(cfg.optimizer), 1024)["lr"]
    assert lr == pytest.approx(3e-3 * math.sqrt(1024 / 128))  # 0.0085, not 0.024
    sgd = compose_config([f"experiment={name}", "optimizer=sgd", "optimizer.lr_scaling=linear"], tmp_path)
    assert scale_learning_rate(OmegaConf.to_container(sgd.optimizer), 1024)["lr"] == pytest.approx(0.05 * 8)


@pytest.mark.parametrize("name", ["label_noise", "label_noise_smoke"])
def test_the_label_noise_study_uses_zhang_et_als_uniform_random_labels(name, tmp_path):
    cfg = compose_config([f"experiment={name}", "data.label_noise=1.0"], tmp_path)
    assert cfg.data.label_noise_kind == "uniform"
    labels = np.repeat(np.arange(10), 500)
    plan = TrainingSetPlan(label_noise=cfg.data.label_noise, label_noise_kind=cfg.data.label_noise_kind)
    _, noisy, record = plan.apply(labels, 10, seed=1)
    # random labels: about 1 in 10 still names the true class (chance), not 0 as with other_class
    assert 0.08 < np.mean(noisy == labels) < 0.12 and record["label_noise_kind"] == "uniform"


def test_the_label_noise_smoke_twin_shows_memorisation(tmp_path):
    """Its two jobs as they run (validation only at the end, a speed knob): random labels are fitted beyond chance on
    the training set while the test set stays near chance, a gap far above the clean run's; the compared weights are
    the last epoch's (final/*), as the study says."""
    gaps = {}
    for noise in ("0.0", "1.0"):
        cfg = compose_config([*FAST, "experiment=label_noise_smoke", f"data.label_noise={noise}",
                              "trainer.check_val_every_n_epoch=30"], tmp_path / noise)
        metrics = run(cfg)
        gaps[noise] = metrics["final/gap/acc"]
    assert metrics["final/train_eval/acc"] > 0.4 and metrics["final/test/acc"] < 0.2
    assert gaps["1.0"] > gaps["0.0"] + 0.3, gaps
