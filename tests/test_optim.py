"""Weight decay groups, optimizer implementations and learning-rate schedules do what their configs say."""
from __future__ import annotations

import copy
import math

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.training.module import ImageClassifier
from genlab.training.optim import (
    WarmupSchedule,
    build_optimizer,
    build_scheduler,
    clips_under_mixed_precision,
    parameter_groups,
    scale_learning_rate,
)


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_weight_decay_skips_biases_and_norm_parameters_by_default():
    net = tiny_net()
    decay, exempt = parameter_groups(net, 0.1, decay_norm_and_bias=False)
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[3].weight)}
    assert exempt["weight_decay"] == 0.0 and len(exempt["params"]) == 4  # conv bias, bn weight/bias, fc bias


def test_weight_decay_everywhere_when_asked():
    (group,) = parameter_groups(tiny_net(), 0.1, decay_norm_and_bias=True)
    assert group["weight_decay"] == 0.1 and len(group["params"]) == 6


def test_build_optimizer_passes_class_kwargs():
    opt = build_optimizer(tiny_net(), {"_target_": "torch.optim.SGD", "lr": 0.5, "momentum": 0.9, "weight_decay": 1e-4,
                                       "decay_norm_and_bias": False})
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]


def optimizer_config(target: str = "torch.optim.SGD", implementation: str = "auto") -> dict:
    return {"_target_": target, "lr": 0.1, "weight_decay": 1e-4, "decay_norm_and_bias": False,
            "implementation": implementation}


@pytest.mark.parametrize("target", ["torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW"])
def test_auto_uses_torchs_fused_kernel_where_it_has_one(target):
    opt = build_optimizer(tiny_net(), optimizer_config(target))
    assert opt.defaults["fused"] is True and opt._step_supports_amp_scaling  # what Lightning and GradScaler look at
    opt.step()  # the CPU kernel exists


def test_auto_keeps_torchs_default_where_no_fused_kernel_exists():
    rmsprop = build_optimizer(tiny_net(), optimizer_config("torch.optim.RMSprop"))
    assert rmsprop.defaults["foreach"] is None  # torch's own choice: foreach on CUDA, the for-loop elsewhere
    with torch.device("meta"):
        net = tiny_net()
    assert build_optimizer(net, optimizer_config()).defaults["fused"] is None  # no fused kernel for this device


def test_auto_avoids_fused_where_lightning_would_refuse_to_clip():
    opt = build_optimizer(tiny_net(), optimizer_config(), clip_under_mixed_precision=True)
    assert not opt.defaults["fused"]
    assert clips_under_mixed_precision("bf16-mixed", 1.0) and clips_under_mixed_precision("16-mixed", 0.5)
    assert not clips_under_mixed_precision("bf16-mixed", None) and not clips_under_mixed_precision("32-true", 1.0)


def test_lightning_still_refuses_to_clip_a_fused_optimizer_under_mixed_precision():
    """Why auto avoids fused there: if Lightning ever lifts this, the guard can go."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    opt = build_optimizer(tiny_net(), optimizer_config(implementation="fused"))
    with pytest.raises(RuntimeError, match="fused"):
        MixedPrecision("bf16-mixed", "cpu").clip_gradients(opt, clip_val=1.0)


@pytest.mark.parametrize("implementation,flags",
                         [("foreach", {"foreach": True}), ("for_loop", {"foreach": False, "fused": None}), ("fused", {"fused": True})])
def test_explicit_implementations_reach_the_optimizer(implementation, flags):
    opt = build_optimizer(tiny_net(), optimizer_config(implementation=implementation))
    assert {k: opt.defaults[k] for k in flags} == flags


@pytest.mark.parametrize("target,implementation,clip,expected", [
    ("torch.optim.SGD", "fast", False, "one of ['auto', 'fused', 'foreach', 'for_loop']"),
    ("torch.optim.RMSprop", "fused", False, "auto: RMSprop has no fused flag"),
    ("torch.optim.LBFGS", "for_loop", False, "auto: LBFGS has no foreach flag"),
    ("torch.optim.SGD", "fused", True, "Lightning does not clip a fused optimizer's gradients"),
])
def test_impossible_implementations_are_refused(target, implementation, clip, expected):
    with pytest.raises(ConfigError, match=r"^optimizer.implementation: got") as err:
        build_optimizer(tiny_net(), optimizer_config(target, implementation), clip_under_mixed_precision=clip)
    assert expected in str(err.value)


def test_fused_is_refused_for_parameters_on_a_device_without_the_kernel():
    with torch.device("meta"):
        net = tiny_net()
    with pytest.raises(ConfigError, match=r"torch has no fused SGD for parameters on \['meta'\]"):
        build_optimizer(net, optimizer_config(implementation="fused"))


@pytest.mark.parametrize("target", ["torch.optim.SGD", "torch.optim.Adam"])
def test_a_resumed_optimizer_keeps_the_implementation_it_was_built_with(target):
    """A checkpoint saved with the for-loop (e.g. before auto chose fused) resumes into a fused optimizer, and steps
    correctly under a GradScaler, which lets a fused optimizer unscale its own gradients."""
    net = tiny_net()
    images = torch.randn(4, 1, 3, 3)
    old = build_optimizer(net, optimizer_config(target, "for_loop"))
    net(images).sum().backward()
    old.step()
    resumed, reference = (build_optimizer(net, optimizer_config(target, impl)) for impl in ("auto", "for_loop"))
    resumed.load_state_dict(copy.deepcopy(old.state_dict()))  # loading may share the saved state's tensors
    reference.load_state_dict(copy.deepcopy(old.state_dict()))
    assert resumed.param_groups[0]["fused"] is True and not reference.param_groups[0]["fused"]
    start = [p.detach().clone() for p in net.parameters()]
    ends = []
    for optimizer, scaler in ((resumed, torch.amp.GradScaler("cpu")), (reference, None)):
        with torch.no_grad():
            for p, p0 in zip(net.parameters(), start):
                p.copy_(p0)
        net.zero_grad()
        loss = net(images).sum()
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
        else:
            loss.backward()
            optimizer.step()
        ends.append([p.detach().clone() for p in net.parameters()])
    for fused_end, loop_end in zip(*ends):
        torch.testing.assert_close(fused_end, loop_end, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision,clip,fused",
                         [("bf16-mixed", None, True), ("bf16-mixed", 1.0, False), ("32-true", 1.0, True)])
def test_the_module_builds_the_optimizer_for_its_trainers_precision_and_clipping(precision, clip, fused):
    spec = {"name": "simple_cnn", "in_channels": 1, "num_classes": 10, "image_size": 8, "width": 2, "hidden": 8}
    module = ImageClassifier(model=spec, optimizer=optimizer_config(), scheduler={"name": "none"},
                             data={"name": "digits", "seed": 0})
    module.trainer = SimpleNamespace(precision=precision, gradient_clip_val=clip, estimated_stepping_batches=10,
                                     max_epochs=1)
    assert bool(module.configure_optimizers().defaults["fused"]) is fused


def test_cosine_with_warmup_rises_linearly_then_decays_to_the_floor():
    rule = WarmupSchedule("cosine", total_steps=100, steps_per_epoch=10, warmup_epochs=1, min_lr_ratio=0.1)
    assert rule(0) == pytest.approx(0.1) and rule(9) == pytest.approx(1.0)
    assert rule(10) == pytest.approx(1.0)
    assert rule(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert rule(100) == pytest.approx(0.1)


def test_step_schedule_decays_every_step_size_epochs():
    rule = WarmupSchedule("step", total_steps=100, steps_per_epoch=10, step_size=3, gamma=0.5)
    assert [rule(s) for s in (0, 29, 30, 60)] == [1.0, 1.0, 0.5, 0.25]


def test_onecycle_peaks_at_lr():
    opt = torch.optim.SGD(tiny_net().parameters(), lr=0.2)
    sched = build_scheduler(opt, {"name": "onecycle", "pct_start": 0.5, "div_factor": 10.0, "final_div_factor": 100.0}, 10, 1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched["scheduler"].step()
    assert lrs[0] == pytest.approx(0.02) and max(lrs) == pytest.approx(0.2, rel=0.05)


def test_no_scheduler():
    assert build_scheduler(torch.optim.SGD(tiny_net().parameters(), lr=0.1), {"name": "none"}, 10, 1) is None


@pytest.mark.parametrize("rule,batch,lr", [("none", 512, 0.1), ("linear", 512, 0.4), ("linear", 64, 0.05), ("sqrt", 512, 0.2)])
def test_learning_rate_scales_with_the_global_batch(rule, batch, lr):
    scaled = scale_learning_rate({"lr": 0.1, "lr_scaling": rule, "base_batch_size": 128, "momentum": 0.9}, batch)
    assert scaled == {"lr": pytest.approx(lr), "momentum": 0.9}


SCHEDULES = [{"name": "cosine", "warmup_epochs": 1, "min_lr_ratio": 0.0}, {"name": "step", "step_size": 1, "gamma": 0.5},
             {"name": "onecycle", "pct_start": 0.25, "div_factor": 25.0, "final_div_factor": 1e4}]


def stepped(config: dict, total_steps: int, epochs: int, steps: int, state: dict | None = None):
    """An AdamW optimizer and its schedule of `total_steps` (`epochs` epochs), optionally loaded from `state` (as
    Lightning resumes: optimizer first, then scheduler), then stepped `steps` times."""
    optimizer = torch.optim.AdamW(tiny_net().parameters(), lr=0.1)
    scheduler = build_scheduler(optimizer, config, total_steps, epochs)["scheduler"]
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return optimizer, scheduler


def saved_state(optimizer, scheduler) -> dict:
    """What a checkpoint keeps of them, as Lightning saves it."""
    return {"optimizer": copy.deepcopy(optimizer.state_dict()), "scheduler": copy.deepcopy(scheduler.state_dict())}


def lrs_and_betas(optimizer) -> list[float]:
    """Every scheduled value: lr, and the betas onecycle cycles."""
    return [value for group in optimizer.param_groups for value in (group["lr"], *group["betas"])]


@pytest.mark.parametrize("config", SCHEDULES, ids=lambda c: c["name"])
def test_a_resumed_schedule_keeps_the_length_of_the_resumed_run(config, recwarn):
    # Train 1 epoch of 10 steps, then resume for 2 epochs: the schedule must be the 2-epoch one from step 10 on, as if
    # the run had been started for 2 epochs (torch's load restored the 1-epoch length: lr 0 for the extra epoch).
    resumed_opt, resumed = stepped(config, 20, 2, 0, saved_state(*stepped(config, 10, 1, 10)))
    never_stopped_opt, never_stopped = stepped(config, 20, 2, 10)
    assert lrs_and_betas(resumed_opt) == pytest.approx(lrs_and_betas(never_stopped_opt))
    assert resumed.last_epoch == 10 and resumed_opt.param_groups[0]["lr"] > 0.01
    for _ in range(5):
        for opt, sched in ((resumed_opt, resumed), (never_stopped_opt, never_stopped)):
            opt.step()
            sched.step()
    assert resumed.get_last_lr() == pytest.approx(never_stopped.get_last_lr())
    assert any("trainer.max_epochs changed on resume" in str(w.message) for w in recwarn)


@pytest.mark.parametrize("config", SCHEDULES, ids=lambda c: c["name"])
def test_a_resume_of_the_same_length_loads_exactly_what_torch_loads(config, recwarn):
    resumed_opt, resumed = stepped(config, 20, 2, 6, saved_state(*stepped(config, 20, 2, 7)))
    never_stopped_opt, _ = stepped(config, 20, 2, 13)
    assert lrs_and_betas(resumed_opt) == lrs_and_betas(never_stopped_opt)  # bit-identical: exact resume
    assert not [w for w in recwarn if "max_epochs" in str(w.message)]


def test_resuming_past_the_end_of_a_shorter_schedule_is_refused():
    config = SCHEDULES[2]
    state = saved_state(*stepped(config, 20, 2, 20))
    with pytest.raises(ConfigError, match=r"trainer.max_epochs: got 'a length of 10 optimizer steps', expected at least "
                                          r"the 20 steps"):
        stepped(config, 10, 1, 0, state)
