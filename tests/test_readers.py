"""CIFAR-10 and MNIST readers on files in the official formats; every broken input gives a clear error naming the file."""
from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from genlab.data import cifar, mnist
from genlab.data.catalog import load_dataset
from genlab.data.download import Remote, fetch
from genlab.errors import DataError

from conftest import idx_bytes, tar_folder, write_cifar10, write_mnist


def test_cifar10_reads_official_batches(tmp_path):
    write_cifar10(tmp_path, per_batch=7, test=5)
    splits = load_dataset("cifar10", tmp_path, download=False)
    assert splits.train_images.shape == (35, 32, 32, 3) and splits.train_images.dtype == np.uint8
    assert splits.test_images.shape == (5, 32, 32, 3) and splits.train_labels.dtype == np.int64


def test_cifar10_pixel_layout_is_row_major_rgb_planes(tmp_path):
    folder = write_cifar10(tmp_path, per_batch=2, test=2)
    x, _ = cifar.read_cifar_batches([folder / "test_batch"], b"labels", 10)
    import pickle

    raw = pickle.load(open(folder / "test_batch", "rb"), encoding="bytes")[b"data"]
    # the first 1024 bytes are the red plane, row by row
    assert np.array_equal(x[0, :, :, 0].ravel(), raw[0, :1024]) and np.array_equal(x[0, 0, :, 2], raw[0, 2048:2080])


def test_truncated_cifar_batch_names_the_file(tmp_path):
    folder = write_cifar10(tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3.*truncated or corrupt"):
        load_dataset("cifar10", tmp_path, download=False)


def test_cifar_batch_with_wrong_shape_or_labels_is_rejected(tmp_path):
    import pickle

    folder = write_cifar10(tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, f, protocol=2)
    with pytest.raises(DataError, match=r"test_batch: b'data' must be a uint8 array of shape \(N, 3072\)"):
        load_dataset("cifar10", tmp_path, download=False)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(DataError, match="test_batch: 3 images but 2 labels"):
        load_dataset("cifar10", tmp_path, download=False)


def test_cifar_pickle_cannot_run_code(tmp_path):
    import os
    import pickle

    folder = write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match="forbidden global"):
        load_dataset("cifar10", tmp_path, download=False)


def test_missing_cifar_offline_says_what_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path / "nowhere", download=False)
    message = str(err.value)
    assert "data_batch_1" in message and "test_batch" in message
    assert f"data.data_dir={(tmp_path / 'nowhere').resolve()}" in message
    assert cifar.CIFAR10_ARCHIVE.url in message and cifar.CIFAR10_ARCHIVE.md5 in message


def test_failed_download_gives_the_missing_files_message(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", Remote(f"file://{tmp_path}/offline/cifar-10-python.tar.gz", "0" * 32))
    with pytest.raises(DataError, match=r"(?s)cifar10: missing .*Download failed: could not download"):
        load_dataset("cifar10", tmp_path / "data", download=True)
    assert not list((tmp_path / "data").glob("*.tar.gz"))


def test_cifar_download_is_verified_and_extracted(tmp_path, monkeypatch):
    archive = tar_folder(write_cifar10(tmp_path / "src", per_batch=3, test=2), tmp_path / "cifar-10-python.tar.gz")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE", Remote(archive.as_uri(), md5))
    splits = load_dataset("cifar10", tmp_path / "data", download=True)
    assert len(splits.train_labels) == 15 and (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").is_file()


def test_bad_checksum_leaves_nothing_behind(tmp_path):
    source = tmp_path / "file.bin"
    source.write_bytes(b"not the real file")
    dest = tmp_path / "data" / "file.bin"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(Remote(source.as_uri(), "0" * 32), dest, retries=1)
    assert list((tmp_path / "data").iterdir()) == []


def test_mnist_reads_official_idx_files(tmp_path):
    write_mnist(tmp_path, train=30, test=10)
    splits = load_dataset("mnist", tmp_path, download=False)
    assert splits.train_images.shape == (30, 28, 28, 1) and splits.test_labels.shape == (10,)


def test_mnist_bad_magic_truncation_and_count_mismatch(tmp_path):
    folder = write_mnist(tmp_path)
    images = folder / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(5)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: bad IDX magic number 0x801, expected 0x803"):
        load_dataset("mnist", tmp_path, download=False)
    images.write_bytes(gzip.compress(idx_bytes(np.zeros((20, 28, 28), np.uint8)))[:-30])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: not a readable IDX file, truncated or corrupt"):
        load_dataset("mnist", tmp_path, download=False)
    images.write_bytes(gzip.compress(idx_bytes(np.zeros((19, 28, 28), np.uint8))))
    with pytest.raises(DataError, match="holds 19 images but .* holds 20 labels"):
        load_dataset("mnist", tmp_path, download=False)


def test_missing_mnist_offline_lists_the_files_and_sources(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path, download=False)
    source = mnist.SOURCES["mnist"]
    assert all(name in str(err.value) for name in source.md5) and source.mirror in str(err.value)


def test_digits_split_is_fixed_and_stratified():
    a, b = load_dataset("digits", ".", False), load_dataset("digits", ".", False)
    assert np.array_equal(a.test_labels, b.test_labels) and len(a.test_labels) == 360
    assert np.bincount(a.test_labels).min() >= 35
