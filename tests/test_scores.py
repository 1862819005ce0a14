"""Scores: SNIP, GraSP, OBD, magnitude and random against hand computations and finite differences."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from jackpot.pruning import prunable_weights
from jackpot.pruning import scores as scores_module
from jackpot.pruning.scores import (
    as_batch_list,
    grasp_hessian_gradient,
    grasp_scores,
    magnitude_scores,
    obd_scores,
    random_scores,
    snip_scores,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def conv_bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


def smooth_net(dtype: torch.dtype = torch.float64) -> nn.Module:
    """No BatchNorm, tanh: a network whose Hessian is well defined and cheap to get exactly."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3))
    return net.to(dtype)


def image_batch(n: int, channels: int, side: int, classes: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, side, side, generator=g, dtype=dtype)
    return x, torch.randint(0, classes, (n,), generator=g)


def linear_grad(layer: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dL/dW of mean cross-entropy for a single Linear layer, written out: (softmax - onehot)^T x / n."""
    probs = torch.softmax(x @ layer.weight.T + layer.bias, dim=1)
    onehot = F.one_hot(y, probs.shape[1]).to(probs.dtype)
    return (probs - onehot).T @ x / x.shape[0]


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


# --- batches -----------------------------------------------------------------------------------------------
def test_as_batch_list_accepts_a_pair_or_pairs():
    x, y = torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
    assert len(as_batch_list((x, y))) == 1
    assert len(as_batch_list([(x, y), (x, y)])) == 2
    with pytest.raises(ValueError):
        as_batch_list([x])
    with pytest.raises(ValueError):
        as_batch_list([])


# --- SNIP --------------------------------------------------------------------------------------------------
def test_snip_equals_hand_computed_connection_sensitivity():
    torch.manual_seed(2)
    layer = nn.Linear(3, 2)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    scores = snip_scores(layer, (x, y))
    expected = (layer.weight.detach() * linear_grad(layer, x, y)).abs()
    torch.testing.assert_close(scores["weight"], expected)


def test_snip_accumulates_gradients_over_pairs():
    torch.manual_seed(3)
    layer = nn.Linear(3, 2)
    pairs = [(torch.randn(4, 3), torch.tensor([0, 1, 1, 0])), (torch.randn(2, 3), torch.tensor([1, 1]))]
    expected = (layer.weight.detach() * sum(linear_grad(layer, x, y) for x, y in pairs)).abs()
    torch.testing.assert_close(snip_scores(layer, pairs)["weight"], expected)


def test_snip_leaves_the_callers_model_untouched_and_uses_train_mode_bn():
    model = conv_bn_net().eval()
    before = snapshot(model)
    x, y = image_batch(6, 3, 5, 5, seed=0)
    scores = snip_scores(model, (x, y))
    assert_untouched(model, before)
    assert not model.training
    assert list(scores) == [name for name, _ in prunable_weights(model)]
    # Train-mode BN (batch statistics): identical to scoring a train-mode copy by hand.
    reference = copy.deepcopy(model).train()
    weights = [w for _, w in prunable_weights(reference)]
    grads = torch.autograd.grad(F.cross_entropy(reference(x), y), weights)
    for (name, w), grad in zip(prunable_weights(reference), grads, strict=True):
        torch.testing.assert_close(scores[name], (w.detach() * grad).abs())


# --- GraSP -------------------------------------------------------------------------------------------------
def _total_half_gradient(model, weights, halves, temperature):
    """d(L_half1 + L_half2)/dw at `weights`, through a functional call."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    leaves = {n: w.detach().clone().requires_grad_(True) for n, w in weights.items()}
    params.update(leaves)
    loss = sum(F.cross_entropy(functional_call(model, params, (x,)) / temperature, y) for x, y in halves)
    return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))


@pytest.mark.parametrize("offload", ["none", "disk"])  # double backward / reverse-over-forward
@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_grasp_hessian_gradient_matches_finite_differences(temperature, offload):
    model = smooth_net()
    x, y = image_batch(7, 1, 4, 3, seed=4, dtype=torch.float64)  # odd: halves of 3 and 4 samples
    halves = [(x[:3], y[:3]), (x[3:], y[3:])]
    weights, hg = grasp_hessian_gradient(
        model, (x, y), temperature=temperature, reinit_classifier=False, offload=offload
    )

    w0 = {n: w.detach() for n, w in prunable_weights(model)}
    g = _total_half_gradient(model, w0, halves, temperature)
    eps = 1e-5
    plus = _total_half_gradient(model, {n: w0[n] + eps * g[n] for n in w0}, halves, temperature)
    minus = _total_half_gradient(model, {n: w0[n] - eps * g[n] for n in w0}, halves, temperature)
    for name in w0:
        fd = (plus[name] - minus[name]) / (2 * eps)
        assert hg[name].abs().max() > 0
        torch.testing.assert_close(hg[name], fd, rtol=1e-5, atol=1e-9 * max(1.0, fd.abs().max().item()))
        torch.testing.assert_close(weights[name], w0[name])

    scores = grasp_scores(model, (x, y), temperature=temperature, reinit_classifier=False)
    for name in w0:
        torch.testing.assert_close(scores[name], -w0[name] * hg[name])


def test_grasp_weights_are_the_callers_values_not_its_tensors():
    """The scoring copy shares the caller's storage (no second copy of every weight); what it returns must not
    change when the caller later prunes in place."""
    model = smooth_net()
    x, y = image_batch(6, 1, 4, 3, seed=5, dtype=torch.float64)
    weights, _ = grasp_hessian_gradient(model, (x, y), reinit_classifier=False)
    before = {name: w.clone() for name, w in weights.items()}
    with torch.no_grad():
        for _, w in prunable_weights(model):
            w.zero_()
    for name, w in weights.items():
        assert torch.equal(w, before[name]) and w.abs().sum() > 0


def test_grasp_reinitialises_the_classifier_in_the_copy_only():
    model = smooth_net()
    before = snapshot(model)
    x, y = image_batch(6, 1, 4, 3, seed=5, dtype=torch.float64)
    scores = grasp_scores(model, (x, y), reinit_classifier=True, generator=torch.Generator().manual_seed(7))
    assert_untouched(model, before)

    # The same scores as a hand-made copy whose Linear got xavier_normal from the same generator.
    by_hand = copy.deepcopy(model)
    with torch.no_grad():
        nn.init.xavier_normal_(by_hand[3].weight, generator=torch.Generator().manual_seed(7))
    assert not torch.equal(by_hand[3].weight, model[3].weight)
    expected = grasp_scores(by_hand, (x, y), reinit_classifier=False)
    for name in scores:
        torch.testing.assert_close(scores[name], expected[name])


def test_grasp_needs_two_samples_per_batch():
    with pytest.raises(ValueError, match="halves"):
        grasp_scores(smooth_net(), image_batch(1, 1, 4, 3, seed=0, dtype=torch.float64))


# --- OBD ---------------------------------------------------------------------------------------------------
def mlp(dtype=torch.float64) -> nn.Module:
    torch.manual_seed(6)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).to(dtype)


def exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The full Hessian of the mean cross-entropy w.r.t. the prunable weights, flattened in module order."""
    names = [n for n, _ in prunable_weights(model)]
    shapes = [w.shape for _, w in prunable_weights(model)]
    fixed = {n: p.detach() for n, p in model.named_parameters()}

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = dict(fixed), 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = flat[start : start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(loss, flatten(dict(prunable_weights(model))).detach())


def flatten(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors.values()])


def hutchinson_diagonal_from(model: nn.Module, scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """h_ii back from OBD saliencies 0.5 h_ii w_i^2."""
    return flatten({n: 2 * scores[n] / w.detach().square() for n, w in prunable_weights(model)})


def obd_data(seed: int = 8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,), generator=g)


def test_obd_hutchinson_is_the_mean_of_v_times_exact_hv(monkeypatch):
    model = mlp()
    x, y = obd_data()
    hessian = exact_hessian(model, x, y)
    drawn: list[torch.Tensor] = []

    def recording(shape, like, generator):
        v = rademacher(shape, like, generator)
        drawn.append(v)
        return v

    rademacher = scores_module._rademacher
    monkeypatch.setattr(scores_module, "_rademacher", recording)
    probes = 5
    est = hutchinson_diagonal_from(model, obd_scores(model, (x, y), estimator="hutchinson", probes=probes))
    layers = len(prunable_weights(model))
    assert len(drawn) == probes * layers
    vs = [torch.cat([v.reshape(-1) for v in drawn[i : i + layers]]) for i in range(0, len(drawn), layers)]
    assert all(set(v.unique().tolist()) <= {-1.0, 1.0} for v in vs)
    expected = sum(v * (hessian @ v) for v in vs) / probes
    torch.testing.assert_close(est, expected, rtol=1e-8, atol=1e-12)


def test_obd_hutchinson_converges_to_the_exact_hessian_diagonal():
    model = mlp()
    x, y = obd_data()
    exact = exact_hessian(model, x, y).diagonal()
    many = obd_scores(model, (x, y), estimator="hutchinson", probes=1000, seed=1)
    est = hutchinson_diagonal_from(model, many)
    assert (est - exact).norm() / exact.norm() < 0.25  # Monte-Carlo error ~ 0.55 / sqrt(probes / 100) here
    few = obd_scores(model, (x, y), estimator="hutchinson", probes=10, seed=1)
    few = hutchinson_diagonal_from(model, few)
    assert (few - exact).norm() > (est - exact).norm()


def test_obd_fisher_is_the_mean_squared_per_sample_gradient_by_hand():
    torch.manual_seed(9)
    layer = nn.Linear(3, 2)
    pairs = [(torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])), (torch.randn(3, 3), torch.tensor([1, 0, 0]))]
    samples = [(x[i:i + 1], y[i:i + 1]) for x, y in pairs for i in range(len(y))]
    fisher = sum(linear_grad(layer, x, y).square() for x, y in samples) / len(samples)
    scores = obd_scores(layer, pairs)  # the default estimator
    torch.testing.assert_close(scores["weight"], 0.5 * fisher * layer.weight.detach().square())
    # not the square of each batch's mean gradient (which is one noisy draw per weight)
    batch_fisher = sum(linear_grad(layer, x, y).square() for x, y in pairs) / len(pairs)
    assert not torch.allclose(scores["weight"], 0.5 * batch_fisher * layer.weight.detach().square())


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("chunk_bytes", [1, 3 * 4 * 150, 2**40])  # one sample, a few, all at once
def test_obd_fisher_on_a_conv_bn_net_equals_a_loop_over_eval_mode_samples(monkeypatch, chunk_bytes, device):
    """Per-sample gradients by vmap, chunked to a memory budget, equal one backward per sample; the network is
    scored in eval mode (running statistics) and left untouched; on CUDA with channels_last weights too."""
    monkeypatch.setattr(scores_module, "FISHER_CHUNK_BYTES", chunk_bytes)
    model = conv_bn_net().train().to(device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():  # make running stats differ from batch stats
        model[1].running_mean.fill_(0.5)
        model[1].running_var.fill_(2.0)
    before = snapshot(model)
    x, y = (t.to(device) for t in image_batch(6, 3, 5, 5, seed=10))
    scores = obd_scores(model, [(x[:4], y[:4]), (x[4:], y[4:])], estimator="fisher")
    assert_untouched(model, before)
    assert model.training
    reference = copy.deepcopy(model).eval()
    weights = [w for _, w in prunable_weights(reference)]
    fisher = [torch.zeros_like(w) for w in weights]
    for i in range(len(y)):
        for acc, grad in zip(fisher, torch.autograd.grad(F.cross_entropy(reference(x[i:i + 1]), y[i:i + 1]),
                                                         weights), strict=True):
            acc.add_(grad.square() / len(y))
    tolerance = {"rtol": 1e-3, "atol": 1e-7} if device == "cuda" else {}  # TF32 convolutions on CUDA
    for (name, w), f in zip(prunable_weights(reference), fisher, strict=True):
        torch.testing.assert_close(scores[name], 0.5 * f * w.detach().square(), **tolerance)


def test_obd_rejects_unknown_estimator():
    with pytest.raises(ValueError, match="estimator"):
        obd_scores(mlp(), (torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.long)), "exact")


# --- magnitude, random -------------------------------------------------------------------------------------
def test_magnitude_and_random_scores():
    model = conv_bn_net()
    mags = magnitude_scores(model)
    for name, w in prunable_weights(model):
        assert torch.equal(mags[name], w.detach().abs())
    a = random_scores(model, torch.Generator().manual_seed(0))
    b = random_scores(model, torch.Generator().manual_seed(0))
    c = random_scores(model, torch.Generator().manual_seed(1))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)
    assert [t.shape for t in a.values()] == [w.shape for _, w in prunable_weights(model)]
