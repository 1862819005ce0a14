"""The reference pipeline: a Dataset over uint8 arrays, torchvision transforms on PIL images, as the paper.

The random crop and flip of each sample draw from a generator seeded by the sampler from (seed, epoch,
position), not from torch's global RNG: Lightning may fetch an epoch's first batch before any epoch-start hook
runs (it does so when resuming), and workers would otherwise carry RNG state. So the augmentation of every
sample depends only on the seed and the epoch, and a resumed run replays it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.transforms import functional as TF

from jackpot.data.sampling import EpochSampler


class ArrayImageDataset(Dataset):
    """(transform(PIL image), int label) pairs from uint8 HWC images, like torchvision's CIFAR classes."""

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        transform: Callable | None = None,
        augment: CropFlip | None = None,
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = targets
        self.transform = transform
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """`item` is an index, or (index, draw seed) from `EpochSampler(draw_seeds=True)`."""
        index, draw = item if isinstance(item, tuple) else (item, None)
        image = Image.fromarray(self.images[index])
        if self.augment is not None:
            generator = torch.Generator().manual_seed(int(draw)) if draw is not None else None
            image = self.augment(image, generator)
        return (self.transform(image) if self.transform else image), int(self.targets[index])


class CropFlip:
    """RandomCrop(size, padding) + RandomHorizontalFlip, as torchvision does them (zero padding, offsets uniform
    over the (2 * padding + 1)^2 shifts, flip with probability 1/2), with the draws taken from `generator`."""

    def __init__(self, size: int = 32, padding: int = 4, hflip: bool = True) -> None:
        self.size, self.padding, self.hflip = size, padding, hflip

    def __call__(self, image: Image.Image, generator: torch.Generator | None) -> Image.Image:
        shifts = 2 * self.padding + 1
        top, left = (int(v) for v in torch.randint(0, shifts, (2,), generator=generator))
        image = TF.crop(TF.pad(image, self.padding, fill=0), top, left, self.size, self.size)
        if self.hflip and float(torch.rand(1, generator=generator)) < 0.5:
            image = TF.hflip(image)
        return image


def paper_transform(
    mean: Sequence[float], std: Sequence[float], augment: bool = True, hflip: bool = True
) -> transforms.Compose:
    """PAPER_SPEC §2: RandomCrop(32, pad 4) -> HorizontalFlip -> ToTensor -> Normalize (test: last two)."""
    steps: list[Callable] = []
    if augment:
        steps.append(transforms.RandomCrop(32, padding=4))
        if hflip:
            steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(tuple(mean), tuple(std))]
    return transforms.Compose(steps)


class EpochDataLoader(DataLoader):
    """A DataLoader whose iterator starts at its first batch. With worker processes, PyTorch's iterator draws
    its first indices from the sampler the moment it is made, and a resumed Lightning fit makes the first one
    before the epoch-start hooks set the sampler's epoch (EpochSeed): the resumed epoch then replayed epoch 0's
    order and augmentation. Started lazily, it reads the sampler after the epoch is set, as a fresh epoch does."""

    def __iter__(self):
        yield from super().__iter__()


def torch_loader(
    images: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    augment: bool = True,
    hflip: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader whose epoch order and augmentation depend only on (seed, epoch); the last partial batch is kept."""
    augmenting = train and augment
    dataset = ArrayImageDataset(
        images, targets, paper_transform(mean, std, augment=False), CropFlip(hflip=hflip) if augmenting else None
    )
    sampler = EpochSampler(len(dataset), seed=seed, shuffle=train and shuffle, draw_seeds=augmenting)
    return EpochDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=False,
        persistent_workers=False,
    )
