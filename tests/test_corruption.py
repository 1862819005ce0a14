"""The paper's data sanity checks (PAPER_SPEC §5): random labels, random pixels, half dataset."""

from __future__ import annotations

import numpy as np
import pytest

from jackpot.data.corruption import (
    CORRUPTIONS,
    apply_corruption,
    half_dataset_indices,
    random_labels,
    random_pixels,
)


def _chi_square(counts: np.ndarray) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("num_classes", [10, 100])
def test_random_labels_are_uniform_and_unrelated_to_the_truth(num_classes: int) -> None:
    true = np.arange(50_000, dtype=np.int64) % num_classes
    rand = random_labels(true, num_classes)
    assert rand.dtype == np.int64 and rand.shape == true.shape
    counts = np.bincount(rand, minlength=num_classes)
    assert len(counts) == num_classes
    # chi-square, k-1 dof: mean k-1, std sqrt(2(k-1)); 6 std above the mean does not happen by chance
    dof = num_classes - 1
    assert _chi_square(counts) < dof + 6 * np.sqrt(2 * dof)
    agreement = (rand == true).mean()
    assert abs(agreement - 1 / num_classes) < 5 * np.sqrt((1 / num_classes) / len(true))
    np.testing.assert_array_equal(true, np.arange(50_000) % num_classes)  # input untouched


def test_random_labels_are_fixed_by_the_seed() -> None:
    true = np.zeros(1000, dtype=np.int64)
    np.testing.assert_array_equal(random_labels(true, 10), random_labels(true, 10, seed=12345))
    assert (random_labels(true, 10, seed=1) != random_labels(true, 10, seed=2)).mean() > 0.8


def test_random_labels_match_the_official_numpy_stream() -> None:
    """Official: np.random.seed(12345); mask = rand(n) <= 1.0; labels[mask] = choice(k, mask.sum())."""
    state = np.random.get_state()
    try:
        np.random.seed(12345)
        mask = np.random.rand(5000) <= 1.0
        official = np.random.choice(10, mask.sum())
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(random_labels(np.zeros(5000, dtype=np.int64), 10), official)


def test_random_pixels_permute_each_image_independently_and_mix_channels() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 32, 32, 3), dtype=np.uint8)
    before = images.copy()
    shuffled = random_pixels(images)
    np.testing.assert_array_equal(images, before)  # a new array, input untouched
    assert shuffled.shape == images.shape and shuffled.dtype == np.uint8
    for a, b in zip(images, shuffled, strict=True):
        np.testing.assert_array_equal(np.sort(a.ravel()), np.sort(b.ravel()))
        assert (a != b).mean() > 0.9
    np.testing.assert_array_equal(shuffled, random_pixels(images, seed=12345))
    assert not np.array_equal(shuffled, random_pixels(images, seed=7))

    # channels are mixed: an image with constant channels 0/100/200 gets all three values in every channel
    striped = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    striped[..., 1], striped[..., 2] = 100, 200
    mixed = random_pixels(striped)
    for channel in range(3):
        assert set(np.unique(mixed[0, ..., channel])) == {0, 100, 200}
    # identical images get different permutations
    assert not np.array_equal(mixed[0], mixed[1])


def test_half_dataset_is_the_fixed_first_full_batches() -> None:
    np.testing.assert_array_equal(half_dataset_indices(50_000, 64), np.arange(24_960))  # 390 batches of 64
    assert len(half_dataset_indices(500, 64)) == 192
    with pytest.raises(ValueError):
        half_dataset_indices(100, 0)


def test_apply_corruption_kinds() -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(300, 32, 32, 3), dtype=np.uint8)
    targets = rng.integers(0, 10, size=300).astype(np.int64)

    same_x, same_y, shuffle = apply_corruption(data, targets, None, 10)
    assert same_x is data and same_y is targets and shuffle

    x, y, shuffle = apply_corruption(data, targets, "random_labels", 10)
    assert x is data and shuffle
    np.testing.assert_array_equal(y, random_labels(targets, 10))

    x, y, shuffle = apply_corruption(data, targets, "random_pixels", 10)
    assert y is targets and shuffle
    np.testing.assert_array_equal(x, random_pixels(data))

    x, y, shuffle = apply_corruption(data, targets, "random_pixels_labels", 10, seed=3)
    np.testing.assert_array_equal(x, random_pixels(data, seed=3))
    np.testing.assert_array_equal(y, random_labels(targets, 10, seed=3))
    assert shuffle
    x, y, _ = apply_corruption(data, targets, "random_pixels_labels", 10, pixel_seed=5)
    np.testing.assert_array_equal(x, random_pixels(data, seed=5))
    np.testing.assert_array_equal(y, random_labels(targets, 10))

    x, y, shuffle = apply_corruption(data, targets, "half_dataset", 10, batch_size=64)
    assert not shuffle and len(x) == len(y) == 128
    np.testing.assert_array_equal(x, data[:128])
    np.testing.assert_array_equal(y, targets[:128])


def test_unknown_corruption_lists_the_allowed_kinds() -> None:
    with pytest.raises(ValueError) as info:
        apply_corruption(np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int64), "random_noise", 10)
    for kind in CORRUPTIONS:
        assert kind in str(info.value)


def test_each_run_seed_scrambles_the_pixels_anew_and_keeps_the_official_labels() -> None:
    """As the official code (torch's RNG seeded with the run's seed): seeds are independent draws of the pixel
    check; the random labels are the official seed-12345 ones for every run seed."""
    from jackpot.data import ImageDataModule

    def train_data(check: str, seed: int, pixel_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        module = ImageDataModule("digits", corruption=check, seed=seed, loader="torch", device="cpu",
                                 pixel_seed=pixel_seed)
        module.setup("fit")
        return module.train_data

    clean_x, clean_y = train_data("none", 0)
    (x0, y0), (x1, y1) = train_data("random_pixels_labels", 0), train_data("random_pixels_labels", 1)
    assert not np.array_equal(x0, x1)
    np.testing.assert_array_equal(x0, train_data("random_pixels_labels", 0)[0])
    for x in (x0, x1):  # each image is a permutation of its own values
        np.testing.assert_array_equal(np.sort(x.reshape(len(x), -1), axis=1),
                                      np.sort(clean_x.reshape(len(x), -1), axis=1))
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(y0, random_labels(clean_y, 10))
    np.testing.assert_array_equal(train_data("random_pixels", 1)[1], clean_y)
    # sanity_check.pixel_scramble=fixed: one scramble (seed 12345) for every run seed, as jackpot did before
    np.testing.assert_array_equal(train_data("random_pixels", 0, 12345)[0], train_data("random_pixels", 1, 12345)[0])


@pytest.mark.parametrize(("scramble", "pixel_seed"), [("per_seed", 3), ("fixed", 12345)])
def test_the_config_chooses_the_pixel_scramble_and_the_trunk_key_says_which(tmp_path, scramble, pixel_seed):
    from conftest import compose_cfg

    from jackpot.runs.cache_keys import trunk_spec
    from jackpot.train import make_datamodule

    cfg = compose_cfg(tmp_path, ["dataset=digits", "pruner=lottery", "sanity_check=random_pixels_labels", "seed=3",
                                 f"sanity_check.pixel_scramble={scramble}"])
    assert make_datamodule(cfg, corruption=cfg.sanity_check.data).pixel_seed == pixel_seed
    assert trunk_spec(cfg)["pixel_scramble"] == scramble
    assert "pixel_scramble" not in trunk_spec(compose_cfg(tmp_path, ["dataset=digits", "pruner=lottery"]))
