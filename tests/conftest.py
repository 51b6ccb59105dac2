"""Shared fixtures: configs composed in-process with Hydra's compose API, and data sets written in official formats."""
from __future__ import annotations

import copy
import gzip
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, open_dict

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
# A fast, quiet variant of the defaults for in-process runs. The confusion-matrix and augmentation-grid PNGs cost
# matplotlib ~1.6 s per run, twice a small run's training, and the generalization measures trace and fold the network
# in every run: the tests that check them ask for them (a later analysis/measures=… wins).
FAST = ["logger=csv", "callbacks.rich_progress_bar.enabled=false", "trainer.enable_progress_bar=false",
        "analysis.confusion_matrix=false", "augmentation.preview_images=0", "analysis/measures=none"]


def _parse_each_yaml_text_once() -> None:
    """Hydra parses every config file again in each of the ~500 compositions a test process makes (~20 % of each);
    a parse is a pure function of the text and the loader, so the test process keeps each result and hands out copies.
    Only this process: the scripts the tests start (tests/scripts.py) parse as a user's run does."""
    parse = yaml.load
    parsed: dict[tuple[str, str], object] = {}

    def load(stream, Loader):  # noqa: N803  (yaml's own name)
        text = stream if isinstance(stream, (str, bytes)) else stream.read()
        key = (text, f"{Loader.__module__}.{Loader.__qualname__}")  # OmegaConf makes a new loader class per call
        if key not in parsed:
            parsed[key] = parse(text, Loader)
        return copy.deepcopy(parsed[key])

    yaml.load = load


_parse_each_yaml_text_once()


def hydra_compose(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=overrides)


GROUPS = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
_defaults_composed: dict[tuple[str, tuple[str, ...]], DictConfig] = {}


def split_overrides(overrides: list[str]) -> tuple[list[str], list] | None:
    """The group choices and the parsed value overrides (`key=value` on a config key), or None where an override is
    anything else (an addition, a deletion, a sweep, a hydra key, a parse error): those are composed as they are."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001  (Hydra raises its own error for it in the plain composition)
        return None
    groups, values = [], []
    for override in parsed:
        if (override.is_add() or override.is_delete() or override.is_force_add() or override.is_sweep_override()
                or override.package is not None or override.is_hydra_override()):
            return None
        key = override.key_or_group
        if "/" in key or key in GROUPS:
            groups.append(override.input_line)
        else:
            values.append(override)
    return groups, values


def compose_like_hydra(config_name: str, overrides: list[str]) -> DictConfig:
    """Hydra's composition of `overrides`, in a fraction of its time (~0.25 s a composition here, ~700 in the suite).

    Hydra composes the defaults tree the group choices pick, then applies the value overrides to it in order
    (ConfigLoaderImpl._load_configuration_impl). The first step is kept per group choice, the second is Hydra's own
    function on a copy; tests/test_config.py::test_the_tests_compose_configs_as_hydra_does checks the two agree.
    """
    split = split_overrides(overrides)
    if split is None:
        return hydra_compose(config_name, overrides)
    groups, values = split
    key = (config_name, tuple(groups))
    if key not in _defaults_composed:
        _defaults_composed[key] = hydra_compose(config_name, groups)
    cfg = copy.deepcopy(_defaults_composed[key])
    ConfigLoaderImpl._apply_overrides_to_config(values, cfg)  # noqa: SLF001  (the step Hydra itself takes)
    return cfg


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose like `train.py` would; the `hydra:` resolvers that only exist under @hydra.main get real paths."""
    cfg = compose_like_hydra(config_name, overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(REPO)
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(*overrides, fast=True, config_name="train") -> a composed config writing into tmp_path/run."""

    def make(*overrides: str, fast: bool = True, config_name: str = "train") -> DictConfig:
        return compose_config([*(FAST if fast else []), *overrides], tmp_path / "run", config_name)

    return make


@pytest.fixture(autouse=True, scope="session")
def _one_thread_per_worker():
    """One intra-op thread per test process: two xdist workers on two cores only contend with more (often 10x slower)."""
    import torch

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # and for the subprocesses tests start
        # torch 2.13's oneDNN CPU kernels corrupt the heap with one intra-op thread on this CI class of machine (AMD
        # EPYC): preact_resnet's one-epoch digits run aborted in every -n 2 run, on code with and without genlab's
        # changes, and never with oneDNN off or with two threads. torch's native kernels compute the same layers.
        torch.backends.mkldnn.enabled = False


@pytest.fixture(autouse=True)
def _no_wandb_credentials(monkeypatch):
    """Tests never log online: W&B sees no key and runs offline."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")


def random_images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images whose mean brightness depends on the label, so a model can learn them."""
    base = rng.integers(0, 60, size=(len(labels), *shape), dtype=np.int64)
    return np.clip(base + labels.reshape(-1, *[1] * len(shape)) * 19, 0, 255).astype(np.uint8)


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20, seed: int = 0) -> Path:
    """CIFAR-10's python format: root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (protocol-2 pickles)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", test)]:
        labels = rng.integers(0, 10, size=n)
        data = random_images(rng, labels, (3072,))
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f, protocol=2)
    return folder


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, train: int = 60, test: int = 20, seed: int = 0) -> Path:
    """MNIST's official files: root/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz."""
    rng = np.random.default_rng(seed)
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = random_images(rng, labels, (28, 28))
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return folder


def write_idx_set(root: Path, folder: str, train: int = 60, test: int = 20, seed: int = 0) -> Path:
    """An IDX data set (Fashion-MNIST, KMNIST: MNIST's four gzipped files) in root/<folder>/."""
    rng = np.random.default_rng(seed)
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", train), ("t10k", test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = random_images(rng, labels, (28, 28))
        (target / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (target / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return target


def write_cifar100(root: Path, train: int = 200, test: int = 40, seed: int = 0) -> Path:
    """CIFAR-100's python format: root/cifar-100-python/{train,test,meta}, fine and coarse labels (protocol-2 pickles)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", train), ("test", test)):
        fine = np.arange(n) % 100
        rng.shuffle(fine)
        data = random_images(rng, fine % 10, (3072,))
        batch = {b"filenames": [f"img_{i}.png".encode() for i in range(n)], b"batch_label": name.encode(),
                 b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(), b"data": data}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [b"apple"] * 100, b"coarse_label_names": [b"fish"] * 20}, f, protocol=2)
    return folder


def svhn_arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """SVHN's .mat variables: X uint8 (32, 32, 3, N), y uint8 (N, 1) with 10 standing for digit 0."""
    rng = np.random.default_rng(seed)
    digits = np.arange(n) % 10
    rng.shuffle(digits)
    images = random_images(rng, digits, (32, 32, 3))
    return {"X": np.ascontiguousarray(images.transpose(1, 2, 3, 0)), "y": np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]}


def write_svhn(root: Path, train: int = 60, test: int = 20, extra: int = 0, seed: int = 0) -> Path:
    """SVHN's official files: root/svhn/{train,test[,extra]}_32x32.mat (MATLAB 5 format, as scipy.io.loadmat reads them)."""
    from scipy.io import savemat

    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test), ("extra", extra)):
        if n:
            savemat(folder / f"{split}_32x32.mat", svhn_arrays(n, seed + len(split)))
    return folder


def write_imagefolder(root: Path, classes=("cat", "dog", "fox"), train: int = 8, test: int = 3, size: int = 12,
                      seed: int = 0) -> Path:
    """root/{train,test}/<class>/*.png|jpg with images of a non-square size and both formats, as a user would have."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = random_images(rng, np.array([c * 3]), (size, size + 4, 3))[0]
                Image.fromarray(pixels).save(folder / f"img_{i}.{'png' if i % 2 else 'jpg'}")
    return root


# The tests that run several CPU-bound processes at once (DDP ranks, parallel sweep workers): one xdist worker runs
# them one after another (make test's --dist loadgroup), where side by side they put 6 CPU-bound processes on 2 cores.
MANY_PROCESSES = "many_processes"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first (each worker's order, which pytest-xdist hands out from): a 40 s test started last kept
    one core busy while the other had nothing left to run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
