"""The IDX format (gzipped) of MNIST and its drop-in successors Fashion-MNIST and Kuzushiji-MNIST (KMNIST)."""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset
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
        *read_idx_pair(folder / TRAIN_IMAGES, folder / TRAIN_LABELS, info.num_classes),
        *read_idx_pair(folder / TEST_IMAGES, folder / TEST_LABELS, info.num_classes),
    )


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read matching IDX image and label files into uint8 (N, H, W, 1) images and int64 labels."""
    images = read_idx(images_path, IDX_UBYTE_IMAGES)
    labels = read_idx(labels_path, IDX_UBYTE_LABELS).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if labels.size and labels.max() >= num_classes:
        raise DataError(f"{labels_path}: labels must lie in [0, {num_classes - 1}], found max {labels.max()}")
    return images[..., None], labels


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (gzipped or not), checking its magic number and that its size matches its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a readable IDX file, truncated or corrupt ({err})") from err
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = hex(int.from_bytes(raw[:4], "big")) if len(raw) >= 4 else "nothing"
        raise DataError(f"{path}: bad IDX magic number {found}, expected {hex(magic)}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, expected {header})")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says {dims} ({expected} bytes) but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()
