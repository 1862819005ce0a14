"""Pruning in plain torch: scores, budgets, the method registry and the mask/weight sanity checks.

A method of your own: ``@method(when="init", needs_batches=True)`` on ``fn(model, ratio, batches, **options)``
returning ``{prunable parameter name: bool mask}`` (names as ``prunable_weights(model)`` lists them).
"""

from jackpot.pruning.masks import Masks, prunable_count, prunable_weights
from jackpot.pruning.pruner import make_masks
from jackpot.pruning.registry import METHODS, MethodError, MethodSpec, get_method, method
from jackpot.pruning.sanity import rearrange_masks, shuffle_kept_weights

__all__ = [
    "METHODS",
    "Masks",
    "MethodError",
    "MethodSpec",
    "get_method",
    "make_masks",
    "method",
    "prunable_count",
    "prunable_weights",
    "rearrange_masks",
    "shuffle_kept_weights",
]
