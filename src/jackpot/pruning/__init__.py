"""Pruning in plain torch: scores, budgets, the method registry and the mask/weight sanity checks.

A method of your own: ``@method(when="init", needs_batches=True)`` on ``fn(model, ratio, batches, **options)``
returning ``{prunable parameter name: bool mask}`` (names as ``prunable_weights(model)`` lists them). Building
blocks: ``as_batch_list`` (the batches as (x, y) pairs), ``global_topk`` and ``layerwise_topk`` (scores -> masks).
"""

from jackpot.pruning.budget import global_topk, layerwise_topk
from jackpot.pruning.masks import Masks, prunable_count, prunable_weights
from jackpot.pruning.pruner import make_masks
from jackpot.pruning.registry import METHODS, MethodError, MethodSpec, get_method, method
from jackpot.pruning.sanity import rearrange_masks, shuffle_kept_weights
from jackpot.pruning.scores import as_batch_list

__all__ = [
    "METHODS",
    "Masks",
    "MethodError",
    "MethodSpec",
    "as_batch_list",
    "get_method",
    "global_topk",
    "layerwise_topk",
    "make_masks",
    "method",
    "prunable_count",
    "prunable_weights",
    "rearrange_masks",
    "shuffle_kept_weights",
]
