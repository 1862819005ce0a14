"""The reference pipeline: a Dataset over uint8 arrays, torchvision transforms on PIL images, as the paper.

Random crops and flips draw from torch's global RNG (the trainer re-seeds it every epoch). With workers, each
epoch's iterator takes its worker seeds from that global RNG, so workers are never persistent: a persistent
worker would carry its RNG state across epochs and break resume from an epoch boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from jackpot.data.sampling import EpochSampler


class ArrayImageDataset(Dataset):
    """(transform(PIL image), int label) pairs from uint8 HWC images, like torchvision's CIFAR classes."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform: Callable | None = None) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index])
        return (self.transform(image) if self.transform else image), int(self.targets[index])


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
    """A DataLoader whose epoch order depends only on (seed, epoch); the last partial batch is kept."""
    dataset = ArrayImageDataset(
        images, targets, paper_transform(mean, std, augment=train and augment, hflip=hflip)
    )
    sampler = EpochSampler(len(dataset), seed=seed, shuffle=train and shuffle)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=False,
        persistent_workers=False,
    )
