"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, no download."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo, Splits, register_dataset

# The test split is fixed forever (not drawn from the run's seed) so every run scores on the same images.
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0

INFO = DatasetInfo(
    name="digits",
    channels=1,
    image_size=8,
    num_classes=10,
    mean=(0.3054,),
    std=(0.3760,),
    class_names=tuple(str(d) for d in range(10)),
)


@register_dataset(INFO)
def load_digits_splits(data_dir: Path, download: bool) -> Splits:
    """Digits as uint8 (pixel values 0..16 scaled to 0..255) with a stratified, fixed 80/20 train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=TEST_SPLIT_SEED
    )
    return Splits(train_x, train_y, test_x, test_y)
