"""Speed knobs: channels_last and torch.compile (and its fallback), each computing what the plain network does."""
from __future__ import annotations

import time
import warnings

import pytest
import torch

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
