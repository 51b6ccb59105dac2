"""Speed knobs: channels_last, torch.compile (and its fallback) and mixed precision, each still training correctly."""
from __future__ import annotations

import csv
import math
import time
import warnings
from pathlib import Path

import pytest
import torch

from genlab.pipeline import run
from genlab.training.module import ImageClassifier

SPEC = {"name": "simple_cnn", "in_channels": 3, "num_classes": 10, "image_size": 8, "width": 4, "hidden": 16}
FALLBACK = "the run continues uncompiled"


def classifier(**run_options) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(model=SPEC, optimizer={}, scheduler={}, data={"name": "digits", "seed": 0}, **run_options)


def images() -> torch.Tensor:
    return torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def fallback_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if FALLBACK in str(w.message)]


def test_channels_last_puts_weights_and_inputs_in_nhwc_and_computes_the_same():
    module, eager = classifier(channels_last=True).eval(), classifier().eval()
    assert module.net[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    module.net.register_forward_pre_hook(lambda net, args: seen.append(args[0]))
    torch.testing.assert_close(module(images()), eager(images()), rtol=1e-4, atol=1e-5)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not images().is_contiguous(memory_format=torch.channels_last)


def test_compiled_and_channels_last_checkpoints_have_the_plain_keys_and_load_both_ways():
    plain, fast = classifier(), classifier(channels_last=True, compile=True)
    assert list(fast.state_dict()) == list(plain.state_dict())  # eval.py and resume load either
    fast.load_state_dict(plain.state_dict())
    plain.load_state_dict(fast.state_dict())


def test_compile_where_dynamo_is_unsupported_warns_once_and_runs_eagerly(monkeypatch):
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = classifier(compile=True).eval()
        out = module(images())
    (message,) = fallback_warnings(caught)
    assert message.startswith("model.compile: torch.compile does not support Python")
    torch.testing.assert_close(out, classifier().eval()(images()))


def test_compile_failing_at_the_first_call_warns_once_and_runs_eagerly(monkeypatch):
    calls = []

    def failing_compile(net):
        def compiled(x):
            calls.append(x)
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx\nmore")
        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    module = classifier(compile=True).train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = module(images())
        module(images()).sum().backward()  # training goes on, eagerly
    (message,) = fallback_warnings(caught)
    assert "compiling failed (RuntimeError: InvalidCxxCompiler: No working C++ compiler found" in message
    assert "more" not in message and len(calls) == 1  # one try, then eager for good
    torch.testing.assert_close(out, classifier().train()(images()))


@pytest.mark.slow  # inductor compiles the forward and backward with the C++ compiler: ~10-30 s on 2 cores
def test_compile_really_compiles_a_tiny_model_on_the_cpu():
    torch._dynamo.reset()
    module, eager = classifier(compile=True).train(), classifier().train()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = module(images())
        out.sum().backward()
    assert not fallback_warnings(caught), fallback_warnings(caught)
    assert module.compiled_net.compiled is not None and torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    expected = eager(images())
    expected.sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(module.net[0][0].weight.grad, eager.net[0][0].weight.grad, rtol=1e-4, atol=1e-5)
    print(f"first compiled forward + backward: {time.perf_counter() - t0:.1f} s")


def train_losses(cfg) -> list[float]:
    rows = csv.DictReader(open(Path(cfg.paths.output_dir) / "metrics.csv"))
    return [float(row["train/loss_step"]) for row in rows if row.get("train/loss_step")]


def test_bf16_mixed_trains_on_the_cpu(make_cfg):
    # with clipping, which Lightning refuses for a fused optimizer under mixed precision: auto must avoid fused
    cfg = make_cfg("trainer=cpu", "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0",
                   "model.channels_last=true", "trainer.max_epochs=3", "analysis.robustness=false")
    metrics = run(cfg)
    losses = train_losses(cfg)
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert {"test/acc", "test/loss", "train_eval/acc", "val/acc_best", "gap/acc"} <= set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["test/acc"] > 0.5  # it learns: chance is 0.1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed needs CUDA")
@pytest.mark.parametrize("clip", ["null", "1.0"])  # null: fused SGD under the GradScaler; 1.0: auto avoids fused
def test_16_mixed_trains_on_cuda(make_cfg, clip):
    cfg = make_cfg("trainer=gpu", "trainer.precision=16-mixed", "model.channels_last=true", "optimizer=sgd",
                   f"trainer.gradient_clip_val={clip}", "trainer.max_epochs=3", "analysis.robustness=false")
    metrics = run(cfg)
    assert all(math.isfinite(loss) for loss in train_losses(cfg)) and metrics["test/acc"] > 0.5
