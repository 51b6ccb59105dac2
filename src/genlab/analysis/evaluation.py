"""End-of-run generalization analysis: predictions, confusion matrix, per-class accuracy and robustness."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from genlab.analysis.corruptions import corrupt

Normalize = Callable[[torch.Tensor], torch.Tensor]


def test_time_logits(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                     flip_average: bool) -> torch.Tensor:
    """The logits a test prediction is made from. With flip_average (test-time augmentation): the log of the mean class
    probability over each image and its mirror, valid logits for loss, accuracy and calibration alike."""
    if not flip_average:
        return model(images)
    return ((model(images).softmax(-1) + model(images.flip(-1)).softmax(-1)) / 2).clamp_min(1e-12).log()


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, normalize: Normalize, batch_size: int = 512,
            flip_average: bool = False) -> np.ndarray:
    """Predicted classes for uint8 (N, H, W, C) images, in eval mode on the model's device, made as the test metrics
    make them (`test_time_logits`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions = []
    for start in range(0, len(images), batch_size):
        batch = normalize(torch.from_numpy(images[start : start + batch_size]).to(device))
        predictions.append(test_time_logits(model, batch, flip_average).argmax(1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(predictions) if predictions else np.empty(0, dtype=np.int64)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class absent from the labels)."""
    totals = confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)


def robustness(model: nn.Module, images: np.ndarray, labels: np.ndarray, normalize: Normalize, corruptions: list[str],
               severities: list[int], seed: int, flip_average: bool = False) -> dict[str, float]:
    """Accuracy under each corruption and severity (`robust/<name>_s<k>`) and their mean (`robust/acc_mean`)."""
    results = {}
    for name in corruptions:
        for severity in severities:
            predictions = predict(model, corrupt(images, name, severity, seed), normalize, flip_average=flip_average)
            results[f"robust/{name}_s{severity}"] = float((predictions == labels).mean())
    results["robust/acc_mean"] = float(np.mean(list(results.values())))
    return results


def plot_confusion_matrix(confusion: np.ndarray, class_names: list[str], path: Path, weights: str) -> Path:
    """Row-normalised confusion matrix as a PNG; `weights` says which were tested ("best checkpoint", "last epoch")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    small = len(class_names) <= 20
    ax.set_xticks(ticks, class_names if small else [""] * len(class_names), rotation=90, fontsize=7)
    ax.set_yticks(ticks, class_names if small else [""] * len(class_names), fontsize=7)
    if small:
        for (i, j), value in np.ndenumerate(confusion):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=6, color="white" if rows[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix (test, {weights})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
