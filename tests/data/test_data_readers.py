"""Every reader on small files written in its official format; broken files give one clear DataError naming the file."""
from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from genlab.data import mnist
from genlab.data.catalog import available_datasets, dataset_info, dataset_options, load_dataset
from genlab.errors import ConfigError, DataError

from conftest import idx_bytes, svhn_arrays, write_cifar100, write_idx_set, write_imagefolder, write_svhn

IDX_SETS = ("mnist", "fashion_mnist", "kmnist")


def check_splits(splits, train: int, test: int, shape: tuple[int, int, int], num_classes: int) -> None:
    assert splits.train_images.shape == (train, *shape) and splits.test_images.shape == (test, *shape)
    assert splits.train_images.dtype == np.uint8 and splits.train_labels.dtype == np.int64
    assert splits.train_labels.shape == (train,) and splits.test_labels.shape == (test,)
    assert 0 <= splits.train_labels.min() and splits.train_labels.max() < num_classes


def test_catalog_lists_every_data_set():
    assert available_datasets() == sorted(
        ["digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "svhn", "imagefolder", "synthetic"])
    assert dataset_options("svhn") == {"extra": False}
    assert dataset_options("cifar10") == {}


@pytest.mark.parametrize("name", IDX_SETS)
def test_idx_sets_read_their_official_files(tmp_path, name):
    write_idx_set(tmp_path, mnist.SOURCES[name].folder, train=30, test=10)
    splits = load_dataset(name, tmp_path, download=False)
    check_splits(splits, 30, 10, (28, 28, 1), 10)
    info = dataset_info(name)
    assert info.channels == 1 and info.image_size == 28 and len(info.class_names) == 10


def test_flip_metadata_follows_the_labels():
    flips = {name: dataset_info(name).flips_keep_label for name in ("digits", "mnist", "kmnist", "svhn", "fashion_mnist",
                                                                    "cifar10", "cifar100")}
    assert flips == {"digits": False, "mnist": False, "kmnist": False, "svhn": False, "fashion_mnist": True,
                     "cifar10": True, "cifar100": True}


def test_idx_bad_magic_truncated_and_mismatched_files(tmp_path):
    folder = write_idx_set(tmp_path, "kmnist", train=20, test=10)
    labels = folder / "train-labels-idx1-ubyte.gz"
    images = folder / "train-images-idx3-ubyte.gz"
    good_labels = labels.read_bytes()

    labels.write_bytes(gzip.compress(idx_bytes(np.zeros((20, 2), dtype=np.uint8))))  # idx2, not idx1
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: bad IDX magic number 0x802"):
        load_dataset("kmnist", tmp_path, download=False)

    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(19, dtype=np.uint8))))
    with pytest.raises(DataError, match=r"holds 20 images but .*train-labels-idx1-ubyte.gz holds 19 labels"):
        load_dataset("kmnist", tmp_path, download=False)

    labels.write_bytes(good_labels)
    images.write_bytes(images.read_bytes()[:-40])  # a cut-off download
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: not a readable IDX file, truncated or corrupt"):
        load_dataset("kmnist", tmp_path, download=False)

    raw = idx_bytes(np.zeros((20, 28, 28), dtype=np.uint8))
    images.write_bytes(gzip.compress(raw[:-5]))  # intact gzip, short payload
    with pytest.raises(DataError, match=r"header says \[20, 28, 28\] \(15680 bytes\) but the file holds 15675"):
        load_dataset("kmnist", tmp_path, download=False)


def test_cifar100_fine_and_coarse_labels(tmp_path):
    write_cifar100(tmp_path, train=200, test=40)
    fine = load_dataset("cifar100", tmp_path, download=False)
    coarse = load_dataset("cifar100", tmp_path, download=False, labels="coarse")
    check_splits(fine, 200, 40, (32, 32, 3), 100)
    check_splits(coarse, 200, 40, (32, 32, 3), 20)
    np.testing.assert_array_equal(coarse.train_labels, fine.train_labels // 5)  # how the writer made them
    assert dataset_info("cifar100").num_classes == 100 and dataset_info("cifar100").class_names[0] == "apple"
    info = dataset_info("cifar100", labels="coarse")
    assert info.num_classes == 20 and info.class_names[-1] == "vehicles_2"
    with pytest.raises(ConfigError, match="data.labels: got 'medium'"):
        dataset_info("cifar100", labels="medium")


def test_cifar_batches_with_wrong_content_name_the_file(tmp_path):
    folder = write_cifar100(tmp_path, train=10, test=10)
    with open(folder / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 3072), np.uint8), b"fine_labels": [100] * 10, b"coarse_labels": [0] * 10}, f)
    with pytest.raises(DataError, match=r"cifar-100-python/train: labels must lie in \[0, 99\], found \[100, 100\]"):
        load_dataset("cifar100", tmp_path, download=False)
    with open(folder / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 1024), np.uint8), b"fine_labels": [1] * 10}, f)
    with pytest.raises(DataError, match=r"b'data' must be a uint8 array of shape \(N, 3072\)"):
        load_dataset("cifar100", tmp_path, download=False)
    with open(folder / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((10, 3072), np.uint8), b"labels": [1] * 10}, f)  # a CIFAR-10 batch
    with pytest.raises(DataError, match=r"expected a dict with b'data' and b'fine_labels'"):
        load_dataset("cifar100", tmp_path, download=False)
    (folder / "train").write_bytes((folder / "test").read_bytes()[:500])
    with pytest.raises(DataError, match=r"cifar-100-python/train: not a readable CIFAR batch, the file is truncated"):
        load_dataset("cifar100", tmp_path, download=False)


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    write_svhn(tmp_path, train=30, test=10)
    splits = load_dataset("svhn", tmp_path, download=False)
    check_splits(splits, 30, 10, (32, 32, 3), 10)
    expected = svhn_arrays(30, seed=len("train"))
    np.testing.assert_array_equal(splits.train_labels, expected["y"][:, 0] % 10)
    assert 0 in splits.train_labels and 10 not in splits.train_labels
    np.testing.assert_array_equal(splits.train_images[3], expected["X"][..., 3])


def test_svhn_extra_joins_the_training_split(tmp_path):
    write_svhn(tmp_path, train=30, test=10)
    with pytest.raises(DataError, match=r"svhn: missing extra_32x32.mat in .*svhn"):
        load_dataset("svhn", tmp_path, download=False, extra=True)
    write_svhn(tmp_path, train=30, test=10, extra=20)
    check_splits(load_dataset("svhn", tmp_path, download=False, extra=True), 50, 10, (32, 32, 3), 10)


def test_svhn_broken_files_name_the_file(tmp_path):
    from scipy.io import savemat

    folder = write_svhn(tmp_path, train=30, test=10)
    train = folder / "train_32x32.mat"
    train.write_bytes(train.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"train_32x32.mat: not a readable SVHN .mat file, truncated or corrupt"):
        load_dataset("svhn", tmp_path, download=False)
    train.write_bytes(b"this is an HTML error page, not a .mat file" * 10)
    with pytest.raises(DataError, match=r"train_32x32.mat: not a readable SVHN .mat file"):
        load_dataset("svhn", tmp_path, download=False)
    arrays = svhn_arrays(30)
    savemat(train, {"X": arrays["X"], "y": arrays["y"][:29]})
    with pytest.raises(DataError, match=r"train_32x32.mat: 30 images but 'y' has shape \(29, 1\)"):
        load_dataset("svhn", tmp_path, download=False)
    savemat(train, {"X": arrays["X"], "y": np.zeros((30, 1), np.uint8)})
    with pytest.raises(DataError, match=r"labels must lie in \[1, 10\] \(10 stands for digit 0\), found \[0, 0\]"):
        load_dataset("svhn", tmp_path, download=False)
    savemat(train, {"X": arrays["X"].astype(np.float64), "y": arrays["y"]})
    with pytest.raises(DataError, match=r"'X' must be uint8 of shape \(32, 32, 3, N\), found float64"):
        load_dataset("svhn", tmp_path, download=False)
    savemat(train, {"images": arrays["X"]})
    with pytest.raises(DataError, match=r"expected variables 'X' and 'y', found \['images'\]"):
        load_dataset("svhn", tmp_path, download=False)


def test_imagefolder_decodes_resizes_and_names_classes(tmp_path):
    root = write_imagefolder(tmp_path / "pets", train=4, test=2, size=12)
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0\0")  # hidden files are skipped
    info = dataset_info("imagefolder", root, image_size=16)
    assert info.class_names == ("cat", "dog", "fox") and info.num_classes == 3 and info.mean is None
    splits = load_dataset("imagefolder", root, download=False, image_size=16)
    check_splits(splits, 12, 6, (16, 16, 3), 3)
    np.testing.assert_array_equal(np.bincount(splits.train_labels), [4, 4, 4])
    gray = load_dataset("imagefolder", root, download=False, image_size=8, channels=1)
    check_splits(gray, 12, 6, (8, 8, 1), 3)
    (root / "test").rename(root / "val")
    check_splits(load_dataset("imagefolder", root, download=False, test_split="val"), 12, 6, (32, 32, 3), 3)


def test_imagefolder_rejects_what_is_not_an_image(tmp_path):
    root = write_imagefolder(tmp_path / "pets", train=2, test=1)
    notes = root / "train" / "dog" / "notes.txt"
    notes.write_text("not a picture")
    with pytest.raises(DataError, match=r"train/dog/notes.txt: not an image file; class folders may hold only .png"):
        load_dataset("imagefolder", root, download=False)
    notes.unlink()
    (root / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"train/dog/broken.png: not a readable image, truncated or corrupt"):
        load_dataset("imagefolder", root, download=False)
    (root / "train" / "dog" / "broken.png").unlink()
    (root / "test" / "wolf").mkdir()
    with pytest.raises(DataError, match=r"test/wolf: class folder 'wolf' is not among the training classes"):
        load_dataset("imagefolder", root, download=False)
    (root / "test" / "wolf").rmdir()
    (root / "test" / "loose.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"test/loose.png: a file directly in test/"):
        load_dataset("imagefolder", root, download=False)


@pytest.mark.parametrize("channels", [1, 3])
def test_imagefolder_scales_16_bit_images_to_8_bits_instead_of_saturating_them(tmp_path, channels):
    # 16-bit grayscale PNGs (microscopy, medical imaging) became all white: Pillow's convert clips them at 255.
    from PIL import Image

    wide = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1040)  # 0 .. 65520, the full 16-bit range
    for split in ("train", "test"):
        folder = tmp_path / "cells" / split / "a"
        folder.mkdir(parents=True)
        Image.fromarray(wide).save(folder / "img.png")
    assert Image.open(folder / "img.png").mode.startswith("I")  # really a 16-bit file
    splits = load_dataset("imagefolder", tmp_path / "cells", download=False, image_size=8, channels=channels)
    expected = np.round(wide / 257).astype(np.uint8)  # 0..65535 onto 0..255
    for image in (splits.train_images[0], splits.test_images[0]):
        assert image.shape == (8, 8, channels)
        for c in range(channels):
            np.testing.assert_array_equal(image[..., c], expected)


def test_imagefolder_refuses_float_images_with_one_line(tmp_path):
    from PIL import Image

    folder = tmp_path / "cells" / "train" / "a"
    folder.mkdir(parents=True)
    Image.fromarray(np.ones((4, 4), np.float32)).save(folder / "img.tiff")
    (folder / "img.tiff").rename(folder / "img.png")  # Pillow reads by content, not by name
    with pytest.raises(DataError, match=r"img.png: floating-point pixels \(Pillow mode F\)"):
        load_dataset("imagefolder", tmp_path / "cells", download=False, test_split="train")


def test_imagefolder_missing_folders_say_where_they_were_expected(tmp_path):
    with pytest.raises(DataError, match=r"imagefolder: no training folder .*nowhere/train \(data.data_dir="):
        dataset_info("imagefolder", tmp_path / "nowhere")
    root = write_imagefolder(tmp_path / "pets", train=2, test=1)
    with pytest.raises(DataError, match=r"no test split folder .*pets/exam \(data.test_split=exam\)"):
        load_dataset("imagefolder", root, download=False, test_split="exam")
    with pytest.raises(ConfigError, match=r"data.channels: got 4"):
        dataset_info("imagefolder", root, channels=4)


def test_synthetic_is_any_shape_and_the_same_every_time(tmp_path):
    a = load_dataset("synthetic", tmp_path, download=False, image_size=20, channels=5, num_classes=4, num_train=40, num_test=8)
    b = load_dataset("synthetic", tmp_path, download=False, image_size=20, channels=5, num_classes=4, num_train=40, num_test=8)
    check_splits(a, 40, 8, (20, 20, 5), 4)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    np.testing.assert_array_equal(np.bincount(a.train_labels), [10] * 4)
    info = dataset_info("synthetic", image_size=20, channels=5, num_classes=4)
    assert (info.image_size, info.channels, info.num_classes, info.mean) == (20, 5, 4, None)


def test_missing_files_without_download_name_files_dir_and_urls(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", tmp_path, download=False)
    message = str(err.value)
    assert "fashion_mnist: missing train-images-idx3-ubyte.gz" in message and str(tmp_path / "fashion_mnist") in message
    assert f"data.data_dir={tmp_path}" in message and "data.download=false" in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz" in message
    assert "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in message
    with pytest.raises(DataError, match=r"(?s)svhn: missing train_32x32.mat, test_32x32.mat .*ufldl.stanford.edu/housenumbers"):
        load_dataset("svhn", tmp_path, download=False)
    with pytest.raises(DataError, match=r"(?s)cifar100: missing train, test in .*cifar-100-python.*cifar-100-python.tar.gz"):
        load_dataset("cifar100", tmp_path, download=False)
