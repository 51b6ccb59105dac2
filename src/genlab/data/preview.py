"""A picture of what the model trains on: a grid of augmented training images, because augmentations are checked by eye."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from genlab.data.catalog import DatasetInfo

TILE_INCHES = 1.3  # each image's width on the page, whatever its pixel size
TITLE_INCHES = 0.35


def tile_images(images: np.ndarray, cols: int) -> tuple[np.ndarray, int, int]:
    """uint8 (N, H, W, C) images laid out in rows of `cols` on a white canvas -> (canvas, tile width, tile height).

    Each tile is an image with a 1-pixel margin on its sides and a band above it, a quarter of its height, where its
    label is written: in the picture's own pixels, so the band is as tall on the page for 8x8 digits as for 96x96 STL.
    """
    count, height, width, channels = images.shape
    band = max(2, math.ceil(height / 4))
    tile_w, tile_h = width + 2, height + band + 1
    rows = math.ceil(count / cols)
    canvas = np.full((rows * tile_h, cols * tile_w, channels), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        top, left = (i // cols) * tile_h + band, (i % cols) * tile_w + 1
        canvas[top:top + height, left:left + width] = image
    return canvas, tile_w, tile_h


def save_augmentation_grid(images: np.ndarray, labels: np.ndarray, info: DatasetInfo, path: Path) -> Path:
    """Save uint8 (N, H, W, C) training images, as augmented for training and before normalisation, as a PNG grid
    titled by label.

    One montage in one set of axes: a subplot per image cost matplotlib ~1.3 s for the default 32, a tenth of a small
    run's training.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    cols = math.ceil(math.sqrt(len(images)))
    canvas, tile_w, tile_h = tile_images(images, cols)
    width = TILE_INCHES * cols
    grid_height = width * canvas.shape[0] / canvas.shape[1]
    fig = Figure(figsize=(width, grid_height + TITLE_INCHES), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, grid_height / (grid_height + TITLE_INCHES)))
    ax.set_axis_off()
    if canvas.shape[-1] >= 3:  # RGB (of more channels, the first three)
        ax.imshow(canvas[..., :3], interpolation="nearest")
    else:
        ax.imshow(canvas[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    band = tile_h - images.shape[1] - 1  # the label band above each image (tile_images)
    for i, label in enumerate(labels):
        name = info.class_names[label] if label < len(info.class_names) else str(label)
        row, col = divmod(i, cols)
        # pixel centres sit on whole numbers: a tile's centre column, and the band's bottom edge
        ax.text((col + 0.5) * tile_w - 0.5, row * tile_h + band - 0.5, name[:14], fontsize=7, ha="center", va="bottom")
    fig.suptitle(f"{info.name}: augmented training images", fontsize=9, y=1 - 0.1 / fig.get_figheight())
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
