"""MNIST in its official IDX format (gzipped), as published by LeCun et al."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset
from genlab.data.download import Remote, ensure_files, fetch
from genlab.errors import DataError

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
IDX_UBYTE_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions
IDX_UBYTE_LABELS = 0x00000801  # unsigned bytes, 1 dimension

INFO = DatasetInfo(
    name="mnist",
    channels=1,
    image_size=28,
    num_classes=10,
    mean=(0.1307,),
    std=(0.3081,),
    class_names=tuple(str(d) for d in range(10)),
)


@register_dataset(INFO)
def load_mnist_splits(data_dir: Path, download: bool) -> Splits:
    folder = data_dir / "mnist"
    remotes = [Remote(MNIST_MIRROR + name, md5) for name, md5 in MNIST_FILES.items()]

    def fetch_into(target: Path) -> None:
        for remote in remotes:
            fetch(remote, target / remote.filename)

    ensure_files("mnist", folder, list(MNIST_FILES), remotes, download, fetch_into)
    return Splits(
        *read_idx_pair(folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz", INFO.num_classes),
        *read_idx_pair(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz", INFO.num_classes),
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
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise DataError(f"{path}: header says {dims} ({expected} bytes) but the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()
