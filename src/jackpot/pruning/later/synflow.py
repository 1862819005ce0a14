"""SynFlow (Tanaka et al. 2020): data-free pruning that iteratively conserves synaptic flow.

Score of a weight: |dR/dw * w| on the *linearised* network (every weight and BatchNorm tensor replaced by its
absolute value, BatchNorm in eval mode, the official code's ``linearize``), R = the sum of the network's outputs
for an all-ones input. R is the sum over all input-output paths of the product of |w| along the path, so a
weight's score is the flow through it. Rounds shrink the kept fraction exponentially; pruned weights are zero in
the next round's flow, so they score 0 and stay pruned.

Everything runs on a float64 copy: on ResNet32-size networks R is a product of about thirty layer gains and
overflows float32 (3.4e38); the caller's model is never touched.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from jackpot.pruning import budget, method, prunable_weights
from jackpot.pruning.later.rounds import Masks, exponential_keep_counts, keep_top
from jackpot.pruning.registry import int_at_least


def linearized_copy(model: nn.Module) -> nn.Module:
    """A float64, eval-mode copy with |.| of every floating parameter and buffer (running means included, as the
    official code takes abs of the whole state dict); only the prunable weights require grad."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for tensor in [*net.parameters(), *net.buffers()]:
            if tensor.is_floating_point():
                tensor.abs_()
    for param in net.parameters():
        param.requires_grad_(False)
        param.grad = None
    for _, weight in prunable_weights(net):
        weight.requires_grad_(True)
    return net


def _flow_scores(net: nn.Module, weights: Sequence[tuple[str, Tensor]], ones: Tensor) -> dict[str, Tensor]:
    """|dR/dw * w| with R = sum(net(ones)), for the net's current (linearised, masked) weights."""
    total = net(ones).sum()
    grads = torch.autograd.grad(total, [w for _, w in weights])
    return {name: (g * w).detach().abs() for (name, w), g in zip(weights, grads, strict=True)}


def _apply(weights: Sequence[tuple[str, Tensor]], magnitudes: Mapping[str, Tensor], masks: Mapping[str, Tensor]):
    with torch.no_grad():
        for name, weight in weights:
            weight.copy_(magnitudes[name] * masks[name])


def synflow_scores(
    model: nn.Module, input_shape: Sequence[int], masks: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """One round's float64 SynFlow scores of ``model`` with ``masks`` applied (None: dense)."""
    net = linearized_copy(model)
    weights = prunable_weights(net)
    if masks is not None:
        magnitudes = {name: w.detach().clone() for name, w in weights}
        _apply(weights, magnitudes, {n: m.to(device=magnitudes[n].device) for n, m in masks.items()})
    device = weights[0][1].device
    return _flow_scores(net, weights, torch.ones((1, *input_shape), dtype=torch.float64, device=device))


@method("init", needs_batches=False, checks={"rounds": int_at_least(1)},
        summary="SynFlow: |w dR/dw| of the |w| network on ones, global, exponential rounds (data-free)")
def synflow(
    model: nn.Module,
    ratio: float,
    batches: Any,
    rounds: int = 100,
    *,
    input_shape: Sequence[int],
) -> Masks:
    """SynFlow masks after ``rounds`` rounds (the paper's default 100) with the exponential schedule.

    Round k keeps exactly round(N (1 - ratio)^(k/rounds)) weights (``rounds.exponential_keep_counts``), chosen as
    the highest scores over all prunable weights with previously pruned ones excluded.
    Tie rule: the official code prunes every score <= the k-th smallest (k = int(N (1 - d_k))), so a tie at the
    threshold prunes all tied weights and the kept count falls below the budget; here ties are broken by module
    order (the earlier weight stays, ``rounds.keep_top``) so every round's count, and the final
    round((1 - ratio) N), is exact. Absent ties at the threshold the two rules keep the same weights, except that
    the official count is N - int(N (1 - d_k)), which can exceed round(N d_k) by one.
    """
    ratio = budget.check_ratio(ratio)
    net = linearized_copy(model)
    weights = prunable_weights(net)
    magnitudes = {name: w.detach().clone() for name, w in weights}
    masks: Masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights}
    total = sum(w.numel() for _, w in weights)
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=weights[0][1].device)
    for n_keep in exponential_keep_counts(total, ratio, rounds):
        if n_keep == total:
            continue  # nothing to prune this round (ratio 0, or a tiny network's first rounds)
        _apply(weights, magnitudes, masks)
        scores = _flow_scores(net, weights, ones)
        masks = keep_top(scores, n_keep, pruned={name: ~mask for name, mask in masks.items()})
    return {name: mask.cpu() for name, mask in masks.items()}
