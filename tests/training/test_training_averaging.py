"""Weight averaging (regularization=swa|ema): the averaged weights are recomputed by hand from the weights each step or
epoch left, the batch-norm statistics from the training images, and results.json says which weights were tested."""
from __future__ import annotations

import json

import lightning.pytorch as L
import numpy as np
import pytest
import torch

import genlab.pipeline as pipeline
from genlab.errors import ConfigError
from genlab.config import validate
from genlab.training.averaging import BN_BATCH_SIZE, EMAWithWarmup

TINY = ["model.norm=batch", "model.width=8", "data.batch_size=64", "trainer.limit_train_batches=4",
        "analysis.robustness=false"]


class WeightsSeen(L.Callback):
    """Copies of the network's weights after every optimizer step and at every epoch end, what each test pass scored,
    and the module as training left it."""

    def __init__(self):
        self.steps, self.epoch_ends, self.tested = [], [], []
        self.after_training = None

    @staticmethod
    def weights(pl_module) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in pl_module.net.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(self.weights(pl_module))

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_ends.append(self.weights(pl_module))

    def on_train_end(self, trainer, pl_module):  # after the averaging callback's, which comes first in the list
        self.after_training = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}

    def on_test_epoch_start(self, trainer, pl_module):
        self.tested.append(self.weights(pl_module))


@pytest.fixture
def seen(monkeypatch):
    recorder = WeightsSeen()
    build = pipeline.build_callbacks
    monkeypatch.setattr(pipeline, "build_callbacks", lambda *a, **k: [*build(*a, **k), recorder])
    return recorder


def ema_by_hand(steps: list[dict[str, np.ndarray]], decay: float) -> dict[str, np.ndarray]:
    average = {k: v.astype(np.float64) for k, v in steps[0].items()}  # the first update copies
    for n, weights in enumerate(steps[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        average = {k: d * average[k] + (1 - d) * weights[k] for k in average}
    return average


def first_bn_mean_by_hand(datamodule, net) -> np.ndarray:
    """update_bn's running mean of the first batch-norm layer: the mean over its batches of each batch's channel mean,
    the batches being the unaugmented training images, normalised, BN_BATCH_SIZE at a time."""
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    means = []
    hook = bn.register_forward_hook(lambda m, inputs, out: means.append(inputs[0].double().mean(dim=(0, 2, 3))))
    images = datamodule.train_set.images
    with torch.no_grad():
        net.eval()
        for start in range(0, len(images), BN_BATCH_SIZE):
            net(datamodule.normalize(torch.from_numpy(images[start:start + BN_BATCH_SIZE])))
    hook.remove()
    return torch.stack(means).mean(0).numpy()


def test_ema_is_the_hand_computed_average_of_the_per_step_weights_and_is_what_was_tested(make_cfg, seen, tmp_path):
    cfg = make_cfg("regularization=ema", "trainer.max_epochs=2", *TINY)
    pipeline.run(cfg)
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(seen.steps) == 8
    expected = ema_by_hand(seen.steps, 0.999)
    final = seen.after_training
    for name, value in expected.items():
        np.testing.assert_allclose(final[name].numpy(), value, rtol=1e-5, atol=1e-6)
    # The last test pass (best checkpoint) scored the EMA of the steps up to that epoch's validation, not the
    # current weights the checkpoint keeps for resuming; the first (final/*) the EMA of all steps.
    best_epoch = record["tested"]["test"]["epoch"]
    at_best = ema_by_hand(seen.steps[:4 * (best_epoch + 1)], 0.999)
    ckpt = torch.load(record["best_checkpoint"], weights_only=False)
    for name in expected:
        np.testing.assert_allclose(seen.tested[0][name], expected[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(seen.tested[1][name], at_best[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ckpt["state_dict"][f"net.{name}"].numpy(), at_best[name], rtol=1e-5, atol=1e-6)
    assert not np.allclose(ckpt["current_model_state"][f"net.{next(iter(expected))}"].numpy(),
                           at_best[next(iter(expected))])
    for which in ("test", "final", "analysis"):
        averaged = record["tested"][which]["averaged"]
        assert (averaged["kind"], averaged["decay"]) == ("ema", 0.999)
        assert averaged["batch_norm"].startswith("recomputed with torch.optim.swa_utils.update_bn")
    assert record["tested"]["final"]["averaged"]["updates"] == 8
    assert record["tested"]["test"]["averaged"]["updates"] == 4 * (best_epoch + 1)


def test_averaged_weights_get_batch_norm_statistics_recomputed_on_the_training_images(make_cfg, seen, tmp_path):
    cfg = make_cfg("regularization=ema", "trainer.max_epochs=1", *TINY)
    pipeline.run(cfg)
    from genlab.pipeline import build_datamodule, build_module

    datamodule = build_datamodule(cfg.data, cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    module.net.load_state_dict(seen.after_training)
    running = next(v for k, v in seen.after_training.items() if k.endswith("running_mean"))
    np.testing.assert_allclose(running.numpy(), first_bn_mean_by_hand(datamodule, module.net), rtol=1e-4, atol=1e-5)


def test_swa_averages_each_epoch_end_from_its_start_and_validates_current_weights_before(make_cfg, seen, tmp_path):
    # 3 epochs x 0.54 -> epochs 1 and 2 are averaged (counted from 0); epoch 0's validation scores the current weights.
    cfg = make_cfg("regularization=swa", "trainer.max_epochs=3", "model.norm=none", *TINY[1:])
    pipeline.run(cfg)
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    expected = {k: (seen.epoch_ends[1][k] + seen.epoch_ends[2][k]) / 2 for k in seen.epoch_ends[0]}
    for name, value in expected.items():
        np.testing.assert_allclose(seen.after_training[name].numpy(), value, rtol=1e-5, atol=1e-6)
    final = record["tested"]["final"]["averaged"]
    assert (final["kind"], final["updates"], final["start_epoch"]) == ("swa", 2, 1)
    assert final["batch_norm"] == "none in the network: nothing to recompute"
    # A best checkpoint from epoch 0 or 1 holds current weights (no average existed at its validation); epoch 2's the
    # average of epoch 1's end alone.
    test = record["tested"]["test"]
    assert (test["averaged"] is False) == (test["epoch"] <= 1)
    ckpt = torch.load(record["best_checkpoint"], weights_only=False)
    first = next(iter(expected))
    epoch_weights = seen.epoch_ends[1] if test["epoch"] == 2 else seen.epoch_ends[test["epoch"]]
    np.testing.assert_allclose(ckpt["state_dict"][f"net.{first}"].numpy(), epoch_weights[first], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("override,message", [
    ("callbacks.weight_averaging.kind=polyak", "callbacks.weight_averaging.kind: got 'polyak'"),
    ("callbacks.weight_averaging.ema_decay=1.0", "callbacks.weight_averaging.ema_decay: got 1.0, expected a number in (0, 1)"),
    ("callbacks.weight_averaging.swa_start=1.0", "callbacks.weight_averaging.swa_start: got 1.0, expected a fraction in [0, 1)"),
])
def test_bad_averaging_settings_are_refused_in_one_line(make_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("regularization=ema", override))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_ema_warm_up_ramps_the_decay_to_its_dose():
    ema = EMAWithWarmup(0.999)
    assert [ema.decay_at(n) for n in (1, 8, 10_000)] == [2 / 11, 0.5, 0.999]
