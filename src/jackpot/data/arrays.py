"""The single in-memory format every dataset is loaded into, so one pipeline serves them all."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Stats = tuple[float, float, float]


@dataclass(frozen=True)
class ImageArrays:
    """Train and test images as uint8 (N, 32, 32, 3) HWC, int64 (N,) targets, normalisation constants."""

    train_images: np.ndarray
    train_targets: np.ndarray
    test_images: np.ndarray
    test_targets: np.ndarray
    num_classes: int
    mean: Stats
    std: Stats

    def __post_init__(self) -> None:
        for images, targets in (
            (self.train_images, self.train_targets),
            (self.test_images, self.test_targets),
        ):
            check_images(images)
            if targets.dtype != np.int64 or targets.shape != (len(images),):
                raise ValueError(
                    f"targets must be int64 of shape ({len(images)},), got {targets.dtype} {targets.shape}"
                )


def check_images(images: np.ndarray) -> None:
    """Reject anything that is not uint8 (N, H, W, 3): the pipelines index HWC uint8 directly."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
