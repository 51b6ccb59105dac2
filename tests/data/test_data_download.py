"""The real download path of every new data set, against local file:// URLs: verified, moved into place, or nothing."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from genlab.data import cifar, download, mnist, svhn
from genlab.data.catalog import load_dataset
from genlab.data.download import Remote
from genlab.errors import DataError

from conftest import tar_folder, write_cifar100, write_idx_set, write_svhn


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def _no_retry_waits(monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)


def test_cifar100_archive_is_verified_extracted_and_read(tmp_path, monkeypatch):
    archive = tar_folder(write_cifar100(tmp_path / "src", train=100, test=20), tmp_path / "cifar-100-python.tar.gz")
    monkeypatch.setattr(cifar, "CIFAR100_ARCHIVE", Remote(archive.as_uri(), md5(archive)))
    splits = load_dataset("cifar100", tmp_path / "data", download=True, labels="coarse")
    assert len(splits.train_labels) == 100 and splits.train_labels.max() < 20
    assert (tmp_path / "data" / "cifar-100-python" / "meta").is_file()
    assert (tmp_path / "data" / "cifar-100-python.tar.gz").is_file()  # kept: a re-extract needs no download


def test_idx_mirror_download_fetches_all_four_files(tmp_path, monkeypatch):
    source = write_idx_set(tmp_path / "mirror", "files", train=20, test=10)
    md5s = {name: md5(source / name) for name in mnist.SOURCES["kmnist"].md5}
    monkeypatch.setitem(mnist.SOURCES, "kmnist", replace(mnist.SOURCES["kmnist"], mirror=source.as_uri() + "/", md5=md5s))
    splits = load_dataset("kmnist", tmp_path / "data", download=True)
    assert splits.train_images.shape == (20, 28, 28, 1)
    assert sorted(p.name for p in (tmp_path / "data" / "kmnist").iterdir()) == sorted(md5s)


def test_svhn_download_then_a_bad_checksum_leaves_nothing_behind(tmp_path, monkeypatch):
    source = write_svhn(tmp_path / "mirror", train=20, test=10, extra=10)
    files = {split: Remote((source / f"{split}_32x32.mat").as_uri(), md5(source / f"{split}_32x32.mat"))
             for split in ("train", "test", "extra")}
    monkeypatch.setattr(svhn, "SVHN_FILES", files)
    assert len(load_dataset("svhn", tmp_path / "data", download=True).train_labels) == 20

    monkeypatch.setitem(files, "extra", replace(files["extra"], md5="0" * 32))
    with pytest.raises(DataError) as err:
        load_dataset("svhn", tmp_path / "data", download=True, extra=True)
    message = str(err.value)
    assert "svhn: missing extra_32x32.mat" in message and "checksum mismatch" in message and "was deleted" in message
    assert sorted(p.name for p in (tmp_path / "data" / "svhn").iterdir()) == ["test_32x32.mat", "train_32x32.mat"]


def test_offline_download_says_what_is_missing_and_where_to_get_it(tmp_path, monkeypatch):
    unreachable = (tmp_path / "no-network").as_uri() + "/"
    monkeypatch.setitem(mnist.SOURCES, "fashion_mnist", replace(mnist.SOURCES["fashion_mnist"], mirror=unreachable))
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", tmp_path / "data", download=True)
    message = str(err.value)
    assert message.startswith("fashion_mnist: missing train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz")
    assert f"data.data_dir={(tmp_path / 'data').resolve()}" in message
    assert "Download failed: could not download" in message and unreachable in message
    assert not list((tmp_path / "data" / "fashion_mnist").glob("*"))


def test_files_in_place_are_read_without_checksums(tmp_path, monkeypatch):
    """A user may point at their own subset in the official format: only structure is checked at load time."""
    write_svhn(tmp_path, train=7, test=3)
    monkeypatch.setattr(svhn, "SVHN_FILES", {k: replace(r, md5="0" * 32) for k, r in svhn.SVHN_FILES.items()})
    splits = load_dataset("svhn", tmp_path, download=True)
    assert len(splits.train_labels) == 7 and np.all(splits.test_labels < 10)
