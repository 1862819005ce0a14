"""A data pipeline that lives on the accelerator: uint8 images there, per-image crop/flip as tensor ops.

It reproduces the paper's transforms (RandomCrop(32, padding=4) -> RandomHorizontalFlip -> ToTensor ->
Normalize) per image, with the same arithmetic as torchvision: zero padding in uint8, then ``/255``,
``-mean``, ``/std`` in float32, so padded pixels become ``(0 - mean) / std`` and an unshifted, unflipped crop
is bit-equal to torchvision's output. torchvision transforms on a batched tensor would draw one crop for the
whole batch (PERFORMANCE_NOTES §5.1), hence the index arithmetic here. Lightning accepts any sized iterable as
a loader; ``sampler.set_epoch`` is found and called by Lightning each epoch like a DataLoader's sampler.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from jackpot.data.sampling import epoch_seed


def to_nchw_uint8(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) HWC array or tensor -> contiguous uint8 (N, 3, H, W) tensor on `device`."""
    tensor = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {tensor.dtype} {tuple(tensor.shape)}")
    return tensor.to(device).permute(0, 3, 1, 2).contiguous()


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float32 in torchvision's order: ToTensor ``/255``, then Normalize ``-mean``, ``/std``."""
    return images.to(torch.float32).div(255).sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


def crop_flip(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = 4
) -> torch.Tensor:
    """Per-image crop at offsets (dy, dx) of the zero-padded image, then mirror where `flip`, in one gather.

    ``dy = dx = pad`` with no flip returns the image unchanged.
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    width = w + 2 * pad
    ar_h = torch.arange(h, device=images.device)
    ar_w = torch.arange(w, device=images.device)
    rows = dy.view(n, 1) + ar_h.view(1, h)
    cols = dx.view(n, 1) + torch.where(flip.view(n, 1), (w - 1 - ar_w).view(1, w), ar_w.view(1, w))
    flat = (rows.view(n, h, 1) * width + cols.view(n, 1, w)).view(n, 1, h * w).expand(n, c, h * w)
    return torch.gather(padded.reshape(n, c, -1), 2, flat).view(n, c, h, w)


def draw_augmentation(
    n: int, generator: torch.Generator, pad: int = 4, hflip: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image offsets uniform over the (2*pad+1)^2 shifts and flips with probability 1/2."""
    device = generator.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    if hflip:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
    else:
        flip = torch.zeros(n, dtype=torch.bool, device=device)
    return dy, dx, flip


def augment_batch(
    images: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    generator: torch.Generator,
    pad: int = 4,
    hflip: bool = True,
) -> torch.Tensor:
    """The paper's train transform on a uint8 NCHW batch, per image, drawing from `generator` only."""
    dy, dx, flip = draw_augmentation(len(images), generator, pad, hflip)
    return normalize(crop_flip(images, dy, dx, flip, pad), mean, std)


class _EpochSetter:
    """What Lightning finds as ``loader.sampler``: it calls ``set_epoch`` on it at every epoch start."""

    def __init__(self, loader: DeviceLoader) -> None:
        self._loader = loader

    def set_epoch(self, epoch: int) -> None:
        self._loader.set_epoch(epoch)


class DeviceLoader:
    """Yields normalised float32 ``(x, y)`` batches from uint8 data held on `device`.

    Train mode shuffles and augments with a generator on the device seeded from (seed, epoch), so an epoch
    depends only on those two numbers (reproducible per device type; CPU and CUDA streams differ). Eval mode
    keeps the order and does not augment. The last partial batch is always kept.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        targets: np.ndarray | torch.Tensor | Sequence[int],
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = True,
        hflip: bool = True,
        pad: int = 4,
        seed: int = 0,
        channels_last: bool = True,
        device: torch.device | str = "cpu",
        shuffle: bool | None = None,
        augment: bool | None = None,
        chunk_images: int = 4096,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if chunk_images <= 0:
            raise ValueError(f"chunk_images must be positive, got {chunk_images}")
        self.device = torch.device(device)
        self.images = to_nchw_uint8(images, self.device)
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.int64).to(self.device)
        if len(self.targets) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} targets")
        self.batch_size = int(batch_size)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.train = bool(train)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.augment = self.train if augment is None else bool(augment)
        self.hflip = bool(hflip)
        self.pad = int(pad)
        self.seed = int(seed)
        self.channels_last = bool(channels_last)
        # whole batches per chunk, at least one: 4096 CIFAR images are 50 MB of float32
        self.chunk = max(1, int(chunk_images) // self.batch_size) * self.batch_size
        self.epoch = 0
        self.sampler = _EpochSetter(self)
        self.batch_sampler = None  # Lightning reads both attributes once it sees `sampler`

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def _generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, self.epoch))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Gathers, crops, flips and normalises whole batches up to `chunk_images` at a time, yields views of them:
        the per-image arithmetic is the same, and a GPU step pays the pipeline's ~15 kernel launches once per
        chunk instead of once per batch (launches are what bound a batch-64 step, docs/benchmarks.md)."""
        n = len(self.images)
        generator = self._generator() if (self.shuffle or self.augment) else None
        order = torch.randperm(n, generator=generator, device=self.device) if self.shuffle else None
        if self.augment:
            dy, dx, flip = draw_augmentation(n, generator, self.pad, self.hflip)
        for first in range(0, n, self.chunk):
            last = min(first + self.chunk, n)
            idx = order[first:last] if order is not None else slice(first, last)
            images = self.images[idx]
            if self.augment:
                images = crop_flip(images, dy[first:last], dx[first:last], flip[first:last], self.pad)
            x = normalize(images, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = self.targets[idx]
            for start in range(0, last - first, self.batch_size):
                yield x[start:start + self.batch_size], y[start:start + self.batch_size]
