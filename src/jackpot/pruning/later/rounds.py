"""Budget for the iterative methods from later work (SynFlow, FORCE): how many weights each round keeps, and
which ones.

Both papers shrink the kept fraction exponentially, d_k = (1 - ratio)^(k/n) after round k of n, so every round
removes the same fraction of what is left. The official codes then threshold (SynFlow keeps score > the k-th
smallest, FORCE keeps score >= the k-th largest), so ties at the threshold make the kept count drift from the
budget; here every round keeps an exact count instead, and the final count is exactly round((1 - ratio) N), so
that tickets of different methods at the same ratio have the same number of weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

Masks = dict[str, Tensor]


def exponential_keep_counts(total: int, ratio: float, rounds: int) -> list[int]:
    """Kept weights after each round: round(total * (1 - ratio)^(k / rounds)) for k = 1..rounds.

    Python's ``round`` (halves to even). The last entry is exactly round((1 - ratio) total) because
    (1 - ratio) ** 1.0 is (1 - ratio); the counts never increase since the fractions decrease.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    keep = 1.0 - ratio
    return [round(total * keep ** (k / rounds)) for k in range(1, rounds + 1)]


def keep_top(scores: Mapping[str, Tensor], n_keep: int, pruned: Mapping[str, Tensor] | None = None) -> Masks:
    """Keep exactly the ``n_keep`` highest scores over all layers; weights where ``pruned`` is True never return.

    Tie rule: among equal scores the one earlier in module order (layer order, then flat index within the
    layer) is kept, so the result is deterministic and the count exact.
    Raises if a score that could be kept is not finite (NaN or inf would make the ranking meaningless).
    """
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1) for n in names])
    if not 0 <= n_keep <= flat.numel():
        raise ValueError(f"cannot keep {n_keep} of {flat.numel()} weights")
    if pruned is not None:
        out = torch.cat([pruned[n].to(device=flat.device, dtype=torch.bool).reshape(-1) for n in names])
        if n_keep > int((~out).sum()):
            raise ValueError(f"cannot keep {n_keep} weights: only {int((~out).sum())} are not pruned yet")
        flat = flat.masked_fill(out, float("-inf"))
        alive = flat[~out]
    else:
        alive = flat
    if not bool(torch.isfinite(alive).all()):
        raise ValueError("pruning scores contain NaN or inf; cannot rank the weights")
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if n_keep > 0:  # O(N) selection, not a sort: the n_keep-th largest, all above it, then the earliest ties
        threshold = torch.kthvalue(flat, flat.numel() - n_keep + 1).values
        keep = flat > threshold
        tied = torch.nonzero(flat == threshold).reshape(-1)  # ascending flat index, i.e. module order
        keep[tied[: n_keep - int(keep.sum())]] = True
    masks, start = {}, 0
    for name in names:
        size = scores[name].numel()
        masks[name] = keep[start:start + size].view(scores[name].shape)
        start += size
    return masks
