"""CIFAR-10 and CIFAR-100 in their official python format: pickled batches inside cifar-10[0]-python.tar.gz."""
from __future__ import annotations

import codecs
import io
import pickle
import pickletools
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset
from genlab.data.checks import integer_labels, shown
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

# A CIFAR batch is a pickle of a dict of plain values and numpy arrays (protocol 2 as published, protocol 4 when
# Python 3 re-saves a subset with its default); nothing else in one is trusted.
# numpy rebuilds an array from whatever it is handed: `_reconstruct` allocates the shape it is given, and an object
# array given too short a list crashes the process. So numpy may only be called as it pickles itself, with arrays and
# numbers of plain dtypes.


def _is_plain_number(dtype: object) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in "biuf"  # bools, integers, floats: no objects, no fields


def _is_plain_dtype_state(state: object) -> bool:
    # a Python 2 pickle read with encoding="bytes" (the official batches) gives the byte order as bytes
    return (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in _BYTE_ORDERS
            and state[2:] == (None, None, None, -1, -1, 0))


_BYTE_ORDERS = ("<", ">", "|", "=", b"<", b">", b"|", b"=")


def _empty_array(subtype: object, shape: object, typecode: object) -> np.ndarray:
    if subtype is not np.ndarray or shape != (0,) or typecode not in (b"b", "b"):
        raise pickle.UnpicklingError(f"an array reconstruction of {shown((subtype, shape, typecode))}, where numpy "
                                     "writes (ndarray, (0,), b'b') and sets the array's content afterwards")
    return _NUMPY_RECONSTRUCT(np.ndarray, shape, typecode)


def _number(dtype: object, data: object) -> np.generic:
    if not _is_plain_number(dtype):
        raise pickle.UnpicklingError(f"a numpy scalar of {shown(dtype)}; only bools, integers and floats are read")
    return _NUMPY_SCALAR(dtype, data)


def _latin1_bytes(text: object, encoding: object) -> bytes:
    if encoding != "latin1":  # how Python 3 writes bytes into a protocol-2 pickle; no other codec makes a bytes value
        raise pickle.UnpicklingError(f"a bytes value encoded as {shown(encoding)}, expected latin1")
    return codecs.encode(text, encoding)


_NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own, whatever its module path
_NUMPY_SCALAR = np.int64(0).__reduce__()[0]
_CALLABLE = (_empty_array, _number, _latin1_bytes, np.dtype)
# numpy 1.x pickles name numpy.core, numpy 2.x numpy._core; labels re-saved as numpy ints are numpy scalars
_ALLOWED_GLOBALS = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _empty_array for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): _number for core in ("core", "_core")},
    ("numpy", "ndarray"): np.ndarray,  # only as _reconstruct's first argument: load_reduce never calls it
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _OpcodeTable(dict):
    def __missing__(self, code: int):
        raise pickle.UnpicklingError(f"invalid pickle opcode {bytes([code])!r}")


def _refused(opcode: pickletools.OpcodeInfo):
    def refuse(_):
        raise pickle.UnpicklingError(f"pickle opcode {opcode.name} (protocol {opcode.proto}), which a CIFAR batch "
                                     "(plain values and numpy arrays, pickle protocol 2 to 4) never holds")

    return refuse


def _batch_opcodes(reduce, build) -> _OpcodeTable:
    """Python's opcode table up to protocol 4 with REDUCE and BUILD checked, less the opcodes that call a class past
    load_reduce (INST, OBJ, NEWOBJ, NEWOBJ_EX; numpy never writes them) and protocol 5's buffers (BYTEARRAY8 allocates
    the length it declares before reading it; numpy's protocol-5 pickles need a global never allowed here)."""
    table = _OpcodeTable()
    for op in pickletools.opcodes:
        code = op.code.encode("latin-1")[0]
        if op.proto > 4 or op.name in ("INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"):
            table[code] = _refused(op)
        else:
            table[code] = {"REDUCE": reduce, "BUILD": build}.get(op.name, pickle._Unpickler.dispatch[code])
    return table


class _BatchUnpickler(pickle._Unpickler):
    """Python's own unpickler, not the C one: the C one allocates the length a counted opcode (BINBYTES, BINBYTES8)
    declares before it reads the bytes, a length a 20-byte file can set to terabytes; this one reads them from memory,
    so no string it holds is larger than the file."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return _ALLOWED_GLOBALS[module, name]

    def load_reduce(self):
        if not any(self.stack[-2] is call for call in _CALLABLE):
            raise pickle.UnpicklingError(f"a call of {shown(self.stack[-2])}, which a CIFAR batch never makes")
        super().load_reduce()

    def load_build(self):
        target, state = self.stack[-2], self.stack[-1]
        if isinstance(target, np.ndarray):
            dtype = state[-3] if isinstance(state, tuple) and len(state) in (4, 5) else None  # [version,] shape, dtype
            if not _is_plain_number(dtype):
                raise pickle.UnpicklingError(f"an array of {shown(dtype)}; only arrays of bools, integers and floats "
                                             "are read")
        elif isinstance(target, np.dtype):
            if not _is_plain_number(target):
                raise pickle.UnpicklingError(f"a {shown(target)}; only dtypes of bools, integers and floats are read")
            # numpy's __setstate__ crashes on some states, and others flag a plain dtype as holding objects: only
            # the state numpy writes for a plain dtype is applied
            if not _is_plain_dtype_state(state):
                raise pickle.UnpicklingError(f"a dtype state {shown(state)}, where numpy writes (3, byte order, None, "
                                             "None, None, -1, -1, 0) for bools, integers and floats")
        else:
            raise pickle.UnpicklingError(f"a state for a {type(target).__name__}, which a CIFAR batch never holds")
        super().load_build()

    dispatch = _batch_opcodes(load_reduce, load_build)


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
        # from memory, not the file: a read of n bytes from a file allocates n before it finds the file shorter
        batch = _BatchUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, OSError) as err:
        reason = str(err) or "the pickle ends early"
        raise DataError(f"{path}: not a readable CIFAR batch, the file is truncated or corrupt ({reason})") from err
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        found = f"keys {shown(sorted(batch, key=shown))}" if isinstance(batch, dict) else f"a {type(batch).__name__}"
        raise DataError(f"{path}: expected a dict with b'data' and {label_key!r}, found {found}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else f"a {type(data).__name__}"
        raise DataError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), found {found}")
    labels = integer_labels(path, batch[label_key], 0, num_classes - 1)
    if labels.ndim != 1:
        raise DataError(f"{path}: labels must be a flat list, found an array of shape {labels.shape}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels
