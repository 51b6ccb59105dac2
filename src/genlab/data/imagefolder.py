"""A user's own images: `<data_dir>/<split>/<class>/*.png|jpg`, class names from the folder names.

Every image is decoded once, converted to grayscale or RGB and resized to `image_size` x `image_size`, and held in
memory as uint8 like every other data set.
"""
from __future__ import annotations

import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset
from genlab.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TRAIN_SPLIT = "train"
PIL_MODES = {1: "L", 3: "RGB"}


def describe_imagefolder(data_dir: Path, image_size: int = 32, channels: int = 3, flips_keep_label: bool = True,
                         **_) -> DatasetInfo:
    if channels not in PIL_MODES:
        raise ConfigError("data.channels", channels, "1 (grayscale) or 3 (RGB)")
    classes = class_folders(data_dir)
    return DatasetInfo(
        name="imagefolder", channels=channels, image_size=image_size, num_classes=len(classes), mean=None, std=None,
        class_names=tuple(classes), flips_keep_label=flips_keep_label,
    )


@register_dataset(describe_imagefolder, name="imagefolder")
def load_imagefolder_splits(data_dir: Path, download: bool, *, image_size: int = 32, channels: int = 3,
                            flips_keep_label: bool = True, test_split: str = "test") -> Splits:
    classes = class_folders(data_dir)
    test_dir = data_dir / test_split
    if not test_dir.is_dir():
        raise DataError(f"imagefolder: no test split folder {test_dir.resolve()} (data.test_split={test_split}); "
                        f"expected {test_split}/<class>/*.png|jpg next to {TRAIN_SPLIT}/")
    train = read_image_split(data_dir / TRAIN_SPLIT, classes, image_size, channels)
    empty = [name for name, n in zip(classes, np.bincount(train[1], minlength=len(classes))) if n == 0]
    if empty:
        raise DataError(f"imagefolder: training class folders without images: "
                        f"{', '.join(str(data_dir / TRAIN_SPLIT / name) for name in empty)}")
    test = read_image_split(test_dir, classes, image_size, channels)
    return Splits(*train, *test)


def class_folders(data_dir: Path) -> list[str]:
    """The class names: the sub-folders of `<data_dir>/train`, sorted (their order gives the label numbers)."""
    train_dir = data_dir / TRAIN_SPLIT
    if not train_dir.is_dir():
        raise DataError(f"imagefolder: no training folder {train_dir.resolve()} (data.data_dir={data_dir.resolve()}); "
                        f"expected {TRAIN_SPLIT}/<class>/*.png|jpg and test/<class>/*.png|jpg under it")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"imagefolder: {train_dir.resolve()} has no class folders; expected {TRAIN_SPLIT}/<class>/*.png|jpg")
    return classes


def read_image_split(split_dir: Path, classes: list[str], image_size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode every image under `split_dir/<class>/` into uint8 (N, size, size, channels) and int64 labels."""
    paths, labels = [], []
    for entry in sorted(split_dir.iterdir()):
        if entry.name.startswith("."):  # .DS_Store and friends
            continue
        if not entry.is_dir():
            raise DataError(f"{entry}: a file directly in {split_dir.name}/; images belong in {split_dir.name}/<class>/")
        if entry.name not in classes:
            raise DataError(f"{entry}: class folder '{entry.name}' is not among the training classes {classes}")
        for path in sorted(entry.iterdir()):
            if path.name.startswith("."):
                continue
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{path}: not an image file; class folders may hold only {', '.join(IMAGE_SUFFIXES)} files")
            if not path.resolve().is_relative_to(split_dir.resolve().parent):
                raise DataError(f"{path}: a link to {path.resolve()}, outside the image folder; copy the file in instead")
            paths.append(path)
            labels.append(classes.index(entry.name))
    if not paths:
        raise DataError(f"{split_dir}: no images found; expected {split_dir.name}/<class>/*.png|jpg")
    from PIL import Image

    with warnings.catch_warnings(), ThreadPoolExecutor() as pool:  # Pillow releases the GIL while decoding
        # Pillow warns of images over its own limit, twice MAX_IMAGE_PIXELS; decode_image refuses them in one line
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        images = list(pool.map(lambda p: decode_image(p, image_size, channels), paths))
    return np.stack(images), np.asarray(labels, dtype=np.int64)


MAX_IMAGE_PIXELS = 40_000_000  # 40 MP: far above any training image, far below what would exhaust memory


# Pillow's integer modes wider than 8 bits: 16-bit grayscale PNG/TIFF (microscopy, medical imaging) opens as I;16*,
# some files as I (32-bit). Pillow's convert() to L clips them at 255, which turns nearly every pixel white.
WIDE_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
UINT16_MAX = 65535


def to_8_bit(image, path: Path):
    """A 16-bit grayscale image scaled from 0..65535 to 0..255 (value / 257, rounded: the full range maps onto the
    full range, as Pillow does for 16-bit RGB); other images as they are."""
    from PIL import Image

    if image.mode == "F":
        raise DataError(f"{path}: floating-point pixels (Pillow mode F); save it as an 8- or 16-bit image first")
    if image.mode not in WIDE_INTEGER_MODES:
        return image
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > UINT16_MAX):
        raise DataError(f"{path}: pixel values {values.min()}..{values.max()} do not fit 16 bits; save it as an 8- or "
                        "16-bit image first")
    return Image.fromarray(np.rint(values / (UINT16_MAX / 255)).astype(np.uint8))  # 2-d uint8: mode L


def decode_image(path: Path, image_size: int, channels: int) -> np.ndarray:
    """One image file -> uint8 (size, size, channels), resized with bilinear filtering (aspect ratio not kept)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:  # checked from the header, before decoding anything
                raise too_many_pixels(path, f"{image.width}x{image.height}")
            image = to_8_bit(image, path).convert(PIL_MODES[channels])
            if image.size != (image_size, image_size):
                image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        # Image.open itself refuses an image over twice its own limit (and warns over it), before the check above
        # can run; its message gives the pixel count, not the sides
        count = re.search(r"\((\d+) pixels\)", str(err))
        raise too_many_pixels(path, f"{int(count[1]):,}" if count else "too many") from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable image, truncated or corrupt ({err})") from err
    return array.reshape(image_size, image_size, channels)


def too_many_pixels(path: Path, pixels: str) -> DataError:
    return DataError(f"{path}: {pixels} pixels, more than the {MAX_IMAGE_PIXELS:,} an image may have here (a "
                     "decompression bomb, or a photo to downscale first)")
