"""An example pruning method written outside jackpot (docs/extending.md walks through it).

Gradient magnitude at init: |dL/dw| ** power on the scoring batch, the largest kept globally. It is SNIP
without the weight factor, a plausible-looking method whose sanity checks tell whether it uses the data and the
positions it picks, or only the per-layer ratios it ends up with.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jackpot.pruning import as_batch_list, global_topk, method, prunable_weights
from jackpot.pruning.registry import number_in


@method(when="init", needs_batches=True, checks={"power": number_in(0.0, low_open=True)})
def gradient_magnitude(model: nn.Module, ratio: float, batches, power: float = 1.0) -> dict[str, Tensor]:
    """|dL/dw| ** power at init, global top-k (SNIP without the weight factor)."""
    net = copy.deepcopy(model).train()  # never touch the caller's model (BatchNorm statistics included)
    weights = prunable_weights(net)
    device = weights[0][1].device
    grads = [torch.zeros_like(w) for _, w in weights]
    for x, y in as_batch_list(batches):
        loss = F.cross_entropy(net(x.to(device)), y.to(device))
        for total, grad in zip(grads, torch.autograd.grad(loss, [w for _, w in weights]), strict=True):
            total += grad
    scores = {name: grad.abs() ** power for (name, _), grad in zip(weights, grads, strict=True)}
    return global_topk(scores, ratio)
