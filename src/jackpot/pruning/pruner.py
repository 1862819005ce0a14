"""The front door: ``make_masks(model, method, ratio, batches=None, **options) -> Masks``.

``method`` is a registered method's name (``snip``, ``grasp``, ``smart_ratio``, ... or one declared with
``@jackpot.pruning.method``) or the import path ``package.module.function`` of one, imported here. Plain torch:
usable from notebooks and tests without Lightning or Hydra.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from jackpot.pruning import budget
from jackpot.pruning.masks import Masks
from jackpot.pruning.methods import linear_flags
from jackpot.pruning.registry import METHODS, MethodSpec, get_method
from jackpot.pruning.scores import Batches

__all__ = ["METHODS", "MethodSpec", "linear_flags", "make_masks"]


def make_masks(
    model: nn.Module,
    method: str,
    ratio: float,
    batches: Batches | None = None,
    input_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> Masks:
    """Build the keep-masks of ``method`` at prune ratio ``ratio`` (fraction of prunable weights removed).

    ``batches``: an ``(x, y)`` pair or an iterable of pairs, used as given (only methods with
    ``needs_batches`` read it). ``input_shape``: one example's ``(C, H, W)``, for data-free methods that build
    their own input (default: the model's ``input_shape`` attribute). ``options``: the method's own settings,
    see ``get_method(method).options``. The model itself is never modified.
    """
    spec = get_method(method)
    ratio = budget.check_ratio(ratio)
    spec.check_options(options)
    if spec.needs_batches and batches is None:
        raise ValueError(
            f"pruning method {spec.name!r} scores weights on data: pass batches=(x, y) or an iterable of pairs"
        )
    if spec.wants_input_shape:
        shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
        if shape is None:
            raise ValueError(f"pruning method {spec.name!r} builds its own input: pass input_shape=(C, H, W)")
        options["input_shape"] = tuple(int(d) for d in shape)
    return Masks(spec.build(model, ratio, batches, **options))
