"""The paper's data sanity checks (PAPER_SPEC §5): corrupt the data a mask is made from.

``random_labels`` reproduces the official label stream exactly: the official code calls
``np.random.seed(12345)``, draws a corruption mask with ``np.random.rand(n)`` (all True at probability 1.0)
and then ``np.random.choice(num_classes, n)``; a legacy ``RandomState(seed)`` making the same two calls gives
the same labels, for every run seed. Random pixels permute each image's 32*32*3 values independently
(channels mixed); the official code draws them from torch's global RNG after seeding it with the run's seed,
so every seed scrambles the images anew; here a private numpy generator seeded with the run's seed (the
`pixel_seed`), so the result depends on that seed alone.
"""

from __future__ import annotations

import numpy as np

from jackpot.data.arrays import check_images

CORRUPTIONS: tuple[str, ...] = ("random_labels", "random_pixels", "random_pixels_labels", "half_dataset")
OFFICIAL_SEED = 12345


def random_labels(targets: np.ndarray, num_classes: int, seed: int = OFFICIAL_SEED) -> np.ndarray:
    """Every label replaced by a uniform random class (new int64 array; the input is untouched)."""
    n = len(targets)
    rng = np.random.RandomState(seed)
    rng.rand(n)  # the official corrupt_prob mask draw, kept so the labels match the official ones
    return rng.choice(num_classes, n).astype(np.int64)


def random_pixels(images: np.ndarray, seed: int = OFFICIAL_SEED) -> np.ndarray:
    """Each image's H*W*C values independently permuted (channels mixed); returns a new array."""
    check_images(images)
    flat = images.reshape(len(images), -1)
    return np.random.default_rng(seed).permuted(flat, axis=1).reshape(images.shape)


def half_dataset_indices(n: int, batch_size: int = 64) -> np.ndarray:
    """The fixed first (n//2)//batch_size full batches, in order (official: 390 batches of 64 = 24,960)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return np.arange((n // 2) // batch_size * batch_size)


def apply_corruption(
    data: np.ndarray,
    targets: np.ndarray,
    kind: str | None,
    num_classes: int,
    seed: int = OFFICIAL_SEED,
    batch_size: int = 64,
    pixel_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Apply one data check; returns (data, targets, shuffle). Only half_dataset turns shuffling off.

    ``random_pixels`` permutes pixels only; ``random_pixels_labels`` also randomises the labels, which is what
    the official ``--shufflePixel 1`` does. Labels come from ``seed`` (the official 12345 whatever the run's
    seed), pixels from ``pixel_seed`` (the run's seed, as the official code's; ``seed`` when None).
    """
    pixel_seed = seed if pixel_seed is None else pixel_seed
    if kind is None or kind == "none":
        return data, targets, True
    if kind == "random_labels":
        return data, random_labels(targets, num_classes, seed), True
    if kind == "random_pixels":
        return random_pixels(data, pixel_seed), targets, True
    if kind == "random_pixels_labels":
        return random_pixels(data, pixel_seed), random_labels(targets, num_classes, seed), True
    if kind == "half_dataset":
        keep = half_dataset_indices(len(data), batch_size)
        return data[keep], targets[keep], False
    raise ValueError(f"unknown data corruption {kind!r}; allowed: None, {', '.join(CORRUPTIONS)}")


def check_corruption(kind: str | None) -> str | None:
    """Validate a corruption name early (at config time), with the same message as `apply_corruption`."""
    if kind is not None and kind != "none" and kind not in CORRUPTIONS:
        raise ValueError(f"unknown data corruption {kind!r}; allowed: None, {', '.join(CORRUPTIONS)}")
    return None if kind == "none" else kind
