"""What every variant trains on: the same seeded networks, synthetic CIFAR-shaped data, random masks and
the paper's SGD, so that only the way of training differs between variants."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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


def apply_process_settings(device: str, overhead_device: str, threads: int | None) -> None:
    """What jackpot.train.run sets for a process, set once before anything is timed: every process that times
    a variant (the benchmark, each packing child) must run under the same settings, or it times another setup."""
    from jackpot.machine.malloc import keep_freed_cpu_memory

    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # the original code's setting; same for every variant
    if "cpu" in (device, overhead_device):
        keep_freed_cpu_memory()  # jackpot's module does this at fit start on CPU; first keeps every round alike
    torch.set_float32_matmul_precision("high")
    if threads:
        torch.set_num_threads(threads)


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


def sync_device(device: torch.device) -> None:
    """Wait for the GPU before reading a clock (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward's autocast for a Lightning precision name (none at full precision)."""
    if precision == "32-true":
        return contextlib.nullcontext()
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"the benchmark supports precision 32-true or bf16-mixed, got {precision!r}")


def paper_sgd(params: Sequence[torch.nn.Parameter], device: torch.device, jackpot_style: bool) -> torch.optim.SGD:
    """The paper's SGD; jackpot's implementation choice (fused on CUDA, foreach on CPU) or torch's default."""
    impl: dict[str, bool] = {}
    if jackpot_style:
        impl = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4, **impl)
