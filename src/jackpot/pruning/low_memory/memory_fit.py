"""Whether scoring fits in memory: ``offload=auto`` takes the in-memory path (the official computation order,
so the official masks bit for bit) whenever its estimated peak fits the memory available, and the lean disk
path only when it does not.

The estimate: the scoring batch's activations (every leaf module's output for one image, times the images)
times a per-method factor, plus a few copies of the weights. The factors are bounds on what was measured on
this project's CPU runs (docs/benchmarks.md, 1,000 CIFAR-100 images, peak above the process before scoring):
SNIP 0.72x (ResNet32-2x: 5.0 GiB for 6.96 GiB of leaf outputs) and 0.82x (VGG19: 2.9 for 3.5); GraSP 0.90x
(ResNet32-2x: 6.3 for 6.96) and 1.20x (VGG19: 4.2 for 3.5). A margin on top absorbs the allocator.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("jackpot.scoring")

PEAK_FACTOR = {"snip": 1.0, "grasp": 1.3}  # x the batch's leaf-module outputs; above every measured ratio
WEIGHT_COPIES = 4  # weights, their gradients, the scoring copy and (GraSP) g / Hg
MARGIN = 1.25  # the estimate times this, plus HEADROOM, must fit in what is available
HEADROOM = 512 << 20


@dataclass(frozen=True)
class OffloadChoice:
    """What ``offload`` resolved to for one scoring, and why (recorded in results.json's runtime)."""

    mode: str
    on_disk: bool
    estimate_bytes: int | None = None
    available_bytes: int | None = None

    def describe(self) -> str:
        where = "temp files and lean layers" if self.on_disk else "memory"
        if self.estimate_bytes is None:
            return f"offload={self.mode}: scoring in {where}"
        avail = "unknown" if self.available_bytes is None else f"{self.available_bytes / 2**30:.1f} GiB"
        return (f"offload={self.mode}: scoring in {where} (estimated peak {self.estimate_bytes / 2**30:.2f} GiB, "
                f"available {avail}, margin x{MARGIN} + {HEADROOM >> 20} MiB)")

    def as_dict(self) -> dict:
        return {**asdict(self), "path": "disk" if self.on_disk else "memory"}


# Per thread: the runs of a pack (jackpot.runs.pack) score side by side in one process, each in its own thread.
_latest = threading.local()


def last_choice() -> OffloadChoice | None:
    """The choice of this thread's latest scoring (None if nothing was scored)."""
    return getattr(_latest, "choice", None)


def record(choice: OffloadChoice) -> OffloadChoice:
    _latest.choice = choice
    log.info("jackpot: %s", choice.describe())
    return choice


def leaf_output_bytes(net: nn.Module, image_shape: tuple[int, ...]) -> int:
    """Bytes of every leaf module's output for one image (a no-grad eval forward: no BatchNorm statistic moves)."""
    total = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in net.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = net.training
    param = next(net.parameters())
    try:
        net.eval()
        with torch.no_grad():
            net(torch.zeros((1, *image_shape), dtype=param.dtype, device=param.device))
    finally:
        net.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


def scoring_peak_bytes(net: nn.Module, images: int, method: str, image_shape: tuple[int, ...]) -> int:
    weights = sum(p.numel() * p.element_size() for p in net.parameters())
    factor = PEAK_FACTOR.get(method, max(PEAK_FACTOR.values()))
    return int(factor * images * leaf_output_bytes(net, image_shape)) + WEIGHT_COPIES * weights


def available_bytes() -> int | None:
    """Memory this process may still take: /proc/meminfo's MemAvailable, capped by a cgroup v2 or v1 limit."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < (1 << 60):
                found.append(int(limit) - int(Path(usage_file).read_text().strip()))
        except (OSError, ValueError):
            continue
    env = os.environ.get("JACKPOT_AVAILABLE_MEMORY_GB")  # a scheduler's allocation the kernel does not show
    if env:
        found.append(int(float(env) * 2**30))
    return min(found) if found else None


def fits_in_memory(estimate: int, available: int | None) -> bool:
    return available is None or estimate * MARGIN + HEADROOM <= available


def forget() -> None:
    """Start a run with no recorded choice (jobs of a sweep may share one process, and a thread)."""
    _latest.choice = None
