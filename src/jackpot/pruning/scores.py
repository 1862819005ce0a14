"""Per-weight scores that rank the prunable weights: SNIP, GraSP, magnitude, OBD, random.

Every function returns ``{name: score}`` with the names, order and shapes of ``prunable_weights(model)``.
Scores that need gradients are computed on a copy of the model, so the caller's weights, BatchNorm
running statistics and ``.grad`` fields are never touched (the official code also scores a ``deepcopy``).
The copy's parameters are new tensors on the caller's storage (nothing here writes to them): a second
copy of every weight would be VGG19's 80 MB of the 1.5 GB that scoring may take on a CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jackpot.pruning.hessian import RunningSum, hessian_vector_forward
from jackpot.pruning.low_memory.lean_layers import lean_copy
from jackpot.pruning.low_memory.offload import choose_offload, low_memory
from jackpot.pruning.masks import prunable_weights

Batch = tuple[Tensor, Tensor]
Batches = Batch | Iterable[Batch]
Scores = dict[str, Tensor]

OBD_ESTIMATORS = ("fisher", "hutchinson")


def _is_pair(item: object) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(t, Tensor) for t in item)


def as_batch_list(batches: Batches) -> list[Batch]:
    """A single ``(x, y)`` pair or an iterable of pairs -> a list of pairs (used as given, no re-sampling)."""
    if _is_pair(batches):
        return [(batches[0], batches[1])]
    pairs = []
    for item in batches:
        if not _is_pair(item):
            raise ValueError("batches must be an (x, y) tensor pair or an iterable of (x, y) tensor pairs")
        pairs.append((item[0], item[1]))
    if not pairs:
        raise ValueError("batches is empty: scoring needs at least one (x, y) pair")
    return pairs


def _scoring_copy(model: nn.Module, train: bool) -> tuple[nn.Module, list[tuple[str, Tensor]]]:
    """A copy in train or eval mode, its prunable weights requiring grad and its grads cleared; parameters
    share the caller's storage, buffers (BatchNorm running statistics) are copied."""
    shared = {id(p): nn.Parameter(p.detach(), requires_grad=p.requires_grad) for p in model.parameters()}
    net = copy.deepcopy(model, shared)
    net.train(train)
    net.zero_grad(set_to_none=True)
    weights = prunable_weights(net)
    for _, weight in weights:
        weight.requires_grad_(True)
    return net, weights


def _device_of(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def _for_offload(net: nn.Module, offload: str, batches: Sequence[Batch], method: str) -> tuple[nn.Module, bool]:
    """The scoring copy prepared for ``offload`` on its device, and whether the low-memory path is on
    (then its convolutions, BatchNorms, ReLUs and max pools are ``jackpot.pruning.low_memory.lean_layers``')."""
    images = sum(len(y) for _, y in batches)
    enabled = choose_offload(offload, net, images, method, tuple(batches[0][0].shape[1:])).on_disk
    return (lean_copy(net) if enabled else net), enabled


def _loss(net: nn.Module, x: Tensor, y: Tensor, temperature: float = 1.0) -> Tensor:
    device = _device_of(net)
    logits = net(x.to(device))
    if temperature != 1.0:
        logits = logits / temperature
    return F.cross_entropy(logits, y.to(device))


def snip_scores(model: nn.Module, batches: Batches, offload: str = "auto") -> Scores:
    """SNIP connection sensitivity |w * dL/dw| (Lee et al. 2019; official ``pruner/SNIP.py``).

    Train-mode copy (BatchNorm uses batch statistics), no re-initialisation, mean cross-entropy over each
    ``(x, y)`` pair in one forward/backward; with several pairs the gradients are summed, as the official
    ``num_iters > 1`` path accumulates ``loss.backward()``. ``offload`` (auto | disk | none): where the
    backward's saved activations wait; ``disk`` also runs the layers in chunks
    (``jackpot.pruning.low_memory.offload`` and ``.lean_layers``: same scores to float tolerance, flat memory).
    """
    net, weights = _scoring_copy(model, train=True)
    pairs = as_batch_list(batches)
    net, offloaded = _for_offload(net, offload, pairs, "snip")
    params = [w for _, w in weights]
    with low_memory(offloaded, keep=params):
        grads = _summed_gradients(net, params, pairs)
    return {name: (w.detach() * g).abs() for (name, w), g in zip(weights, grads, strict=True)}


def _summed_gradients(
    net: nn.Module, params: Sequence[Tensor], batches: Sequence[Batch], temperature: float = 1.0
) -> list[Tensor]:
    """sum over batches of d(mean loss of the batch)/d params."""
    total = RunningSum()
    for x, y in batches:
        total.add(torch.autograd.grad(_loss(net, x, y, temperature), params))
    return total.total()


def _reinit_classifier(net: nn.Module, generator: torch.Generator | None) -> None:
    """GraSP's ``reinit=True``: xavier_normal on every Linear weight of the scoring copy only (a new
    tensor: the copy's parameters share the caller's storage)."""
    for module in net.modules():
        if isinstance(module, nn.Linear):
            old = module.weight
            device = old.device if generator is None else generator.device  # draw where the generator lives
            drawn = nn.init.xavier_normal_(torch.empty(old.shape, dtype=old.dtype, device=device), generator=generator)
            module.weight = nn.Parameter(drawn.to(old.device), requires_grad=old.requires_grad)


def _halves(batches: Batches) -> list[Batch]:
    """Split each pair into its first N//2 and remaining samples, as GraSP does (class-sorted batch)."""
    halves = []
    for x, y in as_batch_list(batches):
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"GraSP splits every batch into two halves; got a batch of {n} sample(s)")
        halves += [(x[: n // 2], y[: n // 2]), (x[n // 2 :], y[n // 2 :])]
    return halves


def _hessian_vector_double_backward(
    net: nn.Module, params: Sequence[Tensor], g: Sequence[Tensor], halves: list[Batch], temperature: float
) -> list[Tensor]:
    """The official code's way: per half, grad_f with a graph, then the gradient of g . grad_f."""
    hg = RunningSum()
    for x, y in halves:
        grad_f = torch.autograd.grad(_loss(net, x, y, temperature), params, create_graph=True)
        z = sum((g_l.detach() * f_l).sum() for g_l, f_l in zip(g, grad_f, strict=True))
        hg.add(torch.autograd.grad(z, params))
    return hg.total()


def grasp_hessian_gradient(
    model: nn.Module,
    batches: Batches,
    temperature: float = 200.0,
    reinit_classifier: bool = True,
    generator: torch.Generator | None = None,
    offload: str = "auto",
) -> tuple[Scores, Scores]:
    """(weights of the scoring copy, H g) with GraSP's half-split semantics (official ``pruner/GraSP.py``).

    g = sum over halves of dL_half/dw (no graph); H g = sum over halves of d/dw (g_detached . dL_half/dw),
    i.e. the Hessian of L_half1 + L_half2 times g. Logits are divided by ``temperature``; train-mode BN.
    ``offload``: ``none`` computes H g by double backward as the official code (fast, memory grows with
    depth x batch); ``disk`` by reverse-over-forward with the saved activations on disk (same values to
    float tolerance, flat memory; ``jackpot.pruning.hessian``); ``auto``: none where it fits in memory (always
    on CUDA), else disk (``jackpot.pruning.low_memory.offload.choose_offload``).
    """
    net, weights = _scoring_copy(model, train=True)
    if reinit_classifier:
        with torch.no_grad():
            _reinit_classifier(net, generator)
        weights = [(name, net.get_parameter(name).requires_grad_(True)) for name, _ in weights]
    params = [w for _, w in weights]
    halves = _halves(batches)

    names = [name for name, _ in weights]
    net, offloaded = _for_offload(net, offload, halves, "grasp")
    with low_memory(offloaded, keep=params):
        g = _summed_gradients(net, params, halves, temperature)
        if offloaded:  # reverse-over-forward: see jackpot.pruning.hessian
            hg = hessian_vector_forward(net, names, params, g, halves, temperature)
        else:
            hg = _hessian_vector_double_backward(net, params, g, halves, temperature)

    return dict(zip(names, (w.detach().clone() for w in params), strict=True)), dict(zip(names, hg, strict=True))


def grasp_scores(
    model: nn.Module,
    batches: Batches,
    temperature: float = 200.0,
    reinit_classifier: bool = True,
    generator: torch.Generator | None = None,
    offload: str = "auto",
) -> Scores:
    """GraSP score S = -w * (H g) (Wang et al. 2020); the budget then removes the *largest* S.

    ``w`` is the scoring copy's weight, so with ``reinit_classifier`` the classifier is scored with its
    xavier re-initialised values (as in the official code); the caller's model keeps its own classifier.
    ``generator`` only drives that re-init (None: the global RNG, as the official code).
    """
    weights, hg = grasp_hessian_gradient(model, batches, temperature, reinit_classifier, generator, offload)
    return {name: -weights[name] * hg[name] for name in weights}


def magnitude_scores(model: nn.Module) -> Scores:
    """|w| of the model's current weights (magnitude pruning; pruned zeros score 0)."""
    return {name: w.detach().abs().clone() for name, w in prunable_weights(model)}


def random_scores(model: nn.Module, generator: torch.Generator | None = None) -> Scores:
    """Uniform [0, 1) scores drawn per layer in module order (a random global ranking)."""
    device = generator.device if generator is not None else torch.device("cpu")
    return {
        name: torch.rand(w.shape, generator=generator, device=device).to(w.device)
        for name, w in prunable_weights(model)
    }


FISHER_CHUNK_BYTES = 256 * 2**20  # per-sample gradients the empirical Fisher holds at once


def _fisher_diagonal(
    net: nn.Module, weights: Sequence[tuple[str, Tensor]], batches: list[Batch], chunk_bytes: int | None = None
) -> list[Tensor]:
    """Empirical Fisher diagonal: the mean over samples of (dl_n/dw)^2, l_n the loss of sample n alone.

    Per-sample gradients come from torch.func (vmap of grad, the network in eval mode so samples are
    independent), a chunk of samples at a time, sized so that a chunk's gradients stay under `chunk_bytes`
    (default FISHER_CHUNK_BYTES): memory stays flat whatever the number of samples. (The square of a batch's
    mean gradient instead is one chi-square draw per weight: on a trained network, where that mean is near
    zero, mostly noise.)
    """
    from torch.func import functional_call, grad, vmap

    names = [name for name, _ in weights]
    prunable = set(names)
    fixed = {k: v.detach() for k, v in net.named_parameters() if k not in prunable}
    buffers = dict(net.named_buffers())
    device = _device_of(net)

    def sample_loss(ws: tuple[Tensor, ...], x: Tensor, y: Tensor) -> Tensor:
        params = {**fixed, **dict(zip(names, ws, strict=True))}
        logits = functional_call(net, (params, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    ws = tuple(w.detach() for _, w in weights)
    budget = FISHER_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    chunk = max(1, budget // sum(w.numel() * w.element_size() for w in ws))
    diag = [torch.zeros_like(w, dtype=torch.float32) for w in ws]  # 16-bit sums of squares would underflow
    samples = 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        for start in range(0, len(y), chunk):
            grads = per_sample(ws, x[start:start + chunk], y[start:start + chunk])
            for acc, g in zip(diag, grads, strict=True):
                acc.add_(g.float().square().sum(0))
        samples += len(y)
    return [(d / samples).to(w.dtype) for d, w in zip(diag, ws, strict=True)]


def _rademacher(shape: torch.Size, like: Tensor, generator: torch.Generator) -> Tensor:
    signs = torch.randint(0, 2, shape, generator=generator, device=generator.device)
    return (signs * 2 - 1).to(device=like.device, dtype=like.dtype)


def _hutchinson_diagonal(
    net: nn.Module, params: Sequence[Tensor], batches: list[Batch], probes: int, generator: torch.Generator
) -> list[Tensor]:
    """Hutchinson's estimate of diag(H) = E[v * Hv], v Rademacher, H the Hessian of the mean batch loss.

    Hessian-vector products by double backward; each batch's gradient graph is reused for all its probes.
    """
    diag = [torch.zeros_like(w) for w in params]
    for x, y in batches:
        grads = torch.autograd.grad(_loss(net, x, y), params, create_graph=True)
        for _ in range(probes):
            vs = [_rademacher(w.shape, w, generator) for w in params]
            gv = sum((g * v).sum() for g, v in zip(grads, vs, strict=True))
            hvs = torch.autograd.grad(gv, params, retain_graph=True)
            for acc, v, hv in zip(diag, vs, hvs, strict=True):
                acc.add_(v * hv)
    return [d / (len(batches) * probes) for d in diag]


def obd_scores(
    model: nn.Module,
    batches: Batches,
    estimator: str = "fisher",
    probes: int = 16,
    seed: int = 0,
) -> Scores:
    """Optimal Brain Damage saliency 0.5 * h_ii * w_i^2 (LeCun et al. 1990) of the trained network.

    The copy is in **eval mode** (BatchNorm uses its running statistics): OBD scores the trained network as
    it is evaluated, and the per-sample losses stay independent. ``estimator="fisher"`` (the default, the
    spec's §4.5 assumption): h_ii = the mean over the samples of (dl_n/dw_i)^2, the empirical Fisher.
    ``estimator="hutchinson"``: h_ii = E[v_i (Hv)_i] over ``probes`` Rademacher vectors per batch (generator
    seeded with ``seed``), unbiased for the Hessian diagonal of the mean batch loss but, per weight, dominated
    by the off-diagonal terms unless the probes number in the thousands (about half the estimates come out
    negative with 16 probes on a trained ResNet).
    """
    if estimator not in OBD_ESTIMATORS:
        raise ValueError(f"unknown OBD estimator {estimator!r}; allowed: {', '.join(OBD_ESTIMATORS)}")
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    net, weights = _scoring_copy(model, train=False)
    params = [w for _, w in weights]
    pairs = as_batch_list(batches)
    if estimator == "fisher":
        diag = _fisher_diagonal(net, weights, pairs)
    else:
        diag = _hutchinson_diagonal(net, params, pairs, probes, torch.Generator().manual_seed(seed))
    return {name: 0.5 * h * w.detach().square() for (name, w), h in zip(weights, diag, strict=True)}
