"""The device augmentation (data.loader=gpu), run on the CPU device, matches the albumentations preset it replaces:
shape, dtype and values; the distribution of crop offsets and flips; cutout hole probability, sizes and places.

Images carry a code per pixel (1 + row x side + column; 0 = padding or hole), so each augmented image tells which
offset, mirror and hole it got. Distributions are compared with chi-square tests at fixed seeds, so the tests are
deterministic; a p-value under 0.001 means the two paths draw differently.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy import stats

from conftest import compose_config
from genlab.data.augment import PRESETS, build_train_transform
from genlab.data.catalog import dataset_info
from genlab.data.device_augment import DeviceAugment, cpu_fallback_message, unsupported_reason
from genlab.errors import ConfigError

DRAWS = 3000
MIN_P = 1e-3


@pytest.fixture(scope="module")
def presets(tmp_path_factory) -> dict[str, dict]:
    """Every preset as `augmentation=<name>` composes it, composed once for the module (composing is the slow part)."""
    run_dir = tmp_path_factory.mktemp("run")
    return {name: OmegaConf.to_container(compose_config([f"augmentation={name}"], run_dir).augmentation, resolve=True)
            for name in PRESETS}


def coded_image(side: int) -> np.ndarray:
    """(side, side, 1) uint8 whose pixel at (row, column) is 1 + row x side + column (side <= 15 fits in uint8)."""
    return (1 + np.arange(side * side, dtype=np.uint8)).reshape(side, side, 1)


def cpu_draws(config: dict, info, image: np.ndarray, n: int = DRAWS) -> np.ndarray:
    transform = build_train_transform(config, info, seed=0)
    return np.stack([transform(image) for _ in range(n)])


def device_draws(config: dict, info, image: np.ndarray, n: int = DRAWS, seed: int = 0) -> np.ndarray:
    batch = torch.from_numpy(image).expand(n, *image.shape)  # one batch: every sample must draw its own
    return DeviceAugment(config, info)(batch, torch.Generator().manual_seed(seed)).numpy()


def per_sample_constant(valid: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the value that `values` takes on the valid pixels, and whether it takes only that one."""
    high = np.where(valid, values, -10**6).max(axis=(1, 2))
    low = np.where(valid, values, 10**6).min(axis=(1, 2))
    return high, high == low


def crop_offsets_and_flips(out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per coded sample: row offset, column offset (source minus output, before the mirror) and whether mirrored."""
    side = out.shape[1]
    code = out[..., 0].astype(int) - 1
    valid = code >= 0
    rows, cols = np.divmod(code, side)
    y, x = np.arange(side).reshape(1, side, 1), np.arange(side).reshape(1, 1, side)
    dy, rows_agree = per_sample_constant(valid, rows - y)
    dx_plain, plain = per_sample_constant(valid, cols - x)
    dx_mirrored, mirrored = per_sample_constant(valid, cols + x - (side - 1))
    assert rows_agree.all() and (plain ^ mirrored).all(), "not a shifted (and maybe mirrored) copy of the image"
    return dy, np.where(mirrored, dx_mirrored, dx_plain), mirrored


def same_distribution(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample chi-square p-value of two samples of a discrete variable (rows: values seen in either)."""
    values = np.union1d(a, b)
    counts = [[np.sum(sample == v) for v in values] for sample in (a, b)]
    return stats.chi2_contingency(counts).pvalue


@pytest.mark.parametrize("draw", [cpu_draws, device_draws], ids=["albumentations", "device"])
def test_output_keeps_shape_dtype_and_is_moved_input_pixels_or_zero(presets, draw):
    info = dataset_info("cifar10")
    config = {**presets["standard"], "cutout_prob": 0.5}
    rows, cols = np.meshgrid(np.arange(1, 33), np.arange(1, 33), indexing="ij")
    image = np.stack([rows, cols, np.full_like(rows, 255)], axis=-1).astype(np.uint8)  # (row + 1, column + 1, 255)
    out = draw(config, info, image, n=200)
    assert out.shape == (200, 32, 32, 3) and out.dtype == np.uint8
    zero = (out == 0).all(axis=-1)
    assert np.array_equal(out[..., 2] == 255, ~zero) and zero.any()  # an input pixel, or zero in every channel
    assert out[..., :2][~zero].min() >= 1 and out[..., :2][~zero].max() <= 32


def test_crop_offsets_and_flips_are_drawn_like_albumentations(presets):
    info = dataset_info("synthetic", image_size=12, channels=1)
    config = presets["standard"]
    pad = 2  # round(0.125 x 12)
    image = coded_image(12)
    cpu = crop_offsets_and_flips(cpu_draws(config, info, image))
    device = crop_offsets_and_flips(device_draws(config, info, image))
    for offsets in (*cpu[:2], *device[:2]):
        assert offsets.min() == -pad and offsets.max() == pad
        assert abs(offsets.mean()) < 0.1  # the standard error is 0.026
        assert stats.chisquare(np.bincount(offsets + pad)).pvalue > MIN_P  # uniform over -pad..pad
    for mirrored in (cpu[2], device[2]):
        assert abs(mirrored.mean() - 0.5) < 0.05
    # jointly: a shared offset for rows and columns, or a mirror tied to the offset, would fail here
    joint = [(dy + pad) * 100 + (dx + pad) * 2 + mirrored for dy, dx, mirrored in (cpu, device)]
    assert same_distribution(*joint) > MIN_P


def test_no_mirror_where_flips_change_labels_but_still_a_crop(presets):
    info = dataset_info("digits")  # 8 x 8, padding 1 px
    config = presets["standard"]
    for draw in (cpu_draws, device_draws):
        dy, dx, mirrored = crop_offsets_and_flips(draw(config, info, coded_image(8), n=500))
        assert not mirrored.any()
        assert set(dy) == set(dx) == {-1, 0, 1}


def holes(out: np.ndarray) -> dict[str, np.ndarray]:
    """Per coded sample with nothing but a cutout: whether it has a hole, and the hole's size and top-left corner."""
    zero = out[..., 0] == 0
    in_rows, in_cols = zero.any(axis=2), zero.any(axis=1)
    present = in_rows.any(axis=1)
    height, width = in_rows.sum(axis=1), in_cols.sum(axis=1)
    assert np.array_equal(zero.sum(axis=(1, 2)), height * width), "a hole is not one rectangle"
    return {"present": present, "zero_fraction": zero.mean(axis=(1, 2)), "height": height[present],
            "width": width[present], "top": in_rows.argmax(axis=1)[present], "left": in_cols.argmax(axis=1)[present]}


@pytest.mark.parametrize("size", [0.5, 1.0])
def test_cutout_is_drawn_like_albumentations(presets, size):
    info = dataset_info("synthetic", image_size=12, channels=1)
    config = {**presets["standard"], "crop_padding": 0, "hflip": False, "cutout_prob": 0.5, "cutout_size": size}
    image = coded_image(12)
    cpu, device = holes(cpu_draws(config, info, image)), holes(device_draws(config, info, image))
    assert abs(device["present"].mean() - 0.5) < 0.05 and abs(cpu["present"].mean() - 0.5) < 0.05
    sides = np.concatenate([device["height"], device["width"]])
    assert sides.min() >= np.floor(12 * size / 2) and sides.max() <= min(11, np.floor(12 * size))
    error = np.sqrt(cpu["zero_fraction"].var() / DRAWS + device["zero_fraction"].var() / DRAWS)
    assert abs(cpu["zero_fraction"].mean() - device["zero_fraction"].mean()) < 4 * error
    for key in ("height", "width", "top", "left"):
        assert same_distribution(cpu[key], device[key]) > MIN_P, key
    # jointly: height and width are drawn apart (square holes would fail here)
    assert same_distribution(*[h["height"] * 100 + h["width"] for h in (cpu, device)]) > MIN_P


def test_none_returns_the_batch_untouched(presets):
    images = torch.from_numpy(coded_image(8)).expand(4, 8, 8, 1)
    assert DeviceAugment(presets["none"], dataset_info("digits"))(images, torch.Generator()) is images


@pytest.mark.parametrize("name", ["strong", "randaugment", "trivialaugment", "custom"])
def test_other_presets_name_themselves_in_one_line_and_are_refused(presets, name):
    config = presets[name]
    message = cpu_fallback_message(unsupported_reason(config))
    assert message.startswith(f"data.loader=gpu: augmentation={name} needs ") and "none and standard" in message
    assert message.endswith("; using the CPU loader") and "\n" not in message
    with pytest.raises(ConfigError, match="augmentation.name: got"):
        DeviceAugment(config, dataset_info("cifar10"))


def test_none_and_standard_with_cutout_are_supported(presets):
    assert unsupported_reason(presets["none"]) is None
    assert unsupported_reason({**presets["standard"], "cutout_prob": 1.0}) is None


def test_draws_come_only_from_the_given_generator(presets):
    info = dataset_info("cifar10")
    config = {**presets["standard"], "cutout_prob": 0.5}
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    torch.manual_seed(1)
    global_state = torch.get_rng_state()
    first = device_draws(config, info, image, n=64, seed=7)
    assert torch.equal(torch.get_rng_state(), global_state)
    torch.manual_seed(2)
    np.testing.assert_array_equal(first, device_draws(config, info, image, n=64, seed=7))
    assert not np.array_equal(first, device_draws(config, info, image, n=64, seed=8))
