"""End-of-run analysis pieces: corruptions are fixed by seed, confusion matrices and robustness add up."""
import numpy as np
import pytest
import torch
from torch import nn

from genlab.analysis.corruptions import CORRUPTIONS, corrupt
from genlab.analysis.evaluation import confusion_matrix, per_class_accuracy, predict, robustness


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_are_deterministic_and_keep_the_format(name):
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    for severity in (1, 3, 5):
        out = corrupt(images, name, severity, seed=7)
        assert out.shape == images.shape and out.dtype == np.uint8
        assert np.array_equal(out, corrupt(images, name, severity, seed=7))
    mild = np.abs(corrupt(images, name, 1, 7).astype(int) - images).mean()
    harsh = np.abs(corrupt(images, name, 5, 7).astype(int) - images).mean()
    assert 0 < mild <= harsh


def test_confusion_matrix_and_per_class_accuracy():
    labels, predictions = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    confusion = confusion_matrix(labels, predictions, 4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(confusion)
    assert acc[:3].tolist() == [0.5, 1.0, 0.0] and np.isnan(acc[3])


def test_robustness_of_a_constant_model_is_its_base_rate():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.0, 1.0]))

        def forward(self, x):
            return self.bias.expand(len(x), 2)

    images = np.zeros((10, 8, 8, 1), np.uint8)
    labels = np.array([1] * 7 + [0] * 3)
    assert predict(Constant(), images, lambda x: x.float()).tolist() == [1] * 10
    results = robustness(Constant(), images, labels, lambda x: x.float(), ["contrast", "jpeg"], [1, 5], seed=0)
    assert results["robust/acc_mean"] == pytest.approx(0.7) and len(results) == 5
