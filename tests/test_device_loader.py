"""The on-device pipeline: per-image crop/flip statistics, reproducibility, torchvision-exact arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms

from jackpot.data.device_loader import DeviceLoader, crop_flip, normalize, to_nchw_uint8

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
PAD = 4
# The same checks run on CUDA when a GPU is present (the device check runs this file there).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _coordinate_images(n: int) -> np.ndarray:
    """Every image the same: R = row + 1, G = col + 1, B = 1 (so padding, which is 0, is recognisable)."""
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[..., 0] = np.arange(1, 33)[:, None]
    image[..., 1] = np.arange(1, 33)[None, :]
    image[..., 2] = 1
    return np.repeat(image[None], n, axis=0)


def _decode(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recover (dy, dx, flip) per image from augmented coordinate images."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    u = torch.round((x.cpu().float() * std + mean) * 255).to(torch.int64).numpy()
    rows, cols = u[:, 0, 16, 16], u[:, 1, 16, 16]  # the centre is never padding for |shift| <= 4
    flip = u[:, 1, 16, 17] < cols
    dy = rows - 1 - (16 - PAD)
    dx = np.where(flip, cols - 1 - (31 - 16 - PAD), cols - 1 - (16 - PAD))
    return dy, dx, flip


def _torchvision(image: np.ndarray, dy: int = PAD, dx: int = PAD, flip: bool = False) -> torch.Tensor:
    pil = Image.fromarray(image)
    crop = TF.crop(TF.pad(pil, PAD), dy, dx, 32, 32)
    if flip:
        crop = TF.hflip(crop)
    return transforms.Normalize(MEAN, STD)(transforms.ToTensor()(crop))


def _all_batches(loader: DeviceLoader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs).cpu(), torch.cat(ys).cpu()


@pytest.mark.parametrize("device", DEVICES)
def test_offsets_uniform_over_81_shifts_and_flips_half_per_image(device: str) -> None:
    n = 2048
    loader = DeviceLoader(
        _coordinate_images(n), np.arange(n), 512, MEAN, STD, train=True, seed=0, device=device
    )
    dys, dxs, flips = [], [], []
    for epoch in range(3):
        loader.set_epoch(epoch)
        x, _ = _all_batches(loader)
        dy, dx, flip = _decode(x)
        dys.append(dy), dxs.append(dx), flips.append(flip)
    dy, dx, flip = np.concatenate(dys), np.concatenate(dxs), np.concatenate(flips)
    assert dy.min() == 0 and dy.max() == 2 * PAD and dx.min() == 0 and dx.max() == 2 * PAD
    counts = np.bincount(dy * 9 + dx, minlength=81)
    assert len(counts) == 81 and counts.min() > 0
    expected = len(dy) / 81
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 80 + 6 * np.sqrt(160)  # 80 dof: mean 80, std ~12.6
    assert abs(flip.mean() - 0.5) < 5 * np.sqrt(0.25 / len(flip))

    # per image, not per batch: the first batch alone holds many different offsets and both flip states
    loader.set_epoch(0)
    x, _ = next(iter(loader))
    dy, dx, flip = _decode(x)
    assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) > 70  # of 81, in a batch of 512
    assert 0 < flip.mean() < 1


@pytest.mark.parametrize("device", DEVICES)
def test_reproducible_from_seed_and_epoch(device: str) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 32, 32, 3), dtype=np.uint8)
    targets = np.arange(300)

    def epoch(seed: int, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        loader = DeviceLoader(images, targets, 64, MEAN, STD, train=True, seed=seed, device=device)
        loader.set_epoch(e)
        return _all_batches(loader)

    x1, y1 = epoch(0, 3)
    x2, y2 = epoch(0, 3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert sorted(y1.tolist()) == list(range(300))  # a permutation of the data
    assert not torch.equal(y1, epoch(0, 4)[1])
    assert not torch.equal(y1, epoch(1, 3)[1])
    # iterating twice in the same epoch gives the same epoch
    loader = DeviceLoader(images, targets, 64, MEAN, STD, train=True, seed=0, device=device)
    loader.set_epoch(3)
    assert torch.equal(_all_batches(loader)[0], x1)
    # Lightning finds set_epoch through loader.sampler
    loader.sampler.set_epoch(5)
    assert loader.epoch == 5


@pytest.mark.parametrize("device", DEVICES)
def test_chunked_batches_equal_batch_by_batch_ones(device: str) -> None:
    """Augmenting 3 batches at a time yields bit for bit what augmenting each batch alone yields, partial last
    batch (and partial last chunk) included; the yielded views keep the channels_last layout."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(150, 32, 32, 3), dtype=np.uint8)
    batches = {}
    for per_chunk in (1, 3):
        loader = DeviceLoader(images, np.arange(150), 16, MEAN, STD, train=True, seed=4, device=device,
                              chunk_images=16 * per_chunk + 5)  # rounded down to whole batches
        assert loader.chunk == 16 * per_chunk
        loader.set_epoch(2)
        batches[per_chunk] = list(loader)
    assert [len(y) for _, y in batches[3]] == [16] * 9 + [6]
    for (x1, y1), (x3, y3) in zip(batches[1], batches[3], strict=True):
        assert torch.equal(x1, x3) and torch.equal(y1, y3)
        assert x3.is_contiguous(memory_format=torch.channels_last)
    assert DeviceLoader(images, np.arange(150), 16, MEAN, STD, chunk_images=10).chunk == 16  # at least a batch
    with pytest.raises(ValueError, match="chunk_images must be positive, got 0"):
        DeviceLoader(images, np.arange(150), 16, MEAN, STD, chunk_images=0)


def _same(ours: torch.Tensor, reference: torch.Tensor, device: str) -> bool:
    """Bit-equal on the CPU. On CUDA (an H200) the normalisation differed from torchvision's CPU result in the
    last bits (fused multiply-add), so there: within 1e-6, a few float32 ulps of values below 3 in magnitude."""
    if device == "cpu":
        return torch.equal(ours, reference)
    return torch.allclose(ours.cpu(), reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_last_partial_batch_kept_and_eval_mode_is_plain(device: str) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    train = DeviceLoader(images, np.arange(10), 4, MEAN, STD, train=True, device=device)
    assert len(train) == 3
    assert [len(y) for _, y in train] == [4, 4, 2]

    evaluation = DeviceLoader(images, np.arange(10), 3, MEAN, STD, train=False, device=device)
    assert len(evaluation) == 4
    x, y = _all_batches(evaluation)
    assert y.tolist() == list(range(10))
    expected = torch.stack([_torchvision(image) for image in images])
    assert _same(x, expected, device)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    first, first_y = next(iter(evaluation))
    assert first.device.type == first_y.device.type == device
    assert first.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device", DEVICES)
def test_crop_arithmetic_equals_torchvision_exactly(device: str) -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    batch = to_nchw_uint8(images, device)
    mean, std = torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)
    cases = [(4, 4, False), (0, 0, False), (8, 8, True), (1, 7, False), (6, 2, True), (4, 4, True)]
    dy = torch.tensor([c[0] for c in cases], device=device)
    dx = torch.tensor([c[1] for c in cases], device=device)
    flip = torch.tensor([c[2] for c in cases], device=device)
    ours = normalize(crop_flip(batch, dy, dx, flip, PAD), mean, std).cpu()
    mean, std = mean.cpu(), std.cpu()
    for i, (y, x, f) in enumerate(cases):
        assert _same(ours[i], _torchvision(images[i], y, x, f), device), cases[i]
    # no shift, no flip: the image itself, as ToTensor + Normalize give it
    assert _same(ours[0], _torchvision(images[0]), device)
    # a shift of (-4, -4): the top 4 rows and left 4 columns are padding, normalised as (0 - mean) / std
    border = (torch.zeros(3) - mean) / std
    for c in range(3):
        assert _same(ours[1, c, :PAD, :], border[c].expand(PAD, 32), device)
        assert _same(ours[1, c, :, :PAD], border[c].expand(32, PAD), device)


@pytest.mark.parametrize("bad", [np.zeros((2, 32, 32, 3), np.float32), np.zeros((2, 3, 32, 32), np.uint8)])
def test_rejects_non_uint8_hwc(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        DeviceLoader(bad, np.zeros(2), 2, MEAN, STD)
