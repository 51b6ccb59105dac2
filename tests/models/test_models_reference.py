"""The networks are the published ones: parameter counts, plain nets without skips, GoogLeNet's aux heads, LeNet-5's
black field, FLOPs."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.data.catalog import dataset_info
from genlab.models import LogitsWithAux, build_model, count_flops, count_parameters
from genlab.models.presets import PRESETS, preset_command, preset_table
from genlab.models.resnet import DEPTHS as RESNET_DEPTHS

from conftest import REPO



def params_on_meta(family: str, in_channels: int = 3, **knobs) -> int:
    with torch.device("meta"):
        return count_parameters(build_model(family, in_channels, 10, 32, **knobs))


@pytest.mark.parametrize(
    "family,in_channels,knobs,reference,tolerance",
    [
        ("lenet5", 1, {}, 61_706, 0),
        ("resnet", 3, {"depth": 18}, 11_173_962, 0),
        ("resnet", 3, {"depth": 20}, 0.27e6, 0.02),
        ("resnet", 3, {"depth": 56}, 0.85e6, 0.02),
        ("resnet", 3, {"depth": 110}, 1.7e6, 0.02),  # the paper's Table 6
        ("vgg", 3, {"depth": 16, "norm": "batch"}, 14.7e6, 0.02),
        ("googlenet", 3, {"aux_weight": 0, "factorize_5x5": True}, 6.2e6, 0.02),
        ("wide_resnet", 3, {"depth": 28, "width": 10}, 36.5e6, 0.02),
        ("preact_resnet", 3, {"depth": 18}, 11.17e6, 0.02),
    ],
    ids=str,
)
def test_parameter_counts_match_the_references(family, in_channels, knobs, reference, tolerance):
    assert params_on_meta(family, in_channels, **knobs) == pytest.approx(reference, rel=tolerance)


def test_lenet5_pads_mnist_to_32_so_its_count_is_the_papers():
    with torch.device("meta"):
        assert count_parameters(build_model("lenet5", 1, 10, 28)) == 61_706
        assert count_parameters(build_model("lenet5", 1, 10, 8)) == 61_706


def test_lenet5_centres_small_inputs_in_a_black_field_not_the_mean_grey():
    """The paper centred each digit in a 32x32 field of background; normalised, background black is -mean/std."""
    from sklearn.datasets import load_digits

    info = dataset_info("digits")
    mean, std = info.mean[0], info.std[0]
    x = torch.tensor((load_digits().images[:16] / 16 - mean) / std, dtype=torch.float32).unsqueeze(1)
    torch.manual_seed(0)
    net = build_model("lenet5", 1, 10, 8).eval()
    black = F.pad(x, (12, 12, 12, 12), value=-mean / std)  # every digit has background pixels: pixel 0
    assert torch.equal(net[0](x), black)
    assert torch.equal(net(x), net[1:](black))
    torch.manual_seed(0)
    grey = build_model("lenet5", 1, 10, 8, pad="mean").eval()
    assert torch.equal(grey[0](x), F.pad(x, (12, 12, 12, 12)))  # the old border: 0, the data set's mean
    assert torch.equal(build_model("lenet5", 1, 10, 32)[0](x), x)  # 32x32 and larger: nothing to pad


def test_googlenet_aux_heads_have_their_own_dropout_knob():
    def aux_dropouts(net: nn.Module) -> list[float]:
        return [m.p for m in net.aux_heads.modules() if isinstance(m, nn.Dropout)]

    with torch.device("meta"):
        assert aux_dropouts(build_model("googlenet", 3, 10, 32)) == [0.7, 0.7]  # the paper's
        assert aux_dropouts(build_model("googlenet", 3, 10, 32, aux_dropout=0.0)) == [0.0, 0.0]


@pytest.mark.parametrize("depth", [20, 56])
def test_plain_cifar_nets_have_exactly_the_parameters_of_their_residual_twins(depth):
    assert params_on_meta("resnet", depth=depth, residual=False) == params_on_meta("resnet", depth=depth)


@pytest.mark.parametrize("depth", sorted(RESNET_DEPTHS))
def test_residual_false_removes_every_skip_connection(depth):
    """With every branch's output zeroed, only skips can carry the input: the plain net's output must not move."""
    torch.manual_seed(0)
    x1, x2 = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    plain = build_model("resnet", 3, 10, 16, depth=depth, width=2, residual=False, zero_init_residual=True).eval()
    residual = build_model("resnet", 3, 10, 16, depth=depth, width=2, zero_init_residual=True).eval()
    with torch.no_grad():
        assert torch.equal(plain(x1), plain(x2))
        assert not torch.allclose(residual(x1), residual(x2))
    assert all(block.shortcut is None for block in plain.blocks)


def test_zero_init_residual_makes_every_block_start_as_the_identity_map():
    net = build_model("preact_resnet", 3, 10, 16, width=4, zero_init_residual=True).eval()
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        assert torch.equal(net.blocks[0](x), x)  # pre-activation: x + branch(x), branch zero


def test_googlenet_returns_aux_logits_in_training_mode_only():
    net = build_model("googlenet", 3, 10, 32, width=1 / 16)
    x = torch.randn(2, 3, 32, 32)
    out = net.train()(x)
    assert isinstance(out, LogitsWithAux) and out.aux_weight == pytest.approx(0.3)
    assert out.logits.shape == (2, 10) and [a.shape for a in out.aux] == [(2, 10), (2, 10)]
    evaluated = net.eval()(x)
    assert isinstance(evaluated, torch.Tensor) and evaluated.shape == (2, 10)


def test_googlenet_without_aux_weight_builds_no_aux_heads():
    net = build_model("googlenet", 3, 10, 32, width=1 / 16, aux_weight=0)
    assert len(net.aux_heads) == 0 and isinstance(net.train()(torch.randn(2, 3, 32, 32)), torch.Tensor)


def test_flops_are_counted_by_torch_for_one_eval_forward():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10)).train()
    expected = 2 * (8 * 3 * 9 * 32 * 32) + 2 * (8 * 32 * 32 * 10)  # a multiply-add counts 2
    assert count_flops(net, 3, 32) == expected and net.training
    # batch norm counts nothing, on real tensors and on the meta device (count_flops gives it a formula of 0)
    normed = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    assert count_flops(normed, 3, 32) == expected
    assert count_flops(normed.to("meta"), 3, 32) == expected
    with torch.device("meta"):
        resnet18 = build_model("resnet", 3, 10, 32, depth=18)
    assert count_flops(resnet18, 3, 32) == pytest.approx(1.11e9, rel=0.01)  # ~0.56 G multiply-adds


@pytest.mark.slow  # one Hydra composition per preset
def test_every_preset_is_reachable_from_the_command_line(make_cfg):
    from genlab.config import validate_model

    for name, (family, knobs) in PRESETS.items():
        cfg = make_cfg(*preset_command(name).split())
        validate_model(cfg.model)
        assert cfg.model.name == family and all(cfg.model[k] == v for k, v in knobs.items()), name


@pytest.mark.slow  # builds every preset (on the meta device) and counts its FLOPs
def test_readme_models_table_is_the_generated_one():
    readme = (REPO / "README.md").read_text()
    section = re.search(r"^## Models\n(.*?)(?=^## )", readme, re.S | re.M).group(1)
    assert preset_table() in section, "regenerate it: python -m genlab.models --table"
