"""The front door: ``make_masks(model, method, ratio, batches=None, **options) -> Masks``.

Each paper method is a composition (DESIGN §1) of a score (``scores.py``) and a budget rule (``budget.py``);
``METHODS`` records, per method, when it is applied, whether it needs scoring batches, and its option names
(the fields of its Hydra pruner config). Plain torch: usable from notebooks and tests without Lightning/Hydra.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from jackpot.pruning import budget, scores
from jackpot.pruning.masks import PRUNABLE_TYPES, Masks, prunable_weights
from jackpot.pruning.scores import Batches

Builder = Callable[..., Mapping[str, Tensor]]


@dataclass(frozen=True)
class MethodSpec:
    """What a pruning method needs and when it runs.

    ``when``: "init" (mask from the initialised network) or "trained" (from the dense-trained network).
    ``ticket_weights``: the weights the ticket restarts from ("init": rewind, "trained": LR rewinding).
    """

    name: str
    when: Literal["init", "trained"]
    ticket_weights: Literal["init", "trained"]
    needs_batches: bool
    options: tuple[str, ...]
    build: Builder
    summary: str

    @property
    def uses_seed(self) -> bool:
        """Whether the method draws random numbers (and so takes a ``seed`` option)."""
        return "seed" in self.options


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


def _random_masks(model: nn.Module, counts: list[int], seed: int | None) -> dict[str, Tensor]:
    weights = prunable_weights(model)
    shapes = [(tuple(w.shape), count) for (_, w), count in zip(weights, counts, strict=True)]
    positions = budget.random_positions(shapes, _generator(seed))
    return {name: mask for (name, _), mask in zip(weights, positions, strict=True)}


# Builders: (model, ratio, batches, **options) -> {name: bool mask} ------------------------------------------
def _dense(model: nn.Module, ratio: float, batches: Batches | None) -> Mapping[str, Tensor]:
    return Masks.dense(model)


def _snip(model: nn.Module, ratio: float, batches: Batches, offload: str = "auto") -> Mapping[str, Tensor]:
    return budget.snip_global(scores.snip_scores(model, batches, offload), ratio)


def _grasp(
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


def _smart_ratio(
    model: nn.Module,
    ratio: float,
    batches: Batches | None,
    linear_keep_ratio: float = 0.3,
    vgg_depth_factor: bool | None = None,
    seed: int | None = None,
) -> Mapping[str, Tensor]:
    return _random_masks(model, _smart_counts(model, ratio, linear_keep_ratio, vgg_depth_factor), seed)


def _random(model: nn.Module, ratio: float, batches: Batches | None, seed: int | None = None):
    return _random_masks(model, budget.uniform_counts(_layer_sizes(model), ratio), seed)


def _lottery(
    model: nn.Module,
    ratio: float,
    batches: Batches | None,
    current_masks: Mapping[str, Tensor] | None = None,
) -> Mapping[str, Tensor]:
    weights = dict(prunable_weights(model))
    return budget.lottery_global(weights, linear_flags(model), ratio, current_masks)


def _obd(
    model: nn.Module,
    ratio: float,
    batches: Batches,
    estimator: str = "fisher",
    probes: int = 16,
    seed: int = 0,
) -> Mapping[str, Tensor]:
    return budget.obd_global(scores.obd_scores(model, batches, estimator, probes, seed), ratio)


def _hybrid(
    model: nn.Module,
    ratio: float,
    batches: Batches | None,
    linear_keep_ratio: float = 0.3,
    vgg_depth_factor: bool | None = None,
) -> Mapping[str, Tensor]:
    counts = _smart_counts(model, ratio, linear_keep_ratio, vgg_depth_factor)
    return budget.layerwise_topk(scores.magnitude_scores(model), counts)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec("dense", "init", "init", False, (), _dense, "no pruning (ratio ignored)"),
        MethodSpec("snip", "init", "init", True, ("offload",), _snip, "|w dL/dw|, global, ties kept"),
        MethodSpec(
            "grasp",
            "init",
            "init",
            True,
            ("temperature", "reinit_classifier", "seed", "offload"),
            _grasp,
            "-w Hg, global, removes the largest",
        ),
        MethodSpec(
            "smart_ratio",
            "init",
            "init",
            False,
            ("linear_keep_ratio", "vgg_depth_factor", "seed"),
            _smart_ratio,
            "random tickets: smart-ratio counts, random positions",
        ),
        MethodSpec(
            "random", "init", "init", False, ("seed",), _random, "uniform per-layer ratio, random positions"
        ),
        MethodSpec(
            "lottery",
            "trained",
            "init",
            False,
            ("current_masks",),
            _lottery,
            "global conv magnitude, classifier dense; rewind to init",
        ),
        MethodSpec(
            "lr_rewinding",
            "trained",
            "trained",
            False,
            ("current_masks",),
            _lottery,
            "global conv magnitude, classifier dense; retrain from the trained weights",
        ),
        MethodSpec(
            "obd",
            "trained",
            "trained",
            True,
            ("estimator", "probes", "seed"),
            _obd,
            "0.5 h_ii w^2, global, removes the smallest",
        ),
        MethodSpec(
            "hybrid",
            "trained",
            "trained",
            False,
            ("linear_keep_ratio", "vgg_depth_factor"),
            _hybrid,
            "smart-ratio counts, largest |w| within each layer",
        ),
    ]
}


def make_masks(
    model: nn.Module, method: str, ratio: float, batches: Batches | None = None, **options: Any
) -> Masks:
    """Build the keep-masks of ``method`` at prune ratio ``ratio`` (fraction of prunable weights removed).

    ``batches``: an ``(x, y)`` pair or an iterable of pairs, used as given (only methods with
    ``needs_batches`` read it). ``options``: the method's own settings, see ``METHODS[method].options``.
    The model itself is never modified.
    """
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; known methods: {', '.join(METHODS)}")
    spec = METHODS[method]
    ratio = budget.check_ratio(ratio)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) if spec.options else "none"
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for pruning method {method!r}; allowed: {allowed}"
        )
    if spec.needs_batches and batches is None:
        raise ValueError(
            f"pruning method {method!r} scores weights on data: pass batches=(x, y) or an iterable of pairs"
        )
    return Masks(spec.build(model, ratio, batches, **options))
