"""Augmentation presets keep uint8 images' shape; flips only where labels survive them; YAML policies build."""
from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from genlab.data.augment import PRESETS, build_train_transform
from genlab.data.catalog import dataset_info
from genlab.errors import ConfigError

SHAPES = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def preset(make_cfg, name: str, *overrides: str) -> dict:
    return OmegaConf.to_container(make_cfg(f"augmentation={name}", *overrides).augmentation, resolve=True)


def images(shape, n=16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


@pytest.mark.parametrize("data", list(SHAPES))
@pytest.mark.parametrize("name", [p for p in PRESETS if p != "none"])
def test_presets_keep_shape_dtype_and_range(make_cfg, name, data):
    transform = build_train_transform(preset(make_cfg, name), dataset_info(data), seed=0)
    batch = images(SHAPES[data])
    out = np.stack([transform(image) for image in batch])
    assert out.shape == batch.shape and out.dtype == np.uint8  # uint8 bounds the range to 0..255
    assert not np.array_equal(out, batch)  # it does something


def test_none_builds_no_transform(make_cfg):
    assert build_train_transform(preset(make_cfg, "none"), dataset_info("cifar10"), seed=0) is None


def test_randaugment_trivialaugment_and_strong_handle_any_channel_count(make_cfg):
    info = dataset_info("synthetic", image_size=12, channels=5)
    for name in ("strong", "randaugment", "trivialaugment"):
        transform = build_train_transform(preset(make_cfg, name), info, seed=0)
        assert transform(images((12, 12, 5), 1)[0]).shape == (12, 12, 5)


def mirrored_count(transform, image: np.ndarray, tries: int = 40) -> int:
    return sum(np.array_equal(transform(image), image[:, ::-1]) for _ in range(tries))


@pytest.mark.parametrize("data", ["digits", "mnist", "kmnist", "svhn"])
def test_flips_are_off_for_digits_and_characters(make_cfg, data):
    info = dataset_info(data)
    shape = (info.image_size, info.image_size, info.channels)
    transform = build_train_transform(preset(make_cfg, "standard", "augmentation.crop_padding=0"), info, seed=0)
    assert mirrored_count(transform, images(shape, 1)[0]) == 0
    assert not any(type(op).__name__ == "HorizontalFlip" for op in transform.compose.transforms)


def test_flips_are_on_for_objects(make_cfg):
    transform = build_train_transform(preset(make_cfg, "standard", "augmentation.crop_padding=0"), dataset_info("cifar10"), 0)
    assert 5 < mirrored_count(transform, images((32, 32, 3), 1)[0]) < 35  # half of the time
    off = build_train_transform(preset(make_cfg, "standard", "augmentation.hflip=false", "augmentation.crop_padding=0"),
                                dataset_info("cifar10"), 0)
    assert not off.compose.transforms


def test_workers_reseeded_differently_augment_differently(make_cfg):
    transform = build_train_transform(preset(make_cfg, "randaugment"), dataset_info("cifar10"), seed=0)
    image = images((32, 32, 3), 1)[0]

    def run(seed):
        transform.reseed(seed)
        return np.stack([transform(image) for _ in range(4)])

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_custom_policy_from_yaml_builds(make_cfg):
    cfg = make_cfg("augmentation=custom", "data=cifar10")
    assert [t["_target_"] for t in cfg.augmentation.transforms] == [
        "albumentations.Affine", "albumentations.RandomBrightnessContrast", "albumentations.CoarseDropout"]
    transform = build_train_transform(OmegaConf.to_container(cfg.augmentation), dataset_info("cifar10"), 0)
    assert [type(t).__name__ for t in transform.compose.transforms] == ["Affine", "RandomBrightnessContrast", "CoarseDropout"]

    policy = OmegaConf.create("""
        name: custom
        transforms:
          - {_target_: albumentations.HorizontalFlip, p: 1.0}
          - {_target_: albumentations.Rotate, limit: [90, 90], p: 1.0}
    """)
    image = images((32, 32, 3), 1)[0]
    out = build_train_transform(OmegaConf.to_container(policy), dataset_info("cifar10"), 0)(image)
    np.testing.assert_array_equal(out, np.rot90(image[:, ::-1], k=1))  # flip, then 90 degrees counter-clockwise


def test_custom_policy_mistakes_are_config_errors():
    info = dataset_info("cifar10")
    with pytest.raises(ConfigError, match=r"augmentation.transforms\[0\]: got \{'_target_': 'albumentations.Flipp'") as err:
        build_train_transform({"name": "custom", "transforms": [{"_target_": "albumentations.Flipp"}]}, info, 0)
    assert "\n" not in str(err.value)  # one line, though Hydra explains over several
    with pytest.raises(ConfigError, match=r"keep uint8 images of shape \(32, 32, 3\), not uint8 \(64, 64, 3\)"):
        build_train_transform({"name": "custom", "transforms": [{"_target_": "albumentations.Resize", "height": 64,
                                                                 "width": 64}]}, info, 0)
    with pytest.raises(ConfigError, match=r"not float32 \(32, 32, 3\) \(normalisation happens on the device"):
        build_train_transform({"name": "custom", "transforms": [{"_target_": "albumentations.Normalize"}]}, info, 0)


def test_the_preview_montage_puts_each_image_whole_in_its_own_tile():
    from genlab.data.preview import tile_images

    images = np.stack([np.full((5, 4, 3), 10 * (i + 1), dtype=np.uint8) for i in range(7)])
    images[:, 0, 0] = 0  # a corner that shows where each image starts
    canvas, tile_w, tile_h = tile_images(images, cols=3)
    assert canvas.shape == (3 * tile_h, 3 * tile_w, 3) and tile_w == 6 and tile_h == 5 + 2 + 1
    for i in range(7):
        row, col = divmod(i, 3)
        tile = canvas[row * tile_h:(row + 1) * tile_h, col * tile_w:(col + 1) * tile_w]
        np.testing.assert_array_equal(tile[2:7, 1:5], images[i])  # under a 2-pixel label band, 1 pixel in
        assert (tile[:2] == 255).all() and (tile[:, 0] == 255).all() and (tile[:, 5] == 255).all()
    assert (canvas[2 * tile_h:, tile_w:] == 255).all()  # the two tiles past the seventh image stay blank
