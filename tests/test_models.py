"""Model definitions against spec §1: exact parameter counts, layer order, init statistics, forward shapes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jackpot.models import MODEL_NAMES, VGG, BasicBlock, ResNet, build_model
from jackpot.pruning.masks import prunable_count, prunable_weights

# (name, num_classes) -> (prunable weights, prunable layers, trainable params), from PAPER_SPEC §1.
EXPECTED = {
    ("vgg19", 10): (20_024_000, 17, 20_040_522),
    ("vgg19", 100): (20_070_080, 17, 20_086_692),
    ("resnet32", 10): (1_855_584, 34, 1_860_522),
    ("resnet32", 100): (1_867_104, 34, 1_872_132),
}


@pytest.fixture(scope="module")
def paper_models() -> dict[tuple[str, int], nn.Module]:
    """Build each paper model once (VGG19 init is the slow part)."""
    torch.manual_seed(0)
    return {key: build_model(*key) for key in EXPECTED}


def _std_ok(weight: torch.Tensor, expected: float, rel: float) -> bool:
    return abs(weight.detach().std().item() - expected) <= rel * expected


@pytest.mark.parametrize("key", list(EXPECTED))
def test_paper_counts(paper_models: dict, key: tuple[str, int]) -> None:
    model = paper_models[key]
    n_prunable, n_layers, n_trainable = EXPECTED[key]
    assert prunable_count(model) == n_prunable
    assert len(prunable_weights(model)) == n_layers
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == n_trainable


@pytest.mark.parametrize("key", list(EXPECTED))
def test_classifier_is_last_and_only_linear(paper_models: dict, key: tuple[str, int]) -> None:
    model = paper_models[key]
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1
    last_name, last_weight = prunable_weights(model)[-1]
    assert last_name == f"{linears[0]}.weight"
    assert tuple(last_weight.shape) == (key[1], 512 if key[0] == "vgg19" else 128)


def test_vgg19_layout(paper_models: dict) -> None:
    model = paper_models[("vgg19", 10)]
    assert model.family == "vgg"
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 16
    assert all(c.bias is not None and c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [c.out_channels for c in convs] == [64, 64, 128, 128] + [256] * 4 + [512] * 8
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    # conv -> BN -> ReLU, and the last feature module is a ReLU (no pool after the last block)
    feats = list(model.features)
    for i, m in enumerate(feats):
        if isinstance(m, nn.Conv2d):
            assert isinstance(feats[i + 1], nn.BatchNorm2d) and isinstance(feats[i + 2], nn.ReLU)
    assert isinstance(feats[-1], nn.ReLU)
    assert isinstance(model.pool, nn.AvgPool2d) and model.pool.kernel_size == 2


def test_resnet32_layout_and_order(paper_models: dict) -> None:
    model = paper_models[("resnet32", 10)]
    assert model.family == "resnet"
    names = [name for name, _ in prunable_weights(model)]
    assert names[0] == "conv1.weight" and names[-1] == "fc.weight"
    for stage in (2, 3):
        i = names.index(f"layer{stage}.0.conv2.weight")
        assert names[i - 1] == f"layer{stage}.0.conv1.weight"
        assert names[i + 1] == f"layer{stage}.0.downsample.0.weight"
        assert names[i + 2] == f"layer{stage}.1.conv1.weight"
    assert sum("downsample" in n for n in names) == 2
    assert not any(n.startswith("layer1") and "downsample" in n for n in names)
    # every conv is bias-free; widths 32/64/128 with stride 2 at the first block of stages 2 and 3
    convs = dict((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert all(c.bias is None for c in convs.values())
    assert convs["conv1"].out_channels == 32
    assert [len(getattr(model, f"layer{s}")) for s in (1, 2, 3)] == [5, 5, 5]
    assert convs["layer2.0.conv1"].stride == (2, 2) and convs["layer2.0.downsample.0"].stride == (2, 2)
    assert convs["layer3.0.downsample.0"].kernel_size == (1, 1)
    assert convs["layer3.4.conv2"].out_channels == 128
    assert isinstance(model.layer2[0].downsample[1], nn.BatchNorm2d)
    block_children = [n for n, _ in model.layer2[0].named_children()]
    assert block_children[-1] == "downsample"
    assert block_children.index("conv2") < block_children.index("downsample")


def test_vgg_init_statistics(paper_models: dict) -> None:
    model = paper_models[("vgg19", 100)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # He init on fan_in, sqrt(2 / (3*3*in_channels)); the first conv tells fan_in (0.272) from fan_out (0.059)
    assert _std_ok(convs[0].weight, math.sqrt(2 / (9 * 3)), 0.1)
    assert _std_ok(convs[-1].weight, math.sqrt(2 / (9 * 512)), 0.02)
    assert _std_ok(convs[4].weight, math.sqrt(2 / (9 * 128)), 0.02)
    assert abs(convs[-1].weight.mean().item()) < 1e-3
    assert all(torch.count_nonzero(c.bias) == 0 for c in convs)
    assert _std_ok(model.classifier.weight, 0.01, 0.05)
    assert torch.count_nonzero(model.classifier.bias) == 0
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_resnet_init_statistics(paper_models: dict) -> None:
    model = paper_models[("resnet32", 100)]
    convs = dict((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    # kaiming_normal_(fan_out, relu): sqrt(2 / (k*k*out_channels))
    assert _std_ok(convs["layer3.4.conv2"].weight, math.sqrt(2 / (9 * 128)), 0.03)
    assert _std_ok(convs["layer3.0.downsample.0"].weight, math.sqrt(2 / 128), 0.05)
    assert _std_ok(convs["conv1"].weight, math.sqrt(2 / (9 * 32)), 0.1)
    assert _std_ok(model.fc.weight, 0.01, 0.05)
    assert torch.count_nonzero(model.fc.bias) == 0
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_forward_shape(paper_models: dict, name: str, num_classes: int) -> None:
    key = (name, num_classes)
    model = paper_models[key] if key in paper_models else build_model(name, num_classes)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in ("vgg19", "resnet32")])
def test_small_variants_backward(name: str) -> None:
    """The quick-run models share the paper models' code; one train step must reach every prunable weight."""
    torch.manual_seed(0)
    model = build_model(name, 10)
    assert model.family in ("vgg", "resnet")
    assert isinstance(model, VGG if model.family == "vgg" else ResNet)
    assert isinstance(prunable_weights(model)[-1][1], nn.Parameter)
    assert prunable_weights(model)[-1][0] in ("classifier.weight", "fc.weight")
    model.train()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for _, w in prunable_weights(model))


def test_small_variant_topologies() -> None:
    r8 = build_model("resnet8", 10)
    names = [n for n, _ in prunable_weights(r8)]
    assert names == [
        "conv1.weight",
        "layer1.0.conv1.weight",
        "layer1.0.conv2.weight",
        "layer2.0.conv1.weight",
        "layer2.0.conv2.weight",
        "layer2.0.downsample.0.weight",
        "layer3.0.conv1.weight",
        "layer3.0.conv2.weight",
        "layer3.0.downsample.0.weight",
        "fc.weight",
    ]
    assert r8.fc.in_features == 64
    thin = build_model("resnet32_thin", 10)
    assert len(prunable_weights(thin)) == 34 and thin.fc.in_features == 64
    tiny = build_model("vgg_tiny", 10)
    assert tiny.family == "vgg" and tiny.pool.kernel_size == 4  # 32 -> 3 max-pools -> 4x4 -> 1x1
    assert all(isinstance(m, BasicBlock) for m in r8.layer1)


def test_deterministic_under_seed() -> None:
    torch.manual_seed(123)
    a = build_model("resnet8", 10)
    torch.manual_seed(123)
    b = build_model("resnet8", 10)
    for (_, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb)


def test_in_channels_and_input_size() -> None:
    gray = build_model("resnet8", 10, in_channels=1)
    assert gray(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    tiny_vgg = build_model("vgg_tiny", 10, in_channels=1)
    assert tiny_vgg(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    # Tiny-ImageNet: 64x64 input -> VGG's final AvgPool2d(4), as in the official code for 200 classes
    vgg64 = build_model("vgg_tiny", 200, input_size=64)
    assert vgg64.pool.kernel_size == 8
    assert vgg64(torch.randn(2, 3, 64, 64)).shape == (2, 200)
    with pytest.raises(ValueError, match="input_size"):
        build_model("vgg_tiny", 10, input_size=36)


def test_vgg19_tiny_imagenet_head() -> None:
    model = VGG(num_classes=200, input_size=64)
    assert model.pool.kernel_size == 4
    assert prunable_count(model) == 20_018_880 + 512 * 200


def test_build_model_bad_name() -> None:
    with pytest.raises(ValueError, match="resnet50") as err:
        build_model("resnet50", 10)
    for allowed in MODEL_NAMES:
        assert allowed in str(err.value)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet8", 0)


def test_model_names() -> None:
    assert {"vgg19", "resnet32", "vgg_tiny", "resnet8"} <= set(MODEL_NAMES)
    assert len(set(MODEL_NAMES)) == len(MODEL_NAMES)
