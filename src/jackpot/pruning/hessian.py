"""GraSP's Hessian-gradient product with memory that does not grow with depth: reverse-over-forward.

The official code gets Hg by double backward: ``grad_f = grad(L, w, create_graph=True)``, then
``grad(g . grad_f, w)``. The second backward walks the first backward's graph *and* the forward graph, and
the autograd engine holds a gradient buffer for every layer's activation until all its inputs arrived: on
VGG19 with a 500-image half that is ~2 GB of buffers on top of the saved activations (measured), which no
offloading of saved tensors can remove.

Reverse-over-forward computes the same vector differently: one forward pass carrying the tangent g
(``torch.autograd.forward_ad``) gives the scalar d/de L(w + e g) = g . dL/dw, and one ordinary backward of
that scalar gives d/dw (g . dL/dw) = H g. Its graph is a chain (primal and tangent side by side), so the
backward holds a couple of activation-sized tensors at a time, and every saved tensor can wait on disk
(``jackpot.pruning.low_memory.offload``).

BatchNorm needs care. PyTorch's forward-mode rule for ``native_batch_norm`` reads the batch mean and inverse
std that the kernel returns as non-differentiable outputs, so reverse mode *over* that rule drops the terms
through the batch statistics: Hg came out ~5 % off on a ResNet8 in float64 (torch 2.14) while double
backward matched finite differences to 1e-16. The scoring copy therefore runs the lean layers of
``jackpot.pruning.low_memory.lean_layers``, whose tangent rules are written out (and whose chunked forward and backward
keep the memory flat). The loss is written out too (``explicit_cross_entropy``): the forward rules of
``log_softmax`` and ``logsumexp`` modify a tensor in place that reverse mode has saved.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.func import functional_call

from jackpot.pruning.low_memory.offload import Parked, park

Batch = tuple[Tensor, Tensor]


class RunningSum:
    """A sum of per-weight gradient lists, kept with ``offload.park`` between additions: inside the low-memory
    block it waits on disk while the next batch runs (VGG19: 80 MB less at the peak), else in memory. The
    first addend becomes the sum (no zero-filled copy of every weight)."""

    def __init__(self) -> None:
        self._parked: list[Parked] | None = None

    def add(self, parts: Sequence[Tensor]) -> None:
        if self._parked is None:
            total = list(parts)
        else:
            total = [held.load().add_(part) for held, part in zip(self._parked, parts, strict=True)]
        self._parked = [park(t) for t in total]

    def total(self) -> list[Tensor]:
        if self._parked is None:
            raise ValueError("nothing was added")
        return [held.load() for held in self._parked]


def explicit_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy from elementary ops (max-shifted log-sum-exp), so that reverse mode over its
    forward-mode tangent is exact: ``F.cross_entropy``'s tangent rule writes in place into a tensor that the
    backward needs (an error in plain autograd, silently wrong values once saved tensors are hooked)."""
    shifted = logits - logits.detach().amax(dim=1, keepdim=True)
    log_normaliser = shifted.exp().sum(dim=1).log()
    return (log_normaliser - shifted.gather(1, target[:, None]).squeeze(1)).mean()


@functools.cache
def _load_forward_ad_rules() -> None:
    """torch loads its forward-AD decompositions at the first `make_dual`, scripting them with `torch.jit.script`,
    which recent torch (2.14) warns is deprecated: torch's own use, nothing a user can act on, printed by every
    GraSP run. Loaded here first, with that one warning silenced: the same rules, so the same numbers."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*`torch\.jit\.script` is deprecated", category=FutureWarning)
        getattr(fwAD, "_maybe_load_decompositions", lambda: None)()


def hessian_vector_forward(
    net: nn.Module,
    names: Sequence[str],
    params: Sequence[Tensor],
    vector: Sequence[Tensor],
    halves: Sequence[Batch],
    temperature: float,
) -> list[Tensor]:
    """sum over ``halves`` of H_half @ ``vector``, H the Hessian of the mean cross-entropy of logits/T in
    ``params`` (named ``names`` in ``net``), by reverse-over-forward. ``net`` must come from
    ``jackpot.pruning.low_memory.lean_layers.lean_copy`` (exact BatchNorm tangents)."""
    _load_forward_ad_rules()
    device = params[0].device
    out = RunningSum()
    tangents = [v.detach() for v in vector]
    for x, y in halves:
        with fwAD.dual_level():
            duals = {name: fwAD.make_dual(p, t) for name, p, t in zip(names, params, tangents, strict=True)}
            logits = functional_call(net, duals, (x.to(device),), strict=False)
            loss = explicit_cross_entropy(logits / temperature, y.to(device))
            directional = fwAD.unpack_dual(loss).tangent  # g . dL/dw, differentiable in w
            del duals, logits, loss
        out.add(torch.autograd.grad(directional, params))
        del directional
    return out.total()
