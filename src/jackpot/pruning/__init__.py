"""Pruning in plain torch: scores, budgets, the method registry and the mask/weight sanity checks."""

from jackpot.pruning.masks import Masks, prunable_count, prunable_weights
from jackpot.pruning.pruner import METHODS, MethodSpec, make_masks
from jackpot.pruning.sanity import rearrange_masks, shuffle_kept_weights

__all__ = [
    "METHODS",
    "Masks",
    "MethodSpec",
    "make_masks",
    "prunable_count",
    "prunable_weights",
    "rearrange_masks",
    "shuffle_kept_weights",
]
