"""SVHN (Street View House Numbers, cropped digits) in its official MATLAB format: {train,test,extra}_32x32.mat."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset
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


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN .mat file -> uint8 images (N, 32, 32, 3) and int64 labels 0..9 (SVHN writes digit 0 as label 10)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path)
    except (MatReadError, ValueError, TypeError, OSError, EOFError, IndexError, KeyError) as err:
        raise DataError(f"{path}: not a readable SVHN .mat file, truncated or corrupt ({err})") from err
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path}: expected variables 'X' and 'y', found {sorted(k for k in mat if not k.startswith('__'))}")
    images, labels = mat["X"], np.asarray(mat["y"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: 'X' must be uint8 of shape (32, 32, 3, N), found {images.dtype} {images.shape}")
    count = images.shape[3]
    if labels.size != count or (labels.ndim == 2 and labels.shape[1] != 1) or labels.ndim > 2:
        raise DataError(f"{path}: {count} images but 'y' has shape {labels.shape}, expected ({count}, 1)")
    labels = labels.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: labels must lie in [1, 10] (10 stands for digit 0), found [{labels.min()}, {labels.max()}]")
    return np.ascontiguousarray(images.transpose(3, 0, 1, 2)), labels % 10
