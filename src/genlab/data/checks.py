"""What the readers check in a data file before trusting it: label values, and sizes a file declares for itself."""
from __future__ import annotations

import reprlib
from pathlib import Path

import numpy as np

from genlab.errors import DataError

# No deflate stream (gzip, zlib, a compressed MATLAB variable) inflates more than 1032-fold: a 258-byte match costs at
# least 2 bits (zlib's technical notes). A declared size beyond that is a lie, told before anything is inflated.
DEFLATE_MAX_RATIO = 1032


def max_inflated_size(compressed_bytes: int) -> int:
    """The most bytes a deflate-compressed file of `compressed_bytes` bytes can inflate to."""
    return compressed_bytes * DEFLATE_MAX_RATIO


class _ShortRepr(reprlib.Repr):
    def __init__(self):
        super().__init__()
        self.maxtuple = 8  # all of a numpy dtype's pickled state

    def repr_int(self, x, level):
        # Python refuses to print an int past 4,300 digits (a ValueError); a pickle can hold one in a few hundred bytes
        sign = "a negative" if x < 0 else "an"
        return repr(x) if x.bit_length() <= 64 else f"<{sign} integer of {x.bit_length()} bits>"


_SHORT = _ShortRepr()


def shown(value: object) -> str:
    """A value read from a file, rendered short enough for a one-line message, whatever its size or type."""
    return _SHORT.repr(value.item() if isinstance(value, np.generic) else value)


def integer_labels(path: Path, values: object, low: int, high: int, allowed: str | None = None) -> np.ndarray:
    """`values` as int64 labels of the same shape, if they are whole numbers in [low, high] (integers, or floats
    without a fraction as MATLAB stores them); anything else is a DataError naming the file, the value and the range."""
    allowed = allowed or f"[{low}, {high}]"
    try:
        labels = np.asarray(values)
    except ValueError:  # numpy refuses nested lists of unequal lengths
        raise DataError(f"{path}: labels must be whole numbers in {allowed}, found nested lists of unequal lengths") \
            from None
    if not _all_integers_or_floats(labels):
        raise DataError(f"{path}: labels must be whole numbers in {allowed}, found {_first_non_number(labels)}")
    if labels.dtype.kind == "f":
        fractional = np.flatnonzero(~np.isfinite(labels) | (labels != np.rint(labels)))
        if fractional.size:
            i = fractional[0]
            raise DataError(f"{path}: labels must be whole numbers in {allowed}, found {shown(labels.flat[i])} at "
                            f"index {i}")
    if labels.size and (labels.min() < low or labels.max() > high):
        raise DataError(f"{path}: labels must lie in {allowed}, found [{shown(labels.min())}, {shown(labels.max())}]")
    return labels.astype(np.int64)


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _all_integers_or_floats(labels: np.ndarray) -> bool:
    # an object array of nothing but ints holds integers too large for int64: the range check names them
    return labels.dtype.kind in "iuf" or (labels.dtype.kind == "O" and all(map(_is_integer, labels.flat)))


def _first_non_number(labels: np.ndarray) -> str:
    for i, value in enumerate(labels.flat):
        value = value.item() if isinstance(value, np.generic) else value
        if not _is_integer(value) and not isinstance(value, float):
            return f"{'None' if value is None else f'{type(value).__name__} {shown(value)}'} at index {i}"
    return f"{labels.dtype} values"  # an empty array of text, or floats mixed with integers beyond int64
