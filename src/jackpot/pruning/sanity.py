"""Mask and weight sanity checks (PAPER_SPEC §5): do the tickets depend on *where* the kept weights are?

Data checks (random labels, random pixels, half dataset) change the data a pruner sees and live with the data
code; reinitialisation is a fresh model under the same mask. These two act on a mask or on a ticket's weights.
"""

from __future__ import annotations

import torch
from torch import nn

from jackpot.pruning.masks import Masks


def rearrange_masks(masks: Masks, generator: torch.Generator | None = None) -> Masks:
    """Layerwise rearrange: each layer's mask permuted at random - same kept count, new positions.

    As ``train_ticket.py --rearrange 1``: ``mask.view(-1)[randperm]``, layer by layer in order. Applied to
    the init, the kept *values* change too (whatever sits at the new positions survives).
    """
    rearranged = {}
    for name, mask in masks.items():
        flat = mask.reshape(-1)
        perm = torch.randperm(flat.numel(), generator=generator)
        rearranged[name] = flat[perm].view(mask.shape)
    return Masks(rearranged)


@torch.no_grad()
def shuffle_kept_weights(model: nn.Module, masks: Masks, generator: torch.Generator | None = None) -> None:
    """Layerwise weight shuffling, in place: the kept values permuted among the kept positions of each layer.

    As ``train_ticket.py --shuffle_unmasked_weights 1`` (every masked layer, classifier included): the mask is
    unchanged, pruned positions keep whatever they hold (zero once the mask is applied).
    """
    masks.check_matches(model)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        weight = params[name]
        flat = weight.detach().reshape(-1).clone()
        kept = mask.reshape(-1).nonzero().squeeze(1)
        shuffled = kept[torch.randperm(kept.numel(), generator=generator)]
        kept, shuffled = kept.to(flat.device), shuffled.to(flat.device)
        flat[shuffled] = flat[kept]
        weight.copy_(flat.view(weight.shape))
