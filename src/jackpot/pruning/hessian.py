"""GraSP's Hessian-gradient product with memory that does not grow with depth: reverse-over-forward.

The official code gets Hg by double backward: ``grad_f = grad(L, w, create_graph=True)``, then
``grad(g . grad_f, w)``. The second backward walks the first backward's graph *and* the forward graph, and
the autograd engine holds a gradient buffer for every layer's activation until all its inputs arrived: on
VGG19 with a 500-image half that is ~2 GB of buffers on top of the saved activations (measured), which no
offloading of saved tensors can remove.

Reverse-over-forward computes the same vector differently: one forward pass carrying the tangent g
(forward-mode AD) gives the scalar d/de L(w + e g) = g . dL/dw, and one ordinary backward of that scalar
gives d/dw (g . dL/dw) = H g. Its graph is a chain (primal and tangent side by side), so the backward holds
a couple of activation-sized buffers at a time, and every saved tensor can wait on disk
(``jackpot.pruning.offload``).

BatchNorm needs care. PyTorch's forward-mode rule for ``native_batch_norm`` reads the batch mean and inverse
std that the kernel returns as non-differentiable outputs, so reverse mode *over* that rule drops the terms
through the batch statistics: Hg came out ~5 % off on a ResNet8 in float64 (torch 2.14) while double
backward matched finite differences to 1e-16. The scoring copy therefore normalises with plain tensor ops
(``ExplicitBatchNorm``: the same train-mode arithmetic, differentiable to any order).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jvp

Batch = tuple[Tensor, Tensor]


class ExplicitBatchNorm(nn.Module):
    """Train-mode BatchNorm (batch statistics, biased variance) from elementary ops; shares the affine
    parameters of the module it replaces. Running statistics are not tracked: the copy is thrown away.

    The statistics are over the whole batch (as BatchNorm's); they are summed, and the normalisation applied,
    ``chunk`` samples at a time so that no temporary is larger than a chunk's activation."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, chunk: int) -> None:
        super().__init__()
        self.weight, self.bias, self.eps, self.chunk = bn.weight, bn.bias, bn.eps, chunk

    def forward(self, x: Tensor) -> Tensor:
        dims = [d for d in range(x.dim()) if d != 1]
        count = x.numel() // x.shape[1]
        pieces = x.split(self.chunk)
        mean = sum(p.sum(dim=dims, keepdim=True) for p in pieces) / count
        var = sum((p - mean).square().sum(dim=dims, keepdim=True) for p in pieces) / count
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.view(scale.shape)
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.view(shift.shape)
        # x * scale + shift, one fused op per chunk: the result is the only activation-sized tensor made.
        return _by_chunks(lambda piece: torch.addcmul(shift, piece, scale), x, self.chunk)


def _by_chunks(fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int) -> Tensor:
    """fn applied ``chunk`` samples at a time, each result written into one preallocated output: the chunks'
    results are freed as they are copied (``torch.cat`` would hold them all next to its output)."""
    if x.shape[0] <= chunk:
        return fn(x)
    pieces = x.split(chunk)
    first = fn(pieces[0])
    out = first.new_empty((x.shape[0], *first.shape[1:]))
    out[: first.shape[0]] = first
    start = first.shape[0]
    del first
    for piece in pieces[1:]:
        out[start : start + piece.shape[0]] = fn(piece)
        start += piece.shape[0]
    return out


def _chunked_forward(module: nn.Module, chunk: int, x: Tensor) -> Tensor:
    """A per-sample module applied ``chunk`` samples at a time (same values; smaller temporaries)."""
    return _by_chunks(lambda piece: type(module).forward(module, piece), x, chunk)


SCORING_CHUNK = 100  # samples per convolution / normalisation call in a low-memory scoring copy


def low_memory_copy(net: nn.Module, chunk: int | None = None) -> nn.Module:
    """Prepare a (train-mode, throw-away) scoring copy in place: BatchNorms become ``ExplicitBatchNorm`` and
    convolutions run ``chunk`` samples at a time. Parameter names are unchanged (``functional_call`` needs
    them), so convolutions keep their module and only get a chunked ``forward``."""
    if not net.training:
        raise ValueError("ExplicitBatchNorm computes train-mode (batch-statistics) BatchNorm; net is in eval mode")
    chunk = chunk or SCORING_CHUNK
    for name, child in net.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, ExplicitBatchNorm(child, chunk))
        elif isinstance(child, nn.Conv2d):
            child.forward = functools.partial(_chunked_forward, child, chunk)
        else:
            low_memory_copy(child, chunk)
    return net


def hessian_vector_forward(
    net: nn.Module,
    names: Sequence[str],
    params: Sequence[Tensor],
    vector: Sequence[Tensor],
    halves: Sequence[Batch],
    temperature: float,
) -> list[Tensor]:
    """sum over ``halves`` of H_half @ ``vector``, H the Hessian of the mean cross-entropy of logits/T in
    ``params`` (named ``names`` in ``net``), by reverse-over-forward. ``net`` must come from ``low_memory_copy``."""
    device = params[0].device
    out = [torch.zeros_like(p) for p in params]
    tangents = tuple(v.detach() for v in vector)
    for x, y in halves:
        x, y = x.to(device), y.to(device)

        def half_loss(*weights: Tensor, x: Tensor = x, y: Tensor = y) -> Tensor:
            logits = functional_call(net, dict(zip(names, weights, strict=True)), (x,), strict=False)
            return F.cross_entropy(logits / temperature, y)

        _, directional = jvp(half_loss, tuple(params), tangents)  # g . dL/dw, differentiable in w
        for acc, grad in zip(out, torch.autograd.grad(directional, params), strict=True):
            acc.add_(grad)
        del directional
    return out
