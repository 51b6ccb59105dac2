"""Fixed, seeded image corruptions for robustness: Gaussian noise, blur, contrast loss and JPEG, at severities 1-5.

They work on uint8 (N, H, W, C) batches, the format every genlab data set is held in, so a corrupted test set
goes through the same normalisation as the clean one. Severity parameters follow the spirit of Hendrycks &
Dietterich's CIFAR-10-C (scaled to [0, 1] pixel values).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

NOISE_STD = {1: 0.04, 2: 0.06, 3: 0.08, 4: 0.09, 5: 0.10}
BLUR_SIGMA = {1: 0.4, 2: 0.6, 3: 0.7, 4: 0.8, 5: 1.0}
CONTRAST_KEEP = {1: 0.75, 2: 0.5, 3: 0.4, 4: 0.3, 5: 0.15}
JPEG_QUALITY = {1: 80, 2: 65, 3: 58, 4: 50, 5: 40}


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    noisy = images / 255.0 + rng.normal(0.0, NOISE_STD[severity], size=images.shape)
    return _to_uint8(noisy)


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    sigma = BLUR_SIGMA[severity]
    return _to_uint8(gaussian_filter(images / 255.0, sigma=(0, sigma, sigma, 0)))


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    x = images / 255.0
    means = x.mean(axis=(1, 2, 3), keepdims=True)
    return _to_uint8((x - means) * CONTRAST_KEEP[severity] + means)


def jpeg(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    quality = [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY[severity]]

    def roundtrip(image: np.ndarray) -> np.ndarray:
        ok, encoded = cv2.imencode(".jpg", image, quality)
        return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).reshape(image.shape)

    out = np.empty_like(images)
    for i, image in enumerate(images):
        if image.shape[-1] in (1, 3):
            out[i] = roundtrip(image)
        else:  # JPEG holds gray or colour images; other channel counts (synthetic data) go channel by channel
            out[i] = np.stack([roundtrip(image[..., c]) for c in range(image.shape[-1])], axis=-1)
    return out


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "contrast": contrast,
    "jpeg": jpeg,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """A deterministic corrupted copy: the same (name, severity, seed) always gives the same images."""
    index = list(CORRUPTIONS).index(name)
    return CORRUPTIONS[name](images, severity, np.random.default_rng([seed, index, severity]))
