"""Epoch orders that depend only on (seed, epoch), and the class-balanced scoring selection.

Both make a run reproducible from its seed alone: an epoch's order never depends on how many epochs ran before
in this process, which is what bit-exact resume needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

_MASK64 = (1 << 64) - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for (seed, epoch); SeedSequence mixing keeps nearby pairs unrelated."""
    state = np.random.SeedSequence([int(seed) & _MASK64, int(epoch) & _MASK64]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


class EpochSampler(Sampler):
    """Shuffles with a generator seeded from (seed, epoch); Lightning calls `set_epoch` every epoch.

    With `draw_seeds`, yields (index, draw seed) pairs: the seed of that sample's augmentation this epoch.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, draw_seeds: bool = False) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.draw_seeds = bool(draw_seeds)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.n, generator=generator)

    def __iter__(self) -> Iterator[int] | Iterator[tuple[int, int]]:
        order = self.order().tolist()
        if not self.draw_seeds:
            return iter(order)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed + 1_000_003, self.epoch))
        draws = torch.randint(0, 2**62, (self.n,), generator=generator).tolist()
        return iter(zip(order, draws, strict=True))

    def __len__(self) -> int:
        return self.n


def class_balanced_indices(
    targets: np.ndarray, order: np.ndarray, num_classes: int, per_class: int
) -> np.ndarray:
    """The first `per_class` indices of each class along `order`, grouped by class (official SNIP_fetch_data).

    Walking a shuffled loader batch by batch and keeping the first images of each class selects exactly these
    indices, whatever the batch size, so only the labels need to be visited.
    """
    targets = np.asarray(targets)
    order = np.asarray(order)
    labels = targets[order]
    chosen = []
    for cls in range(num_classes):
        picked = order[labels == cls][:per_class]
        if len(picked) < per_class:
            raise ValueError(
                f"class {cls} has {len(picked)} training images, fewer than samples_per_class={per_class}"
            )
        chosen.append(picked)
    return np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
