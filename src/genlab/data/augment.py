"""Training-time augmentation policies (albumentations), on uint8 (H, W, C) images in the loader workers.

Presets (conf/augmentation/*.yaml): none, standard (pad-and-random-crop + horizontal flip where flips keep labels +
optional cutout and random erasing), strong (standard + affine + colour, cutout on), randaugment (standard + N ops at
magnitude M), trivialaugment (standard + one TrivialAugment Wide op per image) and custom (any list of albumentations
transforms written in YAML). Evaluation never augments: it only normalises, on the
device. genlab.data.device_augment does none and standard batch-wise on the device instead.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from genlab.data.catalog import DatasetInfo
from genlab.errors import ConfigError

PRESETS = ("none", "standard", "strong", "randaugment", "trivialaugment", "custom")
MAX_MAGNITUDE = 10  # RandAugment magnitudes run 0..10, as in timm
TRIVIAL_BINS = 31  # TrivialAugment's strengths: 0/30, 1/30, ..., 30/30 of each op's largest


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
                  "trivialaugment": trivialaugment_ops, "custom": custom_ops}[name](config, info)
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
    """Pad-and-crop and mirror (`crop_flip_ops`), then one cutout hole when `cutout_prob` > 0, then random erasing."""
    return [*crop_flip_ops(config, info), *cutout_ops(config), *erasing_ops(config)]


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


ERASING_SCALE = (0.02, 0.4)  # Zhong et al. 2020: the erased area's fraction of the image, s_l and s_h
ERASING_RATIO = (0.3, 1 / 0.3)  # and its aspect ratio, r_1 and 1 / r_1


def erasing_ops(config: Mapping[str, Any]) -> list:
    """Random erasing (Zhong et al. 2020) with probability `erasing_prob`: one rectangle of 2-40 % of the image, aspect
    ratio 0.3-3.3, filled with random pixel values (their setting)."""
    import albumentations as A

    prob = config.get("erasing_prob", 0.0)
    if prob == 0:
        return []
    return [A.Erasing(scale=ERASING_SCALE, ratio=ERASING_RATIO, fill="random", p=prob)]


def strong_ops(config: Mapping[str, Any], info: DatasetInfo) -> list:
    """Pad-and-crop and mirror, random affine (shift, scale, rotate), colour jitter, then the cutout hole."""
    import albumentations as A

    affine = A.Affine(translate_percent=(-config["shift"], config["shift"]), scale=(1 - config["scale"], 1 + config["scale"]),
                      rotate=(-config["rotate"], config["rotate"]), p=config["affine_prob"])
    return [*crop_flip_ops(config, info), affine, *colour_ops(config, info.channels), *cutout_ops(config),
            *erasing_ops(config)]


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
    return [*crop_flip_ops(config, info), A.SomeOf(ops, n=config["num_ops"], replace=True, p=1.0), *cutout_ops(config),
            *erasing_ops(config)]


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


def trivialaugment_ops(config: Mapping[str, Any], info: DatasetInfo) -> list:
    """Pad-and-crop and mirror, one TrivialAugment Wide op per image, then cutout and erasing (both off by default)."""
    return [*crop_flip_ops(config, info), TrivialAugmentWide(info.channels), *cutout_ops(config), *erasing_ops(config)]


def trivial_ops(channels: int) -> list[tuple[str, Any, bool]]:
    """TrivialAugment Wide's ops (Mueller & Hutter 2021; torchvision's wide space) as (name, transform at strength
    t in [0, 1], signed), from the albumentations primitives randaugment_op_list uses. Where they differ from
    torchvision's: translation is up to the whole side (torchvision's 32 px, the side of CIFAR's images, whatever the
    size), brightness is additive (albumentations'), and sharpness only sharpens (albumentations has no blur by factor).
    """
    import math

    import albumentations as A

    def affine(**kwargs):
        return A.Affine(**kwargs, p=1.0)

    def posterize(t):  # 8 bits (the image as it is: albumentations takes 1-7) down to 2
        bits = 8 - round(6 * t)
        return A.NoOp(p=1.0) if bits == 8 else A.Posterize(num_bits=bits, p=1.0)

    def shear(axis: str):
        def at(t):
            degrees = math.degrees(math.atan(0.99 * t))
            return affine(shear={axis: (degrees, degrees), "xy".replace(axis, ""): (0, 0)})
        return at

    def translate(axis: str):
        return lambda t: affine(translate_percent={axis: (t, t), "xy".replace(axis, ""): (0, 0)})

    ops = [
        ("identity", lambda t: A.NoOp(p=1.0), False),
        ("shear_x", shear("x"), True),
        ("shear_y", shear("y"), True),
        ("translate_x", translate("x"), True),
        ("translate_y", translate("y"), True),
        ("rotate", lambda t: affine(rotate=(135 * t, 135 * t)), True),
        ("brightness", lambda t: A.RandomBrightnessContrast(brightness_limit=(0.99 * t, 0.99 * t), contrast_limit=(0, 0),
                                                            p=1.0), True),
        ("contrast", lambda t: A.RandomBrightnessContrast(brightness_limit=(0, 0), contrast_limit=(0.99 * t, 0.99 * t),
                                                          p=1.0), True),
        ("sharpness", lambda t: A.Sharpen(alpha=(0.99 * t, 0.99 * t), lightness=(1.0, 1.0), p=1.0), False),
        ("posterize", posterize, False),
        ("solarize", lambda t: A.Solarize(threshold_range=(1 - t, 1 - t), p=1.0), False),  # threshold 255 down to 0
        ("autocontrast", lambda t: A.AutoContrast(p=1.0), False),
        ("equalize", lambda t: A.Equalize(p=1.0), False),
    ]
    if channels == 3:
        ops.append(("color", lambda t: A.ColorJitter(brightness=(1, 1), contrast=(1, 1), hue=(0, 0),
                                                      saturation=(1 + 0.99 * t, 1 + 0.99 * t), p=1.0), True))
    if channels not in (1, 3):  # histogram and colour ops assume gray or RGB; keep the geometric ones
        ops = ops[:6]
    return ops


def _trivial_augment_base():
    import albumentations as A

    return A.ImageOnlyTransform


class TrivialAugmentWide(_trivial_augment_base()):
    """One op drawn uniformly per image, at a strength drawn uniformly from TRIVIAL_BINS bins, its sign at random where
    the op has one; the draws come from the transform's own seeded generator, so genlab's per-batch reseeding applies.
    Each (op, bin, sign) is built up front at its fixed strength (a bad one fails when the policy is built, not in a
    loader worker): applying it draws nothing more."""

    def __init__(self, channels: int):
        super().__init__(p=1.0)
        self.channels = channels
        self.ops = trivial_ops(channels)
        self._built = {(op, b, sign): build(sign * b / (TRIVIAL_BINS - 1))
                       for op, (_, build, signed) in enumerate(self.ops) for b in range(TRIVIAL_BINS)
                       for sign in ((1, -1) if signed else (1,))}

    def get_params(self) -> dict[str, int]:
        op = self.py_random.randrange(len(self.ops))
        strength_bin = self.py_random.randrange(TRIVIAL_BINS)
        sign = -1 if self.ops[op][2] and self.py_random.random() < 0.5 else 1
        return {"op": op, "strength_bin": strength_bin, "sign": sign}

    def op_at(self, op: int, strength_bin: int, sign: int):
        """The albumentations transform of op `op` at bin `strength_bin`, mirrored for sign -1."""
        return self._built[(op, strength_bin, sign)]

    def apply(self, img: np.ndarray, op: int = 0, strength_bin: int = 0, sign: int = 1, **params: Any) -> np.ndarray:
        return self.op_at(op, strength_bin, sign)(image=img)["image"]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("channels",)


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
