"""SynFlow, ERK and FORCE, added through the public @method API, each checked against hand computations or an
independent reference on tiny networks."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jackpot.pruning import MethodError, get_method, make_masks, prunable_count, prunable_weights
from jackpot.pruning.later.erk import apportion, erk_counts, erk_densities
from jackpot.pruning.later.rounds import exponential_keep_counts, keep_top
from jackpot.pruning.later.synflow import linearized_copy, synflow_scores

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyNet(nn.Module):
    """conv-BN-ReLU x2, global pool, classifier: 1,528 prunable weights (as in test_pruner)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def tiny(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet()


def batch(n: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 10, (n,), generator=g)


def two_layer(d: int = 5, h: int = 4, o: int = 3, seed: int = 0, dtype=torch.float64) -> nn.Sequential:
    """x -> W1 -> ReLU -> W2, no biases."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, h, bias=False), nn.ReLU(), nn.Linear(h, o, bias=False)).to(dtype)


def reference_keep(scores: list[torch.Tensor], n_keep: int, pruned: list[torch.Tensor] | None = None):
    """Plain-Python exact top-k: highest score first, ties to the earlier (layer, flat index)."""
    flat = [float(v) for s in scores for v in s.reshape(-1)]
    out = [bool(v) for p in pruned for v in p.reshape(-1)] if pruned else [False] * len(flat)
    order = sorted((i for i in range(len(flat)) if not out[i]), key=lambda i: (-flat[i], i))
    keep = torch.zeros(len(flat), dtype=torch.bool)
    keep[order[:n_keep]] = True
    masks, start = [], 0
    for s in scores:
        masks.append(keep[start:start + s.numel()].view(s.shape))
        start += s.numel()
    return masks


def snapshot(model: nn.Module) -> dict:
    return {"state": copy.deepcopy(model.state_dict()), "training": model.training,
            "grads": [p.grad for p in model.parameters()], "dtype": next(model.parameters()).dtype}


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = model.state_dict()
    assert all(torch.equal(before["state"][k], after[k]) for k in after)
    assert model.training == before["training"] and next(model.parameters()).dtype == before["dtype"]
    assert all(g is None for g in before["grads"]) and all(p.grad is None for p in model.parameters())


# --- registration through the public API --------------------------------------------------------------------
def test_registered_by_name_with_their_declarations():
    synflow, erk, force = (get_method(n) for n in ("synflow", "erk", "force"))
    assert (synflow.when, synflow.needs_batches, synflow.wants_input_shape) == ("init", False, True)
    assert synflow.options == ("rounds",) and synflow.defaults == {"rounds": 100} and not synflow.uses_seed
    assert (erk.when, erk.needs_batches, erk.random_positions, erk.uses_seed) == ("init", False, True, True)
    assert (force.when, force.needs_batches, force.random_positions) == ("init", True, False)
    assert force.defaults == {"rounds": 10, "variant": "force"}
    assert all(s.ticket_weights == "init" and not s.iterative for s in (synflow, erk, force))
    assert synflow.import_path == "jackpot.pruning.later.synflow.synflow"


def test_the_package_imports_alone_in_a_fresh_process():
    code = ("import jackpot.pruning.later, jackpot.pruning as p; "
            "print(sorted({'synflow', 'erk', 'force'} & set(p.METHODS)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['erk', 'force', 'synflow']"


@pytest.mark.parametrize("name", ["synflow", "force"])
@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True, None])
def test_bad_rounds_are_refused(name, bad):
    with pytest.raises(MethodError, match=rf"rounds={bad!r}.*'{name}'.*integer >= 1"):
        make_masks(tiny(), name, 0.5, batch(), input_shape=(3, 6, 6), rounds=bad)


def test_other_bad_options_are_refused():
    with pytest.raises(MethodError, match=r"variant='snip'.*choose one of: force, iterative_snip"):
        make_masks(tiny(), "force", 0.5, batch(), variant="snip")
    with pytest.raises(MethodError, match=r"seed=-1.*'erk'"):
        make_masks(tiny(), "erk", 0.5, seed=-1)
    with pytest.raises(MethodError, match=r"unknown option.*seed.*'synflow'"):
        make_masks(tiny(), "synflow", 0.5, input_shape=(3, 6, 6), seed=0)
    with pytest.raises(ValueError, match=r"'synflow' builds its own input: pass input_shape"):
        make_masks(tiny(), "synflow", 0.5)
    with pytest.raises(ValueError, match=r"'force' scores weights on data"):
        make_masks(tiny(), "force", 0.5)


# --- shared budget: schedule and exact top-k ----------------------------------------------------------------
def test_exponential_schedule_counts_by_hand():
    assert exponential_keep_counts(64, 0.875, 3) == [32, 16, 8]  # 64 * 0.125^(k/3) = 32, 16, 8
    assert exponential_keep_counts(1000, 0.99, 2) == [100, 10]
    assert exponential_keep_counts(10, 0.9, 1) == [1]  # 10 * 0.09999999999999998 rounds to 1 (int() would give 0)
    assert exponential_keep_counts(7, 0.5, 1) == [4]  # 3.5 rounds half to even
    assert exponential_keep_counts(100, 0.0, 4) == [100] * 4
    with pytest.raises(ValueError, match="rounds"):
        exponential_keep_counts(10, 0.5, 0)


def test_keep_top_breaks_ties_by_module_order_and_never_revives():
    scores = {"a": torch.tensor([1.0, 3.0, 2.0]), "b": torch.tensor([[2.0, 3.0], [0.5, 2.0]])}
    kept = keep_top(scores, 3)  # 3.0 (a1), 3.0 (b01), then the first 2.0: a2
    assert kept["a"].tolist() == [False, True, True] and kept["b"].tolist() == [[False, True], [False, False]]
    pruned = {"a": torch.tensor([False, True, False]), "b": torch.zeros(2, 2, dtype=torch.bool)}
    kept = keep_top(scores, 3, pruned)  # a1 is out: 3.0 (b01), 2.0 (a2), 2.0 (b00)
    assert kept["a"].tolist() == [False, False, True] and kept["b"].tolist() == [[True, True], [False, False]]
    with pytest.raises(ValueError, match="NaN or inf"):
        keep_top({"a": torch.tensor([1.0, float("nan")])}, 1)
    with pytest.raises(ValueError, match="only 2 are not pruned"):
        keep_top({"a": torch.tensor([1.0, 2.0, 3.0])}, 3, {"a": torch.tensor([True, False, False])})


def test_keep_top_matches_a_sorted_reference_under_heavy_ties():
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        scores = [torch.randint(0, 4, (7,), generator=g).double(), torch.randint(0, 4, (2, 3), generator=g).double()]
        pruned = [torch.rand(7, generator=g) < 0.3, torch.rand(2, 3, generator=g) < 0.3]
        n_keep = int(torch.randint(0, sum(int((~p).sum()) for p in pruned) + 1, (1,), generator=g))
        kept = keep_top({"a": scores[0], "b": scores[1]}, n_keep, {"a": pruned[0], "b": pruned[1]})
        assert [m.tolist() for m in kept.values()] == [m.tolist() for m in reference_keep(scores, n_keep, pruned)]


# --- SynFlow ------------------------------------------------------------------------------------------------
def test_synflow_scores_by_hand_on_a_two_layer_net():
    """R = 1^T |W2| |W1| 1: score(W1_ij) = |W1_ij| colsum(|W2|)_i, score(W2_ki) = |W2_ki| rowsum(|W1|)_i."""
    net = two_layer(2, 2, 1)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        net[2].weight.copy_(torch.tensor([[2.0, -1.0]]))
    scores = synflow_scores(net, (2,))
    assert scores["0.weight"].tolist() == [[2.0, 4.0], [3.0, 0.5]]  # rows times colsum(|W2|) = (2, 1)
    assert scores["2.weight"].tolist() == [[6.0, 3.5]]  # |W2| times rowsum(|W1|) = (3, 3.5)
    assert all(s.dtype == torch.float64 for s in scores.values())


def test_synflow_rounds_match_the_closed_form_reference():
    """Three rounds at ratio 0.7 on random weights: per round, closed-form scores of the masked |W| net and the
    exact top-k with pruned weights excluded; same masks, exactly round(0.3 * 32) = 10 kept."""
    net = two_layer(5, 4, 3, seed=3)
    a1, a2 = net[0].weight.detach().abs(), net[2].weight.detach().abs()
    m1, m2 = torch.ones_like(a1, dtype=torch.bool), torch.ones_like(a2, dtype=torch.bool)
    counts = exponential_keep_counts(32, 0.7, 3)
    assert counts == [21, 14, 10]  # 32 * 0.3^(1/3) = 21.4, 32 * 0.3^(2/3) = 14.3
    for n_keep in counts:
        e1, e2 = a1 * m1, a2 * m2
        s1, s2 = e1 * e2.sum(0)[:, None], e2 * e1.sum(1)[None, :]
        m1, m2 = reference_keep([s1, s2], n_keep, [~m1, ~m2])
    masks = make_masks(net, "synflow", 0.7, input_shape=(5,), rounds=3)
    assert torch.equal(masks["0.weight"], m1) and torch.equal(masks["2.weight"], m2)
    assert masks.kept() == 10


def test_synflow_leaves_the_model_untouched_and_counts_exactly():
    model = tiny().train()
    before = snapshot(model)
    masks = make_masks(model, "synflow", 0.9, input_shape=(3, 6, 6), rounds=4)
    assert_untouched(model, before)
    assert masks.kept() == round(0.1 * 1528) == 153
    assert make_masks(model, "synflow", 0.0, input_shape=(3, 6, 6), rounds=3).kept() == 1528


def test_synflow_on_resnet32_needs_float64_and_keeps_exactly():
    from jackpot.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet32", num_classes=10)
    flow32 = linearized_copy(model).float()(torch.ones(1, 3, 32, 32)).sum()
    assert torch.isinf(flow32)  # why the scores are float64: R overflows float32 on ResNet32
    scores = synflow_scores(model, (3, 32, 32))
    assert all(bool(torch.isfinite(s).all()) and s.dtype == torch.float64 for s in scores.values())
    masks = make_masks(model, "synflow", 0.98, input_shape=(3, 32, 32), rounds=3)
    assert masks.kept() == round(0.02 * prunable_count(model))


# --- ERK ----------------------------------------------------------------------------------------------------
def test_erk_densities_by_hand():
    conv, fc = (8, 4, 3, 3), (2, 8)  # raw = 18/288 = 1/16 and 10/16 = 5/8; sizes 288 and 16
    eps = 0.1 * 304 / (18 + 10)  # target 30.4 over sum(raw * size); fc gets 5/8 eps = 0.68 <= 1
    assert erk_densities([conv, fc], 0.9) == pytest.approx([eps / 16, eps * 5 / 8], rel=1e-12)
    # targets 19.54 and 10.86 -> floors 19 + 10, the missing unit to the larger remainder: 30 = round(30.4)
    assert erk_counts([conv, fc], 0.9) == [19, 11]
    # ratio 0.5: eps = 152/28 would give fc 3.4 > 1 -> fc dense, eps = (152 - 16)/18 -> conv keeps 136
    assert erk_densities([conv, fc], 0.5) == pytest.approx([136 / 288, 1.0], rel=1e-12)
    assert erk_counts([conv, fc], 0.5) == [136, 16]


def test_erk_makes_layers_dense_one_group_at_a_time():
    """raw = 35/1152, 20/64, 6/8. Target 612: the (2, 4) layer overflows (eps = 612/61), then the (4, 16) one
    (eps = 604/55), then eps = 540/35 gives the conv 540 weights."""
    shapes = [(16, 8, 3, 3), (4, 16), (2, 4)]
    assert erk_densities(shapes, 0.5) == pytest.approx([540 / 1152, 1.0, 1.0], rel=1e-12)
    assert erk_counts(shapes, 0.5) == [540, 64, 8]
    assert erk_densities(shapes, 0.0) == [1.0, 1.0, 1.0] and erk_counts(shapes, 0.0) == [1152, 64, 8]


def test_apportion_is_exact_and_capped():
    assert apportion([1.5, 2.5, 0.2], [3, 3, 3], 5) == [2, 3, 0]  # ties in remainder: earlier first
    assert apportion([2.9, 0.0], [3, 3], 4) == [3, 1]  # the full layer is skipped
    assert apportion([3.0, 3.0], [3, 3], 5) == [3, 2]  # surplus (float error) taken back
    with pytest.raises(ValueError):
        apportion([1.0], [1], 2)


@pytest.mark.parametrize("ratio", [0.5, 0.9, 0.99])
def test_erk_masks_follow_the_counts_with_seeded_random_positions(ratio):
    model = tiny()
    before = snapshot(model)
    masks = make_masks(model, "erk", ratio, seed=1)
    assert_untouched(model, before)
    shapes = [tuple(w.shape) for _, w in prunable_weights(model)]
    assert [masks.kept(n) for n in masks] == erk_counts(shapes, ratio)
    assert masks.kept() == round((1 - ratio) * 1528)
    assert masks.equal(make_masks(model, "erk", ratio, seed=1))
    assert not masks.equal(make_masks(model, "erk", ratio, seed=2))


# --- FORCE --------------------------------------------------------------------------------------------------
def test_one_round_of_force_is_snip():
    """One round scores the dense net: FORCE = SNIP's |w dL/dw| with the global top-k (N/2 is an integer, so
    SNIP's int(N(1-p)) equals round(N(1-p)); no ties among float scores)."""
    model, data = tiny(), batch()
    snip = make_masks(model, "snip", 0.5, data, offload="none")
    for variant in ("force", "iterative_snip"):
        assert make_masks(model, "force", 0.5, data, rounds=1, variant=variant).equal(snip)


def _linear_reference(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, ratio: float, rounds: int, revive: bool):
    """One Linear layer, no bias, hand gradient of mean cross-entropy: dL/dE = (softmax(x E^T) - onehot(y))^T x / B
    at E = W m; FORCE score |W dL/dE|, iterative SNIP |E dL/dE| with pruned weights excluded."""
    mask = torch.ones_like(w, dtype=torch.bool)
    for n_keep in exponential_keep_counts(w.numel(), ratio, rounds):
        e = w * mask
        grad = (torch.softmax(x @ e.T, dim=1) - F.one_hot(y, w.shape[0]).to(w.dtype)).T @ x / len(y)
        if revive:
            (mask,) = reference_keep([(w * grad).abs()], n_keep)
        else:
            (mask,) = reference_keep([(e * grad).abs()], n_keep, [~mask])
    return mask


@pytest.mark.parametrize("variant", ["force", "iterative_snip"])
def test_force_rounds_match_the_hand_gradient(variant):
    torch.manual_seed(5)
    net = nn.Linear(6, 4, bias=False).double()
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 4, (16,))
    expected = _linear_reference(net.weight.detach(), x, y, 0.8, 4, revive=variant == "force")
    masks = make_masks(net, "force", 0.8, (x, y), rounds=4, variant=variant)
    assert torch.equal(masks["weight"], expected) and masks.kept() == round(0.2 * 24) == 5


def test_force_revives_pruned_weights_and_iterative_snip_does_not():
    """Round 1 of a two-round run at ratio 0.9 is a one-round run at 1 - sqrt(0.1). Iterative SNIP's final mask
    lies inside it; FORCE's, on this seed, brings back weights that round 1 had pruned."""
    model, data = tiny(), batch()
    first = make_masks(model, "force", 1 - 0.1 ** 0.5, data, rounds=1)
    assert first.kept() == exponential_keep_counts(1528, 0.9, 2)[0]
    for variant, revived in (("iterative_snip", False), ("force", True)):
        final = make_masks(model, "force", 0.9, data, rounds=2, variant=variant)
        back = sum(int((final[n] & ~first[n]).sum()) for n in final)
        assert (back > 0) == revived and final.kept() == 153


def test_force_leaves_the_model_untouched_and_reads_every_pair():
    model, (x, y) = tiny().train(), batch(20)
    before = snapshot(model)
    pairs = [(x[:10], y[:10]), (x[10:], y[10:])]
    masks = make_masks(model, "force", 0.95, pairs, rounds=3)
    assert_untouched(model, before)
    assert masks.kept() == round(0.05 * 1528) == 76
    assert not masks.equal(make_masks(model, "force", 0.95, pairs[:1], rounds=3))
    assert math.isclose(masks.density(), 76 / 1528)
