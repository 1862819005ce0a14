"""Mask and weight sanity checks: layerwise rearrange and layerwise weight shuffling (PAPER_SPEC §5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jackpot.pruning import Masks, make_masks, prunable_weights, rearrange_masks, shuffle_kept_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 10)
    )


def masks_for(model: nn.Module) -> Masks:
    return make_masks(model, "random", 0.6, seed=0)


def test_rearrange_keeps_per_layer_counts_and_moves_positions():
    model = net()
    masks = masks_for(model)
    moved = rearrange_masks(masks, torch.Generator().manual_seed(1))
    assert list(moved) == list(masks)
    for name in masks:
        assert moved[name].shape == masks[name].shape and moved[name].dtype == torch.bool
        assert moved.kept(name) == masks.kept(name)
        assert not torch.equal(moved[name], masks[name])
    again = rearrange_masks(masks, torch.Generator().manual_seed(1))
    assert moved.equal(again)
    assert not moved.equal(rearrange_masks(masks, torch.Generator().manual_seed(2)))


def test_shuffle_kept_weights_permutes_values_among_kept_positions():
    model = net()
    masks = masks_for(model)
    masks.apply(model)
    before = {name: w.detach().clone() for name, w in prunable_weights(model)}
    others = {n: p.detach().clone() for n, p in model.named_parameters() if n not in before}

    shuffle_kept_weights(model, masks, torch.Generator().manual_seed(3))

    for name, w in prunable_weights(model):
        mask = masks[name]
        after = w.detach()
        assert torch.equal(after[~mask], before[name][~mask])  # pruned positions untouched (zero)
        assert torch.equal(after[mask].sort().values, before[name][mask].sort().values)  # same multiset
        assert not torch.equal(after[mask], before[name][mask])  # the order changed, classifier included
        assert torch.equal((after != 0), mask)  # mask still readable as weight != 0
    assert all(torch.equal(p.detach(), others[n]) for n, p in model.named_parameters() if n in others)


def test_shuffle_kept_weights_leaves_unmasked_values_where_they_are():
    model = net()
    masks = masks_for(model)  # not applied: pruned positions still hold their init values
    before = {name: w.detach().clone() for name, w in prunable_weights(model)}
    shuffle_kept_weights(model, masks, torch.Generator().manual_seed(4))
    for name, w in prunable_weights(model):
        assert torch.equal(w.detach()[~masks[name]], before[name][~masks[name]])


def test_shuffle_kept_weights_is_reproducible_and_checks_the_masks():
    a, b = net(), net()
    masks = masks_for(a)
    shuffle_kept_weights(a, masks, torch.Generator().manual_seed(5))
    shuffle_kept_weights(b, masks, torch.Generator().manual_seed(5))
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    with pytest.raises(ValueError):
        shuffle_kept_weights(nn.Sequential(nn.Linear(3, 3)), masks)
