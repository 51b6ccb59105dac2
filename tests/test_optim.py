"""Weight decay groups and learning-rate schedules do what their configs say."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.training.optim import WarmupSchedule, build_optimizer, build_scheduler, parameter_groups, scale_learning_rate


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
