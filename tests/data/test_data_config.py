"""Bad data, augmentation and strategy values stop with `key: got VALUE, expected …` before any data is read."""
from __future__ import annotations

import pytest

from genlab.errors import ConfigError
from genlab.pipeline import run


@pytest.mark.parametrize(
    "override,key,expected",
    [
        ("data.label_noise=1.5", "data.label_noise", "a fraction in [0, 1]"),
        ("data.train_fraction=0", "data.train_fraction", "a fraction in (0, 1]"),
        ("data.train_size=0", "data.train_size", "null or an integer >= 1"),
        ("data.imbalance=0.5", "data.imbalance", "a max/min class-count ratio >= 1"),
        ("data.balance=oversample", "data.balance", "one of ['none', 'sampler', 'loss', 'effective_number']"),
        ("data.num_workers=many", "data.num_workers", "auto or an integer >= 0"),
        ("data.pin_memory=sometimes", "data.pin_memory", "auto, true or false"),
        ("augmentation.mixup_alpha=-1", "augmentation.mixup_alpha", "a number >= 0"),
        ("augmentation.cutmix_alpha=-0.5", "augmentation.cutmix_alpha", "a number >= 0"),
        ("augmentation.mix_prob=2", "augmentation.mix_prob", "a probability in [0, 1]"),
        ("augmentation.switch_prob=-0.1", "augmentation.switch_prob", "a probability in [0, 1]"),
        ("augmentation.crop_padding=1.5", "augmentation.crop_padding", "a fraction in [0, 1)"),
        ("augmentation.preview_images=-1", "augmentation.preview_images", "an integer in [0, 1024]"),
        ("augmentation=randaugment augmentation.magnitude=11", "augmentation.magnitude", "a number in [0, 10]"),
        ("augmentation=randaugment augmentation.num_ops=1.5", "augmentation.num_ops", "an integer >= 0"),
        ("augmentation=strong augmentation.hue=0.7", "augmentation.hue", "a number in [0, 0.5]"),
        ("augmentation=strong augmentation.cutout_prob=3", "augmentation.cutout_prob", "a probability in [0, 1]"),
        ("augmentation.cutout_prob=-0.5", "augmentation.cutout_prob", "a probability in [0, 1]"),
        ("augmentation.cutout_size=0", "augmentation.cutout_size", "a fraction of the side in (0, 1]"),
        ("augmentation=randaugment augmentation.cutout_size=1.5", "augmentation.cutout_size", "a fraction of the side in (0, 1]"),
        ("augmentation=custom augmentation.transforms=[{p:1}]", "augmentation.transforms[0]", "a transform with a _target_"),
        ("data=cifar100 data.labels=medium", "data.labels", "fine or coarse"),
        ("data=svhn data.extra=maybe", "data.extra", "true or false"),
        ("data=synthetic data.num_classes=1", "data.num_classes", "an integer >= 2"),
        ("data=imagefolder data.channels=4", "data.channels", "1 (grayscale) or 3 (RGB)"),
        ("data=mnist augmentation.tta=true", "augmentation.tta", "false for mnist: a mirrored image changes its label"),
        ("data=svhn augmentation.tta=true", "augmentation.tta", "false for svhn"),
    ],
)
def test_bad_values_stop_before_any_data_is_read(make_cfg, tmp_path, override, key, expected):
    overrides = override.split(" ")
    data = [o for o in overrides if o.startswith("data=")] or ["data=cifar10"]
    # data_dir is empty and downloads are off: reading any data would raise DataError instead
    cfg = make_cfg(*data, *[o for o in overrides if not o.startswith("data=")], f"data.data_dir={tmp_path}",
                   "data.download=false")
    with pytest.raises(ConfigError) as err:
        run(cfg)
    message = str(err.value)
    assert message.startswith(f"{key}: got ") and expected in message, message
    assert not (tmp_path / "run" / "results.json").exists()


def test_train_size_and_fraction_are_exclusive(make_cfg):
    with pytest.raises(ConfigError, match=r"data.train_size: got 100, expected null when data.train_fraction is set"):
        run(make_cfg("data.train_size=100", "data.train_fraction=0.5"))


def test_a_key_no_reader_knows_is_rejected(make_cfg):
    with pytest.raises(ConfigError, match=r"data.extra: got True, expected a key of every data set .* or an option of cifar10"):
        run(make_cfg("data=cifar10", "+data.extra=true"))


def test_regularization_mixup_sets_the_augmentation_knob(make_cfg):
    assert make_cfg("regularization=mixup").augmentation.mixup_alpha == 0.2
