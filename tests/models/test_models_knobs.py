"""Every family under every allowed norm x activation x conv x pool combination, every input shape, every bad value."""
from __future__ import annotations

import itertools

import pytest
import torch

from genlab.errors import ConfigError
from genlab.models import LogitsWithAux, available_models, build_model, model_knobs
from genlab.models.layers import ACTIVATIONS, CONVS, NORMS, POOLS, DropPath, make_conv


# Knobs that shrink each family to a few channels, so hundreds of combinations run in seconds.
TINY = {
    "simple_cnn": {"width": 2, "hidden": 8},
    "lenet5": {},
    "alexnet": {"width": 2, "hidden": 8},
    "vgg": {"depth": 11, "width": 2},
    "googlenet": {"width": 1 / 16},
    "resnet": {"depth": 20, "width": 2},
    "preact_resnet": {"width": 2},
    "wide_resnet": {"depth": 10, "width": 0.25},
}
AXES = {"norm": NORMS, "activation": ACTIVATIONS, "conv": CONVS, "pool": POOLS}
SHAPES = [(1, 28), (3, 32)]
DATA_SHAPES = [(1, 8), (1, 28), (3, 32), (3, 64), (3, 96)]  # digits, MNIST, CIFAR-10, and two larger sizes


def combinations() -> list:
    cases = []
    for family in sorted(TINY):
        axes = {k: v for k, v in AXES.items() if k in model_knobs(family)}
        cases += [pytest.param(family, dict(zip(axes, combo)), id=f"{family}-{'-'.join(combo)}")
                  for combo in itertools.product(*axes.values())]
    return cases


def every_logit(output) -> list[torch.Tensor]:
    return [output.logits, *output.aux] if isinstance(output, LogitsWithAux) else [output]


def test_every_family_has_tiny_knobs():
    assert sorted(TINY) == available_models()


@pytest.mark.parametrize("family,knobs", combinations())
def test_combination_trains_a_step_on_mnist_and_cifar_shapes(family, knobs):
    torch.manual_seed(0)
    for channels, size in SHAPES:
        net = build_model(family, channels, 10, size, **TINY[family], **knobs).train()
        outputs = every_logit(net(torch.randn(2, channels, size, size)))
        assert all(logits.shape == (2, 10) and torch.isfinite(logits).all() for logits in outputs)
        sum(logits.square().mean() for logits in outputs).backward()
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("family", sorted(TINY))
@pytest.mark.parametrize("channels,size", DATA_SHAPES, ids=[f"{c}x{s}x{s}" for c, s in DATA_SHAPES])
def test_every_family_takes_every_data_shape(family, channels, size):
    net = build_model(family, channels, 7, size, **TINY[family]).eval()
    with torch.no_grad():
        assert net(torch.randn(2, channels, size, size)).shape == (2, 7)


@pytest.mark.parametrize(
    "family,knobs",
    [("resnet", {"depth": d, "width": 2}) for d in (20, 32, 44, 56, 110, 18, 34, 50)]
    + [("vgg", {"depth": d, "width": 2}) for d in (11, 13, 16, 19)]
    + [("vgg", {"depth": 11, "width": 2, "hidden": 8, "dropout": 0.5}),
       ("preact_resnet", {"depth": 34, "width": 2}), ("wide_resnet", {"depth": 16, "width": 0.5}),
       ("googlenet", {"width": 1 / 16, "factorize_5x5": True, "aux_weight": 0}),
       ("resnet", {"depth": 20, "width": 2, "drop_path": 0.2, "zero_init_residual": True, "dropout": 0.1}),
       ("preact_resnet", {"width": 2, "drop_path": 0.2, "zero_init_residual": True}),
       ("lenet5", {"activation": "leaky_relu", "negative_slope": 0.2, "init": "kaiming", "dropout": 0.5}),
       ("simple_cnn", {"conv": "dilated", "dilation": 3, "kernel_size": 5, "init": "xavier"})],
    ids=str,
)
def test_depths_and_other_knobs_build_and_run(family, knobs):
    net = build_model(family, 3, 10, 32, **knobs).train()
    sum(logits.sum() for logits in every_logit(net(torch.randn(2, 3, 32, 32)))).backward()


@pytest.mark.parametrize(
    "family,knobs,key,expected",
    [
        ("vgg", {"norm": "bn"}, "model.norm", "one of ['batch', 'group', 'layer', 'none']"),
        ("resnet", {"activation": "swish"}, "model.activation", "one of ['relu', 'leaky_relu', 'elu', 'gelu'"),
        ("lenet5", {"conv": "deformable"}, "model.conv", "one of ['standard', 'dilated', 'separable']"),
        ("googlenet", {"pool": "min"}, "model.pool", "one of ['max', 'avg']"),
        ("alexnet", {"init": "orthogonal"}, "model.init", "one of ['kaiming', 'xavier', 'pytorch']"),
        ("resnet", {"depth": 19}, "model.depth", "one of [18, 20, 32, 34, 44, 50, 56, 110]"),
        ("vgg", {"depth": 15}, "model.depth", "one of [11, 13, 16, 19]"),
        ("wide_resnet", {"depth": 27}, "model.depth", "6n + 4"),
        ("resnet", {"residual": False, "drop_path": 0.1}, "model.drop_path", "0 when model.residual is false"),
        ("resnet", {"drop_path": 1.0}, "model.drop_path", "a probability in [0, 1)"),
        ("simple_cnn", {"dropout": -0.1}, "model.dropout", "a probability in [0, 1)"),
        ("wide_resnet", {"block_dropout": 2}, "model.block_dropout", "a probability in [0, 1)"),
        ("vgg", {"width": 0}, "model.width", "an integer >= 1"),
        ("googlenet", {"width": -1.0}, "model.width", "a number > 0"),
        ("googlenet", {"aux_weight": -0.3}, "model.aux_weight", "a number >= 0"),
        ("simple_cnn", {"negative_slope": -1}, "model.negative_slope", "a number >= 0"),
        ("lenet5", {"dilation": 0}, "model.dilation", "an integer >= 1"),
        ("vgg", {"hidden": -5}, "model.hidden", "0 (one linear layer)"),
        ("resnet", {"kernel_size": 3}, "model.kernel_size", "a knob of resnet"),
    ],
    ids=str,
)
def test_bad_knob_values_name_the_key_and_the_allowed_values(family, knobs, key, expected):
    with pytest.raises(ConfigError) as err:
        build_model(family, 3, 10, 32, **knobs)
    assert str(err.value).startswith(f"{key}: got ") and expected in str(err.value)


@pytest.mark.parametrize("family,size,minimum", [("alexnet", 4, 8), ("resnet", 4, 8), ("simple_cnn", 2, 4)])
def test_inputs_too_small_for_the_pooling_are_rejected_by_data_image_size(family, size, minimum):
    with pytest.raises(ConfigError, match=rf"data.image_size: got {size}, expected >= {minimum}"):
        build_model(family, 1, 10, size)


@pytest.mark.parametrize("kind", CONVS)
@pytest.mark.parametrize("kernel_size,padding", [(3, 1), (5, 0)])
def test_conv_kinds_keep_the_standard_convs_output_size(kind, kernel_size, padding):
    conv = make_conv(kind, 4, 6, kernel_size, stride=2, padding=padding, dilation=3)
    standard = make_conv("standard", 4, 6, kernel_size, stride=2, padding=padding)
    x = torch.randn(1, 4, 17, 17)
    assert conv(x).shape == standard(x).shape
    if kind == "separable":
        assert conv[0].groups == 4 and conv[1].kernel_size == (1, 1)


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    drop, x = DropPath(0.5), torch.ones(64, 3, 4, 4)
    out = drop.train()(x)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}  # survivors rescaled by 1 / (1 - p)
    assert all(len(row.unique()) == 1 for row in per_sample)
    assert torch.equal(drop.eval()(x), x)
