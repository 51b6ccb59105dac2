"""SAM and ASAM (regularization=sam|asam): one step against a two-pass step computed by hand, batch-norm statistics of
the first pass only, the same through Lightning's automatic optimization, and the combinations refused in one line."""
from __future__ import annotations

import copy

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from torch import nn

import genlab.pipeline as pipeline
from genlab.config import validate
from genlab.errors import ConfigError
from genlab.training.sam import SharpnessAware


def squared_error_gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d/dw of mean((x w - y)^2): 2/n x^T (x w - y)."""
    return 2 / len(y) * x.T @ (x @ w - y)


@pytest.mark.parametrize("adaptive,rho", [(False, 0.05), (True, 2.0)])
def test_one_step_is_the_hand_computed_two_pass_step(adaptive, rho):
    rng = np.random.default_rng(0)
    x, y, w = rng.normal(size=(8, 3)), rng.normal(size=8), np.array([0.5, -1.0, 2.0])
    lr = 0.1
    g = squared_error_gradient(w, x, y)
    e = rho * w**2 * g / np.linalg.norm(np.abs(w) * g) if adaptive else rho * g / np.linalg.norm(g)
    expected = w - lr * squared_error_gradient(w + e, x, y)

    net = nn.Linear(3, 1, bias=False).double()
    net.weight.data = torch.from_numpy(w.copy()).view(1, 3)
    optimizer = SharpnessAware(torch.optim.SGD(net.parameters(), lr=lr), net, rho, adaptive)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def closure():
        optimizer.zero_grad()
        loss = ((net(xt).squeeze(1) - yt) ** 2).mean()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    np.testing.assert_allclose(net.weight.detach().numpy().ravel(), expected, rtol=1e-10, atol=1e-12)
    assert float(loss) == pytest.approx(float(np.mean((x @ w - y) ** 2)))  # the loss at w, not at w + e


def test_a_zero_gradient_makes_no_ascent_and_no_nan():
    net = nn.Linear(2, 1)
    nn.init.zeros_(net.weight), nn.init.zeros_(net.bias)
    optimizer = SharpnessAware(torch.optim.SGD(net.parameters(), lr=0.1), net, 0.05, False)

    def closure():
        optimizer.zero_grad()
        loss = (net(torch.ones(1, 2)) * 0).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    assert torch.equal(net.weight, torch.zeros(1, 2)) and torch.equal(net.bias, torch.zeros(1))


class FirstStep(L.Callback):
    """The weights, buffers and batch of the first training step, and the weights and buffers after it."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.batch = [t.clone() for t in batch]
            self.before = copy.deepcopy(pl_module.net.state_dict())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            self.after = copy.deepcopy(pl_module.net.state_dict())
            self.totals = pl_module.train_totals.clone()


def test_a_lightning_training_step_is_the_two_pass_step_with_first_pass_batch_norm_statistics(make_cfg, monkeypatch):
    recorder = FirstStep()
    build = pipeline.build_callbacks
    monkeypatch.setattr(pipeline, "build_callbacks", lambda *a, **k: [*build(*a, **k), recorder])
    # Plain SGD at a constant rate, so the update is lr x the second pass's gradient.
    cfg = make_cfg("regularization=sam", "model.norm=batch", "model.width=8", "optimizer=sgd", "optimizer.momentum=0",
                   "optimizer.nesterov=false", "scheduler=none", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                   "trainer.gradient_clip_val=1.0", "analysis.robustness=false")
    pipeline.run(cfg)
    from genlab.pipeline import build_datamodule, build_module

    datamodule = build_datamodule(cfg.data, cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    net = build_module(cfg, datamodule).net
    net.load_state_dict(recorder.before)
    images, labels = recorder.batch
    params = [p for p in net.parameters()]

    def gradient() -> list[torch.Tensor]:
        net.zero_grad()
        nn.functional.cross_entropy(net(images), labels).backward()
        grads = [p.grad.clone() for p in params]
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
        return [g * min(1.0, 1.0 / (float(norm) + 1e-6)) for g in grads]  # Lightning's clipping by norm

    net.train()
    g = gradient()
    expected_buffers = {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}
    norm = torch.linalg.vector_norm(torch.stack([t.norm() for t in g]))
    with torch.no_grad():
        for p, gp in zip(params, g):
            p.add_(0.05 * gp / norm)
    g_perturbed = gradient()
    lr = cfg.optimizer.lr
    names = [name for name, _ in net.named_parameters()]
    for name, gp in zip(names, g_perturbed):
        expected = recorder.before[name] - lr * gp
        torch.testing.assert_close(recorder.after[name], expected, rtol=1e-4, atol=1e-6)
    for name, value in expected_buffers.items():  # one update of the running statistics: the first pass's
        torch.testing.assert_close(recorder.after[name], value, rtol=1e-5, atol=1e-6)
    assert recorder.totals[2] == len(labels)  # the step's images counted once, not once per pass


@pytest.mark.parametrize("override,message", [
    ("trainer.accumulate_grad_batches=2", "trainer.accumulate_grad_batches: got 2, expected 1 with optimizer.sam_rho > 0"),
    ("optimizer.sam_rho=-1", "optimizer.sam_rho: got -1, expected a number >= 0"),
    ("optimizer.sam_adaptive=1", "optimizer.sam_adaptive: got 1, expected true or false"),
])
def test_combinations_sam_cannot_run_are_refused_in_one_line(make_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("regularization=sam", override), cuda_available=False)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_sixteen_bit_mixed_precision_is_refused_with_sam(make_cfg):
    with pytest.raises(ConfigError, match=r"^trainer.precision: got '16-mixed', expected 32, bf16-mixed"):
        validate(make_cfg("regularization=asam", "trainer.precision=16-mixed", "trainer.accelerator=gpu"),
                 cuda_available=True)
