"""Every config option composes, validates and instantiates; bad values stop with one line naming the key."""
from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException

from genlab.config import validate
from genlab.errors import ConfigError
from genlab.pipeline import build_callbacks, build_datamodule, build_loggers, build_module, build_trainer
from genlab.training.optim import build_optimizer, build_scheduler, scale_learning_rate

from conftest import CONF_DIR, write_imagefolder

GROUPS = ["data", "augmentation", "model", "optimizer", "scheduler", "trainer", "logger", "callbacks"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))  # _common: shared keys


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_validates_and_instantiates(make_cfg, group, option, tmp_path):
    if option == "gpu" and not torch.cuda.is_available():
        pytest.skip("trainer=gpu needs a CUDA GPU")
    # an image folder's classes come from its folders, so it needs some
    folder = [f"data.data_dir={write_imagefolder(tmp_path / 'images', train=1, test=1)}"] if option == "imagefolder" else []
    cfg = make_cfg(f"{group}={option}", *folder, fast=False)
    validate(cfg)
    datamodule = build_datamodule(cfg.data, cfg.seed, cfg.augmentation)
    module = build_module(cfg, datamodule)
    loggers = build_loggers(cfg.get("logger"), cfg.task_name)
    trainer = build_trainer(cfg, loggers, build_callbacks(cfg.get("callbacks"), bool(loggers)))
    optimizer = build_optimizer(module.net, scale_learning_rate(module.hparams.optimizer, cfg.data.batch_size))
    build_scheduler(optimizer, module.hparams.scheduler, total_steps=100, max_epochs=cfg.trainer.max_epochs)
    assert datamodule.info.name == cfg.data.name and trainer.max_epochs == cfg.trainer.max_epochs


def test_eval_config_composes(make_cfg):
    cfg = make_cfg("ckpt_path=x.ckpt", fast=False, config_name="eval")
    assert cfg.ckpt_path == "x.ckpt" and cfg.seed is None


def test_unknown_group_option_lists_the_choices(make_cfg):
    with pytest.raises(ConfigCompositionException) as err:
        make_cfg("model=nope")
    assert "simple_cnn" in str(err.value.__cause__ or err.value) or "Available options" in str(err.value.__cause__ or err.value)


@pytest.mark.parametrize(
    "override,key,expected",
    [
        ("optimizer.lr=-0.1", "optimizer.lr", "a number > 0"),
        ("data.batch_size=0", "data.batch_size", "an integer >= 1"),
        ("data.val_size=0", "data.val_size", "a count >= 1"),
        ("trainer.max_epochs=0", "trainer.max_epochs", "an integer >= 1"),
        ("trainer.precision=8", "trainer.precision", "one of"),
        ("scheduler.warmup_epochs=100", "scheduler.warmup_epochs", "[0, trainer.max_epochs=30]"),
        ("optimizer.weight_decay=-1", "optimizer.weight_decay", ">= 0"),
        ("+model.depthh=3", "model.depthh", "a knob of simple_cnn"),
        ("model.channels_last=yes", "model.channels_last", "true or false"),
        ("model.compile=1", "model.compile", "true or false"),
        ("optimizer.implementation=fast", "optimizer.implementation", "one of ['auto', 'fused', 'foreach', 'for_loop']"),
        ("optimizer._target_=torch.optim.Nope", "optimizer._target_", "an optimizer class"),
        ("data.label_noise_kind=flip", "data.label_noise_kind", "one of ['uniform', 'other_class']"),
        ("regularization=early_stopping callbacks=none", "callbacks.early_stopping.enabled", "the callbacks group has no"),
    ],
)
def test_invalid_values_name_key_value_and_what_is_allowed(make_cfg, override, key, expected):
    cfg = make_cfg(*override.split(), fast=False)
    with pytest.raises(ConfigError) as err:
        validate(cfg, cuda_available=False)
    message = str(err.value)
    assert message.startswith(f"{key}: got ") and expected in message
    assert "\n" not in message


def test_float16_autocast_is_rejected_on_cpu(make_cfg):
    with pytest.raises(ConfigError, match=r"trainer.precision: got '16-mixed'.*CUDA"):
        validate(make_cfg("trainer.precision=16-mixed", "trainer=cpu"), cuda_available=False)


def test_lightnings_precision_aliases_are_accepted_and_mean_what_lightning_says(make_cfg):
    from genlab.pipeline import build_trainer

    cfg = make_cfg("trainer.precision=bf16", "trainer=cpu")
    validate(cfg, cuda_available=False)
    assert build_trainer(cfg, [], []).precision == "bf16-mixed"
    validate(make_cfg("trainer.precision=16", "trainer=gpu"), cuda_available=True)  # 16-mixed, Lightning's alias
    with pytest.raises(ConfigError, match=r"trainer.precision: got 16, expected .*CUDA"):
        validate(make_cfg("trainer.precision=16", "trainer=cpu"), cuda_available=False)
    with pytest.raises(ConfigError, match=r"optimizer.implementation: got 'fused'.*Lightning does not clip"):
        validate(make_cfg("optimizer.implementation=fused", "trainer.precision=bf16", "trainer.gradient_clip_val=1.0"),
                 cuda_available=False)


def test_fused_with_clipping_under_mixed_precision_is_rejected_before_training(make_cfg):
    cfg = make_cfg("optimizer.implementation=fused", "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0")
    with pytest.raises(ConfigError, match=r"optimizer.implementation: got 'fused'.*Lightning does not clip"):
        validate(cfg, cuda_available=False)


def test_model_knob_values_are_checked_when_built(make_cfg):
    cfg = make_cfg("model=resnet", "model.depth=19")
    with pytest.raises(ConfigError, match=r"model.depth: got 19, expected one of \[18, 20, 32, 34, 44, 50, 56, 110\]"):
        build_module(cfg, build_datamodule(cfg.data, cfg.seed))


def test_val_size_larger_than_the_training_set_is_rejected_before_training(make_cfg):
    cfg = make_cfg("data.val_size=5000")
    validate(cfg)
    datamodule = build_datamodule(cfg.data, cfg.seed)
    datamodule.prepare_data()
    with pytest.raises(ConfigError, match=r"data.val_size: got 5000, expected a count in \[1, 1436\]"):
        datamodule.setup("fit")


def test_early_stopping_preset_switches_the_callback_on_by_composition(make_cfg):
    cfg = make_cfg("regularization=early_stopping")
    assert cfg.callbacks.early_stopping.enabled and cfg.callbacks.early_stopping.patience == 10
    stoppers = [c for c in build_callbacks(cfg.callbacks, have_loggers=True) if type(c).__name__ == "EarlyStopping"]
    assert len(stoppers) == 1 and stoppers[0].patience == 10 and stoppers[0].monitor == "val/loss"
    validate(make_cfg("regularization=none", "callbacks=none", fast=False), cuda_available=False)


@pytest.mark.parametrize("optimizer,momentum", [("adamw", lambda g: g["betas"]), ("sgd", lambda g: g["momentum"])])
def test_onecycle_changes_the_learning_rate_only(make_cfg, optimizer, momentum):
    """torch's OneCycleLR also cycles SGD's momentum and Adam's beta1 between 0.85 and 0.95 unless told not to: a second
    factor in a comparison of schedules. scheduler.cycle_momentum=true asks for it."""
    cfg = make_cfg("scheduler=onecycle", f"optimizer={optimizer}")
    optimizer_ = build_optimizer(torch.nn.Linear(2, 2), {k: v for k, v in cfg.optimizer.items() if k not in ("lr_scaling", "base_batch_size")})
    group = optimizer_.param_groups[0]
    before = momentum(group)
    scheduler = build_scheduler(optimizer_, dict(cfg.scheduler), total_steps=20, max_epochs=1)["scheduler"]
    lrs, momenta = [], []
    for _ in range(19):
        optimizer_.step()
        scheduler.step()
        lrs.append(group["lr"])
        momenta.append(momentum(group))
    assert len(set(lrs)) > 10 and all(m == before for m in momenta)
    cycling = make_cfg("scheduler=onecycle", f"optimizer={optimizer}", "scheduler.cycle_momentum=true")
    optimizer_ = build_optimizer(torch.nn.Linear(2, 2), {k: v for k, v in cycling.optimizer.items() if k not in ("lr_scaling", "base_batch_size")})
    build_scheduler(optimizer_, dict(cycling.scheduler), total_steps=20, max_epochs=1)
    assert momentum(optimizer_.param_groups[0]) != before  # torch's cycle starts at max_momentum 0.95


@pytest.mark.parametrize("overrides", [
    [],
    ["trainer.max_epochs=3", "trainer=ddp", "model=resnet", "model.depth=56"],  # a value before the group it is in
    ["experiment=regularization_ablation", "regularization=dropout", "seed=4", "optimizer.lr=0.01"],
    ["experiment=long_tail_smoke", "debug=fdr", "analysis/measures=all", "data.batch_size=16", "ckpt_path=null"],
    ["data=cifar10", "augmentation=strong", "augmentation.mixup_alpha=0.2", "callbacks.early_stopping.enabled=true"],
], ids=["defaults", "value_then_group", "experiment", "nested_group", "data"])
def test_the_tests_compose_configs_as_hydra_does(overrides):
    """conftest's compose_like_hydra (the defaults tree kept per group choice, the values applied to a copy) gives
    Hydra's own composition: the same keys, values, interpolations and struct flag."""
    from omegaconf import OmegaConf

    from conftest import FAST, compose_like_hydra, hydra_compose

    for case in (overrides, [*FAST, *overrides]):
        expected = hydra_compose("train", case)
        for _ in range(2):  # the second from the kept tree
            got = compose_like_hydra("train", case)
            assert OmegaConf.to_yaml(got) == OmegaConf.to_yaml(expected)
            assert OmegaConf.is_struct(got) and OmegaConf.is_struct(expected)
    with pytest.raises(ConfigCompositionException) as hydra_error:
        hydra_compose("train", [*overrides, "optimizer.lrr=0.1"])
    with pytest.raises(ConfigCompositionException) as our_error:
        compose_like_hydra("train", [*overrides, "optimizer.lrr=0.1"])
    assert str(our_error.value) == str(hydra_error.value)
