"""The IDX format (gzipped) of MNIST and its drop-in successors Fashion-MNIST and Kuzushiji-MNIST (KMNIST)."""
from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset
from genlab.data.checks import integer_labels, max_inflated_size
from genlab.data.download import Remote, ensure_files, fetch
from genlab.errors import DataError

IDX_UBYTE_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions
IDX_UBYTE_LABELS = 0x00000801  # unsigned bytes, 1 dimension
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX data set lives: its folder under data.data_dir, its official mirror, the four files' MD5s."""

    folder: str
    mirror: str
    md5: dict[str, str]

    def remotes(self) -> list[Remote]:
        return [Remote(self.mirror + name, md5) for name, md5 in self.md5.items()]


# The published checksums (as listed in torchvision's dataset sources); all three use the same four file names.
SOURCES = {
    "mnist": IdxSource("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/", {
        TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873", TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
        TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3", TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c"}),
    "fashion_mnist": IdxSource("fashion_mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d", TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
        TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79", TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310"}),
    "kmnist": IdxSource("kmnist", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/", {
        TRAIN_IMAGES: "bdb82020997e1d708af4cf47b453dcf7", TRAIN_LABELS: "e144d726b3acfaa3e44228e80efcd344",
        TEST_IMAGES: "5c965bf0a639b31b8f53240b1b52f4d7", TEST_LABELS: "7320c461ea6c1c855c0b718fb2a4b134"}),
}

MNIST_INFO = DatasetInfo(
    name="mnist", channels=1, image_size=28, num_classes=10, mean=(0.1307,), std=(0.3081,),
    class_names=tuple(str(d) for d in range(10)),
)
FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist", channels=1, image_size=28, num_classes=10, mean=(0.2860,), std=(0.3530,),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    flips_keep_label=True,  # a mirrored shoe or shirt is still a shoe or a shirt
)
KMNIST_INFO = DatasetInfo(
    name="kmnist", channels=1, image_size=28, num_classes=10, mean=(0.1918,), std=(0.3483,),
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
)


@register_dataset(MNIST_INFO)
def load_mnist_splits(data_dir: Path, download: bool) -> Splits:
    return load_idx_splits(MNIST_INFO, data_dir, download)


@register_dataset(FASHION_MNIST_INFO)
def load_fashion_mnist_splits(data_dir: Path, download: bool) -> Splits:
    return load_idx_splits(FASHION_MNIST_INFO, data_dir, download)


@register_dataset(KMNIST_INFO)
def load_kmnist_splits(data_dir: Path, download: bool) -> Splits:
    return load_idx_splits(KMNIST_INFO, data_dir, download)


def load_idx_splits(info: DatasetInfo, data_dir: Path, download: bool) -> Splits:
    """Train and test splits of an IDX data set from `data_dir/<folder>/`, downloading the four files when allowed."""
    source = SOURCES[info.name]
    folder = data_dir / source.folder
    remotes = source.remotes()

    def fetch_into(target: Path) -> None:
        for remote in remotes:
            fetch(remote, target / remote.filename)

    ensure_files(info.name, folder, list(source.md5), remotes, download, fetch_into)
    return Splits(
        *read_idx_pair(folder / TRAIN_IMAGES, folder / TRAIN_LABELS, info.num_classes, info.image_size),
        *read_idx_pair(folder / TEST_IMAGES, folder / TEST_LABELS, info.num_classes, info.image_size),
    )


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int,
                  image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX image and label files into uint8 (N, H, W, 1) images and int64 labels."""
    images = read_idx(images_path, IDX_UBYTE_IMAGES, (image_size, image_size))
    labels = integer_labels(labels_path, read_idx(labels_path, IDX_UBYTE_LABELS, ()), 0, num_classes - 1)
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    return images[..., None], labels


# The payload is read piece by piece: one read of the declared size would allocate all of it before finding out
# whether the file holds it.
READ_CHUNK = 1 << 20


def read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """Read one IDX file (gzipped or not). Its header is checked first (magic number, item shape, and a size the file
    can hold: a gzip inflates at most 1032-fold), then at most the declared bytes are inflated, so a header that lies
    or a gzip bomb is refused without allocating what it claims."""
    compressed = path.suffix == ".gz"
    try:
        with (gzip.open if compressed else open)(path, "rb") as f:
            dims = _idx_dims(path, f, magic)
            declared = math.prod(dims)
            if dims[1:] != list(item_shape):
                raise DataError(f"{path}: header says {dims}, expected [N{''.join(f', {d}' for d in item_shape)}]")
            size = path.stat().st_size
            room = max_inflated_size(size) if compressed else size - 4 - 4 * len(dims)
            if declared > room:
                raise DataError(f"{path}: header says {dims} ({declared} bytes) but a {'gzip ' if compressed else ''}"
                                f"file of {size} bytes holds at most {room}")
            payload = _read_at_most(f, declared + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a readable IDX file, truncated or corrupt ({err})") from err
    if len(payload) != declared:
        found = "more" if len(payload) > declared else len(payload)
        raise DataError(f"{path}: header says {dims} ({declared} bytes) but the file holds {found}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def _idx_dims(path: Path, f, magic: int) -> list[int]:
    head = f.read(4)
    if len(head) < 4 or int.from_bytes(head, "big") != magic:
        found = hex(int.from_bytes(head, "big")) if len(head) == 4 else "nothing"
        raise DataError(f"{path}: bad IDX magic number {found}, expected {hex(magic)}")
    ndim = magic & 0xFF
    raw = f.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({4 + len(raw)} bytes, expected {4 + 4 * ndim})")
    return [int.from_bytes(raw[i : i + 4], "big") for i in range(0, 4 * ndim, 4)]


def _read_at_most(f, limit: int) -> bytearray:
    data = bytearray()
    while len(data) < limit and (chunk := f.read(min(READ_CHUNK, limit - len(data)))):
        data += chunk
    return data
