"""TrivialAugment Wide (augmentation=trivialaugment): one op per image, ops and strength bins drawn uniformly, each bin
the strength the wide space gives; random erasing (augmentation.erasing_prob) at Zhong et al.'s setting."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from genlab.config import validate
from genlab.data.augment import TRIVIAL_BINS, TrivialAugmentWide, build_train_transform
from genlab.data.catalog import dataset_info
from genlab.data.device_augment import unsupported_reason
from genlab.errors import ConfigError


@pytest.fixture(scope="module")
def rgb() -> TrivialAugmentWide:
    return TrivialAugmentWide(channels=3)


def test_ops_and_strength_bins_are_drawn_uniformly_and_signs_half_and_half(rgb):
    rgb.set_random_seed(0)
    draws = [rgb.get_params() for _ in range(14 * 31 * 40)]
    ops, bins = Counter(d["op"] for d in draws), Counter(d["strength_bin"] for d in draws)
    assert sorted(ops) == list(range(14)) and sorted(bins) == list(range(TRIVIAL_BINS))
    assert stats.chisquare([ops[i] for i in range(14)]).pvalue > 1e-3
    assert stats.chisquare([bins[b] for b in range(TRIVIAL_BINS)]).pvalue > 1e-3
    for op, (name, _, signed) in enumerate(rgb.ops):
        signs = [d["sign"] for d in draws if d["op"] == op]
        if signed:
            assert stats.binomtest(signs.count(-1), len(signs)).pvalue > 1e-3, name
        else:
            assert set(signs) == {1}, name


def test_each_image_gets_exactly_one_op_the_one_drawn(rgb):
    calls = []
    original = dict(rgb._built)

    class Counted:
        def __init__(self, key, op):
            self.key, self.op = key, op

        def __call__(self, **data):
            calls.append(self.key)
            return self.op(**data)

    rgb._built = {key: Counted(key, op) for key, op in original.items()}
    try:
        image = np.random.default_rng(1).integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
        for seed in range(50):
            rgb.set_random_seed(seed)
            params = rgb.get_params()
            rgb.set_random_seed(seed)
            out = rgb(image=image)["image"]
            assert calls[-1] == (params["op"], params["strength_bin"], params["sign"]) and len(calls) == seed + 1
            np.testing.assert_array_equal(out, original[calls[-1]](image=image)["image"])
    finally:
        rgb._built = original


def test_each_bin_is_its_share_of_the_wide_space(rgb):
    index = {name: i for i, (name, _, _) in enumerate(rgb.ops)}
    assert rgb.op_at(index["rotate"], 30, -1).rotate == (-135, -135)
    assert rgb.op_at(index["rotate"], 10, 1).rotate == pytest.approx((45, 45))
    shear = rgb.op_at(index["shear_x"], 30, 1).shear["x"]
    assert shear == pytest.approx((math.degrees(math.atan(0.99)),) * 2)
    assert rgb.op_at(index["translate_y"], 15, -1).translate_percent["y"] == pytest.approx((-0.5, -0.5))
    # torchvision's bits, 8 - round(bin / 5); 8 bits is the image itself (albumentations' Posterize takes 1-7)
    bits = [getattr(rgb.op_at(index["posterize"], b, 1), "num_bits", (8, 8)) for b in (0, 2, 3, 15, 30)]
    assert bits == [(8, 8), (8, 8), (7, 7), (5, 5), (2, 2)]
    assert rgb.op_at(index["solarize"], 30, 1).threshold_range == (0, 0)
    image = np.random.default_rng(2).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    for op in range(len(rgb.ops)):  # strength 0 of every op but the histogram ones leaves the image as it is
        if rgb.ops[op][0] not in ("autocontrast", "equalize", "solarize"):
            np.testing.assert_array_equal(rgb.op_at(op, 0, 1)(image=image)["image"], image, err_msg=rgb.ops[op][0])


def test_grayscale_has_no_colour_op():
    assert [name for name, _, _ in TrivialAugmentWide(channels=1).ops][-1] == "equalize"


def test_erasing_is_zhong_et_als_setting_after_the_other_ops_and_only_where_asked(make_cfg):
    def policy(*overrides):
        return OmegaConf.to_container(make_cfg(*overrides).augmentation, resolve=True)

    transform = build_train_transform(policy("augmentation=trivialaugment", "augmentation.erasing_prob=0.5"),
                                      dataset_info("cifar10"), seed=0)
    erasing = transform.compose.transforms[-1]
    assert type(erasing).__name__ == "Erasing" and erasing.p == 0.5
    assert erasing.scale == (0.02, 0.4) and erasing.ratio == pytest.approx((0.3, 1 / 0.3)) and erasing.fill == "random"
    off = build_train_transform(policy("augmentation=standard"), dataset_info("cifar10"), seed=0)
    assert "Erasing" not in [type(t).__name__ for t in off.compose.transforms]
    image = np.full((32, 32, 3), 128, dtype=np.uint8)
    always = build_train_transform(policy("augmentation=standard", "augmentation.erasing_prob=1", "augmentation.crop_padding=0",
                                          "augmentation.hflip=false"), dataset_info("cifar10"), seed=0)
    changed = (always(image) != 128).any(-1).mean()
    assert 0.02 * 0.5 <= changed <= 0.4  # one rectangle of 2-40 % of the area (random fill may hit 128 by chance)
    assert "erasing" in unsupported_reason(policy("augmentation=standard", "augmentation.erasing_prob=0.5"))


def test_a_bad_erasing_probability_is_refused_in_one_line(make_cfg):
    with pytest.raises(ConfigError, match=r"^augmentation.erasing_prob: got 1.5, expected a probability in \[0, 1\]$"):
        validate(make_cfg("augmentation=trivialaugment", "augmentation.erasing_prob=1.5"))


def test_erasing_without_crop_ops_is_refused_rather_than_silently_skipped(make_cfg):
    with pytest.raises(ConfigError, match=r"^augmentation.erasing_prob: got 0.5, expected 0 with augmentation=none"):
        validate(make_cfg("regularization=random_erasing", "augmentation=none"))
