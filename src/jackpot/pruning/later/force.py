"""FORCE (de Jorge et al. 2021, "Progressive Skeletonization"): connection sensitivity of the *pruned* network,
recomputed over rounds of an exponential schedule.

Each round scores every weight with |theta * dL/d(theta m)|: the gradient is taken at the masked network (pruned
weights set to zero) and multiplied by the *original* weight theta, so a pruned weight still gets a score and can
come back in a later round. That is the difference from Iterative SNIP, the paper's other procedure
(``variant="iterative_snip"``): there the score is |w dL/dw| of the masked weights and pruned weights stay pruned.
With one round both are SNIP (the dense network's |w dL/dw|, global top-k).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jackpot.pruning import budget, method, prunable_weights
from jackpot.pruning.later.rounds import Masks, exponential_keep_counts, keep_top
from jackpot.pruning.registry import int_at_least, one_of

VARIANTS = ("force", "iterative_snip")
Batch = tuple[Tensor, Tensor]


def batch_pairs(batches: Batch | Iterable[Batch]) -> list[Batch]:
    """An (x, y) pair or an iterable of pairs -> a list of pairs, used as given in every round."""
    if isinstance(batches, (tuple, list)) and len(batches) == 2 and all(isinstance(t, Tensor) for t in batches):
        return [(batches[0], batches[1])]
    pairs = [(x, y) for x, y in batches]
    if not pairs:
        raise ValueError("batches is empty: FORCE scores need at least one (x, y) pair")
    return pairs


def _masked_gradients(
    net: nn.Module, weights: Sequence[tuple[str, Tensor]], pairs: Sequence[Batch]
) -> list[Tensor]:
    """Sum over pairs of d(mean cross-entropy)/d(weights), at the net's current (masked) weights."""
    device = weights[0][1].device
    params = [w for _, w in weights]
    total = [torch.zeros_like(w) for w in params]
    for x, y in pairs:
        loss = F.cross_entropy(net(x.to(device)), y.to(device))
        for acc, g in zip(total, torch.autograd.grad(loss, params), strict=True):
            acc.add_(g)
    return total


@method("init", needs_batches=True, checks={"rounds": int_at_least(1), "variant": one_of(*VARIANTS)},
        summary="FORCE: |theta dL/d(theta m)| of the pruned net, global, exponential rounds; pruned may return")
def force(model: nn.Module, ratio: float, batches: Any, rounds: int = 10, variant: str = "force") -> Masks:
    """FORCE masks after ``rounds`` rounds of the exponential schedule.

    Round k keeps exactly round(N (1 - ratio)^(k/rounds)) weights (``rounds.exponential_keep_counts``): the global
    top-k of the round's scores, ties to the earlier weight in module order (``rounds.keep_top``; the official code
    keeps every score >= the int(N d_k)-th largest, so ties can exceed the budget). Scores: train-mode copy
    (BatchNorm on batch statistics, as SNIP here), mean cross-entropy per pair, gradients summed over all given
    pairs, the same pairs every round (the official code draws a fresh batch each round).
    Default 10 rounds: the official ``iterative_pruning`` default (``num_steps=10``); the paper's experiments ran
    more iterations, so raise ``rounds`` to match them.
    """
    ratio = budget.check_ratio(ratio)
    if variant not in VARIANTS:
        raise ValueError(f"unknown FORCE variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    pairs = batch_pairs(batches)
    net = copy.deepcopy(model).train()
    for param in net.parameters():
        param.requires_grad_(False)
        param.grad = None
    weights = prunable_weights(net)
    originals = {name: w.detach().clone() for name, w in weights}
    for _, weight in weights:
        weight.requires_grad_(True)
    masks: Masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights}
    total = sum(w.numel() for _, w in weights)
    for n_keep in exponential_keep_counts(total, ratio, rounds):
        with torch.no_grad():
            for name, weight in weights:
                weight.copy_(originals[name] * masks[name])
        grads = _masked_gradients(net, weights, pairs)
        if variant == "force":  # theta * dL/d(theta m): pruned weights score with their original value
            scores = {name: (originals[name] * g).abs() for (name, _), g in zip(weights, grads, strict=True)}
            masks = keep_top(scores, n_keep)
        else:  # iterative SNIP: |w dL/dw| of the masked weights, pruned weights never return
            scores = {name: (w.detach() * g).abs() for (name, w), g in zip(weights, grads, strict=True)}
            masks = keep_top(scores, n_keep, pruned={name: ~mask for name, mask in masks.items()})
    return {name: mask.cpu() for name, mask in masks.items()}
