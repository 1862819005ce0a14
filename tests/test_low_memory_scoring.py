"""Low-memory scoring: saved activations on disk and GraSP's H g by reverse-over-forward give the scores
of the one-pass, double-backward computation (float64, tight tolerances) and leave no files behind."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from jackpot.models import build_model
from jackpot.pruning import hessian
from jackpot.pruning.low_memory import lean_layers, memory_fit, offload
from jackpot.pruning.low_memory.lean_layers import LeanBatchNorm, LeanConv2d, LeanReLU, lean_copy
from jackpot.pruning.scores import grasp_hessian_gradient, grasp_scores, snip_scores

pytestmark = pytest.mark.usefixtures("one_thread")


def class_sorted_batch(n: int, classes: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g, dtype=dtype)
    return x, torch.arange(n).remainder(classes).sort().values


def bn_net(name: str) -> nn.Module:
    torch.manual_seed(3)
    net = build_model(name, num_classes=4).double()
    with torch.no_grad():  # non-trivial affine parameters, so the test sees them
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net


def reference_batchnorm(x, weight, bias, eps=1e-5):
    """Train-mode BatchNorm from plain ops: PyTorch's forward and reverse rules for these are exact to any
    order (unlike native_batch_norm's forward rule under reverse mode)."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = (x - mean).square().mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)


def primal_tangent_and_reverse(fn, inputs, tangents, probes):
    """fn on dual inputs -> (primal, tangent) and the gradients of <primal, p0> + <tangent, p1> with respect
    to every input and every tangent (the reverse-over-forward quantities GraSP needs)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    leaf_tangents = [None if t is None else t.detach().clone().requires_grad_(True) for t in tangents]
    with fwAD.dual_level():
        duals = [x if t is None else fwAD.make_dual(x, t) for x, t in zip(leaves, leaf_tangents, strict=True)]
        primal, tangent = fwAD.unpack_dual(fn(*duals))
        objective = (primal * probes[0]).sum() + (tangent * probes[1]).sum()
    wrt = leaves + [t for t in leaf_tangents if t is not None]
    return primal.detach(), tangent.detach(), torch.autograd.grad(objective, wrt, allow_unused=True)


def assert_same_dual_function(lean_fn, reference_fn, inputs, tangents):
    torch.manual_seed(7)
    with torch.no_grad():
        out = reference_fn(*inputs)
    probes = (torch.randn_like(out), torch.randn_like(out))
    got = primal_tangent_and_reverse(lean_fn, inputs, tangents, probes)
    expected = primal_tangent_and_reverse(reference_fn, inputs, tangents, probes)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-10, atol=1e-12)
    assert len(got[2]) == len(expected[2])
    for a, b in zip(got[2], expected[2], strict=True):
        assert (a is None) == (b is None) or (a is not None and not a.any()) or (b is not None and not b.any())
        if a is not None and b is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_lean_batchnorm_matches_plain_ops_forward_tangent_and_reverse_over_forward():
    """Values, forward-mode tangents (from x, weight and bias tangents) and the reverse mode through both,
    with 11 samples in chunks of 4, 4, 3; and the first-order gradients of nn.BatchNorm2d itself."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(5).double().train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    x = torch.randn(11, 5, 4, 4, dtype=torch.float64) * 3 + 2
    lean = LeanBatchNorm(copy.deepcopy(bn), chunk=4)

    def lean_fn(x, w, b):
        return functional_call(lean, {"weight": w, "bias": b}, (x,))

    inputs = (x, bn.weight.detach(), bn.bias.detach())
    tangent_sets = [
        (torch.randn_like(x), None, None),  # an activation's tangent (GraSP: every layer after the first)
        (torch.randn_like(x), torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)),
        (None, torch.randn(5, dtype=torch.float64), None),
    ]
    for tangents in tangent_sets:
        assert_same_dual_function(lean_fn, reference_batchnorm, inputs, tangents)
    # without tangents: nn.BatchNorm2d's own values and gradients
    xg = x.clone().requires_grad_(True)
    expected, got = bn(xg), LeanBatchNorm(bn, chunk=4)(xg)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    probe = torch.randn_like(expected)
    for a, b in zip(torch.autograd.grad((got * probe).sum(), (xg, bn.weight, bn.bias)),
                    torch.autograd.grad((expected * probe).sum(), (xg, bn.weight, bn.bias)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_lean_conv_matches_conv2d_forward_tangent_and_reverse_over_forward(bias):
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=bias).double()
    lean = LeanConv2d(conv, chunk=2)
    x = torch.randn(5, 3, 7, 7, dtype=torch.float64)

    def lean_fn(x, w, *b):
        return functional_call(lean, {"weight": w, **({"bias": b[0]} if b else {})}, (x,))

    def reference(x, w, *b):
        return F.conv2d(x, w, b[0] if b else None, stride=2, padding=1)

    inputs = (x, conv.weight.detach()) + ((conv.bias.detach(),) if bias else ())
    bias_tangents = ((torch.randn(4).double(),), (None,), (None,)) if bias else ((), (), ())
    for tangents in [(torch.randn_like(x), torch.randn_like(conv.weight)) + bias_tangents[0],
                     (None, torch.randn_like(conv.weight)) + bias_tangents[1],
                     (torch.randn_like(x), None) + bias_tangents[2]]:
        assert_same_dual_function(lean_fn, reference, inputs, tangents)


def test_lean_relu_matches_relu_forward_tangent_and_reverse():
    torch.manual_seed(2)
    x = torch.randn(7, 3, 4, 4, dtype=torch.float64)
    x[0, 0, 0, 0] = 0.0  # the kink: both give the zero subgradient
    assert_same_dual_function(LeanReLU(chunk=3), torch.relu, (x,), (torch.randn_like(x),))


@pytest.mark.parametrize("name", ["resnet8", "vgg_tiny"])
def test_low_memory_copy_computes_the_same_network(name):
    net = bn_net(name).train()
    x, _ = class_sorted_batch(9, 4, seed=1)
    expected = net(x)
    copied = lean_copy(copy.deepcopy(net), chunk=4)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Conv2d, nn.ReLU)) for m in copied.modules())
    assert [n for n, _ in copied.named_parameters()] == [n for n, _ in net.named_parameters()]
    torch.testing.assert_close(copied(x), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="eval mode"):
        lean_copy(copy.deepcopy(net).eval())


@pytest.mark.parametrize("name", ["resnet8", "vgg_tiny"])
def test_grasp_on_disk_equals_double_backward_with_batchnorm(name, monkeypatch, tmp_path):
    """The two ways to H g agree on BatchNorm nets, with chunks smaller than a half (13 and 13 samples), while
    backwards write into their own gradient buffers (ResNet8: also around identity and projection shortcuts)."""
    monkeypatch.setattr(lean_layers, "SCORING_CHUNK", 5)
    reused = []
    real_own_buffer = lean_layers._own_buffer
    monkeypatch.setattr(lean_layers, "_own_buffer", lambda g: reused.append(real_own_buffer(g) is not None)
                        or real_own_buffer(g))
    monkeypatch.setattr(offload, "MIN_OFFLOAD_BYTES", 0)  # every saved tensor goes through a file
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    net = bn_net(name)
    batch = class_sorted_batch(26, 4, seed=2)
    w_ref, hg_ref = grasp_hessian_gradient(net, batch, reinit_classifier=False, offload="none")
    w_disk, hg_disk = grasp_hessian_gradient(net, batch, reinit_classifier=False, offload="disk")
    assert list(hg_disk) == list(hg_ref)
    for key in hg_ref:
        assert hg_ref[key].abs().max() > 0
        torch.testing.assert_close(w_disk[key], w_ref[key], rtol=0, atol=0)
        torch.testing.assert_close(hg_disk[key], hg_ref[key], rtol=1e-9, atol=1e-12 * hg_ref[key].abs().max())
    assert not list(tmp_path.glob("jackpot-saved-*"))  # every file and the folder are gone
    assert sum(reused) >= 4 and not all(reused)  # buffers were reused, and not where a built-in op came first


def test_grasp_scores_follow_the_offload_mode_on_cpu(monkeypatch):
    """auto on CPU computes in memory (the official order, bit for bit) when the estimate fits and takes the
    disk path only when it does not (seen through which H g routine runs); the choice is recorded."""
    calls = []
    real = hessian.hessian_vector_forward
    monkeypatch.setattr("jackpot.pruning.scores.hessian_vector_forward",
                        lambda *a, **k: calls.append("forward") or real(*a, **k))
    net = bn_net("resnet8")
    batch = class_sorted_batch(8, 4, seed=3)
    monkeypatch.setattr(offload, "available_bytes", lambda: 64 << 30)
    auto = grasp_scores(net, batch, reinit_classifier=False, offload="auto")
    assert calls == [] and not memory_fit.last_choice().on_disk
    none = grasp_scores(net, batch, reinit_classifier=False, offload="none")
    assert all(torch.equal(auto[key], none[key]) for key in none)  # same path: the same bits

    estimate = memory_fit.scoring_peak_bytes(net, 8, "grasp", (3, 32, 32))
    monkeypatch.setattr(offload, "available_bytes", lambda: int(estimate * memory_fit.MARGIN))  # no headroom
    lean = grasp_scores(net, batch, reinit_classifier=False, offload="auto")
    choice = memory_fit.last_choice()
    assert calls == ["forward"] and choice.on_disk and choice.estimate_bytes == estimate
    assert choice.as_dict()["path"] == "disk"
    for key in none:  # float64: the two computation orders agree far below float32's noise
        torch.testing.assert_close(lean[key], none[key], rtol=1e-9, atol=1e-20)


def test_scoring_peak_estimate_grows_with_the_batch_and_bounds_the_measured_ratios():
    net = bn_net("resnet8").float()
    one = memory_fit.leaf_output_bytes(net, (3, 32, 32))
    weights = sum(p.numel() * 4 for p in net.parameters())
    assert memory_fit.scoring_peak_bytes(net, 100, "snip", (3, 32, 32)) == 100 * one + 4 * weights
    assert memory_fit.scoring_peak_bytes(net, 100, "grasp", (3, 32, 32)) == int(1.3 * 100 * one) + 4 * weights
    assert net.training  # the probe forward leaves the mode (and the BatchNorm statistics) alone
    # measured peak / leaf outputs on 1,000 images (docs/benchmarks.md): SNIP 0.72, 0.82; GraSP 0.90, 1.20
    assert memory_fit.PEAK_FACTOR["snip"] > 0.82 and memory_fit.PEAK_FACTOR["grasp"] > 1.20


def test_saved_tensors_on_disk_give_bit_identical_gradients(monkeypatch, tmp_path):
    """The offload alone changes no arithmetic: a native BatchNorm net's gradients, bit for bit."""
    monkeypatch.setattr(offload, "MIN_OFFLOAD_BYTES", 0)
    written = []
    real_init = offload._OnDisk.__init__

    def counting_init(self, tensor, path):
        written.append(tensor.numel())
        real_init(self, tensor, path)

    monkeypatch.setattr(offload._OnDisk, "__init__", counting_init)
    net = bn_net("resnet8").float().train()
    x, y = class_sorted_batch(12, 4, seed=4, dtype=torch.float32)
    params = list(net.parameters())

    def gradients():
        return torch.autograd.grad(torch.nn.functional.cross_entropy(net(x), y), params)

    in_memory = gradients()
    with offload.saved_tensors_on_disk(keep=params, directory=str(tmp_path)):
        on_disk = gradients()
    assert len(written) > 10  # activations of every layer went through files
    for a, b in zip(on_disk, in_memory, strict=True):
        assert torch.equal(a, b)
    assert list(tmp_path.iterdir()) == []


def test_snip_low_memory_path_matches(monkeypatch, tmp_path):
    monkeypatch.setattr(lean_layers, "SCORING_CHUNK", 5)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    net = bn_net("resnet8")
    batch = class_sorted_batch(12, 4, seed=4)
    in_memory = snip_scores(net, batch, offload="none")
    on_disk = snip_scores(net, batch, offload="disk")
    for key in in_memory:
        torch.testing.assert_close(on_disk[key], in_memory[key], rtol=1e-10, atol=1e-14)
    assert not list(tmp_path.glob("jackpot-saved-*"))


def test_saved_tensor_files_round_trip_layouts(tmp_path):
    """channels_last and offset views come back with their strides and values."""
    base = torch.randn(4, 6, 5, 5)
    cases = [base, base.contiguous(memory_format=torch.channels_last), base[1:3], base.to(torch.bfloat16)]
    for i, tensor in enumerate(cases):
        saved = offload._OnDisk(tensor, tmp_path / f"{i}.bin")
        loaded = saved.load()
        assert loaded.stride() == tensor.stride() and loaded.dtype == tensor.dtype
        assert torch.equal(loaded, tensor)
        del saved
    assert list(tmp_path.iterdir()) == []  # files go with their handles
    assert not offload._is_plain_dense(base[:, ::2])  # a strided view stays in memory


def test_offload_modes_are_checked():
    net = bn_net("resnet8")
    assert offload.choose_offload("disk", net, 8, "snip").on_disk
    assert not offload.choose_offload("none", net, 8, "snip").on_disk
    with pytest.raises(ValueError, match="'ram'.*allowed: auto, disk, none"):
        offload.choose_offload("ram", net, 8, "snip")
    with pytest.raises(ValueError, match="needs the scoring model on the CPU"):
        offload.check_mode("disk", torch.device("cuda"))


def test_park_writes_large_tensors_inside_the_offload_block_only(monkeypatch, tmp_path):
    monkeypatch.setattr(offload, "MIN_OFFLOAD_BYTES", 64)
    big, small = torch.randn(8, 4), torch.randn(2)
    assert isinstance(offload.park(big), offload._InMemory)  # no block: nothing to write to
    with offload.saved_tensors_on_disk(directory=str(tmp_path)):
        on_disk, in_memory = offload.park(big), offload.park(small)
        assert isinstance(on_disk, offload._OnDisk) and isinstance(in_memory, offload._InMemory)
        big.mul_(2.0)  # the file holds the values at parking time
        assert torch.equal(on_disk.load(), big / 2.0)
        del on_disk
    assert list(tmp_path.iterdir()) == []


def test_explicit_cross_entropy_is_exact_under_reverse_over_forward():
    """F.cross_entropy's tangent rule writes in place into a tensor its backward saved (an error in plain
    autograd); the explicit loss gives the double-backward H v with autograd's own saved tensors."""
    torch.manual_seed(5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 4)).double()
    names, params = zip(*net.named_parameters(), strict=True)
    vector = [torch.randn_like(p) for p in params]
    x, y = torch.randn(6, 12, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 1, 0])
    logits = net(x) / 3.0
    torch.testing.assert_close(hessian.explicit_cross_entropy(logits, y), F.cross_entropy(logits, y),
                               rtol=1e-14, atol=0)
    grads = torch.autograd.grad(F.cross_entropy(net(x) / 3.0, y), params, create_graph=True)
    expected = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vector, strict=True)), params)
    got = hessian.hessian_vector_forward(net, names, params, vector, [(x, y)], temperature=3.0)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("geometry", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}])
def test_lean_maxpool_matches_max_pool2d_forward_tangent_and_reverse(geometry):
    torch.manual_seed(3)
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    lean = lean_layers.LeanMaxPool2d(nn.MaxPool2d(**geometry), chunk=2)
    assert_same_dual_function(lean, lambda t: F.max_pool2d(t, **geometry), (x,), (torch.randn_like(x),))
