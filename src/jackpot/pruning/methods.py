"""The paper's methods, each a composition (DESIGN §1) of a score (``scores.py``) and a budget rule
(``budget.py``), declared through the same public ``@method`` API as a researcher's own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from jackpot.pruning import budget, scores
from jackpot.pruning.low_memory.offload import OFFLOAD_MODES
from jackpot.pruning.masks import PRUNABLE_TYPES, Masks, prunable_weights
from jackpot.pruning.registry import boolean, int_at_least, method, number_in, one_of
from jackpot.pruning.scores import Batches

SMART_RATIO_CHECKS = {"linear_keep_ratio": number_in(0.0, 1.0, low_open=True), "vgg_depth_factor": boolean(True)}


def _generator(seed: int | None) -> torch.Generator | None:
    """A seeded CPU generator, or None for the global RNG (the official code's behaviour)."""
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def linear_flags(model: nn.Module) -> list[bool]:
    """For each prunable weight (module order, as ``prunable_weights``): is it a Linear (classifier) layer?"""
    return [isinstance(m, nn.Linear) for m in model.modules() if isinstance(m, PRUNABLE_TYPES)]


def _layer_sizes(model: nn.Module) -> list[int]:
    return [w.numel() for _, w in prunable_weights(model)]


def _uses_vgg_factor(model: nn.Module, vgg_depth_factor: bool | None) -> bool:
    """None -> auto: the official code applies 1/l^2 to every arch except ResNet; we key it on ``family``."""
    return getattr(model, "family", None) == "vgg" if vgg_depth_factor is None else bool(vgg_depth_factor)


def _smart_counts(model: nn.Module, ratio: float, linear_keep_ratio: float, vgg_depth_factor: bool | None):
    return budget.smart_ratio_counts(
        _layer_sizes(model),
        ratio,
        _uses_vgg_factor(model, vgg_depth_factor),
        linear_keep_ratio=linear_keep_ratio,
        is_linear=linear_flags(model),
    )


def _smart_ratio_problem(model: nn.Module, ratio: float, options: Mapping[str, Any]) -> str | None:
    """Why the smart ratio cannot reach `ratio` on this network (its classifier's share alone may exceed what
    the ratio keeps: ResNet-8 on CIFAR-100 at 98 %), or None. Shapes only: the network may be on the meta device."""
    try:
        _smart_counts(model, ratio, options["linear_keep_ratio"], options["vgg_depth_factor"])
    except ValueError as err:
        return str(err)
    return None


def _random_masks(model: nn.Module, counts: list[int], seed: int | None) -> dict[str, Tensor]:
    weights = prunable_weights(model)
    shapes = [(tuple(w.shape), count) for (_, w), count in zip(weights, counts, strict=True)]
    positions = budget.random_positions(shapes, _generator(seed))
    return {name: mask for (name, _), mask in zip(weights, positions, strict=True)}


@method("init", needs_batches=False, prunes=False, summary="no pruning (ratio ignored)")
def dense(model: nn.Module, ratio: float, batches: Batches | None) -> Mapping[str, Tensor]:
    return Masks.dense(model)


@method("init", needs_batches=True, checks={"offload": one_of(*OFFLOAD_MODES)},
        summary="|w dL/dw|, global, ties kept")
def snip(model: nn.Module, ratio: float, batches: Batches, offload: str = "auto") -> Mapping[str, Tensor]:
    return budget.snip_global(scores.snip_scores(model, batches, offload), ratio)


@method("init", needs_batches=True, summary="-w Hg, global, removes the largest", checks={
    "temperature": number_in(0.0, low_open=True), "reinit_classifier": boolean(),
    "seed": int_at_least(0, allow_none=True), "offload": one_of(*OFFLOAD_MODES)})
def grasp(
    model: nn.Module,
    ratio: float,
    batches: Batches,
    temperature: float = 200.0,
    reinit_classifier: bool = True,
    seed: int | None = None,
    offload: str = "auto",
) -> Mapping[str, Tensor]:
    grasp = scores.grasp_scores(model, batches, temperature, reinit_classifier, _generator(seed), offload)
    return budget.grasp_global(grasp, ratio)


@method("init", needs_batches=False, random_positions=True, checks=SMART_RATIO_CHECKS,
        ratio_check=_smart_ratio_problem, summary="random tickets: smart-ratio counts, random positions")
def smart_ratio(
    model: nn.Module,
    ratio: float,
    batches: Batches | None,
    linear_keep_ratio: float = 0.3,
    vgg_depth_factor: bool | None = None,
    seed: int | None = None,
) -> Mapping[str, Tensor]:
    return _random_masks(model, _smart_counts(model, ratio, linear_keep_ratio, vgg_depth_factor), seed)


@method("init", needs_batches=False, random_positions=True, checks={"seed": int_at_least(0, allow_none=True)},
        summary="uniform per-layer ratio, random positions")
def random(model: nn.Module, ratio: float, batches: Batches | None, seed: int | None = None):
    return _random_masks(model, budget.uniform_counts(_layer_sizes(model), ratio), seed)


@method("trained", needs_batches=False, ticket_weights="init", iterative=True,
        summary="global conv magnitude, classifier dense; rewind to init")
def lottery(
    model: nn.Module,
    ratio: float,
    batches: Batches | None,
    current_masks: Mapping[str, Tensor] | None = None,
) -> Mapping[str, Tensor]:
    weights = dict(prunable_weights(model))
    return budget.lottery_global(weights, linear_flags(model), ratio, current_masks)


@method("trained", needs_batches=True, summary="0.5 h_ii w^2, global, removes the smallest", checks={
    "estimator": one_of(*scores.OBD_ESTIMATORS), "probes": int_at_least(1), "seed": int_at_least(0)})
def obd(
    model: nn.Module,
    ratio: float,
    batches: Batches,
    estimator: str = "fisher",
    probes: int = 16,
    seed: int = 0,
) -> Mapping[str, Tensor]:
    return budget.obd_global(scores.obd_scores(model, batches, estimator, probes, seed), ratio)


@method("trained", needs_batches=False, checks=SMART_RATIO_CHECKS, ratio_check=_smart_ratio_problem,
        summary="smart-ratio counts, largest |w| within each layer")
def hybrid(
    model: nn.Module,
    ratio: float,
    batches: Batches | None,
    linear_keep_ratio: float = 0.3,
    vgg_depth_factor: bool | None = None,
) -> Mapping[str, Tensor]:
    counts = _smart_counts(model, ratio, linear_keep_ratio, vgg_depth_factor)
    return budget.layerwise_topk(scores.magnitude_scores(model), counts)


@method("trained", needs_batches=False, ticket_weights="trained", iterative=True,
        summary="global conv magnitude, classifier dense; retrain from the trained weights")
def lr_rewinding(
    model: nn.Module,
    ratio: float,
    batches: Batches | None,
    current_masks: Mapping[str, Tensor] | None = None,
) -> Mapping[str, Tensor]:
    return lottery(model, ratio, batches, current_masks)
