"""make_masks: every method's kept counts, the registry, option handling and error messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jackpot.pruning import METHODS, Masks, make_masks, prunable_weights
from jackpot.pruning.budget import smart_ratio_counts
from jackpot.pruning.pruner import linear_flags

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyNet(nn.Module):
    """conv-BN-ReLU x2, global pool, classifier last: the shape of the paper's networks, 1,528 weights."""

    def __init__(self, family: str = "vgg"):
        super().__init__()
        self.family = family
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


N = 3 * 8 * 9 + 8 * 16 * 9 + 16 * 10


def tiny(family: str = "vgg", seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(family)


def batch(n: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 10, (n,), generator=g)


def sizes(model: nn.Module) -> list[int]:
    return [w.numel() for _, w in prunable_weights(model)]


def per_layer(masks: Masks) -> list[int]:
    return [masks.kept(name) for name in masks]


# --- registry -----------------------------------------------------------------------------------------------
PAPER = ("dense", "snip", "grasp", "smart_ratio", "random", "lottery", "lr_rewinding", "obd", "hybrid")


def test_registry_declares_the_paper_methods():
    """The paper's methods are registered like any other (later methods may be registered beside them)."""
    paper = {name: METHODS[name] for name in PAPER}
    assert {n for n, s in paper.items() if s.when == "trained"} == {"lottery", "lr_rewinding", "obd", "hybrid"}
    assert {n for n, s in paper.items() if s.needs_batches} == {"snip", "grasp", "obd"}
    assert {n for n, s in paper.items() if s.random_positions} == {"smart_ratio", "random"}
    assert {n for n, s in paper.items() if s.iterative} == {"lottery", "lr_rewinding"}
    assert METHODS["lottery"].ticket_weights == "init" and METHODS["lr_rewinding"].ticket_weights == "trained"
    assert METHODS["grasp"].options == ("temperature", "reinit_classifier", "seed", "offload")
    assert METHODS["snip"].options == ("offload",)
    assert METHODS["smart_ratio"].uses_seed and not METHODS["snip"].uses_seed


def test_linear_flags_follow_prunable_weights():
    assert linear_flags(tiny()) == [False, False, True]
    assert sum(sizes(tiny())) == N


# --- each method --------------------------------------------------------------------------------------------
def test_dense_keeps_everything():
    masks = make_masks(tiny(), "dense", 0.9)
    assert masks.kept() == N and list(masks) == [n for n, _ in prunable_weights(tiny())]


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_snip_global_count(p):
    masks = make_masks(tiny(), "snip", p, batch())
    assert masks.kept() == int(N * (1 - p))


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_grasp_global_count_and_options(p):
    masks = make_masks(tiny(), "grasp", p, batch(), seed=0)
    assert masks.kept() == N - int(N * p) + 1
    again = make_masks(tiny(), "grasp", p, batch(), seed=0)
    assert masks.equal(again)
    other = make_masks(tiny(), "grasp", p, batch(), temperature=1.0, reinit_classifier=False)
    assert other.kept() == N - int(N * p) + 1


@pytest.mark.parametrize("family, vgg", [("vgg", True), ("resnet", False)])
def test_smart_ratio_counts_positions_and_auto_vgg_factor(family, vgg):
    model = tiny(family)
    masks = make_masks(model, "smart_ratio", 0.5, seed=1)
    expected = smart_ratio_counts(sizes(model), 0.5, vgg_depth_factor=vgg)
    assert per_layer(masks) == expected
    assert per_layer(make_masks(model, "smart_ratio", 0.5, seed=1, vgg_depth_factor=not vgg)) == (
        smart_ratio_counts(sizes(model), 0.5, vgg_depth_factor=not vgg)
    )
    assert masks.equal(make_masks(model, "smart_ratio", 0.5, seed=1))
    assert not masks.equal(make_masks(model, "smart_ratio", 0.5, seed=2))
    assert masks.kept("fc.weight") == int(0.3 * 160)
    assert make_masks(model, "smart_ratio", 0.5, linear_keep_ratio=0.5).kept("fc.weight") == 80


def test_random_uniform_exact_counts_and_seed():
    masks = make_masks(tiny(), "random", 0.9, seed=3)
    assert per_layer(masks) == [int(n * (1 - 0.9)) for n in sizes(tiny())]
    assert masks.equal(make_masks(tiny(), "random", 0.9, seed=3))
    assert not masks.equal(make_masks(tiny(), "random", 0.9, seed=4))


@pytest.mark.parametrize("method", ["lottery", "lr_rewinding"])
def test_lottery_conv_only_and_iterative(method):
    model = tiny()
    p = 0.5
    first = make_masks(model, method, p)
    assert first.kept("fc.weight") == 160
    assert first.kept() == N - (int(N * p) + 1)
    remaining = first.kept()
    second = make_masks(model, method, p, current_masks=first)
    assert second.kept() == remaining - (int(remaining * p) + 1)
    assert second.kept("fc.weight") == 160
    # Largest conv magnitudes survive.
    conv = torch.cat([w.detach().abs().reshape(-1) for n, w in prunable_weights(model) if n != "fc.weight"])
    kept_conv = torch.cat([first[n].reshape(-1) for n in first if n != "fc.weight"])
    assert conv[kept_conv].min() > conv[~kept_conv].max()


def test_lottery_on_an_already_masked_model_prunes_the_remaining():
    model = tiny()
    first = make_masks(model, "lottery", 0.5)
    first.apply(model)
    again = make_masks(model, "lottery", 0.5)
    remaining = first.kept()
    assert again.kept() == remaining - (int(remaining * 0.5) + 1)


@pytest.mark.parametrize("estimator", ["fisher", "hutchinson"])
def test_obd_keeps_exactly(estimator):
    masks = make_masks(tiny(), "obd", 0.7, batch(), estimator=estimator, probes=2, seed=0)
    assert masks.kept() == int(N * (1 - 0.7))


def test_hybrid_smart_counts_with_largest_magnitudes():
    model = tiny("resnet")
    masks = make_masks(model, "hybrid", 0.8)
    assert per_layer(masks) == smart_ratio_counts(sizes(model), 0.8, vgg_depth_factor=False)
    for name, w in prunable_weights(model):
        mag = w.detach().abs()
        assert mag[masks[name]].min() > mag[~masks[name]].max()


def test_make_masks_leaves_the_model_untouched():
    model = tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for method in PAPER:
        make_masks(model, method, 0.5, batch(), **({"probes": 1} if method == "obd" else {}))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and model.training


def test_batches_may_be_an_iterable_of_pairs():
    pairs = [batch(10, 0), batch(10, 1)]
    masks = make_masks(tiny(), "snip", 0.5, iter(pairs))
    assert masks.kept() == int(N * 0.5)


# --- errors -------------------------------------------------------------------------------------------------
def test_unknown_method_names_it_and_lists_the_methods():
    with pytest.raises(ValueError, match=r"'magic'.*snip.*grasp.*smart_ratio"):
        make_masks(tiny(), "magic", 0.5)


def test_unknown_option_names_it_and_the_allowed_ones():
    with pytest.raises(ValueError, match=r"temprature.*'grasp'.*temperature, reinit_classifier"):
        make_masks(tiny(), "grasp", 0.5, batch(), temprature=100.0)
    with pytest.raises(ValueError, match=r"seed.*'snip'.*allowed: offload"):
        make_masks(tiny(), "snip", 0.5, batch(), seed=0)


@pytest.mark.parametrize("bad", [1.0, -0.01, 2, "0.9", True])
def test_bad_ratio(bad):
    with pytest.raises(ValueError, match=r"ratio.*\[0, 1\)"):
        make_masks(tiny(), "random", bad)


def test_missing_batches():
    with pytest.raises(ValueError, match="'snip'.*batches"):
        make_masks(tiny(), "snip", 0.5)
