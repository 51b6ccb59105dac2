"""Regularization strategies: presets isolate one factor; L1 and weight decay act on the updates as documented."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from genlab.errors import ConfigError
from genlab.training.losses import Objective
from genlab.training.optim import build_optimizer
from genlab.training.regularization import apply_regularization, l1_penalty

from conftest import CONF_DIR

PRESETS = sorted(p.stem for p in (CONF_DIR / "regularization").glob("*.yaml") if p.stem not in ("default", "none", "all"))


def flat(cfg) -> dict:
    def walk(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    return dict(walk(OmegaConf.to_container(cfg, resolve=True)))


def effective(make_cfg, *overrides):
    cfg = make_cfg(*overrides)
    apply_regularization(cfg)
    return flat(cfg)


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_changes_only_its_own_knob(make_cfg, preset):
    base, other = effective(make_cfg, "regularization=none"), effective(make_cfg, f"regularization={preset}")
    changed = {k for k in base if base[k] != other[k]} - {"regularization.name"}
    knobs = {k for k in changed if k.startswith("regularization.")}
    assert len(knobs) == 1, changed  # exactly one strategy knob …
    knob = knobs.pop().split(".", 1)[1]
    forwarded = {"dropout": "model.dropout", "weight_decay": "optimizer.weight_decay", "l1": "loss.l1", "norm": "model.norm",
                 "label_smoothing": "loss.label_smoothing", "early_stopping": "callbacks.early_stopping.enabled",
                 "mixup_alpha": "augmentation.mixup_alpha"}
    targets = changed - {f"regularization.{knob}"}
    if knob in forwarded:  # … and only the keys it is forwarded to
        assert forwarded[knob] in targets
    assert all(t.split(".")[0] in ("model", "optimizer", "loss", "callbacks", "trainer", "augmentation", "data") for t in targets)


def test_all_is_every_preset_at_its_own_value(make_cfg):
    everything = make_cfg("regularization=all").regularization
    for preset in PRESETS:
        own = make_cfg(f"regularization={preset}").regularization
        base = make_cfg("regularization=none").regularization
        for knob in own:
            if knob != "name" and own[knob] != base[knob]:
                assert everything[knob] == own[knob], (preset, knob)


def test_default_leaves_the_model_as_configured(make_cfg):
    assert effective(make_cfg, "model=resnet")["model.norm"] == "batch"
    assert effective(make_cfg, "model=resnet", "regularization=none")["model.norm"] == "none"


def test_a_knob_the_model_lacks_is_rejected_unless_it_asks_for_off(make_cfg):
    with pytest.raises(ConfigError, match=r"regularization.drop_path: got 0.1, expected null for model=simple_cnn"):
        apply_regularization(make_cfg("regularization=none", "regularization.drop_path=0.1"))
    apply_regularization(make_cfg("regularization=none"))  # drop_path 0 on simple_cnn: already off


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def zero_grad_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """One step with a zero data gradient, so only the regularization moves the parameters."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}, before


def test_sgd_weight_decay_is_coupled_and_skips_biases():
    model = tiny()
    opt = build_optimizer(model, {"_target_": "torch.optim.SGD", "lr": 0.1, "weight_decay": 0.01, "decay_norm_and_bias": False})
    delta, before = zero_grad_step(model, opt)
    assert torch.allclose(delta["0.weight"], -0.1 * 0.01 * before["0.weight"]) and delta["0.bias"].abs().max() == 0


def test_adam_decay_is_coupled_but_adamw_decay_is_decoupled():
    lr, wd = 0.1, 0.01
    model = tiny()
    adam = build_optimizer(model, {"_target_": "torch.optim.Adam", "lr": lr, "weight_decay": wd, "decay_norm_and_bias": False})
    delta, before = zero_grad_step(model, adam)
    # coupled: wd * w enters the gradient and is normalised by Adam -> a step of ~lr against the sign of w
    assert torch.allclose(delta["0.weight"], -lr * torch.sign(before["0.weight"]), rtol=1e-3)  # eps in the denominator
    model = tiny()
    adamw = build_optimizer(model, {"_target_": "torch.optim.AdamW", "lr": lr, "weight_decay": wd, "decay_norm_and_bias": False})
    delta, before = zero_grad_step(model, adamw)
    # decoupled: the weights shrink by lr * wd * w, independent of the gradient statistics
    assert torch.allclose(delta["0.weight"], -lr * wd * before["0.weight"], atol=1e-7)  # float32 differencing
    assert delta["1.bias"].abs().max() == 0


def test_l1_penalty_adds_sign_gradients_on_weights_only():
    model = tiny()
    penalty = l1_penalty(model)
    assert penalty.item() == pytest.approx(model[0].weight.abs().sum().item() + model[1].weight.abs().sum().item())
    penalty.backward()
    assert torch.equal(model[0].weight.grad, torch.sign(model[0].weight.detach())) and model[0].bias.grad is None


def test_module_adds_the_l1_term_to_the_training_loss(make_cfg):
    from genlab.pipeline import build_datamodule, build_module

    cfg = make_cfg("regularization=l1")
    apply_regularization(cfg)
    module = build_module(cfg, build_datamodule(cfg.data, cfg.seed))
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    module.log = module.log_dict = lambda *a, **k: None  # outside a Trainer
    loss = module.training_step((images, labels), 0)
    expected = F.cross_entropy(module(images), labels) + 1e-5 * l1_penalty(module.net)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_loss_reduces_to_cross_entropy_and_matches_a_hand_computation():
    logits, labels = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]), torch.tensor([0, 2])
    assert Objective("focal", 0.1, 0.0)(logits, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels, label_smoothing=0.1).item(), rel=1e-6)
    p = torch.softmax(logits, 1)[torch.arange(2), labels]
    hand = (-(1 - p) ** 2 * torch.log(p)).mean()
    assert Objective("focal", 0.0, 2.0)(logits, labels).item() == pytest.approx(hand.item(), rel=1e-6)
    weights = torch.tensor([1.0, 1.0, 3.0])
    assert Objective("cross_entropy", class_weights=weights)(logits, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels, weight=weights).item())
