"""ERK random tickets (Evci et al. 2020, RigL): Erdős-Rényi-Kernel per-layer densities, random positions.

A layer with weight shape (n_out, n_in, k_h, k_w) gets density eps * (n_in + n_out + k_h + k_w) / (n_in n_out
k_h k_w) (a Linear (n_out, n_in): eps * (n_in + n_out) / (n_in n_out)), i.e. eps * sum(shape) / prod(shape):
small layers stay denser than large ones. eps is solved so that the kept weights total (1 - ratio) N.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from jackpot.pruning import budget, method, prunable_weights
from jackpot.pruning.later.rounds import Masks
from jackpot.pruning.registry import int_at_least


def erk_densities(shapes: Sequence[Sequence[int]], ratio: float) -> list[float]:
    """Per-layer densities of ERK at prune ratio ``ratio``, RigL's algorithm (``sparse_utils.get_sparsities``).

    eps = (kept target - weights of dense layers) / sum over the other layers of raw_l n_l, raw_l =
    sum(shape)/prod(shape). While some layer would get eps raw_l > 1, the layer(s) with the largest raw_l are made
    dense and eps is solved again over the rest. No layer is exempted up front (RigL can keep the first layer
    dense by a separate option; the paper's ERK prunes all layers).
    """
    ratio = budget.check_ratio(ratio)
    sizes = [math.prod(shape) for shape in shapes]
    raw = [sum(shape) / size for shape, size in zip(shapes, sizes, strict=True)]
    target = (1.0 - ratio) * sum(sizes)
    dense: set[int] = set()
    while True:
        sparse = [i for i in range(len(sizes)) if i not in dense]
        if not sparse:
            return [1.0] * len(sizes)
        eps = (target - sum(sizes[i] for i in dense)) / sum(raw[i] * sizes[i] for i in sparse)
        largest = max(raw[i] for i in sparse)
        if eps * largest <= 1.0:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
        dense.update(i for i in sparse if raw[i] == largest)


def apportion(targets: Sequence[float], caps: Sequence[int], total: int) -> list[int]:
    """Integers near ``targets``, each in [0, cap], summing exactly to ``total`` (largest remainders).

    Each layer first gets floor(target); the missing units go one each to the layers with the largest fractional
    parts (ties: earlier layer first), skipping full layers, and a surplus (only from float error) is taken back
    from the smallest fractional parts.
    """
    if not 0 <= total <= sum(caps):
        raise ValueError(f"cannot place {total} weights in layers of {list(caps)}")
    counts = [min(cap, max(0, math.floor(t))) for t, cap in zip(targets, caps, strict=True)]
    order = sorted(range(len(counts)), key=lambda i: (-(targets[i] - math.floor(targets[i])), i))
    while sum(counts) < total:
        for i in order:
            if sum(counts) < total and counts[i] < caps[i]:
                counts[i] += 1
    while sum(counts) > total:
        for i in reversed(order):
            if sum(counts) > total and counts[i] > 0:
                counts[i] -= 1
    return counts


def erk_counts(shapes: Sequence[Sequence[int]], ratio: float) -> list[int]:
    """Kept weights per layer: density_l n_l apportioned so they sum to exactly round((1 - ratio) N) (Python's
    round, halves to even)."""
    sizes = [math.prod(shape) for shape in shapes]
    densities = erk_densities(shapes, ratio)
    targets = [d * n for d, n in zip(densities, sizes, strict=True)]
    return apportion(targets, sizes, round((1.0 - ratio) * sum(sizes)))


@method("init", needs_batches=False, random_positions=True, checks={"seed": int_at_least(0, allow_none=True)},
        summary="random tickets: ERK per-layer counts (RigL), random positions")
def erk(model: nn.Module, ratio: float, batches: Any, seed: int | None = None) -> Masks:
    """ERK counts per layer (``erk_counts``), kept positions uniformly at random within each layer (a randperm
    per layer in module order, seeded by ``seed``; None: the global RNG)."""
    weights = prunable_weights(model)
    counts = erk_counts([tuple(w.shape) for _, w in weights], ratio)
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    positions = budget.random_positions([(tuple(w.shape), c) for (_, w), c in zip(weights, counts, strict=True)],
                                        generator)
    return {name: mask for (name, _), mask in zip(weights, positions, strict=True)}
