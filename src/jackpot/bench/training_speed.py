"""The training sections: throughput of (a), (b), (b)+masks and (c) with ratios, mask enforcement,
evaluation speed and the 160-epoch projection; the per-step framework overhead on a tiny net."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jackpot.bench.config import EPOCHS, KEEP, MEAN, STD, TEST_IMAGES, TRAIN_IMAGES, BenchConfig
from jackpot.bench.variants import (
    BareLoop,
    LightningRun,
    RoundHook,
    StockLightning,
    Variant,
    interleave,
    median_ratio,
)
from jackpot.bench.workload import build_net, precision_context, random_masks, sync_device, synthetic_cifar


def throughput(cfg: BenchConfig, log_dir: Path, on_round: RoundHook | None = None) -> dict[str, Any]:
    """(a), (b), (b)+masks and (c), interleaved; images/s, ms/step, ratios, eval speed, projection."""
    from jackpot.data.device_loader import DeviceLoader
    from jackpot.data.torch_loader import ArrayImageDataset, paper_transform

    device = torch.device(cfg.device)
    precision = cfg.resolved_precision()
    images, targets = synthetic_cifar(cfg.steps * cfg.batch, cfg.classes, cfg.seed)
    workers = cfg.resolved_workers()

    dataset = ArrayImageDataset(images, targets, paper_transform(MEAN, STD))
    torch_loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch, shuffle=True, num_workers=workers, pin_memory=False,
        drop_last=False, persistent_workers=workers > 0,
    )

    def device_loader() -> DeviceLoader:
        return DeviceLoader(images, targets, cfg.batch, MEAN, STD, train=True, seed=cfg.seed,
                            channels_last=cfg.channels_last, device=device)

    def net() -> nn.Module:
        model = build_net(cfg.model, cfg.classes, cfg.seed)
        return model.to(memory_format=torch.channels_last) if cfg.channels_last else model

    masks = random_masks(build_net(cfg.model, cfg.classes, cfg.seed), KEEP, cfg.seed + 1)
    a = BareLoop("a", build_net(cfg.model, cfg.classes, cfg.seed), torch_loader, device, "32-true",
                 cfg.warmup, jackpot_sgd=False)
    b = BareLoop("b", net(), device_loader(), device, precision, cfg.warmup, jackpot_sgd=True,
                 compile_net=cfg.compile, compile_mode=cfg.compile_mode, sync_check=cfg.sync_check)
    bm = BareLoop("b_mask", net(), device_loader(), device, precision, cfg.warmup, jackpot_sgd=True,
                  masks=masks, compile_net=cfg.compile, compile_mode=cfg.compile_mode)
    c = LightningRun("c", net(), device_loader(), device, cfg, masks, log_dir)
    variants = [a, b, bm, c]
    if device.type == "cuda" and cfg.cuda_graph != "off":  # what recording the step buys, side by side
        variants.append(LightningRun("c_eager", net(), device_loader(), device, replace(cfg, cuda_graph="off"),
                                     masks, log_dir))
    times = interleave(variants, cfg.rounds, on_round=on_round)

    out: dict[str, Any] = {"steps_timed": cfg.steps - cfg.warmup, "rounds": cfg.rounds, "workers": workers,
                           "precision": precision, "variants": {}}
    for key, per_step in times.items():
        med = statistics.median(per_step)
        out["variants"][key] = {"ms_per_step_rounds": [1000 * t for t in per_step],
                                "img_per_s": cfg.batch / med, "ms_per_step": 1000 * med}
    out["ratio_b_over_a_speed"] = median_ratio(times["a"], times["b"])
    out["ratio_c_over_a_speed"] = median_ratio(times["a"], times["c"])
    out["ratio_c_over_b_time"] = median_ratio(times["c"], times["b"])
    out["mask_overhead_pct"] = 100 * (median_ratio(times["b_mask"], times["b"]) - 1)
    if "c_eager" in times:
        out["ratio_c_over_c_eager_speed"] = median_ratio(times["c_eager"], times["c"])
    out["mask_multiply_ms"] = mask_multiply_ms(bm, device)
    out["mask_multiply_pct"] = 100 * out["mask_multiply_ms"] / out["variants"]["b"]["ms_per_step"]
    out["fit_seconds_c"] = c.fit_seconds
    program = getattr(c.module, "_program", None)  # the last round's: how (c)'s steps ran
    out["c_steps"] = {"replayed": program.replays if program else 0,
                      "eager": program.eager_steps if program else None,
                      "not_recorded_because": program.fallback_reason if program else None}
    if cfg.sync_check and device.type == "cuda":  # per timed step, over the kept rounds
        out["syncs_per_step"] = {"b": sum(b.syncs[1:]) / (cfg.rounds * (cfg.steps - cfg.warmup)),
                                 "c": sum(c.callbacks[-1].syncs[1:]) / max(1, cfg.rounds * (cfg.steps - cfg.warmup))}
    out["eval_img_per_s"] = eval_speed(c.module.model, cfg, device, precision)
    out["mask_exact_after_c"] = all(
        torch.count_nonzero(w.detach()[~masks[n].to(w.device)]) == 0
        for n, w in zip(masks, masks.as_float(c.module.model)[0], strict=True)
    )
    out["projection_h"] = {
        key: EPOCHS * (TRAIN_IMAGES / v["img_per_s"] + TEST_IMAGES / out["eval_img_per_s"]) / 3600
        for key, v in out["variants"].items()
    }
    return out


def mask_multiply_ms(loop: BareLoop, device: torch.device, repeats: int = 50) -> float:
    """The mask multiply alone (one `_foreach_mul_` over the masked gradients), ms per call: the cost the
    with/without comparison measures, without that comparison's step-to-step noise."""
    grads = [torch.ones_like(w) for w in loop.weights]
    torch._foreach_mul_(grads, loop.float_masks)
    sync_device(device)
    began = time.perf_counter()
    for _ in range(repeats):
        torch._foreach_mul_(grads, loop.float_masks)
    sync_device(device)
    return 1000 * (time.perf_counter() - began) / repeats


@torch.no_grad()
def eval_speed(model: nn.Module, cfg: BenchConfig, device: torch.device, precision: str) -> float:
    """Inference images/s at the evaluation batch size (eager, eval mode, jackpot's precision/layout)."""
    model = model.to(device)
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.eval_batch, 3, 32, 32, generator=gen).to(device)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    seconds = []
    for i in range(cfg.eval_batches + 1):
        sync_device(device)
        began = time.perf_counter()
        with precision_context(device, precision):
            model(x)
        sync_device(device)
        if i:  # the first batch warms up
            seconds.append(time.perf_counter() - began)
    model.train(was_training)
    return cfg.eval_batch / statistics.median(seconds)


def framework_overhead(cfg: BenchConfig, log_dir: Path, on_round: RoundHook | None = None) -> dict[str, Any]:
    """Per-step cost of jackpot's Lightning path over the bare loop on a tiny net (batch 64 unless --tiny).

    Both sides use the same DeviceLoader, masks and step settings, so the difference is Lightning's loop,
    hooks and jackpot's per-step bookkeeping; also measured with K optimizer steps per training step."""
    from jackpot.data.device_loader import DeviceLoader

    device = torch.device(cfg.overhead_device)
    batch = cfg.batch if cfg.tiny else 64
    sub = BenchConfig(**{**asdict(cfg), "model": cfg.overhead_model, "device": cfg.overhead_device,
                         "batch": batch, "steps": cfg.overhead_steps, "precision": "auto", "compile": False})
    precision = sub.resolved_precision()
    images, targets = synthetic_cifar(sub.steps * batch, sub.classes, sub.seed)

    def loader() -> DeviceLoader:
        return DeviceLoader(images, targets, batch, MEAN, STD, train=True, seed=sub.seed,
                            channels_last=sub.channels_last, device=device)

    def net() -> nn.Module:
        model = build_net(sub.model, sub.classes, sub.seed)
        return model.to(memory_format=torch.channels_last) if sub.channels_last else model

    masks = random_masks(net(), KEEP, sub.seed + 1)
    variants: list[Variant] = [
        BareLoop("bare", net(), loader(), device, precision, sub.warmup, jackpot_sgd=True, masks=masks),
        StockLightning("stock Lightning", net(), loader(), device, sub.warmup),
        LightningRun(f"jackpot K={sub.steps_per_call}", net(),
                     loader(), device, sub, masks, log_dir),
    ]
    k = cfg.overhead_steps_per_call
    if k >= 1 and k != sub.steps_per_call:
        multi = BenchConfig(**{**asdict(sub), "steps_per_call": k})
        variants.append(LightningRun(f"jackpot K={k}", net(), loader(), device, multi, masks, log_dir))
    times = interleave(variants, sub.overhead_rounds, on_round=on_round)
    rows = {}
    for v in variants:
        pairs = zip(times[v.name], times["bare"], strict=True)
        rows[v.name] = {"ms": 1000 * statistics.median(times[v.name]),
                        "over_bare_ms": statistics.median(1000 * (t - b) for t, b in pairs),
                        "ratio": median_ratio(times[v.name], times["bare"])}
    return {"model": sub.model, "batch": batch, "device": sub.overhead_device, "precision": precision,
            "steps": sub.steps, "rounds": sub.overhead_rounds, "steps_per_call": sub.steps_per_call,
            "rows": rows, "ms_per_step_rounds": {n: [1000 * t for t in ts] for n, ts in times.items()}}
