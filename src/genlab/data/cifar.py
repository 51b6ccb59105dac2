"""CIFAR-10 in its official python format: pickled batches inside cifar-10-python.tar.gz."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset
from genlab.data.download import Remote, ensure_files, extract_tar, fetch
from genlab.errors import DataError

CIFAR10_ARCHIVE = Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]

INFO = DatasetInfo(
    name="cifar10",
    channels=3,
    image_size=32,
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
)

# The batches are pickles; only numpy's array reconstruction is allowed to run while loading them.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes into protocol-2 pickles
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own reconstructor, whatever its module path
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


@register_dataset(INFO)
def load_cifar10_splits(data_dir: Path, download: bool) -> Splits:
    folder = data_dir / CIFAR10_FOLDER

    def fetch_into(_: Path) -> None:
        archive = fetch(CIFAR10_ARCHIVE, data_dir / CIFAR10_ARCHIVE.filename)
        extract_tar(archive, data_dir)

    ensure_files("cifar10", folder, CIFAR10_TRAIN + CIFAR10_TEST, [CIFAR10_ARCHIVE], download, fetch_into)
    train_x, train_y = read_cifar_batches([folder / f for f in CIFAR10_TRAIN], b"labels", INFO.num_classes)
    test_x, test_y = read_cifar_batches([folder / f for f in CIFAR10_TEST], b"labels", INFO.num_classes)
    return Splits(train_x, train_y, test_x, test_y)


def read_cifar_batches(paths: list[Path], label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR python batches into uint8 images (N, 32, 32, 3) and int64 labels, checking each file's structure."""
    images, labels = [], []
    for path in paths:
        x, y = _read_one_batch(path, label_key, num_classes)
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def _read_one_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise DataError(f"{path}: not a readable CIFAR batch, the file is truncated or corrupt ({err})") from err
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: expected a dict with b'data' and {label_key!r}, found {found}")
    data, labels = batch[b"data"], np.asarray(batch[label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), found {getattr(data, 'dtype', type(data))} {shape}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in [0, {num_classes - 1}], found [{labels.min()}, {labels.max()}]")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels.astype(np.int64)
