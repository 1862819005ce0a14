"""Side-by-side speed benchmark: a bare PyTorch loop against jackpot's Lightning training, in one process.

    python -m jackpot.bench [--model resnet32] [--batch 64] [--steps 50] [--rounds 3] [--device cpu|cuda]
    python -m jackpot.bench --tiny                       # seconds on a CPU (what the test runs)
    python -m jackpot.bench pack --procs 4 --model resnet32 --device cuda   # packing: N processes vs 1

Why one process and interleaved rounds: this machine's timing noise (CPU_BASELINE §9) is larger than the
effects measured, so every variant runs on the same model, data and batch size, round by round, in alternating
order, and ratios are medians of per-round ratios. Variants:

(a) bare loop + torchvision DataLoader over uint8 arrays (RandomCrop+Flip+ToTensor+Normalize on PIL images),
    fp32, contiguous, default SGD: the original code's way;
(b) the same loop with ``jackpot.data.DeviceLoader`` and jackpot's step settings (precision, channels_last,
    fused/foreach SGD, optional compile), no per-step host work;
(c) jackpot's ClassificationModule + PruningCallback (90 % random masks) + EpochSeed, trained by a Trainer
    built by ``jackpot.train.make_trainer`` with the configured defaults, a CSV logger (per-epoch logging).

Plus mask enforcement ((b) with and without the foreach multiply), evaluation speed, SNIP / GraSP scoring time
and GraSP peak memory (CPU: ``ru_maxrss`` of a fresh subprocess; CUDA: ``max_memory_allocated``), the per-step
framework overhead on a tiny conv net, and a projection of one 160-epoch run. Data are synthetic uint8
CIFAR-shaped arrays made in memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jackpot.malloc import keep_freed_cpu_memory

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
EPOCHS = 160
TRAIN_IMAGES = 50_000
TEST_IMAGES = 10_000
KEEP = 0.1  # 90 % random masks
GIB = 1024**3

# Rows the report always prints (the test checks them).
REPORT_ROWS = (
    "(a) bare loop + torchvision DataLoader",
    "(b) bare loop + DeviceLoader",
    "(c) jackpot Lightning + PruningCallback",
    "jackpot step / bare step",
    "steps replayed as a CUDA graph",
    "mask enforcement",
    "eval (no grad",
    "projected 160-epoch run",
    "SNIP  N=",
    "GraSP N=",
    "GraSP peak memory",
    "framework overhead",
    "stock Lightning",
)


# ----------------------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------------------
@dataclass
class BenchConfig:
    """Everything a bench run depends on (printed with the report, stored with --json)."""

    model: str = "resnet32"
    batch: int = 64
    steps: int = 50
    rounds: int = 3
    warmup: int = 3
    device: str = "cpu"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    compile_mode: str | None = None
    sync_check: bool = False
    workers: int | None = None
    classes: int = 10
    eval_batch: int = 500
    eval_batches: int = 3
    score_per_class: int = 10
    score_classes: tuple[int, ...] = (10, 100)
    score_offload: tuple[str, ...] = ("auto", "none")
    overhead_model: str = "tinyconv"
    overhead_steps: int = 200
    overhead_rounds: int = 5
    overhead_device: str = "cpu"
    progress_bar: bool = False
    steps_per_call: int = 8  # (c): jackpot's default, conf/trainer/default.yaml
    cuda_graph: str = "auto"  # (c): auto (jackpot's default: recorded on CUDA) | on | off
    overhead_steps_per_call: int = 1  # the overhead section also measures this K
    skip: tuple[str, ...] = ()
    seed: int = 0
    threads: int | None = None
    tiny: bool = False

    def resolved_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        return "bf16-mixed" if self.device == "cuda" else "32-true"

    def resolved_workers(self) -> int:
        """0 on CPU (workers only slow a 2-core VM down, CPU_BASELINE §4); 4 on GPU, as the original code."""
        if self.workers is not None:
            return self.workers
        return 4 if self.device == "cuda" else 0


def tiny_config(**overrides: Any) -> BenchConfig:
    """A CPU run of a few seconds: resnet8, a handful of steps, small scoring batches."""
    base = {
        "model": "resnet8", "batch": 16, "steps": 4, "rounds": 2, "warmup": 1, "device": "cpu",
        "eval_batch": 32, "eval_batches": 1, "score_per_class": 2, "score_classes": (10,),
        "overhead_steps": 10, "overhead_rounds": 2, "steps_per_call": 2, "overhead_steps_per_call": 1, "threads": 1,
        "tiny": True,
    }
    base.update(overrides)
    return BenchConfig(**base)


# ----------------------------------------------------------------------------------------------------------
# Models and data
# ----------------------------------------------------------------------------------------------------------
class TinyConv(nn.Module):
    """conv(3->16)-pool-conv(16->32)-pool-linear: a step of a few ms, so framework overhead shows."""

    family = "tiny"

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class LinearNet(nn.Module):
    """flatten -> linear: almost no compute, so a step's time is the framework's and the loader's own."""

    family = "tiny"

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


BENCH_NETS: dict[str, Callable[[int], nn.Module]] = {"tinyconv": TinyConv, "linear": LinearNet}


def build_net(name: str, num_classes: int, seed: int) -> nn.Module:
    """The same init for every variant: seeded, on the CPU (moved by the caller)."""
    from jackpot.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BENCH_NETS[name](num_classes) if name in BENCH_NETS else build_model(name, num_classes)


def synthetic_cifar(n: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 32, 32, 3) images and int64 labels, made in memory (no download)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return images, rng.integers(0, num_classes, size=n).astype(np.int64)


def random_masks(net: nn.Module, keep: float, seed: int):
    """Random masks keeping `keep` of every prunable layer (the benchmark's ticket)."""
    from jackpot.pruning import Masks, prunable_weights

    gen = torch.Generator().manual_seed(seed)
    return Masks({n: torch.rand(w.shape, generator=gen) < keep for n, w in prunable_weights(net)})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "32-true":
        return contextlib.nullcontext()
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"the benchmark supports precision 32-true or bf16-mixed, got {precision!r}")


def _sgd(params: Sequence[torch.nn.Parameter], device: torch.device, jackpot_style: bool) -> torch.optim.SGD:
    """The paper's SGD; jackpot's implementation choice (fused on CUDA, foreach on CPU) or torch's default."""
    impl: dict[str, bool] = {}
    if jackpot_style:
        impl = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4, **impl)


# ----------------------------------------------------------------------------------------------------------
# Variants: each runs one "epoch" of `steps` batches per round and returns the time of the steps after warm-up
# ----------------------------------------------------------------------------------------------------------
class SyncCounter:
    """Counts this thread's CUDA host synchronisations while active (`jackpot.lightning.step_graph.HostSyncs`).

    A step that synchronises stalls the host until the GPU drains, so the host can no longer queue work
    ahead; the timed steps of (b) and (c) should have none."""

    def __init__(self) -> None:
        self._syncs: Any = None

    def start(self) -> None:
        from jackpot.lightning.step_graph import HostSyncs

        self._syncs = HostSyncs().__enter__()

    def stop(self) -> int:
        self._syncs.__exit__(None, None, None)
        return len(self._syncs.messages)


class Variant:
    """One way of training; `run_round()` -> seconds per optimizer step over the steps after warm-up."""

    name: str = ""

    def run_round(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


class BareLoop(Variant):
    """A hand-written loop: forward, loss, zero_grad, backward, [mask multiply], step. No host syncs."""

    def __init__(
        self,
        name: str,
        net: nn.Module,
        loader: Any,
        device: torch.device,
        precision: str,
        warmup: int,
        jackpot_sgd: bool,
        masks: Any = None,
        compile_net: bool = False,
        compile_mode: str | None = None,
        sync_check: bool = False,
    ) -> None:
        self.name = name
        self.net = net.to(device).train()
        self.loader = loader
        self.device = device
        self.precision = precision
        self.warmup = warmup
        self.forward = torch.compile(self.net, dynamic=False, mode=compile_mode) if compile_net else self.net
        self.sync_check = sync_check and device.type == "cuda"
        self.syncs: list[int] = []
        self.optimizer = _sgd(list(self.net.parameters()), device, jackpot_sgd)
        self.weights: list[torch.Tensor] = []
        self.float_masks: list[torch.Tensor] = []
        if masks is not None:
            masks.apply(self.net)
            self.weights, self.float_masks = masks.as_float(self.net)
        self.epoch = 0

    def run_round(self) -> float:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(self.epoch)
        self.epoch += 1
        start = None
        steps = 0
        for step, (x, y) in enumerate(self.loader):
            steps = step + 1
            if step == self.warmup:
                _sync(self.device)
                start = time.perf_counter()
                if self.sync_check:
                    counter = SyncCounter()
                    counter.start()
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with _autocast(self.device, self.precision):
                loss = F.cross_entropy(self.forward(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.weights:
                torch._foreach_mul_([w.grad for w in self.weights], self.float_masks)
            self.optimizer.step()
        if self.sync_check and start is not None:
            self.syncs.append(counter.stop())
        _sync(self.device)
        if start is None:
            raise ValueError("steps must exceed warmup")
        return (time.perf_counter() - start) / (steps - self.warmup)


class _StepTimer:
    """A Lightning callback timing the steps after warm-up: sync, clock at warm-up end and at epoch end.

    With several optimizer steps per training step the clock starts at the first chunk boundary at or after
    the warm-up, and the steps are counted from the batch indices."""

    def __new__(cls, *args: Any, **kwargs: Any):  # built lazily so importing bench does not import Lightning
        import lightning.pytorch as L

        class StepTimer(L.Callback):
            def __init__(self, warmup: int, device: torch.device, sync_check: bool = False) -> None:
                self.warmup, self.device = warmup, device
                self.sync_check = sync_check and device.type == "cuda"
                self.syncs: list[int] = []
                self.counter = SyncCounter()
                self.start: float | None = None
                self.first = self.last = 0
                self.per_step = float("nan")

            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self.start = None

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
                self.last = batch_idx + 1
                if self.start is None and batch_idx >= self.warmup - 1:
                    _sync(self.device)
                    self.start = time.perf_counter()
                    self.first = batch_idx + 1
                    if self.sync_check:
                        self.counter.start()

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                if self.sync_check and self.start is not None:
                    self.syncs.append(self.counter.stop())
                _sync(self.device)
                if self.start is None or self.last <= self.first:
                    raise ValueError("steps must exceed warmup (and one chunk of steps)")
                self.per_step = (time.perf_counter() - self.start) / (self.last - self.first)

        return StepTimer(*args, **kwargs)


def trainer_settings(cfg: BenchConfig) -> Any:
    """jackpot's trainer config (conf/trainer/default.yaml when run from a checkout) for this device."""
    from omegaconf import OmegaConf

    path = Path(__file__).resolve().parents[2] / "conf" / "trainer" / "default.yaml"
    if path.exists():
        trainer = OmegaConf.to_container(OmegaConf.load(path))
        trainer.pop("defaults", None)
    else:  # an installed package without the configs: the same defaults
        trainer = {"accelerator": "auto", "devices": 1, "precision": "auto", "channels_last": "auto",
                   "compile": False, "deterministic": False, "enable_progress_bar": False,
                   "log_every_n_steps": 50, "limit_train_batches": None, "limit_val_batches": None,
                   "checkpoint_every_n_epochs": 1, "steps_per_call": 8, "cuda_graph": "auto",
                   "checkpoint_writes": "auto"}
    trainer.update(accelerator="gpu" if cfg.device == "cuda" else "cpu", precision=cfg.resolved_precision(),
                   enable_progress_bar=cfg.progress_bar, compile=cfg.compile, channels_last=cfg.channels_last)
    return OmegaConf.create({"trainer": trainer})


class LightningRun(Variant):
    """jackpot's module + pruning callback + EpochSeed; one `fit` of one epoch per round, new Trainer each."""

    def __init__(
        self,
        name: str,
        net: nn.Module,
        loader: Any,
        device: torch.device,
        cfg: BenchConfig,
        masks: Any,
        log_dir: Path,
    ) -> None:
        from jackpot.lightning.callbacks import EpochSeed, PruningCallback
        from jackpot.lightning.module import ClassificationModule, MultiStepClassificationModule, Schedule

        self.name = name
        self.loader = loader
        self.device = device
        self.cfg = cfg
        schedule = Schedule(epochs=1, milestones=())
        graph = {"auto": None, "on": True, "off": False}[cfg.cuda_graph]
        if cfg.steps_per_call > 1 or (graph is not False and device.type == "cuda"):
            self.module = MultiStepClassificationModule(net, schedule, cfg.channels_last, cfg.steps_per_call,
                                                        cuda_graph=graph)
        else:
            self.module = ClassificationModule(net, schedule, cfg.channels_last)
        if cfg.compile:
            self.module.compile_model(mode=cfg.compile_mode)

        def make_ticket(model: nn.Module):
            masks.apply(model)
            return masks

        self.callbacks = [PruningCallback(make_ticket), EpochSeed(cfg.seed),
                          _StepTimer(cfg.warmup, device, cfg.sync_check)]
        self.settings = trainer_settings(cfg)
        self.log_dir = log_dir
        self.fit_seconds: list[float] = []

    def run_round(self) -> float:
        from lightning.pytorch.loggers import CSVLogger

        from jackpot.train import make_trainer

        logger = CSVLogger(save_dir=str(self.log_dir), name="bench", version="")
        # a checkpoint every epoch, as a real run (saved after the step timer's epoch end)
        ckpt_dir = self.log_dir / ("ckpt-" + "".join(c if c.isalnum() else "_" for c in self.name))
        trainer = make_trainer(self.settings, 1, ckpt_dir, list(self.callbacks), [logger])
        began = time.perf_counter()
        trainer.fit(self.module, train_dataloaders=self.loader)
        self.fit_seconds.append(time.perf_counter() - began)
        return self.callbacks[-1].per_step


class StockLightning(Variant):
    """Lightning as a plain user writes it (the issue's 0.8 ms reference): `self.log` of the loss every step,
    automatic optimization, no logger, no checkpoint, no progress bar; same net, loader and SGD as (b)."""

    def __init__(self, name: str, net: nn.Module, loader: Any, device: torch.device, warmup: int) -> None:
        import lightning.pytorch as L

        class Plain(L.LightningModule):
            def __init__(self, net: nn.Module) -> None:
                super().__init__()
                self.net = net

            def training_step(self, batch, batch_idx: int) -> torch.Tensor:
                x, y = batch
                loss = F.cross_entropy(self.net(x), y)
                self.log("train/loss", loss)
                return loss

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return _sgd(list(self.parameters()), self.device, jackpot_style=True)

        self.name = name
        self.module = Plain(net)
        self.loader = loader
        self.device = device
        self.timer = _StepTimer(warmup, device)

    def run_round(self) -> float:
        import lightning.pytorch as L

        trainer = L.Trainer(accelerator="gpu" if self.device.type == "cuda" else "cpu", devices=1, max_epochs=1,
                            logger=False, enable_checkpointing=False, enable_model_summary=False,
                            enable_progress_bar=False, num_sanity_val_steps=0, callbacks=[self.timer])
        trainer.fit(self.module, train_dataloaders=self.loader)
        return self.timer.per_step


def interleave(variants: Sequence[Variant], rounds: int, warm_rounds: int = 1) -> dict[str, list[float]]:
    """Run every variant once per round, alternating the order; the first `warm_rounds` are not kept."""
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(warm_rounds + rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for variant in order:
            seconds = variant.run_round()
            if r >= warm_rounds:
                times[variant.name].append(seconds)
    return times


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of num[i] / den[i] (robust to a slow round hitting every variant)."""
    return statistics.median(n / d for n, d in zip(num, den, strict=True))


# ----------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------
def throughput(cfg: BenchConfig, log_dir: Path) -> dict[str, Any]:
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
    times = interleave(variants, cfg.rounds)

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
    _sync(device)
    began = time.perf_counter()
    for _ in range(repeats):
        torch._foreach_mul_(grads, loop.float_masks)
    _sync(device)
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
        _sync(device)
        began = time.perf_counter()
        with _autocast(device, precision):
            model(x)
        _sync(device)
        if i:  # the first batch warms up
            seconds.append(time.perf_counter() - began)
    model.train(was_training)
    return cfg.eval_batch / statistics.median(seconds)


def framework_overhead(cfg: BenchConfig, log_dir: Path) -> dict[str, Any]:
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
    times = interleave(variants, sub.overhead_rounds)
    rows = {}
    for v in variants:
        pairs = zip(times[v.name], times["bare"], strict=True)
        rows[v.name] = {"ms": 1000 * statistics.median(times[v.name]),
                        "over_bare_ms": statistics.median(1000 * (t - b) for t, b in pairs),
                        "ratio": median_ratio(times[v.name], times["bare"])}
    return {"model": sub.model, "batch": batch, "device": sub.overhead_device, "precision": precision,
            "steps": sub.steps, "rounds": sub.overhead_rounds, "steps_per_call": sub.steps_per_call,
            "rows": rows, "ms_per_step_rounds": {n: [1000 * t for t in ts] for n, ts in times.items()}}


def score_once(model_name: str, classes: int, per_class: int, method: str, device: str, seed: int,
               threads: int | None = None, offload: str = "auto", save: str | None = None) -> dict[str, Any]:
    """Time one SNIP/GraSP scoring on a fresh model and batch; peak memory (CUDA allocator or CPU RSS).
    ``save``: also write the scores there (to compare the offload modes' scores)."""
    from jackpot.pruning.offload import wants_offload
    from jackpot.pruning.scores import grasp_scores, snip_scores

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    net = build_net(model_name, classes, seed).to(dev)
    gen = torch.Generator().manual_seed(seed)
    n = classes * per_class
    x = torch.randn(n, 3, 32, 32, generator=gen).to(dev)
    y = torch.arange(n).remainder(classes).sort().values.to(dev)  # class-sorted, as the scoring batch
    if dev.type == "cuda":
        _sync(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    rss_before = _maxrss_bytes()
    began = time.perf_counter()
    if method == "snip":
        scores = snip_scores(net, (x, y), offload=offload)
    else:
        scores = grasp_scores(net, (x, y), generator=torch.Generator().manual_seed(seed), offload=offload)
    _sync(dev)
    out: dict[str, Any] = {"method": method, "n": n, "classes": classes, "seconds": time.perf_counter() - began,
                           "offload": offload, "on_disk": wants_offload(offload, dev)}
    if save:
        torch.save({k: v.cpu() for k, v in scores.items()}, save)
    if dev.type == "cuda":
        out["peak_delta_gib"] = (torch.cuda.max_memory_allocated(dev) - base) / GIB
        out["peak_gib"] = torch.cuda.max_memory_allocated(dev) / GIB
        out["memory"] = "cuda max_memory_allocated"
    else:
        out["peak_delta_gib"] = (_maxrss_bytes() - rss_before) / GIB
        out["peak_gib"] = _maxrss_bytes() / GIB
        out["memory"] = "peak RSS (VmHWM) of a fresh process"
    return out


def _maxrss_bytes() -> int:
    """Peak resident set size of this process since it started its program.

    Linux: VmHWM of /proc/self/status, the high-water mark of this address space. Not `ru_maxrss`: a child
    started by fork/vfork + exec inherits the parent's high-water mark there, so a scoring subprocess of a
    benchmark that has trained a network would report the trainer's peak. Elsewhere: ru_maxrss."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def score_in_subprocess(**kwargs: Any) -> dict[str, Any]:
    """CPU peak memory needs a process whose high-water mark is not the training's: run `score_once` fresh."""
    proc = subprocess.run(
        [sys.executable, "-m", "jackpot.bench", "_score", json.dumps(kwargs)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scoring subprocess failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scoring(cfg: BenchConfig) -> dict[str, Any]:
    """SNIP and GraSP time and peak memory per scoring set (10 images per class, as the official code), for
    each offload mode; where two modes ran, how far apart their scores and 98 % masks are."""
    runs, agreement = [], []
    with tempfile.TemporaryDirectory(prefix="jackpot-bench-scores-") as folder:
        for classes in cfg.score_classes:
            for method in ("snip", "grasp"):
                saved = {}
                for offload in cfg.score_offload:
                    saved[offload] = str(Path(folder) / f"{method}-{classes}-{offload}.pt")
                    kwargs = {"model_name": cfg.model, "classes": classes, "per_class": cfg.score_per_class,
                              "method": method, "device": cfg.device, "seed": cfg.seed, "threads": cfg.threads,
                              "offload": offload, "save": saved[offload]}
                    runs.append(score_once(**kwargs) if cfg.device == "cuda" else score_in_subprocess(**kwargs))
                if len(saved) > 1:
                    agreement.append({"method": method, "classes": classes,
                                      **scores_agreement(method, *(torch.load(f) for f in saved.values()))})
    return {"runs": runs, "agreement": agreement}


def scores_agreement(method: str, first: dict[str, torch.Tensor], second: dict[str, torch.Tensor],
                     ratio: float = 0.98) -> dict[str, float]:
    """Largest score difference relative to the largest score, and weights whose keep/prune decision at
    ``ratio`` differs (the budget's own global threshold on each)."""
    from jackpot.pruning import budget

    scale = max(v.abs().max().item() for v in first.values())
    rel = max((first[k] - second[k]).abs().max().item() for k in first) / scale
    to_masks = budget.grasp_global if method == "grasp" else budget.snip_global
    masks_a, masks_b = to_masks(first, ratio), to_masks(second, ratio)
    differ = sum(int((masks_a[k] != masks_b[k]).sum()) for k in masks_a)
    return {"max_rel_diff": rel, "ratio": ratio, "mask_differences": differ,
            "kept": sum(int(m.sum()) for m in masks_a.values())}


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------
def machine() -> str:
    """The device in words: GPU name or CPU model and core count."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu} x{os.cpu_count()} ({torch.get_num_threads()} torch threads); {gpu}"


def _hours(h: float) -> str:
    return f"{h:.2f} h" if h >= 1 else f"{60 * h:.1f} min"


def format_report(cfg: BenchConfig, res: dict[str, Any]) -> str:
    lines = [
        f"jackpot.bench  model={cfg.model} batch={cfg.batch} steps={cfg.steps} (warm-up {cfg.warmup}, "
        f"+1 warm round) rounds={cfg.rounds} device={cfg.device}",
        f"  machine: {res['machine']}",
        f"  torch {torch.__version__}, lightning {res['lightning']}; precision={cfg.resolved_precision()} "
        f"channels_last={cfg.channels_last} compile={cfg.compile}"
        + (f" ({cfg.compile_mode})" if cfg.compile and cfg.compile_mode else "")
        + f" steps_per_call={cfg.steps_per_call} (a) workers={cfg.resolved_workers()}",
    ]
    tp = res.get("throughput")
    if tp:
        v = tp["variants"]
        lines += [
            "throughput (median over rounds; ratios are medians of per-round ratios)",
            f"  (a) bare loop + torchvision DataLoader (fp32, contiguous) {v['a']['img_per_s']:9.1f} img/s "
            f"{v['a']['ms_per_step']:9.2f} ms/step  1.00x",
            f"  (b) bare loop + DeviceLoader (jackpot step settings)      {v['b']['img_per_s']:9.1f} img/s "
            f"{v['b']['ms_per_step']:9.2f} ms/step  {tp['ratio_b_over_a_speed']:.2f}x of (a)",
            f"  (c) jackpot Lightning + PruningCallback (90% masks)       {v['c']['img_per_s']:9.1f} img/s "
            f"{v['c']['ms_per_step']:9.2f} ms/step  {tp['ratio_c_over_a_speed']:.2f}x of (a)",
            f"  (c)'s last round: {tp['c_steps']['replayed']} steps replayed as a CUDA graph, "
            f"{tp['c_steps']['eager']} eager (--cuda-graph {cfg.cuda_graph})"
            + (f"; not recorded: {tp['c_steps']['not_recorded_because']}"
               if tp["c_steps"].get("not_recorded_because") else ""),
            *([f"  {'(c) with --cuda-graph off':57s} {v['c_eager']['img_per_s']:9.1f} "
               f"img/s {v['c_eager']['ms_per_step']:9.2f} ms/step  recording the step: "
               f"{tp['ratio_c_over_c_eager_speed']:.2f}x"] if "c_eager" in v else []),
            f"  jackpot step / bare step ((c)/(b) time): {tp['ratio_c_over_b_time']:.3f}  (target <= 1.05); "
            f"masks exact after (c): {tp['mask_exact_after_c']}",
            f"  mask enforcement (foreach multiply, (b) with vs without): "
            f"{tp['mask_overhead_pct']:+.2f} % of a step  (target <= 3 %); the multiply alone "
            f"{tp['mask_multiply_ms']:.3f} ms = {tp['mask_multiply_pct']:.2f} % of a (b) step",
            f"  eval (no grad, batch {cfg.eval_batch}, eager): {tp['eval_img_per_s']:.1f} img/s",
            *([f"  host syncs per timed step: (b) {tp['syncs_per_step']['b']:.3f}, "
               f"(c) {tp['syncs_per_step']['c']:.3f}  (torch sync debug mode)"] if "syncs_per_step" in tp else []),
            "  projected 160-epoch run (50k train + 10k eval per epoch): "
            + ", ".join(f"({k}) {_hours(h)}" for k, h in tp["projection_h"].items() if k != "b_mask"),
        ]
    sc = res.get("scoring")
    if sc:
        lines.append("scoring (10 per class, class-sorted batch; fresh model; peak: " + sc["runs"][0]["memory"] + ")")
        for run in sc["runs"]:
            label = "SNIP " if run["method"] == "snip" else "GraSP"
            lines.append(f"  {label} N={run['n']:5d} ({run['classes']:3d} classes) offload={run['offload']:4s} "
                         f"({'disk' if run['on_disk'] else 'memory'}): {run['seconds']:8.2f} s, "
                         f"peak +{run['peak_delta_gib']:.3f} GiB over the process before scoring "
                         f"(total {run['peak_gib']:.3f} GiB)")
        for agree in sc["agreement"]:
            lines.append(f"  {agree['method']} N={agree['classes'] * cfg.score_per_class}: offload modes "
                         f"{' vs '.join(cfg.score_offload)} differ by {agree['max_rel_diff']:.2e} of the largest "
                         f"score; {agree['mask_differences']} of {agree['kept']} kept weights differ at "
                         f"{agree['ratio']:.0%}")
        grasp = [r for r in sc["runs"] if r["method"] == "grasp" and r["offload"] == cfg.score_offload[0]]
        worst = max(grasp, key=lambda r: r["peak_gib"])
        lines.append(f"  GraSP peak memory (largest set, N={worst['n']}, offload={worst['offload']}): "
                     f"{worst['peak_gib']:.3f} GiB = {worst['peak_gib'] * GIB / 1e9:.2f} GB, whole process "
                     f"(target < 1.5 GB)")
    ov = res.get("overhead")
    if ov:
        lines.append(f"framework overhead ({ov['model']}, batch {ov['batch']}, {ov['device']}, {ov['steps']} steps "
                     f"x {ov['rounds']} rounds; target <= +0.2 ms/step)")
        stock = ov["rows"]["stock Lightning"]["over_bare_ms"]
        for name, row in ov["rows"].items():
            share = f", {row['over_bare_ms'] / stock:5.2f} of stock's" if stock > 0 and name != "bare" else ""
            lines.append(f"  {name:16s} {row['ms']:8.3f} ms/step  {row['over_bare_ms']:+7.3f} ms/step over bare "
                         f"({row['ratio']:.3f}x{share})")
    for section in cfg.skip:
        lines.append(f"(skipped: {section})")
    return "\n".join(lines)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep Lightning's per-fit banners and the worker-count warnings out of the report."""
    import lightning.pytorch  # noqa: F401  (its import sets its logger's level: import first, then quieten)

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*val_dataloader.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*dataloader_iter.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def run_bench(cfg: BenchConfig, print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Every section not in cfg.skip; returns the results and prints the report."""
    import lightning

    if cfg.device == "cuda":
        torch.backends.cudnn.benchmark = True  # the original code's setting; same for every variant
    if "cpu" in (cfg.device, cfg.overhead_device):
        # jackpot's module does this at fit start on CPU; doing it first keeps every round alike
        keep_freed_cpu_memory()
    torch.set_float32_matmul_precision("high")  # what jackpot.train.run sets
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    res: dict[str, Any] = {"config": asdict(cfg), "machine": machine(), "lightning": lightning.__version__,
                           "torch": torch.__version__}
    with quiet_lightning(), tempfile.TemporaryDirectory() as tmp:
        if "throughput" not in cfg.skip:
            res["throughput"] = throughput(cfg, Path(tmp))
        if "scoring" not in cfg.skip:
            res["scoring"] = scoring(cfg)
        if "overhead" not in cfg.skip:
            res["overhead"] = framework_overhead(cfg, Path(tmp))
    res["report"] = format_report(cfg, res)
    print_fn(res["report"])
    return res


# ----------------------------------------------------------------------------------------------------------
# Packing: N processes training (c) at once against one
# ----------------------------------------------------------------------------------------------------------
def pack_child(cfg: BenchConfig, window: float) -> dict[str, Any]:
    """Warm up (c) (and compile), report READY, wait for the parent's go, train epochs for `window` s."""
    device = torch.device(cfg.device)
    from jackpot.data.device_loader import DeviceLoader

    images, targets = synthetic_cifar(cfg.steps * cfg.batch, cfg.classes, cfg.seed)
    net = build_net(cfg.model, cfg.classes, cfg.seed)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    loader = DeviceLoader(images, targets, cfg.batch, MEAN, STD, train=True, seed=cfg.seed,
                          channels_last=cfg.channels_last, device=device)
    with quiet_lightning(), tempfile.TemporaryDirectory() as tmp:
        run = LightningRun("c", net, loader, device, cfg, random_masks(net, KEEP, cfg.seed + 1), Path(tmp))
        run.run_round()
        _sync(device)
        print("READY", flush=True)
        sys.stdin.readline()
        began = time.perf_counter()
        epochs = 0
        while time.perf_counter() - began < window:
            run.run_round()
            epochs += 1
        _sync(device)
        elapsed = time.perf_counter() - began
    return {"epochs": epochs, "images": epochs * cfg.steps * cfg.batch, "seconds": elapsed,
            "img_per_s": epochs * cfg.steps * cfg.batch / elapsed}


def pack(cfg: BenchConfig, procs: int, window: float) -> dict[str, Any]:
    """`procs` processes training (c) at once: all warm up, then start together; their images/s summed.

    Each child trains whole epochs of `cfg.steps` batches until `window` seconds have passed, so children
    overrun the window by up to one epoch; keep epochs short next to the window."""
    args = json.dumps({"cfg": asdict(cfg), "window": window})
    with tempfile.TemporaryDirectory() as tmp:
        logs = [open(Path(tmp) / f"child{i}.err", "w+") for i in range(procs)]  # noqa: SIM115
        children = [subprocess.Popen([sys.executable, "-m", "jackpot.bench", "_pack", args], text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log) for log in logs]

        def failure(i: int) -> RuntimeError:
            children[i].wait()
            logs[i].seek(0)
            return RuntimeError(f"packing child {i} failed:\n{logs[i].read()[-3000:]}")

        try:
            for i, child in enumerate(children):
                while (line := child.stdout.readline()) and line.strip() != "READY":
                    pass
                if not line:
                    raise failure(i)
            for child in children:
                child.stdin.write("go\n")
                child.stdin.flush()
            results = []
            for i, child in enumerate(children):
                out, _ = child.communicate()
                if child.returncode != 0:
                    raise failure(i)
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for child, log in zip(children, logs, strict=True):
                if child.poll() is None:
                    child.kill()
                log.close()
    return {"procs": procs, "window_s": window, "children": results,
            "total_img_per_s": sum(r["img_per_s"] for r in results),
            "max_seconds": max(r["seconds"] for r in results)}


# ----------------------------------------------------------------------------------------------------------
# CPU allocator: glibc's default against keep_freed_cpu_memory(), in fresh processes
# ----------------------------------------------------------------------------------------------------------
def malloc_child(model: str, batch: int, steps: int, tuned: bool, seed: int) -> dict[str, Any]:
    """Bare (b)-style steps on CPU; ms per step and minor page faults per step after 3 warm-up steps."""
    if tuned:
        keep_freed_cpu_memory()
    from jackpot.data.device_loader import DeviceLoader

    images, targets = synthetic_cifar(steps * batch, 10, seed)
    loader = DeviceLoader(images, targets, batch, MEAN, STD, train=True, seed=seed, channels_last=True)
    net = build_net(model, 10, seed).to(memory_format=torch.channels_last)
    optimizer = _sgd(list(net.parameters()), torch.device("cpu"), jackpot_style=True)
    samples = []
    for x, y in loader:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        began = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        samples.append((time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults))
    samples = samples[3:]
    return {"ms_per_step": 1000 * statistics.median(t for t, _ in samples),
            "faults_per_step": statistics.median(f for _, f in samples)}


def malloc_compare(model: str, batch: int, steps: int, pairs: int, seed: int) -> dict[str, Any]:
    """Alternate fresh processes with glibc defaults and with the tuned allocator; medians over processes."""
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "tuned": []}
    for i in range(2 * pairs):
        kind = ("default", "tuned")[(i + i // 2) % 2]  # default, tuned, tuned, default, ...
        args = json.dumps({"model": model, "batch": batch, "steps": steps, "tuned": kind == "tuned", "seed": seed})
        proc = subprocess.run([sys.executable, "-m", "jackpot.bench", "_malloc", args],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"allocator child failed:\n{proc.stderr[-3000:]}")
        runs[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out = {kind: {key: statistics.median(r[key] for r in rs) for key in ("ms_per_step", "faults_per_step")}
           for kind, rs in runs.items()}
    out["speedup"] = out["default"]["ms_per_step"] / out["tuned"]["ms_per_step"]
    out["runs"] = runs
    return out


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jackpot.bench", description=__doc__.split("\n\n")[0])
    d = BenchConfig()
    p.add_argument("--model", default=None, help=f"a model name or tinyconv (default {d.model})")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="batches per round and variant (incl. warm-up)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (after one warm-up round)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps at the start of each round")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--precision", default=None, help="auto | 32-true | bf16-mixed")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the network in (b) and (c)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--sync-check", action="store_true",
                   help="CUDA: count host synchronisations inside the timed steps of (b) and (c)")
    p.add_argument("--workers", type=int, default=None, help="(a)'s loader workers (default 0 CPU, 4 GPU)")
    p.add_argument("--classes", type=int, default=None)
    p.add_argument("--eval-batch", type=int, default=None)
    p.add_argument("--score-classes", default=None, help="comma list, e.g. 10,100 (10 per class each)")
    p.add_argument("--score-offload", default=None,
                   help="comma list of scoring offload modes to run and compare (default auto,none)")
    p.add_argument("--overhead-model", default=None, help="tinyconv (default) or linear (no compute)")
    p.add_argument("--overhead-steps", type=int, default=None)
    p.add_argument("--overhead-rounds", type=int, default=None)
    p.add_argument("--overhead-device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--progress-bar", action="store_true", help="Lightning's progress bar on in (c)")
    p.add_argument("--steps-per-call", type=int, default=None,
                   help="(c): optimizer steps per Lightning training step (MultiStepClassificationModule)")
    p.add_argument("--cuda-graph", choices=("auto", "on", "off"), default=None,
                   help="(c): record each step as a CUDA graph (auto: on CUDA, jackpot's default)")
    p.add_argument("--overhead-steps-per-call", type=int, default=None,
                   help="framework overhead: also measure jackpot with this K (default 1; 0 or (c)'s K: skip)")
    p.add_argument("--skip", default="", help="comma list of sections: throughput,scoring,overhead")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--tiny", action="store_true", help="a few seconds on CPU (the test's setting; 1 thread)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--procs", type=int, default=4, help="pack: processes to run at once")
    p.add_argument("--window", type=float, default=20.0, help="pack: seconds of timed training")
    return p


def config_from_args(ns: argparse.Namespace) -> BenchConfig:
    values: dict[str, Any] = {}
    for key in ("model", "batch", "steps", "rounds", "warmup", "device", "precision", "workers", "classes",
                "eval_batch", "overhead_model", "overhead_steps", "overhead_rounds", "overhead_device",
                "steps_per_call", "overhead_steps_per_call", "threads", "cuda_graph"):
        if getattr(ns, key) is not None:
            values[key] = getattr(ns, key)
    if ns.score_classes:
        values["score_classes"] = tuple(int(c) for c in ns.score_classes.split(","))
    if ns.score_offload:
        from jackpot.pruning.offload import OFFLOAD_MODES

        values["score_offload"] = tuple(ns.score_offload.split(","))
        bad = [m for m in values["score_offload"] if m not in OFFLOAD_MODES]
        if bad:
            raise SystemExit(f"--score-offload: unknown mode(s) {', '.join(bad)}; allowed: {', '.join(OFFLOAD_MODES)}")
    if ns.no_channels_last:
        values["channels_last"] = False
    if ns.compile or ns.compile_mode:
        values["compile"] = True
    if ns.compile_mode:
        values["compile_mode"] = ns.compile_mode
    if ns.sync_check:
        values["sync_check"] = True
    if ns.progress_bar:
        values["progress_bar"] = True
    if ns.skip:
        values["skip"] = tuple(s for s in ns.skip.split(",") if s)
    if ns.tiny:
        return tiny_config(**values)
    if values.get("device") == "cuda" and "warmup" not in values:
        values["warmup"] = 10  # lets (a)'s workers reach steady state (their prefetch is not counted)
    return BenchConfig(**values)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_score"]:  # internal: one scoring in a fresh process
        print(json.dumps(score_once(**json.loads(argv[1]))))
        return {}
    if argv[:1] == ["_malloc"]:  # internal: one allocator child
        print(json.dumps(malloc_child(**json.loads(argv[1]))))
        return {}
    if argv[:1] == ["malloc"]:
        ns = _parser().parse_args(argv[1:])
        model, batch = ns.model or "tinyconv", ns.batch or 64
        res = malloc_compare(model, batch, ns.steps or 60, ns.rounds or 3, 0)
        print(f"CPU allocator ({model}, batch {batch}, bare steps, fresh processes): glibc default "
              f"{res['default']['ms_per_step']:.2f} ms/step ({res['default']['faults_per_step']:.0f} page faults/step)"
              f", keep_freed_cpu_memory() {res['tuned']['ms_per_step']:.2f} ms/step "
              f"({res['tuned']['faults_per_step']:.0f} faults/step): {res['speedup']:.2f}x  machine: {machine()}")
        if ns.json:
            Path(ns.json).write_text(json.dumps(res, indent=1))
        return res
    if argv[:1] == ["_pack"]:  # internal: one packing child
        spec = json.loads(argv[1])
        raw = spec["cfg"]
        raw["score_classes"], raw["skip"] = tuple(raw["score_classes"]), tuple(raw["skip"])
        raw["score_offload"] = tuple(raw["score_offload"])
        print(json.dumps(pack_child(BenchConfig(**raw), spec["window"])))
        return {}
    packing = argv[:1] == ["pack"]
    ns = _parser().parse_args(argv[1:] if packing else argv)
    cfg = config_from_args(ns)
    if packing:
        cfg = BenchConfig(**{**asdict(cfg), "steps": ns.steps or 300})
        single = pack(cfg, 1, ns.window)
        many = pack(cfg, ns.procs, ns.window)
        res = {"config": asdict(cfg), "machine": machine(), "one": single, "many": many,
               "speedup": many["total_img_per_s"] / single["total_img_per_s"]}
        print(f"packing (c) {cfg.model} batch {cfg.batch} on {cfg.device}, {ns.window:.0f} s windows: "
              f"1 process {single['total_img_per_s']:.0f} img/s; {ns.procs} processes "
              f"{many['total_img_per_s']:.0f} img/s total "
              f"({', '.join(format(c['img_per_s'], '.0f') for c in many['children'])}); "
              f"{res['speedup']:.2f}x  (target >= 1.5x)  machine: {res['machine']}")
    else:
        res = run_bench(cfg)
    if ns.json:
        Path(ns.json).write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
