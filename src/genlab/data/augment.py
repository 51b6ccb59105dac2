"""Training-time augmentation policies (albumentations), on uint8 (H, W, C) images in the loader workers.

Presets (conf/augmentation/*.yaml): none, standard (pad-and-random-crop + horizontal flip where flips keep labels +
optional cutout), strong (standard + affine + colour, cutout on), randaugment (standard + N ops at magnitude M) and
custom (any list of albumentations transforms written in YAML). Evaluation never augments: it only normalises, on the
device. genlab.data.device_augment does none and standard batch-wise on the device instead.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from genlab.data.catalog import DatasetInfo
from genlab.errors import ConfigError

PRESETS = ("none", "standard", "strong", "randaugment", "custom")
MAX_MAGNITUDE = 10  # RandAugment magnitudes run 0..10, as in timm


class AlbumentationsTransform:
    """uint8 (H, W, C) -> uint8 (H, W, C) through an albumentations pipeline; picklable, reseeded per loader worker."""

    def __init__(self, compose):
        self.compose = compose

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.compose(image=image)["image"]

    def reseed(self, seed: int) -> None:
        """Restart every random draw of the policy from `seed`, each transform from its own stream (albumentations'
        set_random_seed gives all transforms the same seed, so two of a kind would draw identical values)."""
        seed_policy(self.compose, np.random.SeedSequence(seed))

    def __repr__(self) -> str:  # one line, for error messages: the transforms' names, not every argument
        return f"AlbumentationsTransform({_describe(self.compose.transforms)})"


def seed_policy(node, sequence: np.random.SeedSequence) -> None:
    """Seed an albumentations transform, or a compose and everything nested in it, from independent child streams."""
    from albumentations.core.composition import BaseCompose

    children = list(node.transforms) if isinstance(node, BaseCompose) else []
    own, *child_sequences = sequence.spawn(1 + len(children))
    node.set_random_seed(int(own.generate_state(1)[0]))  # a compose also passes this seed down; overridden below
    for child, child_sequence in zip(children, child_sequences):
        seed_policy(child, child_sequence)


def build_train_transform(config: Mapping[str, Any], info: DatasetInfo, seed: int) -> AlbumentationsTransform | None:
    """The training transform of an augmentation config (`name` plus the preset's knobs), or None for `none`.

    Built once and tried on a blank image, so a policy that changes the image's shape or dtype fails here, before any
    data is read, rather than in a loader worker.
    """
    import albumentations as A

    name = config["name"]
    if name not in PRESETS:
        raise ConfigError("augmentation.name", name, f"one of {list(PRESETS)}")
    if name == "none":
        return None
    transforms = {"standard": standard_ops, "strong": strong_ops, "randaugment": randaugment_ops,
                  "custom": custom_ops}[name](config, info)
    transform = AlbumentationsTransform(A.Compose(transforms, seed=seed))
    blank = np.zeros((info.image_size, info.image_size, info.channels), dtype=np.uint8)
    try:
        out = transform(blank)
    except Exception as err:  # albumentations raises many types; the user needs the policy and the message
        raise ConfigError(f"augmentation ({name})", _describe(transforms), f"transforms that accept uint8 images of shape "
                          f"{blank.shape} ({type(err).__name__}: {_one_line(err)})") from err
    if not isinstance(out, np.ndarray) or out.shape != blank.shape or out.dtype != np.uint8:
        found = f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        raise ConfigError(f"augmentation ({name})", _describe(transforms),
                          f"transforms that keep uint8 images of shape {blank.shape}, not {found} (normalisation "
                          f"happens on the device; resize belongs to the data set)")
    return transform


def standard_ops(config: Mapping[str, Any], info: DatasetInfo) -> list:
    """Pad-and-crop and mirror (`crop_flip_ops`), then one cutout hole when `cutout_prob` > 0."""
    return [*crop_flip_ops(config, info), *cutout_ops(config)]


def crop_flip_ops(config: Mapping[str, Any], info: DatasetInfo) -> list:
    """Zero-pad by `crop_padding` x side (>= 1 px) and crop back at a random position; mirror where labels allow."""
    import albumentations as A
    import cv2

    ops = []
    if config["crop_padding"] > 0:
        pad = crop_pad_pixels(config["crop_padding"], info.image_size)
        ops += [A.Pad(padding=pad, border_mode=cv2.BORDER_CONSTANT, fill=0),
                A.RandomCrop(info.image_size, info.image_size)]
    if config["hflip"] and info.flips_keep_label:
        ops.append(A.HorizontalFlip(p=0.5))
    return ops


def crop_pad_pixels(crop_padding: float, image_size: int) -> int:
    """The zero padding of the random crop in pixels: `crop_padding` x side, at least 1 px."""
    return max(1, round(crop_padding * image_size))


def cutout_ops(config: Mapping[str, Any]) -> list:
    """One hole filled with 0, with probability `cutout_prob`; height and width each ~ side x U[size / 2, size]."""
    import albumentations as A

    if config["cutout_prob"] == 0:
        return []
    # albumentations reads a range whose upper end is >= 1 as pixels, so cutout_size 1 would mean 0-1 px holes; the
    # largest float below 1 keeps it a fraction and changes nothing else (sides are floor(side * u), u < 1 either way)
    top = min(config["cutout_size"], float(np.nextafter(1.0, 0.0)))
    hole = (config["cutout_size"] / 2, top)
    return [A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=hole, hole_width_range=hole, fill=0,
                            p=config["cutout_prob"])]


def strong_ops(config: Mapping[str, Any], info: DatasetInfo) -> list:
    """Pad-and-crop and mirror, random affine (shift, scale, rotate), colour jitter, then the cutout hole."""
    import albumentations as A

    affine = A.Affine(translate_percent=(-config["shift"], config["shift"]), scale=(1 - config["scale"], 1 + config["scale"]),
                      rotate=(-config["rotate"], config["rotate"]), p=config["affine_prob"])
    return [*crop_flip_ops(config, info), affine, *colour_ops(config, info.channels), *cutout_ops(config)]


def colour_ops(config: Mapping[str, Any], channels: int) -> list:
    """Colour jitter for RGB, brightness/contrast for grayscale, nothing for other channel counts."""
    import albumentations as A

    b, c = config["brightness"], config["contrast"]
    if channels == 3:
        return [A.ColorJitter(brightness=(1 - b, 1 + b), contrast=(1 - c, 1 + c),
                              saturation=(1 - config["saturation"], 1 + config["saturation"]),
                              hue=(-config["hue"], config["hue"]), p=config["colour_prob"])]
    if channels == 1:
        return [A.RandomBrightnessContrast(brightness_limit=(-b, b), contrast_limit=(-c, c), p=config["colour_prob"])]
    return []


def randaugment_ops(config: Mapping[str, Any], info: DatasetInfo) -> list:
    """Pad-and-crop and mirror, RandAugment (Cubuk et al. 2020): `num_ops` ops drawn per image at up to `magnitude`,
    then the cutout hole (cutout_prob 0 by default), last as in strong.

    As in timm's random-magnitude variant, an op's strength is drawn up to the magnitude (signs at random), which
    keeps every op usable through albumentations' range arguments.
    """
    import albumentations as A

    ops = randaugment_op_list(config["magnitude"] / MAX_MAGNITUDE, info.channels)
    return [*crop_flip_ops(config, info), A.SomeOf(ops, n=config["num_ops"], replace=True, p=1.0), *cutout_ops(config)]


def randaugment_op_list(strength: float, channels: int) -> list:
    """RandAugment's op list at `strength` in [0, 1] (1 = magnitude 10), each op always applied when drawn."""
    import albumentations as A

    def symmetric(limit: float) -> tuple[float, float]:
        return (-limit, limit)

    ops = [
        A.NoOp(p=1.0),
        A.Affine(rotate=symmetric(30 * strength), p=1.0),
        A.Affine(shear={"x": symmetric(17 * strength), "y": (0, 0)}, p=1.0),  # 17 degrees ~ timm's 0.3 shear
        A.Affine(shear={"x": (0, 0), "y": symmetric(17 * strength)}, p=1.0),
        A.Affine(translate_percent={"x": symmetric(0.45 * strength), "y": (0, 0)}, p=1.0),
        A.Affine(translate_percent={"x": (0, 0), "y": symmetric(0.45 * strength)}, p=1.0),
        A.AutoContrast(p=1.0),
        A.Equalize(p=1.0),
        A.Solarize(threshold_range=(1 - strength, 1 - strength), p=1.0),
        A.Posterize(num_bits=8 - round(4 * strength), p=1.0),
        A.RandomBrightnessContrast(brightness_limit=symmetric(0.9 * strength), contrast_limit=(0, 0), p=1.0),
        A.RandomBrightnessContrast(brightness_limit=(0, 0), contrast_limit=symmetric(0.9 * strength), p=1.0),
        A.Sharpen(alpha=(0.0, min(1.0, 0.9 * strength)), lightness=(1.0, 1.0), p=1.0),
    ]
    if channels == 3:  # saturation has no meaning for grayscale
        ops.append(A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1 - 0.9 * strength, 1 + 0.9 * strength),
                                 hue=(0, 0), p=1.0))
    if channels not in (1, 3):  # histogram and colour ops assume gray or RGB; keep the geometric ones
        ops = ops[:6]
    return ops


def custom_ops(config: Mapping[str, Any], info: DatasetInfo) -> list:
    """Instantiate every `{_target_: albumentations.X, ...}` entry of `transforms`, in order."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    specs = config.get("transforms") or []
    ops = []
    for i, spec in enumerate(specs):
        spec = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else dict(spec)
        try:
            ops.append(instantiate(spec, _convert_="all"))
        except Exception as err:  # Hydra wraps import and argument errors; show the entry and the cause
            raise ConfigError(f"augmentation.transforms[{i}]", spec,
                              f"an albumentations transform and its arguments ({_one_line(err.__cause__ or err)})") from err
    return ops


def _describe(transforms: list) -> str:
    return "[" + ", ".join(type(t).__name__ for t in transforms) + "]"


def _one_line(err: BaseException) -> str:
    # Hydra and albumentations explain over several lines; a ConfigError is one line
    return " ".join(str(err).split())
