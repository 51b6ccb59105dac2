"""SVHN (Street View House Numbers, cropped digits) in its official MATLAB format: {train,test,extra}_32x32.mat."""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset
from genlab.data.checks import integer_labels, max_inflated_size, shown
from genlab.data.download import Remote, ensure_files, fetch
from genlab.errors import DataError

SVHN_FOLDER = "svhn"
SVHN_FILES = {  # split -> the official file and its published MD5 (as listed in torchvision's dataset sources)
    "train": Remote("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": Remote("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    "extra": Remote("http://ufldl.stanford.edu/housenumbers/extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
}

INFO = DatasetInfo(
    name="svhn",
    channels=3,
    image_size=32,
    num_classes=10,
    mean=(0.4377, 0.4438, 0.4728),
    std=(0.1980, 0.2010, 0.1970),
    class_names=tuple(str(d) for d in range(10)),
)


@register_dataset(INFO)
def load_svhn_splits(data_dir: Path, download: bool, *, extra: bool = False) -> Splits:
    """Train (plus the 531,131 easier `extra` images when `extra`) and test splits from `data_dir/svhn/`."""
    folder = data_dir / SVHN_FOLDER
    train_splits = ["train", "extra"] if extra else ["train"]
    remotes = [SVHN_FILES[split] for split in [*train_splits, "test"]]

    def fetch_into(target: Path) -> None:
        for remote in remotes:
            fetch(remote, target / remote.filename)

    ensure_files("svhn", folder, [r.filename for r in remotes], remotes, download, fetch_into)
    train = [read_svhn_mat(folder / SVHN_FILES[split].filename) for split in train_splits]
    test_x, test_y = read_svhn_mat(folder / SVHN_FILES["test"].filename)
    return Splits(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), test_x, test_y)


SVHN_LABELS = "[1, 10] (10 stands for digit 0)"
# MATLAB's numeric classes as whosmat names them, by the dtype loadmat gives them (the official 'y' is double)
INTEGER_CLASSES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
MATLAB_NUMBERS = {"double": "float64", "single": "float32", **{name: name for name in INTEGER_CLASSES}}


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN .mat file -> uint8 images (N, 32, 32, 3) and int64 labels 0..9 (SVHN writes digit 0 as label 10).

    The classes and shapes of 'X' and 'y' are checked from their headers before any data is read, and 'X' against
    what the file can hold (a compressed variable inflates at most 1032-fold); then only 'X' and 'y' are loaded."""
    from scipy.io import loadmat, whosmat
    from scipy.io.matlab import MatReadError, matfile_version

    try:
        version = matfile_version(path)[0]  # 0: v4, 1: v5 to v7, 2: v7.3
        if version == 2:  # HDF5, which only h5py reads
            raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file, which genlab cannot read; re-save it as v7 in MATLAB "
                            f"or Octave: load('{path.name}'); save('{path.name}', 'X', 'y', '-v7')")
        variables = {name: (shape, kind) for name, shape, kind in whosmat(path)}
        if "X" in variables:
            _check_declared_images(path, *variables["X"])
        if "y" in variables:
            _check_declared_labels(path, *variables["y"], variables["X"][0][3] if "X" in variables else None)
        if version == 1:
            _check_data_types(path, [name for name in ("X", "y") if name in variables])
        # whosmat lists the variables whose headers it finds: loading tells a truncated file from one that lacks some
        mat = loadmat(path, variable_names=["X", "y"])
    except (MatReadError, ValueError, TypeError, OSError, EOFError, IndexError, KeyError, zlib.error) as err:
        raise DataError(f"{path}: not a readable SVHN .mat file, truncated or corrupt ({err})") from err
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: expected variables 'X' and 'y', found {shown(sorted(variables))}")
    labels = integer_labels(path, mat["y"], 1, 10, SVHN_LABELS)
    return np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2)), labels.reshape(-1) % 10


# scipy's v5 reader looks up the type code of an array's data, unchecked, in a table of 20 dtypes, so one flipped byte
# crashes the process (scipy PR 25349, not merged; loadmat's docs say it is not hardened for untrusted input). These
# are the codes it has a dtype for; X's and y's are read from their headers first.
SCIPY_DATA_TYPES = {1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 16, 17, 18}
MI_MATRIX, MI_COMPRESSED = 14, 15
COMPLEX_FLAG = 0x800
HEAD_BYTES = 1 << 16  # an array's flags, dims and name, which come before its data: plenty for any real name and shape


def _check_data_types(path: Path, names: list[str]) -> None:
    for name, (is_complex, data_type) in _data_types(path, names).items():
        if is_complex:
            raise DataError(f"{path}: '{name}' holds complex numbers, expected real ones")
        if data_type not in SCIPY_DATA_TYPES:
            raise DataError(f"{path}: '{name}' holds data of MATLAB type code {data_type}, expected one of "
                            f"{sorted(SCIPY_DATA_TYPES)}; the file is corrupt")


def _data_types(path: Path, names: list[str]) -> dict[str, tuple[bool, int | None]]:
    """For the named arrays of a MATLAB v5 file: whether each is complex, and the type code of its data (None: the
    file ends before it). Only the head of each variable is read, and inflated where it is compressed."""
    found = {}
    with open(path, "rb") as f:
        f.seek(126)
        order = "<" if f.read(2) == b"IM" else ">"
        position = 128
        while len(found) < len(names):
            f.seek(position)
            tag = f.read(8)
            if len(tag) < 8:
                break
            element_type, size = struct.unpack(order + "II", tag)
            head = f.read(min(size, HEAD_BYTES))
            if element_type == MI_COMPRESSED:
                head = zlib.decompressobj().decompress(head, HEAD_BYTES)[8:]  # past the miMATRIX tag inside
            elif element_type != MI_MATRIX:
                break  # not a variable: scipy refuses the file there itself
            name, flags, data_type = _matrix_head(head, order)
            if name in names:
                found[name] = (bool(flags & COMPLEX_FLAG), data_type)
            position += 8 + size
    return found


def _matrix_head(head: bytes, order: str) -> tuple[str | None, int, int | None]:
    """An miMATRIX's name, array flags and data type code, from its first elements: flags, dims, name, data."""
    elements = list(_elements(head, order, count=4))
    if len(elements) < 3 or len(elements[0][1]) < 4:
        return None, 0, None
    flags = struct.unpack_from(order + "I", elements[0][1])[0]
    return elements[2][1].decode("latin-1"), flags, elements[3][0] if len(elements) == 4 else None


def _elements(head: bytes, order: str, count: int):
    position = 0
    while count and position + 8 <= len(head):
        first, second = struct.unpack_from(order + "II", head, position)
        if first >> 16:  # a small element: type and size share the first word, the data fills the second
            yield first & 0xFFFF, head[position + 4 : position + 4 + (first >> 16)]
            position += 8
        else:
            yield first, head[position + 8 : position + 8 + second]
            position += 8 + -(-second // 8) * 8  # data is padded to 8 bytes
        count -= 1


def _check_declared_images(path: Path, shape: tuple[int, ...], kind: str) -> None:
    if kind != "uint8" or len(shape) != 4 or shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: 'X' must be uint8 of shape (32, 32, 3, N), found {MATLAB_NUMBERS.get(kind, kind)} "
                        f"{shape}")
    size, declared = path.stat().st_size, math.prod(shape)
    if declared > max_inflated_size(size):
        raise DataError(f"{path}: 'X' declares {shape} ({declared} bytes) but a .mat file of {size} bytes holds at "
                        f"most {max_inflated_size(size)}")


def _check_declared_labels(path: Path, shape: tuple[int, ...], kind: str, count: int | None) -> None:
    if kind not in MATLAB_NUMBERS:
        raise DataError(f"{path}: 'y' must be a numeric array of labels in {SVHN_LABELS}, found a MATLAB {kind} array")
    if count is not None and shape not in ((count, 1), (count,)):
        raise DataError(f"{path}: {count} images but 'y' has shape {shape}, expected ({count}, 1)")
