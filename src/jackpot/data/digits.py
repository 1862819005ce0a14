"""scikit-learn's embedded digits as a 32x32x3 dataset: an offline stand-in that runs the same networks.

The 8x8 images (values 0..16) are scaled to uint8 0..255 (``round(v * 255 / 16)``) and upsampled by nearest
neighbour (each pixel becomes a 4x4 block): exact, with no interpolation choices to document beyond that, and
the strokes stay crisp under the 4-pixel random crop. The grey image is replicated to 3 channels. The split is
a fixed stratified 80/20 (``train_test_split(random_state=0)``): 1437 train, 360 test. Mean and std are those
of the train split (all three channels equal).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from jackpot.data.arrays import ImageArrays

DIGITS_SCALE = 4  # 8x8 -> 32x32
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as uint8 (N, 32, 32, 3) HWC and int64 targets, in scikit-learn's order."""
    bunch = load_digits()
    grey = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    big = grey.repeat(DIGITS_SCALE, axis=1).repeat(DIGITS_SCALE, axis=2)
    images = np.ascontiguousarray(np.repeat(big[..., None], 3, axis=3))
    return images, bunch.target.astype(np.int64)


def load_digits_arrays() -> ImageArrays:
    """The fixed stratified split, with mean/std measured on its train part."""
    images, targets = digits_images()
    train_idx, test_idx = train_test_split(
        np.arange(len(targets)),
        test_size=DIGITS_TEST_FRACTION,
        stratify=targets,
        random_state=DIGITS_SPLIT_SEED,
    )
    train = images[train_idx]
    scaled = train.astype(np.float64) / 255.0
    mean, std = float(scaled.mean()), float(scaled.std())
    return ImageArrays(
        train_images=np.ascontiguousarray(train),
        train_targets=targets[train_idx],
        test_images=np.ascontiguousarray(images[test_idx]),
        test_targets=targets[test_idx],
        num_classes=10,
        mean=(mean, mean, mean),
        std=(std, std, std),
    )
