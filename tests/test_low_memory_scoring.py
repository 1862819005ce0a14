"""Low-memory scoring: saved activations on disk and GraSP's H g by reverse-over-forward give the scores
of the one-pass, double-backward computation (float64, tight tolerances) and leave no files behind."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from jackpot.models import build_model
from jackpot.pruning import hessian, offload
from jackpot.pruning.hessian import ExplicitBatchNorm, low_memory_copy
from jackpot.pruning.offload import wants_offload
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


def test_explicit_batchnorm_is_train_mode_batchnorm_values_and_gradients():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(5).double().train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    x = (torch.randn(11, 5, 4, 4, dtype=torch.float64) * 3 + 2).requires_grad_(True)
    mine = ExplicitBatchNorm(copy.deepcopy(bn), chunk=4)  # 11 samples: chunks of 4, 4, 3
    expected, got = bn(x), mine(x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    probe = torch.randn_like(expected)
    grads_expected = torch.autograd.grad((expected * probe).sum(), (x, bn.weight, bn.bias))
    grads_got = torch.autograd.grad((got * probe).sum(), (x, mine.weight, mine.bias))
    for a, b in zip(grads_got, grads_expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["resnet8", "vgg_tiny"])
def test_low_memory_copy_computes_the_same_network(name):
    net = bn_net(name).train()
    x, _ = class_sorted_batch(9, 4, seed=1)
    expected = net(x)
    copied = low_memory_copy(copy.deepcopy(net), chunk=4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copied.modules())
    assert [n for n, _ in copied.named_parameters()] == [n for n, _ in net.named_parameters()]
    torch.testing.assert_close(copied(x), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="eval mode"):
        low_memory_copy(copy.deepcopy(net).eval())


@pytest.mark.parametrize("name", ["resnet8", "vgg_tiny"])
def test_grasp_on_disk_equals_double_backward_with_batchnorm(name, monkeypatch, tmp_path):
    """The two ways to H g agree on BatchNorm nets, with chunks smaller than a half (13 and 13 samples)."""
    monkeypatch.setattr(hessian, "SCORING_CHUNK", 5)
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


def test_grasp_scores_follow_the_offload_mode_on_cpu(monkeypatch):
    """auto on CPU takes the disk path (seen through which H g routine runs), none the official one."""
    calls = []
    real = hessian.hessian_vector_forward
    monkeypatch.setattr("jackpot.pruning.scores.hessian_vector_forward",
                        lambda *a, **k: calls.append("forward") or real(*a, **k))
    net = bn_net("resnet8")
    batch = class_sorted_batch(8, 4, seed=3)
    auto = grasp_scores(net, batch, reinit_classifier=False, offload="auto")
    assert calls == ["forward"]
    none = grasp_scores(net, batch, reinit_classifier=False, offload="none")
    assert calls == ["forward"]
    for key in none:
        torch.testing.assert_close(auto[key], none[key], rtol=1e-9, atol=1e-20)


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
    monkeypatch.setattr(hessian, "SCORING_CHUNK", 5)
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
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert wants_offload("auto", cpu) and not wants_offload("auto", cuda)
    assert wants_offload("disk", cpu) and not wants_offload("none", cpu)
    with pytest.raises(ValueError, match="'ram'.*allowed: auto, disk, none"):
        wants_offload("ram", cpu)
    with pytest.raises(ValueError, match="needs the scoring model on the CPU"):
        wants_offload("disk", cuda)
