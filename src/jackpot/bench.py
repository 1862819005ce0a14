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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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
    "mask enforcement",
    "eval",
    "projected 160-epoch run",
    "SNIP",
    "GraSP",
    "GraSP peak memory",
    "framework overhead",
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
    workers: int | None = None
    classes: int = 10
    eval_batch: int = 500
    eval_batches: int = 3
    score_per_class: int = 10
    score_classes: tuple[int, ...] = (10, 100)
    grasp_chunk: int | None = None
    overhead_model: str = "tinyconv"
    overhead_steps: int = 200
    overhead_rounds: int = 5
    overhead_device: str = "cpu"
    progress_bar: bool = False
    skip: tuple[str, ...] = ()
    seed: int = 0
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
        "grasp_chunk": 8, "overhead_steps": 8, "overhead_rounds": 2, "tiny": True,
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


def build_net(name: str, num_classes: int, seed: int) -> nn.Module:
    """The same init for every variant: seeded, on the CPU (moved by the caller)."""
    from jackpot.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyConv(num_classes) if name == "tinyconv" else build_model(name, num_classes)


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
class Variant:
    """One way of training; `run_round()` -> seconds for (steps - warmup) optimizer steps."""

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
    ) -> None:
        self.name = name
        self.net = net.to(device).train()
        self.loader = loader
        self.device = device
        self.precision = precision
        self.warmup = warmup
        self.forward = torch.compile(self.net, dynamic=False) if compile_net else self.net
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
        for step, (x, y) in enumerate(self.loader):
            if step == self.warmup:
                _sync(self.device)
                start = time.perf_counter()
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with _autocast(self.device, self.precision):
                loss = F.cross_entropy(self.forward(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.weights:
                torch._foreach_mul_([w.grad for w in self.weights], self.float_masks)
            self.optimizer.step()
        _sync(self.device)
        if start is None:
            raise ValueError("steps must exceed warmup")
        return time.perf_counter() - start


class _StepTimer:
    """A Lightning callback timing the steps after warm-up: sync, clock at warm-up end and at epoch end."""

    def __new__(cls, *args: Any, **kwargs: Any):  # built lazily so importing bench does not import Lightning
        import lightning.pytorch as L

        class StepTimer(L.Callback):
            def __init__(self, warmup: int, device: torch.device) -> None:
                self.warmup, self.device = warmup, device
                self.start: float | None = None
                self.elapsed = float("nan")

            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self.start = None

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
                if batch_idx == self.warmup - 1:
                    _sync(self.device)
                    self.start = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                _sync(self.device)
                if self.start is None:
                    raise ValueError("steps must exceed warmup")
                self.elapsed = time.perf_counter() - self.start

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
                   "checkpoint_every_n_epochs": 1}
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
        from jackpot.lightning.module import ClassificationModule, Schedule

        self.name = name
        self.loader = loader
        self.device = device
        self.cfg = cfg
        self.module = ClassificationModule(net, Schedule(epochs=1, milestones=()), cfg.channels_last)
        if cfg.compile:
            self.module.compile_model()

        def make_ticket(model: nn.Module):
            masks.apply(model)
            return masks

        self.callbacks = [PruningCallback(make_ticket), EpochSeed(cfg.seed), _StepTimer(cfg.warmup, device)]
        self.settings = trainer_settings(cfg)
        self.log_dir = log_dir
        self.fit_seconds: list[float] = []

    def run_round(self) -> float:
        from lightning.pytorch.loggers import CSVLogger

        from jackpot.train import make_trainer

        logger = CSVLogger(save_dir=str(self.log_dir), name="bench", version="")
        trainer = make_trainer(self.settings, 1, None, list(self.callbacks), [logger])
        began = time.perf_counter()
        trainer.fit(self.module, train_dataloaders=self.loader)
        self.fit_seconds.append(time.perf_counter() - began)
        return self.callbacks[-1].elapsed


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
                 compile_net=cfg.compile)
    bm = BareLoop("b_mask", net(), device_loader(), device, precision, cfg.warmup, jackpot_sgd=True,
                  masks=masks, compile_net=cfg.compile)
    c = LightningRun("c", net(), device_loader(), device, cfg, masks, log_dir)
    times = interleave([a, b, bm, c], cfg.rounds)

    timed = cfg.steps - cfg.warmup
    out: dict[str, Any] = {"steps_timed": timed, "rounds": cfg.rounds, "workers": workers,
                           "precision": precision, "variants": {}}
    for key, seconds in times.items():
        med = statistics.median(seconds)
        out["variants"][key] = {"seconds": seconds, "img_per_s": timed * cfg.batch / med,
                                "ms_per_step": 1000 * med / timed}
    out["ratio_b_over_a_speed"] = median_ratio(times["a"], times["b"])
    out["ratio_c_over_a_speed"] = median_ratio(times["a"], times["c"])
    out["ratio_c_over_b_time"] = median_ratio(times["c"], times["b"])
    out["mask_overhead_pct"] = 100 * (median_ratio(times["b_mask"], times["b"]) - 1)
    out["fit_seconds_c"] = c.fit_seconds
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
    """Per-step cost of jackpot's Lightning path over the bare loop on a tiny net (batch 64 unless --tiny)."""
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
    bare = BareLoop("bare", net(), loader(), device, precision, sub.warmup, jackpot_sgd=True, masks=masks)
    light = LightningRun("jackpot", net(), loader(), device, sub, masks, log_dir)
    times = interleave([bare, light], sub.overhead_rounds)
    timed = sub.steps - sub.warmup
    bare_ms = 1000 * statistics.median(times["bare"]) / timed
    light_ms = 1000 * statistics.median(times["jackpot"]) / timed
    pairs = zip(times["jackpot"], times["bare"], strict=True)
    diff = statistics.median(1000 * (j - b) / timed for j, b in pairs)
    return {"model": sub.model, "batch": batch, "device": sub.overhead_device, "steps_timed": timed,
            "bare_ms": bare_ms, "jackpot_ms": light_ms, "overhead_ms": diff,
            "ratio": median_ratio(times["jackpot"], times["bare"])}


def score_once(model_name: str, classes: int, per_class: int, method: str, chunk: int | None,
               device: str, seed: int) -> dict[str, Any]:
    """Time one SNIP/GraSP scoring on a fresh model and batch; peak memory (CUDA allocator or CPU RSS)."""
    from jackpot.pruning.scores import grasp_scores, snip_scores

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
        snip_scores(net, (x, y))
    elif chunk is None:
        grasp_scores(net, (x, y), generator=torch.Generator().manual_seed(seed))
    else:
        grasp_scores(net, (x, y), generator=torch.Generator().manual_seed(seed), chunk_size=chunk)
    _sync(dev)
    out: dict[str, Any] = {"method": method, "n": n, "classes": classes, "chunk": chunk,
                           "seconds": time.perf_counter() - began}
    if dev.type == "cuda":
        out["peak_delta_gib"] = (torch.cuda.max_memory_allocated(dev) - base) / GIB
        out["peak_gib"] = torch.cuda.max_memory_allocated(dev) / GIB
        out["memory"] = "cuda max_memory_allocated"
    else:
        out["peak_delta_gib"] = (_maxrss_bytes() - rss_before) / GIB
        out["peak_gib"] = _maxrss_bytes() / GIB
        out["memory"] = "ru_maxrss of a fresh process"
    return out


def _maxrss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
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


def _grasp_supports_chunks() -> bool:
    import inspect

    from jackpot.pruning.scores import grasp_scores

    return "chunk_size" in inspect.signature(grasp_scores).parameters


def scoring(cfg: BenchConfig) -> dict[str, Any]:
    """SNIP and GraSP time per scoring set (10 per class); GraSP peak one-pass and chunked."""
    runs = []
    chunked = cfg.grasp_chunk is not None and _grasp_supports_chunks()
    for classes in cfg.score_classes:
        jobs = [("snip", None), ("grasp", None)] + ([("grasp", cfg.grasp_chunk)] if chunked else [])
        for method, chunk in jobs:
            kwargs = {"model_name": cfg.model, "classes": classes, "per_class": cfg.score_per_class,
                      "method": method, "chunk": chunk, "device": cfg.device, "seed": cfg.seed}
            runs.append(score_once(**kwargs) if cfg.device == "cuda" else score_in_subprocess(**kwargs))
    return {"runs": runs, "chunking_available": _grasp_supports_chunks()}


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
        f"channels_last={cfg.channels_last} compile={cfg.compile} (a) workers={cfg.resolved_workers()}",
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
            f"  jackpot step / bare step ((c)/(b) time): {tp['ratio_c_over_b_time']:.3f}  (target <= 1.05); "
            f"masks exact after (c): {tp['mask_exact_after_c']}",
            f"  mask enforcement (foreach multiply, (b) with vs without): "
            f"{tp['mask_overhead_pct']:+.2f} % of a step  (target <= 3 %)",
            f"  eval (no grad, batch {cfg.eval_batch}, eager): {tp['eval_img_per_s']:.1f} img/s",
            "  projected 160-epoch run (50k train + 10k eval per epoch): "
            + ", ".join(f"({k}) {_hours(h)}" for k, h in tp["projection_h"].items() if k != "b_mask"),
        ]
    sc = res.get("scoring")
    if sc:
        lines.append("scoring (10 per class, class-sorted batch; fresh model)")
        for run in sc["runs"]:
            label = "SNIP " if run["method"] == "snip" else "GraSP"
            chunk = "one pass" if run["chunk"] is None else f"chunk {run['chunk']}"
            lines.append(
                f"  {label} N={run['n']:5d} ({run['classes']} classes, {chunk}): {run['seconds']:8.2f} s")
        for run in sc["runs"]:
            if run["method"] == "grasp":
                chunk = "one pass" if run["chunk"] is None else f"chunk {run['chunk']}"
                lines.append(
                    f"  GraSP peak memory N={run['n']:5d} ({chunk}): +{run['peak_delta_gib']:.3f} GiB over "
                    f"the process before scoring, peak {run['peak_gib']:.3f} GiB  [{run['memory']}]")
        if not sc["chunking_available"]:
            lines.append("  (grasp_scores has no chunk_size here: one-pass peak only)")
    ov = res.get("overhead")
    if ov:
        lines.append(
            f"framework overhead ({ov['model']}, batch {ov['batch']}, {ov['device']}, "
            f"{ov['steps_timed']} steps): "
            f"bare {ov['bare_ms']:.3f} ms/step, jackpot {ov['jackpot_ms']:.3f} ms/step, "
            f"{ov['overhead_ms']:+.3f} ms/step ({ov['ratio']:.3f}x)  (target <= +0.2 ms)")
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
    torch.set_float32_matmul_precision("high")  # what jackpot.train.run sets
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
def pack_child(cfg: BenchConfig, start_at: float, window: float) -> dict[str, Any]:
    """Warm up (c), wait for the common start, train whole epochs until the window closes; images/s."""
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
        run.run_round()  # warm-up (and compile)
        time.sleep(max(0.0, start_at - time.time()))
        _sync(device)
        began = time.perf_counter()
        epochs = 0
        while time.perf_counter() - began < window:
            run.run_round()
            epochs += 1
        _sync(device)
        elapsed = time.perf_counter() - began
    return {"epochs": epochs, "images": epochs * cfg.steps * cfg.batch, "seconds": elapsed,
            "img_per_s": epochs * cfg.steps * cfg.batch / elapsed}


def pack(cfg: BenchConfig, procs: int, window: float, lead: float) -> dict[str, Any]:
    """Start `procs` children that begin training at the same wall-clock moment; sum their images/s."""
    start_at = time.time() + lead
    args = json.dumps({"cfg": asdict(cfg), "start_at": start_at, "window": window})
    children = [subprocess.Popen([sys.executable, "-m", "jackpot.bench", "_pack", args],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(procs)]
    results = []
    for child in children:
        out, err = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"packing child failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    late = [r for r in results if r["seconds"] > 1.5 * window]
    return {"procs": procs, "window_s": window, "children": results,
            "total_img_per_s": sum(r["img_per_s"] for r in results), "late_children": len(late)}


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
    p.add_argument("--workers", type=int, default=None, help="(a)'s loader workers (default 0 CPU, 4 GPU)")
    p.add_argument("--classes", type=int, default=None)
    p.add_argument("--eval-batch", type=int, default=None)
    p.add_argument("--score-classes", default=None, help="comma list, e.g. 10,100 (10 per class each)")
    p.add_argument("--grasp-chunk", type=int, default=None, help="also score GraSP with this chunk_size")
    p.add_argument("--overhead-steps", type=int, default=None)
    p.add_argument("--overhead-rounds", type=int, default=None)
    p.add_argument("--overhead-device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--progress-bar", action="store_true", help="Lightning's progress bar on in (c)")
    p.add_argument("--skip", default="", help="comma list of sections: throughput,scoring,overhead")
    p.add_argument("--tiny", action="store_true", help="a few seconds on CPU (the test's setting)")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--procs", type=int, default=4, help="pack: processes to run at once")
    p.add_argument("--window", type=float, default=20.0, help="pack: seconds of timed training")
    p.add_argument("--lead", type=float, default=60.0, help="pack: seconds allowed for start-up and warm-up")
    return p


def config_from_args(ns: argparse.Namespace) -> BenchConfig:
    values: dict[str, Any] = {}
    for key in ("model", "batch", "steps", "rounds", "warmup", "device", "precision", "workers", "classes",
                "eval_batch", "grasp_chunk", "overhead_steps", "overhead_rounds", "overhead_device"):
        if getattr(ns, key) is not None:
            values[key] = getattr(ns, key)
    if ns.score_classes:
        values["score_classes"] = tuple(int(c) for c in ns.score_classes.split(","))
    if ns.no_channels_last:
        values["channels_last"] = False
    if ns.compile:
        values["compile"] = True
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
    if argv[:1] == ["_pack"]:  # internal: one packing child
        spec = json.loads(argv[1])
        raw = spec["cfg"]
        raw["score_classes"], raw["skip"] = tuple(raw["score_classes"]), tuple(raw["skip"])
        print(json.dumps(pack_child(BenchConfig(**raw), spec["start_at"], spec["window"])))
        return {}
    packing = argv[:1] == ["pack"]
    ns = _parser().parse_args(argv[1:] if packing else argv)
    cfg = config_from_args(ns)
    if packing:
        cfg = BenchConfig(**{**asdict(cfg), "steps": ns.steps or 782})  # default: one 50k-image epoch
        single = pack(cfg, 1, ns.window, ns.lead)
        many = pack(cfg, ns.procs, ns.window, ns.lead)
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
