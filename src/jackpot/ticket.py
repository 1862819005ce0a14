"""How a ticket is made: the composition of DESIGN §1 in plain torch.

A ticket = a mask (from the pruning method, on the init or the trained weights, from clean or corrupted data),
a mask check (layerwise rearrange), the weights it starts from (init, trained, or a fresh init) and a weight
check (layerwise shuffle), with the pruned weights then set to exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from jackpot.pruning import Masks, make_masks
from jackpot.pruning.registry import get_method
from jackpot.pruning.sanity import rearrange_masks, shuffle_kept_weights

StateDict = Mapping[str, torch.Tensor]


@dataclass
class TicketRecipe:
    """Everything that decides a ticket, independent of Lightning and Hydra."""

    method: str
    ratio: float
    options: dict[str, Any] = field(default_factory=dict)
    ticket_weights: str = "init"  # init | trained
    mask_check: str | None = None  # layerwise_rearrange
    weight_check: str | None = None  # layerwise_shuffle | reinit
    seed: int = 0

    @property
    def when(self) -> str:
        return get_method(self.method).when


def _generator(seed: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + salt)


def build_ticket(
    model: nn.Module,
    recipe: TicketRecipe,
    *,
    init_state: StateDict,
    trained_state: StateDict | None = None,
    batches: Callable[[], Any] | None = None,
    fresh_init: Callable[[], StateDict] | None = None,
    previous_masks: Masks | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Masks:
    """Turn `model` into the ticket in place and return its masks.

    `batches` is called only when the method needs data (scoring is the expensive part, so nothing is fetched
    for data-free methods). `fresh_init` gives a new initialisation for the reinit check. `input_shape`: one
    example's (C, H, W), for data-free methods that build their own input.
    """
    if recipe.when == "trained":
        if trained_state is None:
            raise ValueError(f"pruner {recipe.method!r} prunes a trained network but no trained weights were given")
        model.load_state_dict(trained_state)
    else:
        model.load_state_dict(init_state)

    options = dict(recipe.options)
    if previous_masks is not None:
        options["current_masks"] = previous_masks
    spec = get_method(recipe.method)
    if spec.uses_seed and "seed" not in options:
        options["seed"] = recipe.seed
    data = batches() if spec.needs_batches else None
    masks = make_masks(model, recipe.method, recipe.ratio, data, input_shape=input_shape, **options)

    if recipe.mask_check == "layerwise_rearrange":
        masks = rearrange_masks(masks, _generator(recipe.seed, 1))
    elif recipe.mask_check is not None:
        raise ValueError(f"unknown mask check {recipe.mask_check!r}")

    if recipe.weight_check == "reinit":
        if fresh_init is None:
            raise ValueError("the reinit check needs a fresh initialisation")
        model.load_state_dict(fresh_init())
    elif recipe.ticket_weights == "init":
        model.load_state_dict(init_state)
    elif recipe.ticket_weights != "trained":
        raise ValueError(f"ticket_weights must be 'init' or 'trained', got {recipe.ticket_weights!r}")
    # (ticket_weights == "trained": the model already holds the trained weights)

    masks.apply(model)
    if recipe.weight_check == "layerwise_shuffle":
        shuffle_kept_weights(model, masks, _generator(recipe.seed, 2))
    elif recipe.weight_check not in (None, "reinit"):
        raise ValueError(f"unknown weight check {recipe.weight_check!r}")
    return masks
