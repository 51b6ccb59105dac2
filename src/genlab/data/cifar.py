"""CIFAR-10 and CIFAR-100 in their official python format: pickled batches inside cifar-10[0]-python.tar.gz."""
from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset
from genlab.data.download import Remote, ensure_files, extract_tar, fetch
from genlab.errors import ConfigError, DataError

CIFAR10_ARCHIVE = Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST = ["test_batch"]
CIFAR100_ARCHIVE = Remote("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_TRAIN, CIFAR100_TEST = ["train"], ["test"]
CIFAR100_LABELS = ("fine", "coarse")

INFO = DatasetInfo(
    name="cifar10",
    channels=3,
    image_size=32,
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    flips_keep_label=True,
)
CIFAR100_FINE_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest",
    "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard",
    "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum",
    "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper",
    "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm",
)
CIFAR100_COARSE_NAMES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores", "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes", "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates",
    "people", "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)
CIFAR100_INFO = DatasetInfo(
    name="cifar100", channels=3, image_size=32, num_classes=100, mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762), class_names=CIFAR100_FINE_NAMES, flips_keep_label=True,
)

# The batches are pickles; only numpy's array and number reconstruction is allowed to run while loading them (labels
# re-saved as numpy ints are numpy scalars: a dtype and its bytes).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
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
        if name == "scalar":
            return np.int64(0).__reduce__()[0]
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


@register_dataset(INFO)
def load_cifar10_splits(data_dir: Path, download: bool) -> Splits:
    return _load_cifar("cifar10", data_dir, download, CIFAR10_ARCHIVE, CIFAR10_FOLDER, CIFAR10_TRAIN, CIFAR10_TEST,
                       b"labels", INFO.num_classes)


def describe_cifar100(data_dir: Path, labels: str = "fine", **_) -> DatasetInfo:
    """CIFAR-100's metadata: 100 fine classes, or the 20 coarse superclasses with `labels="coarse"`."""
    if labels not in CIFAR100_LABELS:
        raise ConfigError("data.labels", labels, f"one of {list(CIFAR100_LABELS)}")
    if labels == "coarse":
        return replace(CIFAR100_INFO, num_classes=20, class_names=CIFAR100_COARSE_NAMES)
    return CIFAR100_INFO


@register_dataset(describe_cifar100, name="cifar100")
def load_cifar100_splits(data_dir: Path, download: bool, *, labels: str = "fine") -> Splits:
    num_classes = describe_cifar100(data_dir, labels).num_classes
    return _load_cifar("cifar100", data_dir, download, CIFAR100_ARCHIVE, CIFAR100_FOLDER, CIFAR100_TRAIN, CIFAR100_TEST,
                       f"{labels}_labels".encode(), num_classes)


def _load_cifar(dataset: str, data_dir: Path, download: bool, archive: Remote, folder_name: str, train: list[str],
                test: list[str], label_key: bytes, num_classes: int) -> Splits:
    folder = data_dir / folder_name

    def fetch_into(_: Path) -> None:
        extract_tar(fetch(archive, data_dir / archive.filename), data_dir)

    ensure_files(dataset, folder, train + test, [archive], download, fetch_into)
    train_x, train_y = read_cifar_batches([folder / f for f in train], label_key, num_classes)
    test_x, test_y = read_cifar_batches([folder / f for f in test], label_key, num_classes)
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
