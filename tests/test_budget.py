"""Budgets: global thresholds with the official off-by-ones, the smart ratio (§6) and layerwise positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jackpot.pruning.budget import (
    check_ratio,
    grasp_global,
    layerwise_topk,
    lottery_global,
    obd_global,
    random_positions,
    smart_ratio_counts,
    snip_global,
    uniform_counts,
)

pytestmark = pytest.mark.usefixtures("one_thread")


VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]


def vgg19_layer_sizes(num_classes: int) -> list[int]:
    """Prunable weight counts of VGG19-BN (PAPER_SPEC §1.1): 16 3x3 convs, then Linear(512, classes)."""
    sizes, channels = [], 3
    for v in VGG19_CFG:
        if v != "M":
            sizes.append(channels * v * 9)
            channels = v
    return sizes + [512 * num_classes]


def resnet32_layer_sizes(num_classes: int) -> list[int]:
    """ResNet32 x2 (§1.2): stem, 3 stages x 5 BasicBlocks (conv1, conv2, then the 1x1 shortcut), fc."""
    sizes, channels = [3 * 32 * 9], 32
    for width in (32, 64, 128):
        for block in range(5):
            sizes += [channels * width * 9, width * width * 9]
            if block == 0 and width != channels:
                sizes.append(channels * width)
            channels = width
    return sizes + [128 * num_classes]


ARCHS = {
    "vgg19": (vgg19_layer_sizes, True),
    "resnet32": (resnet32_layer_sizes, False),
}


def reference_smart_ratio(sizes: list[int], p: float, vgg: bool, linear_keep: float = 0.3) -> list[int]:
    """§6 step by step, in numpy float32 (the official code holds N_l, r_l and q_l in float32 tensors).

    Written independently of the implementation: the classifier is the last layer.
    """
    f = np.float32
    n_layers = len(sizes)
    num = [f(n) for n in sizes]
    # Step 1 (+2): raw scores, descending in depth; the VGG factor 1/l^2 enters TEST and q_l.
    raw = [f((n_layers - l + 1) ** 2 + (n_layers - l + 1)) for l in range(1, n_layers + 1)]
    # Step 4: budget, per-layer truncated TEST.
    test, total, linear = 0, f(0), f(0)
    for i in range(n_layers):
        l = i + 1
        if l == n_layers:
            linear = f(linear + num[i])
        elif vgg:
            test += int(f(f(num[i] * raw[i]) / f(l * l)))
        else:
            test += int(f(num[i] * raw[i]))
        total = f(total + num[i])
    goal = int(f(total * f(1 - p))) - int(f(linear * f(linear_keep)))
    k = goal / test
    q = [f(f(raw[i] * f(k)) / f((i + 1) ** 2)) if vgg else f(raw[i] * f(k)) for i in range(n_layers - 1)]
    # Step 5: spill forward.
    extra = 0
    for i in range(n_layers - 1):
        if q[i] >= 1:
            extra += int(f(f(q[i] - f(1)) * num[i]))
            q[i] = f(1)
        else:
            rest = int(f(f(f(1) - q[i]) * num[i]))
            if rest >= extra:
                q[i] = f(q[i] + f(f(extra) / num[i]))
                extra = 0
            else:
                extra -= rest
                q[i] = f(1)
        if extra == 0:
            break
    # Step 6 (+3): counts.
    counts = [sizes[i] if q[i] >= 1 else int(f(q[i] * num[i])) for i in range(n_layers - 1)]
    return counts + [int(f(f(linear_keep) * num[-1]))]


# --- layer sizes --------------------------------------------------------------------------------------------
def test_layer_sizes_match_the_spec_counts():
    assert len(vgg19_layer_sizes(10)) == 17 and sum(vgg19_layer_sizes(10)) == 20_024_000
    assert sum(vgg19_layer_sizes(100)) == 20_070_080
    assert len(resnet32_layer_sizes(10)) == 34 and sum(resnet32_layer_sizes(10)) == 1_855_584
    assert sum(resnet32_layer_sizes(100)) == 1_867_104


@pytest.mark.parametrize("arch", ["vgg19", "resnet32"])
def test_layer_sizes_match_the_models_package(arch):
    models = pytest.importorskip("jackpot.models")
    from jackpot.pruning import prunable_weights

    model = models.build_model(arch, 10)
    assert [w.numel() for _, w in prunable_weights(model)] == ARCHS[arch][0](10)
    assert (model.family == "vgg") == ARCHS[arch][1]


# --- smart ratio --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("p", [0.9, 0.95, 0.98])
@pytest.mark.parametrize("arch", ["vgg19", "resnet32"])
def test_smart_ratio_equals_the_step_by_step_reference(arch, p, classes):
    layer_sizes, vgg = ARCHS[arch]
    sizes = layer_sizes(classes)
    counts = smart_ratio_counts(sizes, p, vgg_depth_factor=vgg)
    assert counts == reference_smart_ratio(sizes, p, vgg)

    target = int(np.float32(sum(sizes)) * np.float32(1 - p))  # float32, as the official goal
    assert 0 <= target - sum(counts) < len(sizes)  # per-layer truncation only
    assert abs(int(sum(sizes) * (1 - p)) - sum(counts)) <= len(sizes)
    assert counts[-1] == int(0.3 * sizes[-1])
    assert all(0 < c <= n for c, n in zip(counts, sizes, strict=True))


@pytest.mark.parametrize("p", [0.9, 0.95, 0.98])
def test_smart_ratio_keep_ratio_decreases_with_depth_on_resnet(p):
    sizes = resnet32_layer_sizes(10)
    counts = smart_ratio_counts(sizes, p, vgg_depth_factor=False)
    ratios = [c / n for c, n in zip(counts[:-1], sizes[:-1], strict=True)]
    assert all(a >= b for a, b in zip(ratios, ratios[1:], strict=False))
    assert ratios[0] < 1  # no spill for ResNet32 at these ratios (§6 step 5)


@pytest.mark.parametrize("p", [0.9, 0.95, 0.98])
def test_smart_ratio_spill_fills_leading_vgg_layers_and_keeps_the_total(p):
    sizes = vgg19_layer_sizes(10)
    counts = smart_ratio_counts(sizes, p, vgg_depth_factor=True)
    dense = [c == n for c, n in zip(counts, sizes, strict=True)]
    leading = dense.index(False)
    assert 2 <= leading <= 6  # §6: the spill makes the first 2-6 VGG19 layers dense
    assert not any(dense[leading:])
    # The overflow is carried, not lost: the total still reaches the goal up to per-layer truncation.
    target = int(np.float32(sum(sizes)) * np.float32(1 - p))
    assert 0 <= target - sum(counts) < len(sizes)


def test_smart_ratio_vgg_factor_changes_the_distribution():
    sizes = vgg19_layer_sizes(10)
    with_factor = smart_ratio_counts(sizes, 0.95, vgg_depth_factor=True)
    without = smart_ratio_counts(sizes, 0.95, vgg_depth_factor=False)
    assert with_factor != without
    assert with_factor[-1] == without[-1] == 1536


def test_smart_ratio_options_and_errors():
    sizes = [100, 1000, 1000, 50]
    counts = smart_ratio_counts(sizes, 0.5, vgg_depth_factor=False, linear_keep_ratio=0.5)
    assert counts[-1] == 25
    flags = smart_ratio_counts(sizes, 0.5, False, is_linear=[False, False, False, True])
    assert flags == smart_ratio_counts(sizes, 0.5, False)
    # the classifier alone keeps 300 of 1,020 weights, more than 0.99 keeps: the largest ratio that works is named
    with pytest.raises(ValueError, match=r"the classifier alone keeps 300 \(0.3 of its 1000\), and ratio 0.99 keeps "
                                         r"10 of all 1020, .* a ratio of at most 0.7049,") as refused:
        smart_ratio_counts([10, 10, 1000], 0.99, vgg_depth_factor=False)
    largest = float(str(refused.value).split("at most ")[1].split(",")[0])
    assert smart_ratio_counts([10, 10, 1000], largest, vgg_depth_factor=False)[-1] == 300
    with pytest.raises(ValueError, match="budgets convolutions, and these layers have none"):
        smart_ratio_counts([1000], 0.5, vgg_depth_factor=False)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        smart_ratio_counts(sizes, 1.0, vgg_depth_factor=False)


def test_uniform_counts():
    assert uniform_counts([100, 37, 10], 0.9) == [int(n * (1 - 0.9)) for n in (100, 37, 10)]
    assert uniform_counts([100, 37], 0.0) == [100, 37]


# --- positions ----------------------------------------------------------------------------------------------
def test_random_positions_exact_counts_and_reproducible():
    specs = [((8, 3, 3, 3), 50), ((10, 16), 7), ((4,), 0), ((5,), 5)]
    a = random_positions(specs, torch.Generator().manual_seed(0))
    b = random_positions(specs, torch.Generator().manual_seed(0))
    c = random_positions(specs, torch.Generator().manual_seed(1))
    for mask, (shape, count) in zip(a, specs, strict=True):
        assert mask.dtype == torch.bool and mask.shape == shape and int(mask.sum()) == count
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    with pytest.raises(ValueError):
        random_positions([((3,), 4)])


def test_random_positions_are_uniform():
    hits = torch.zeros(20)
    g = torch.Generator().manual_seed(3)
    for _ in range(2000):
        hits += random_positions([((20,), 5)], g)[0].float()
    assert (hits / 2000 - 0.25).abs().max() < 0.05


def test_layerwise_topk_keeps_the_largest_per_layer():
    scores = {"a": torch.randperm(30).float().view(5, 6), "b": torch.randperm(12).float()}
    masks = layerwise_topk(scores, [4, 12])
    assert int(masks["a"].sum()) == 4 and bool(masks["b"].all())
    assert torch.equal(masks["a"], scores["a"] >= 26)
    with pytest.raises(ValueError):
        layerwise_topk(scores, [4])


# --- global rules -------------------------------------------------------------------------------------------
def distinct_scores(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(1000, generator=g).float() + 1
    return {
        "conv1": perm[:216].view(8, 3, 3, 3),
        "conv2": perm[216:936].view(10, 8, 3, 3),
        "fc": perm[936:].view(4, 16),
    }


def kept(masks: dict[str, torch.Tensor]) -> int:
    return sum(int(m.sum()) for m in masks.values())


@pytest.mark.parametrize("p", [0.0, 0.5, 0.9, 0.95, 0.98])
def test_snip_keeps_int_n_1_minus_p_largest(p):
    scores = distinct_scores()
    masks = snip_global(scores, p)
    assert kept(masks) == int(1000 * (1 - p))
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    kept_min = min(s[masks[n]].min() for n, s in scores.items() if masks[n].any())
    assert kept_min == flat.sort(descending=True).values[int(1000 * (1 - p)) - 1]


def test_snip_keeps_ties_at_the_threshold():
    scores = {"w": torch.tensor([5.0, 4.0, 3.0, 3.0, 3.0, 1.0])}
    assert snip_global(scores, 0.5)["w"].tolist() == [True, True, True, True, True, False]


@pytest.mark.parametrize("p", [0.5, 0.9, 0.95, 0.98])
def test_grasp_removes_the_largest_with_the_official_off_by_one(p):
    scores = distinct_scores()
    masks = grasp_global(scores, p)
    n_remove = int(1000 * p)
    assert kept(masks) == 1000 - n_remove + 1
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    threshold = flat.sort(descending=True).values[n_remove - 1]
    for name, s in scores.items():
        assert torch.equal(masks[name], s <= threshold)


def test_grasp_normalises_by_the_absolute_sum_and_keeps_all_at_p_zero():
    scores = {"w": torch.tensor([-4.0, -3.0, 1.0, 2.0])}  # sum < 0: |sum| keeps the order
    assert grasp_global(scores, 0.5)["w"].tolist() == [True, True, True, False]
    assert bool(grasp_global(distinct_scores(), 0.0)["fc"].all())


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_obd_keeps_exactly_int_n_1_minus_p(p):
    scores = distinct_scores(1)
    masks = obd_global(scores, p)
    assert kept(masks) == int(1000 * (1 - p))
    removed_max = max((s[~masks[n]].max() for n, s in scores.items() if (~masks[n]).any()), default=0)
    kept_min = min(s[masks[n]].min() for n, s in scores.items() if masks[n].any())
    assert removed_max < kept_min


LINEAR = [False, False, True]


def signed(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights with distinct magnitudes and alternating signs."""
    return {n: s * (1 - 2 * (torch.arange(s.numel()) % 2)).view(s.shape) for n, s in scores.items()}


@pytest.mark.parametrize("p", [0.5, 0.8, 0.9])
def test_lottery_prunes_convs_only_with_the_official_index(p):
    weights = signed(distinct_scores(2))
    masks = lottery_global(weights, LINEAR, p)
    assert bool(masks["fc"].all())
    assert kept(masks) == 1000 - (int(1000 * p) + 1)
    conv = torch.cat([weights[n].abs().reshape(-1) for n in ("conv1", "conv2")])
    threshold = conv.sort().values[int(1000 * p)]
    for name in ("conv1", "conv2"):
        assert torch.equal(masks[name], weights[name].abs() > threshold)


def test_lottery_second_call_prunes_p_of_the_remaining():
    weights = signed(distinct_scores(3))
    first = lottery_global(weights, LINEAR, 0.5)
    remaining = kept(first)
    second = lottery_global(weights, LINEAR, 0.5, current_masks=first)
    assert kept(second) == remaining - (int(remaining * 0.5) + 1)
    assert all(not (second[n] & ~first[n]).any() for n in first)  # nothing revived
    assert bool(second["fc"].all())
    # The same as calling it on the masked weights themselves (how the official code sees a pruned net).
    masked = {n: w * first[n] for n, w in weights.items()}
    assert all(torch.equal(second[n], lottery_global(masked, LINEAR, 0.5)[n]) for n in first)


def test_lottery_rejects_ratios_the_convs_cannot_hold():
    weights = {"conv": torch.arange(1.0, 11.0), "fc": torch.arange(1.0, 91.0)}
    with pytest.raises(ValueError, match="conv layers hold only"):
        lottery_global(weights, [False, True], 0.5)


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, True, "0.5", None])
def test_check_ratio_rejects_bad_ratios(bad):
    with pytest.raises(ValueError, match="ratio"):
        check_ratio(bad)
