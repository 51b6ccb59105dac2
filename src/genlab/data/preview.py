"""A picture of what the model trains on: a grid of augmented training images, because augmentations are checked by eye."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo


def save_augmentation_grid(images: np.ndarray, labels: np.ndarray, info: DatasetInfo, path: Path) -> Path:
    """Save uint8 (N, H, W, C) training images, as augmented for training and before normalisation, as a PNG grid
    titled by label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    count = len(images)
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(1.3 * cols, 1.45 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, ax in enumerate(fig.subplots(rows, cols, squeeze=False).ravel()):
        ax.set_axis_off()
        if i >= count:
            continue
        image = images[i]
        if image.shape[-1] >= 3:  # RGB (of more channels, the first three)
            ax.imshow(image[..., :3], interpolation="nearest")
        else:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        name = info.class_names[labels[i]] if labels[i] < len(info.class_names) else str(labels[i])
        ax.set_title(name[:14], fontsize=7)
    fig.suptitle(f"{info.name}: augmented training images", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
