"""How the budget is split: scores (or layer sizes) + prune ratio -> keep masks or per-layer kept counts.

``ratio`` is always the fraction of prunable weights *removed*, in [0, 1). The global rules reproduce the
official code's thresholds, off-by-ones included (PAPER_SPEC §4); the smart ratio reproduces
``pruner/SmartRatio.py`` (§6) down to its float32 arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

Masks = dict[str, Tensor]

EPS = 1e-10


def check_ratio(ratio: float) -> float:
    """Reject anything that is not a fraction removed in [0, 1)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio (fraction of prunable weights removed) must be in [0, 1); got {ratio!r}")
    return float(ratio)


def _flat(scores: Mapping[str, Tensor]) -> Tensor:
    return torch.cat([s.reshape(-1) for s in scores.values()])


def _kth_largest(values: Tensor, k: int) -> Tensor:
    """The k-th largest entry (1-based), i.e. ``topk(values, k)[-1]`` without materialising the top k."""
    return torch.kthvalue(values, values.numel() - k + 1).values


# Global one-shot rules --------------------------------------------------------------------------------------
def snip_global(scores: Mapping[str, Tensor], ratio: float) -> Masks:
    """SNIP: normalise by |sum| + 1e-10, keep scores >= the int(N(1-p))-th largest (ties kept)."""
    ratio = check_ratio(ratio)
    flat = _flat(scores)
    norm = flat.sum().abs() + EPS
    n_keep = int(flat.numel() * (1 - ratio))
    if n_keep == 0:
        return {name: torch.zeros_like(s, dtype=torch.bool) for name, s in scores.items()}
    threshold = _kth_largest(flat / norm, n_keep)
    return {name: (s / norm) >= threshold for name, s in scores.items()}


def grasp_global(scores: Mapping[str, Tensor], ratio: float) -> Masks:
    """GraSP: normalise by |sum| + 1e-10 and remove the largest scores.

    threshold = the int(N p)-th largest normalised score, keep = score <= threshold: the threshold weight
    itself survives, so int(N p) - 1 weights are removed absent ties (off-by-one inherited from the official
    code).
    p = 0 keeps everything (the official code would fail on an empty top-k).
    """
    ratio = check_ratio(ratio)
    flat = _flat(scores)
    n_remove = int(flat.numel() * (1 - (1 - ratio)))  # official: keep_ratio = 1 - p; remove 1 - keep_ratio
    if n_remove == 0:
        return {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
    norm = flat.sum().abs() + EPS
    threshold = _kth_largest(flat / norm, n_remove)
    return {name: (s / norm) <= threshold for name, s in scores.items()}


def global_topk(scores: Mapping[str, Tensor], ratio: float) -> Masks:
    """Keep exactly the int(N(1-p)) largest scores over all layers (ties broken by ``torch.topk``)."""
    ratio = check_ratio(ratio)
    flat = _flat(scores)
    n_keep = int(flat.numel() * (1 - ratio))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, n_keep, sorted=False).indices] = True
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start : start + s.numel()].view(s.shape)
        start += s.numel()
    return masks


def obd_global(scores: Mapping[str, Tensor], ratio: float) -> Masks:
    """OBD: remove the smallest saliencies globally, keeping exactly int(N(1-p)) weights."""
    return global_topk(scores, ratio)


def lottery_global(
    weights: Mapping[str, Tensor],
    is_linear: Sequence[bool],
    ratio: float,
    current_masks: Mapping[str, Tensor] | None = None,
) -> Masks:
    """LT_prune.py: global magnitude over conv weights only; Linear layers keep their nonzero weights.

    threshold = ascending-sorted |w_conv|[total - total_nonzero + int(total_nonzero * p)], where total
    counts conv and linear weights and total_nonzero the nonzero ones; convs keep |w| > threshold. On a dense
    net this removes int(N p) + 1 conv weights; on an already pruned net (zeros, or ``current_masks``) it
    removes p of the remaining ones, so repeated calls give iterative magnitude pruning. The counts are
    float32, as in the official code (``total_nonzero`` is a float32 CUDA sum there).
    """
    ratio = check_ratio(ratio)
    names = list(weights)
    if len(is_linear) != len(names):
        raise ValueError(f"is_linear has {len(is_linear)} flags for {len(names)} layers")
    magnitudes = {}
    for name in names:
        mag = weights[name].detach().abs().float()
        if current_masks is not None:
            mag = mag * current_masks[name].to(device=mag.device, dtype=mag.dtype)
        magnitudes[name] = mag

    total = sum(m.numel() for m in magnitudes.values())
    total_nonzero: Tensor | int = 0
    for mag in magnitudes.values():
        total_nonzero = total_nonzero + (mag > 0).float().sum().cpu()
    thre_index = int(total - total_nonzero + int(total_nonzero * ratio))

    conv = [magnitudes[n].reshape(-1) for n, lin in zip(names, is_linear, strict=True) if not lin]
    if not conv:
        raise ValueError("lottery pruning needs at least one conv layer (Linear layers are never pruned)")
    conv_sorted = torch.sort(torch.cat(conv)).values
    if thre_index >= conv_sorted.numel():
        raise ValueError(
            f"ratio {ratio} would remove {thre_index + 1} weights but the conv layers hold only "
            f"{conv_sorted.numel()} (the classifier is never pruned by lottery/lr_rewinding)"
        )
    threshold = conv_sorted[thre_index]
    return {
        name: magnitudes[name] > (0 if lin else threshold) for name, lin in zip(names, is_linear, strict=True)
    }


# Layerwise counts -------------------------------------------------------------------------------------------
def uniform_counts(layer_sizes: Sequence[int], ratio: float) -> list[int]:
    """The same keep ratio in every layer (classifier included): int(N_l (1-p))."""
    ratio = check_ratio(ratio)
    return [int(n * (1 - ratio)) for n in layer_sizes]


def _f32(value: float) -> Tensor:
    return torch.tensor(value, dtype=torch.float32)


def smart_ratio_counts(
    layer_sizes: Sequence[int],
    ratio: float,
    vgg_depth_factor: bool,
    linear_keep_ratio: float = 0.3,
    is_linear: Sequence[bool] | None = None,
) -> list[int]:
    """Per-layer kept counts of the smart ratio (random tickets), exactly as ``pruner/SmartRatio.py`` (§6).

    Layers l = 1..L in module order (L counts the classifier and shortcut convs). r_l = (L-l+1)^2 + (L-l+1),
    divided by l^2 for VGG; the classifier (``is_linear``, default: the last layer) keeps
    int(linear_keep_ratio N_lin); convs share goal = int(N (1-p)) - int(0.3 N_lin) through
    q_l = r_l goal / TEST, TEST = sum_conv int(N_l r_l); overflow (q_l >= 1) spills forward until absorbed.
    All arithmetic on N_l, r_l and q_l is float32 because the official code keeps them in float32 tensors
    (this changes some counts by one against float64: int(20024000 * (1 - 0.9)) is 2002400 in float32 and
    2002399 in float64).
    """
    ratio = check_ratio(ratio)
    n_layers = len(layer_sizes)
    linear = [False] * (n_layers - 1) + [True] if is_linear is None else list(is_linear)
    if len(linear) != n_layers:
        raise ValueError(f"is_linear has {len(linear)} flags for {n_layers} layers")
    sizes = [_f32(n) for n in layer_sizes]
    raw = [_f32((n_layers - l + 1) ** 2 + (n_layers - l + 1)) for l in range(1, n_layers + 1)]

    test, total, linear_total = 0, _f32(0), _f32(0)
    for i, (size, r) in enumerate(zip(sizes, raw, strict=True)):
        if linear[i]:
            linear_total = linear_total + size
        else:
            test += int(size * r / (i + 1) ** 2) if vgg_depth_factor else int(size * r)
        total = total + size
    linear_kept = int(linear_total * linear_keep_ratio)
    goal = int(total * (1 - ratio)) - linear_kept
    if test == 0:
        raise ValueError("smart ratio budgets convolutions, and these layers have none")
    if goal <= 0:
        limit = math.floor((1 - (linear_kept + 1) / float(total)) * 1e4) / 1e4  # 4 digits, rounded down
        raise ValueError(
            f"smart ratio cannot remove {ratio} of these weights: the classifier alone keeps {linear_kept} "
            f"({linear_keep_ratio} of its {int(linear_total)}), and ratio {ratio} keeps {int(total * (1 - ratio))} "
            f"of all {int(total)}, which leaves the convolutions {goal}; allowed here: a ratio of at most {limit}, "
            f"or a smaller linear_keep_ratio"
        )
    k = goal / test

    keep = [raw[i] * k / (i + 1) ** 2 if vgg_depth_factor else raw[i] * k for i in range(n_layers)]
    _spill_forward(keep, sizes, linear)

    counts = []
    for i, (n, size, q) in enumerate(zip(layer_sizes, sizes, keep, strict=True)):
        if linear[i]:
            counts.append(int(linear_keep_ratio * size))
        elif q >= 1:
            counts.append(int(n))
        else:
            counts.append(int(q * size))
    return counts


def _spill_forward(keep: list[Tensor], sizes: list[Tensor], linear: list[bool]) -> None:
    """Cap keep ratios at 1 and carry the overflow forward, in place; stop once the carry is zero."""
    extra = 0
    for i in range(len(keep)):
        if not linear[i]:
            if keep[i] >= 1:
                extra += int((keep[i] - 1) * sizes[i])
                keep[i] = _f32(1.0)
            else:
                room = int((1 - keep[i]) * sizes[i])
                if room >= extra:
                    keep[i] = keep[i] + extra / sizes[i]
                    extra = 0
                else:
                    extra -= room
                    keep[i] = _f32(1.0)
        if extra == 0:
            return


# Positions within a layer -----------------------------------------------------------------------------------
def random_positions(
    shapes_and_counts: Sequence[tuple[Sequence[int], int]], generator: torch.Generator | None = None
) -> list[Tensor]:
    """Exactly ``count`` kept positions per layer, uniformly at random (a randperm, not Bernoulli draws).

    Like the official code: ``count`` ones then zeros, permuted by ``randperm`` - layer by layer in order.
    """
    masks = []
    for shape, count in shapes_and_counts:
        numel = int(torch.Size(shape).numel())
        if not 0 <= count <= numel:
            raise ValueError(f"cannot keep {count} of {numel} weights in a layer of shape {tuple(shape)}")
        perm = torch.randperm(numel, generator=generator)
        masks.append((perm < count).view(tuple(shape)))
    return masks


def layerwise_topk(scores: Mapping[str, Tensor], counts: Sequence[int]) -> Masks:
    """Keep exactly ``counts[l]`` largest scores within each layer (``torch.topk``; hybrid tickets)."""
    if len(counts) != len(scores):
        raise ValueError(f"{len(counts)} counts for {len(scores)} layers")
    masks = {}
    for (name, s), count in zip(scores.items(), counts, strict=True):
        flat = s.reshape(-1)
        if not 0 <= count <= flat.numel():
            raise ValueError(f"cannot keep {count} of {flat.numel()} weights in {name}")
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        keep[torch.topk(flat, count, sorted=False).indices] = True
        masks[name] = keep.view(s.shape)
    return masks
