"""Hostile files for every reader, written in their real formats: each is refused with one line naming the file, the
bad value and what is allowed, leaves the data folder as it was, and allocates nothing near what the file declares."""
from __future__ import annotations

import codecs
import gzip
import io
import pickle
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from genlab.data.catalog import load_dataset
from genlab.data.imagefolder import MAX_IMAGE_PIXELS, decode_image
from genlab.errors import DataError

from conftest import idx_bytes, svhn_arrays, write_cifar10, write_imagefolder, write_mnist, write_svhn
from test_data_readers import check_splits

MB = 1 << 20
# Far above what reading these few-image data sets takes, far below any size the hostile files declare (gigabytes
# to terabytes): a reader that allocated what it was told before checking would cross it.
ALLOCATION_LIMIT = 24 * MB


def refused(load, root: Path, match: str) -> str:
    """`load()` raises a one-line DataError matching `match`, allocates less than ALLOCATION_LIMIT on the way (numpy's
    and Python's allocations, as tracemalloc sees them) and changes no file under `root`; returns the message."""
    before = _files(root)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=match) as err:
            load()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert peak < ALLOCATION_LIMIT, f"{peak / MB:.0f} MB allocated before the refusal"
    assert _files(root) == before
    return message


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


# ---- CIFAR: pickled batches ----------------------------------------------------------------------------------------

_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]
_SCALAR = np.int64(0).__reduce__()[0]


class Reduces:
    """Pickles as the call it is given: the way a crafted batch makes the unpickler call something."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


UNBUILT_OBJECT_DTYPE = Reduces(np.dtype, ("O", False, True))  # made by a call only, never given a state


def batch(labels=None, data=None) -> dict:
    return {b"data": np.zeros((4, 3072), np.uint8) if data is None else data,
            b"labels": [0, 1, 2, 3] if labels is None else labels}


def array_of(dtype_or_reduce, state_shape=(4, 3072), data=b"") -> Reduces:
    """An array pickled as numpy pickles one, (_reconstruct(ndarray, (0,), b'b'), then BUILD), with a given dtype."""
    return Reduces(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, state_shape, dtype_or_reduce, False, data))


def counted(opcode: bytes, length: int) -> bytes:
    """A pickle holding one counted opcode that declares `length` bytes, followed by three."""
    return b"\x80\x04" + opcode + struct.pack("<Q", length) + b"abc"


CIFAR_CASES = {  # case: (what test_batch holds, the refusal)
    "string labels": (batch(["a", "b", "c", "d"]),
                      r"test_batch: labels must be whole numbers in \[0, 9\], found str 'a' at index 0$"),
    "digit-string labels": (batch(["0", "1", "2", "3"]), r"found str '0' at index 0$"),
    "None labels": (batch([None] * 4), r"test_batch: labels must be whole numbers in \[0, 9\], found None at index 0$"),
    "mixed-type labels": (batch([1, "2", None, 3]), r"found str '2' at index 1$"),
    "fractional labels": (batch([1, 2.5, 3, 4]), r"found 2.5 at index 1$"),
    "NaN labels": (batch([float("nan")] * 4), r"found nan at index 0$"),
    "bool labels": (batch([True, False, True, False]), r"found bool True at index 0$"),
    "ragged labels": (batch([[1], [2, 3], 4, 5]), r"found nested lists of unequal lengths$"),
    "nested labels": (batch([[1], [2], [3], [4]]), r"labels must be a flat list, found an array of shape \(4, 1\)$"),
    "a 20000-bit label": (batch([2**20000] * 4), r"labels must lie in \[0, 9\], found \[<an integer of 20001 bits>"),
    "mixed-type keys": ({"labels": [1], 1: 2, None: 3, b"data": np.zeros((1, 3072), np.uint8)},
                        r"expected a dict with b'data' and b'labels', found keys \['labels', 1, None, b'data'\]$"),
    "a list, not a dict": ([1, 2, 3], r"expected a dict with b'data' and b'labels', found a list$"),
    "data of another type": (batch(data=[[0] * 3072] * 4), r"b'data' must be a uint8 array of shape \(N, 3072\), "
                                                           r"found a list$"),
    # numpy handed an object array with too short a list crashed the process
    "object array, short list": (batch(array_of(UNBUILT_OBJECT_DTYPE, (4,), [1])),
                                 r"not a readable CIFAR batch.*\(an array of dtype\('O'\); only arrays of bools"),
    "object dtype": (batch(array_of(np.dtype("O"), (4,), [1])), r"\(a dtype\('O'\); only dtypes of bools, integers"),
    "object scalar labels": (batch([Reduces(_SCALAR, (UNBUILT_OBJECT_DTYPE, 5))] * 4),
                             r"a numpy scalar of dtype\('O'\); only bools, integers and floats are read"),
    # a dtype state numpy never writes: numpy raised SystemError, then crashed
    "mangled dtype state": (batch(data=array_of(Reduces(np.dtype, ("u1", False, True), (3, "|", 20046, -1, -1, 0)))),
                            r"a dtype state \(3, '\|', 20046, -1, -1, 0\), where numpy writes \(3, byte order"),
    "dtype flagged as holding objects": (
        batch(data=array_of(Reduces(np.dtype, ("u1", False, True), (3, "|", None, None, None, -1, -1, 63)))),
        r"a dtype state \(3, '\|', None, None, None, -1, -1, 63\)"),
    # _reconstruct allocates the shape it is given: a terabyte
    "terabyte reconstruct": (batch(data=Reduces(_RECONSTRUCT, (np.ndarray, (10**12,), b"b"))),
                             r"an array reconstruction of \(<class 'numpy.ndarray'>, \(1000000000000,\), b'b'\)"),
    "ndarray called": (batch(data=Reduces(np.ndarray, ((10**12,),))), r"a call of <class 'numpy.ndarray'>, which a "
                                                                      r"CIFAR batch never makes"),
    "NEWOBJ of ndarray": (b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x40\x85\x81.", r"pickle opcode NEWOBJ"),
    "OBJ of ndarray": (b"(cnumpy\nndarray\nJ\x00\x00\x00\x40\x85o.", r"pickle opcode OBJ \(protocol 1\)"),
    # the C unpickler allocated the declared length before reading: 10 TB here
    "BINBYTES8 of 10 TB": (counted(b"\x8e", 10 << 40), r"truncated or corrupt \(the pickle ends early\)$"),
    "BYTEARRAY8 of 10 TB": (counted(b"\x96", 10 << 40), r"pickle opcode BYTEARRAY8 \(protocol 5\)"),
    "other codec": (batch(data=Reduces(codecs.encode, ("abc", "rot13"))),
                    r"a bytes value encoded as 'rot13', expected latin1"),
    "forbidden global": (batch(data=Reduces(print, ("pwned",))), r"forbidden global __builtin__.print"),
}


@pytest.mark.parametrize("case", CIFAR_CASES)
def test_hostile_cifar_batches_are_one_line(tmp_path, case):
    content, match = CIFAR_CASES[case]
    folder = write_cifar10(tmp_path, per_batch=4, test=4)
    (folder / "test_batch").write_bytes(content if isinstance(content, bytes) else pickle.dumps(content, protocol=2))
    refused(lambda: load_dataset("cifar10", tmp_path, download=False), tmp_path, match)


@pytest.mark.parametrize("protocol", [0, 2, 3, 4])
def test_batches_of_every_protocol_python_writes_by_default_still_load(tmp_path, protocol):
    folder = write_cifar10(tmp_path, per_batch=4, test=4)
    labels = [np.int64(3), 1, 2, 0]  # labels re-saved as numpy ints too
    (folder / "test_batch").write_bytes(pickle.dumps(batch(labels), protocol=protocol))
    splits = load_dataset("cifar10", tmp_path, download=False)
    check_splits(splits, 20, 4, (32, 32, 3), 10)
    assert splits.test_labels.tolist() == [3, 1, 2, 0]


# ---- MNIST: gzipped IDX --------------------------------------------------------------------------------------------

def idx_header(*dims: int) -> bytes:
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def gzip_bomb(head: bytes, inflated_mb: int) -> bytes:
    """`head` then `inflated_mb` MB of zeros, as a 1000-fold gzip (one member repeated: Python reads every member)."""
    zeros = gzip.compress(bytes(MB))
    return gzip.compress(head) + zeros * inflated_mb


MNIST_CASES = {  # case: (file, content, refusal)
    "header declaring 4 billion images": (
        "t10k-images-idx3-ubyte.gz", gzip.compress(idx_header(2**32 - 1, 28, 28) + bytes(4 * 784)),
        r"t10k-images-idx3-ubyte.gz: header says \[4294967295, 28, 28\] \(3367254359280 bytes\) but a gzip file of "
        r"\d+ bytes holds at most \d+$"),
    "gzip bomb behind an honest header": (
        "t10k-images-idx3-ubyte.gz", gzip_bomb(idx_header(4, 28, 28), 64),
        r"t10k-images-idx3-ubyte.gz: header says \[4, 28, 28\] \(3136 bytes\) but the file holds more$"),
    "images of 0x0 pixels": ("t10k-images-idx3-ubyte.gz", gzip.compress(idx_header(4, 0, 0)),
                             r"header says \[4, 0, 0\], expected \[N, 28, 28\]$"),
    "images of another size": ("t10k-images-idx3-ubyte.gz", gzip.compress(idx_bytes(np.zeros((4, 32, 32), np.uint8))),
                               r"header says \[4, 32, 32\], expected \[N, 28, 28\]$"),
    "header cut short": ("t10k-images-idx3-ubyte.gz", gzip.compress(idx_header(4, 28, 28)[:10]),
                         r"truncated IDX header \(10 bytes, expected 16\)$"),
    "labels declaring 4 billion": ("t10k-labels-idx1-ubyte.gz", gzip.compress(idx_header(2**32 - 1) + bytes(4)),
                                   r"t10k-labels-idx1-ubyte.gz: header says \[4294967295\] \(4294967295 bytes\) but a "
                                   r"gzip file of \d+ bytes"),
    "label out of range": ("t10k-labels-idx1-ubyte.gz", gzip.compress(idx_bytes(np.array([0, 1, 12, 3], np.uint8))),
                           r"t10k-labels-idx1-ubyte.gz: labels must lie in \[0, 9\], found \[0, 12\]$"),
}


@pytest.mark.parametrize("case", MNIST_CASES)
def test_hostile_idx_files_are_one_line(tmp_path, case):
    name, content, match = MNIST_CASES[case]
    folder = write_mnist(tmp_path, train=6, test=4)
    (folder / name).write_bytes(content)
    refused(lambda: load_dataset("mnist", tmp_path, download=False), tmp_path, match)


# ---- SVHN: MATLAB .mat ---------------------------------------------------------------------------------------------

def matlab_v73() -> bytes:
    """What MATLAB's `save -v7.3` writes first: a 128-byte MAT header saying version 0x0200, then HDF5 at 512."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    return (text.ljust(116, b" ") + bytes(8) + b"\x00\x02IM").ljust(512, b"\0") + b"\x89HDF\r\n\x1a\n" + bytes(64)


def mat_bytes(variables: dict, compressed: bool = False) -> bytes:
    from scipy.io import savemat

    out = io.BytesIO()
    savemat(out, variables, do_compression=compressed)
    return out.getvalue()


def with_declared_count(mat: bytes, count: int, declared: int) -> bytes:
    """An uncompressed .mat whose X header declares `declared` images where its data holds `count`."""
    dims = struct.pack("<4i", 32, 32, 3, count)
    assert mat.count(dims) == 1
    return mat.replace(dims, struct.pack("<4i", 32, 32, 3, declared))


def with_y_data_type(mat: bytes, code: int) -> bytes:
    """y's data element (the last in the file, a small element: 2-byte type, 2-byte size) with another type code."""
    tag = mat.rindex(struct.pack("<HH", 2, 4))  # miUINT8, 4 bytes: write_svhn's y of 4 labels
    return mat[:tag] + struct.pack("<H", code) + mat[tag + 2:]


def with_corrupt_checksum(mat: bytes) -> bytes:
    """The adler32 that ends X's compressed stream (the first variable, from byte 128), with one byte flipped."""
    end = 136 + struct.unpack_from("<I", mat, 132)[0]
    return mat[:end - 1] + bytes([mat[end - 1] ^ 0xFF]) + mat[end:]


ARRAYS = svhn_arrays(4)
X, Y = ARRAYS["X"], ARRAYS["y"]
SVHN_CASES = {  # case: (train_32x32.mat's content, refusal)
    "MATLAB v7.3": (matlab_v73(), r"train_32x32.mat: a MATLAB v7.3 \(HDF5\) file, which genlab cannot read; re-save "
                                  r"it as v7 in MATLAB or Octave: load\('train_32x32.mat'\); save\('train_32x32.mat', "
                                  r"'X', 'y', '-v7'\)$"),
    "string labels": (mat_bytes({"X": X, "y": np.array(["1", "2", "3", "4"])}),
                      r"train_32x32.mat: 'y' must be a numeric array of labels in \[1, 10\] \(10 stands for digit 0\), "
                      r"found a MATLAB char array$"),
    "ragged cells": (mat_bytes({"X": X, "y": np.array([np.array([1]), np.array([1, 2]), 3, "a"], dtype=object)}),
                     r"found a MATLAB cell array$"),
    "logical labels": (mat_bytes({"X": X, "y": np.ones((4, 1), bool)}), r"found a MATLAB logical array$"),
    "fractional labels": (mat_bytes({"X": X, "y": np.full((4, 1), 2.5)}),
                          r"labels must be whole numbers in \[1, 10\] \(10 stands for digit 0\), found 2.5 at "
                          r"index 0$"),
    "NaN labels": (mat_bytes({"X": X, "y": np.full((4, 1), np.nan)}), r"found nan at index 0$"),
    "complex labels": (mat_bytes({"X": X, "y": Y + 1j}), r"'y' holds complex numbers, expected real ones$"),
    "labels in a row": (mat_bytes({"X": X, "y": Y.T}), r"4 images but 'y' has shape \(1, 4\), expected \(4, 1\)$"),
    "cell images": (mat_bytes({"X": np.array([X, 1], dtype=object), "y": Y}),
                    r"'X' must be uint8 of shape \(32, 32, 3, N\), found cell \(1, 2\)$"),
    "X declaring 2 billion images": (
        with_declared_count(mat_bytes(ARRAYS), 4, 2**31 - 1),
        r"'X' declares \(32, 32, 3, 2147483647\) \(\d+ bytes\) but a .mat file of \d+ bytes holds at most"),
    # one flipped byte here crashed the process inside scipy
    "y's data type code corrupt": (with_y_data_type(mat_bytes(ARRAYS), 243),
                                   r"'y' holds data of MATLAB type code 243, expected one of \[1, 2, "),
    "compressed X corrupt": (with_corrupt_checksum(mat_bytes(ARRAYS, compressed=True)),
                             r"not a readable SVHN .mat file, truncated or corrupt \(Error -3 while decompressing"),
}


@pytest.mark.parametrize("case", SVHN_CASES)
def test_hostile_svhn_files_are_one_line(tmp_path, case):
    content, match = SVHN_CASES[case]
    folder = write_svhn(tmp_path, train=4, test=4)
    (folder / "train_32x32.mat").write_bytes(content)
    refused(lambda: load_dataset("svhn", tmp_path, download=False), tmp_path, match)


# ---- ImageFolder: PNG and JPEG -------------------------------------------------------------------------------------

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` RGB pixels, with a few bytes of data: a bomb's header costs
    nothing to write, and a reader that decoded it would fail on the missing data, not refuse the size."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(bytes(100)))
            + png_chunk(b"IEND", b""))


def image_bytes(mode: str, fmt: str, size=(12, 10)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, size, 200).save(out, fmt)
    return out.getvalue()


def png_with_text_bomb(inflated_mb: int) -> bytes:
    """A small PNG with a zTXt chunk inflating to `inflated_mb` MB, past Pillow's 1 MB limit for a text chunk."""
    png = image_bytes("L", "PNG", (4, 4))
    text = png_chunk(b"zTXt", b"comment\0\0" + zlib.compress(b"A" * (inflated_mb * MB), 9))
    return png[:33] + text + png[33:]  # right after the 8-byte signature and the 25-byte IHDR chunk


IMAGE_CASES = {  # case: (file name, content, refusal)
    # Image.open itself raised DecompressionBombError, a traceback
    "20000x20000 PNG": ("bomb.png", png_declaring(20000, 20000),
                        rf"bomb.png: 400,000,000 pixels, more than the {MAX_IMAGE_PIXELS:,} an image may have here"),
    "10000x10000 PNG, where Pillow only warns": ("big.png", png_declaring(10000, 10000),
                                                 r"big.png: 10000x10000 pixels, more than the 40,000,000"),
    "65000x65000 JPEG header": ("bomb.jpg", image_bytes("L", "JPEG", (8, 8)).replace(
        b"\xff\xc0\x00\x0b\x08\x00\x08\x00\x08", b"\xff\xc0\x00\x0b\x08\xfd\xe8\xfd\xe8"),
        r"bomb.jpg: 4,225,000,000 pixels, more than the 40,000,000"),
    "zTXt bomb": ("text.png", png_with_text_bomb(4),
                  r"text.png: not a readable image, truncated or corrupt \(Decompressed data too large for "
                  r"PngImagePlugin.MAX_TEXT_CHUNK\)$"),
    "truncated PNG": ("cut.png", image_bytes("RGB", "PNG", (64, 64))[:-40],
                      r"cut.png: not a readable image, truncated or corrupt \(image file is truncated"),
    "truncated JPEG": ("cut.jpg", image_bytes("RGB", "JPEG", (64, 64))[:300], r"cut.jpg: not a readable image"),
    "HTML saved as .png": ("page.png", b"<html><body>404 Not Found</body></html>",
                           r"page.png: not a readable image, truncated or corrupt \(cannot identify image file"),
}


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_hostile_images_are_one_line_and_warn_of_nothing(tmp_path, case):
    name, content, match = IMAGE_CASES[case]
    root = write_imagefolder(tmp_path / "pets", train=2, test=1, size=8)
    (root / "train" / "cat" / name).write_bytes(content)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        refused(lambda: load_dataset("imagefolder", root, download=False, image_size=8), tmp_path, match)
    assert not [w for w in seen if "decompression bomb" in str(w.message)]


def test_a_decompression_bomb_warning_turned_into_an_error_is_the_same_line(tmp_path):
    from PIL import Image

    path = tmp_path / "big.png"
    path.write_bytes(png_declaring(10000, 10000))  # over Pillow's warning limit (89 MP), under its error limit
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # as `python -W error` makes it
        refused(lambda: decode_image(path, 8, 3), tmp_path, r"big.png: 100,000,000 pixels, more than the 40,000,000")


@pytest.mark.parametrize("mode,fmt", [("P", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"), ("1", "PNG"), ("I;16", "PNG"),
                                      ("CMYK", "JPEG"), ("L", "JPEG")])
def test_palette_alpha_cmyk_and_16_bit_images_load_as_8_bit(tmp_path, mode, fmt):
    root = write_imagefolder(tmp_path / "pets", train=1, test=1, size=8)
    (root / "train" / "cat" / f"odd.{fmt.lower()}").write_bytes(image_bytes(mode, fmt))
    splits = load_dataset("imagefolder", root, download=False, image_size=8)
    check_splits(splits, 4, 3, (8, 8, 3), 3)


# ---- every reader: any cut or flipped byte ------------------------------------------------------------------------

def _valid_file(kind: str, tmp_path: Path) -> tuple[Path, bytes, object]:
    """A valid file of `kind` in a data set under tmp_path, its bytes, and the load that reads it."""
    if kind.startswith("cifar"):
        path = write_cifar10(tmp_path, per_batch=3, test=3) / "test_batch"
        protocol = 4 if kind == "cifar_protocol_4" else 2
        path.write_bytes(pickle.dumps(batch([np.int64(1), 2, 3, 4]), protocol=protocol))
        return path, path.read_bytes(), lambda: load_dataset("cifar10", tmp_path, download=False)
    if kind == "mnist":
        path = write_mnist(tmp_path, train=3, test=3) / "t10k-images-idx3-ubyte.gz"
        return path, path.read_bytes(), lambda: load_dataset("mnist", tmp_path, download=False)
    if kind.startswith("svhn"):
        path = write_svhn(tmp_path, train=3, test=3) / "train_32x32.mat"
        path.write_bytes(mat_bytes(svhn_arrays(3), compressed=kind == "svhn_compressed"))
        return path, path.read_bytes(), lambda: load_dataset("svhn", tmp_path, download=False)
    path = write_imagefolder(tmp_path / "pets", train=1, test=1, size=8) / "train" / "cat" / f"img.{kind}"
    path.write_bytes(image_bytes("RGB", "JPEG" if kind == "jpg" else "PNG", (9, 7)))
    return path, path.read_bytes(), lambda: load_dataset("imagefolder", tmp_path / "pets", download=False,
                                                         image_size=8)


@pytest.mark.parametrize("kind", ["cifar", "cifar_protocol_4", "mnist", "svhn", "svhn_compressed", "png", "jpg"])
def test_any_cut_or_flipped_byte_is_one_line_or_loads(tmp_path, kind):
    """Seeded mutations, half of them in the structure (a file's first 300 and last 200 bytes, where the headers,
    tags and trailers are): this found a crash in scipy, one in numpy and a zlib.error traceback."""
    path, valid, load = _valid_file(kind, tmp_path)
    rng = np.random.default_rng(0)
    structure = np.r_[0:min(300, len(valid)), max(0, len(valid) - 200):len(valid)]
    for i in range(60):
        mutated = bytearray(valid)
        if i % 3 == 0:
            mutated = mutated[: rng.integers(0, len(valid))]
        else:
            for _ in range(rng.integers(1, 4)):
                at = int(rng.choice(structure)) if i % 2 else int(rng.integers(0, len(valid)))
                mutated[at] = rng.integers(0, 256)
        path.write_bytes(bytes(mutated))
        try:
            load()
        except DataError as err:
            assert str(path) in str(err) and "\n" not in str(err)
