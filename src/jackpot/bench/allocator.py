"""CPU allocator: glibc's default against keep_freed_cpu_memory(), in fresh processes."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from jackpot.bench.config import MEAN, STD
from jackpot.bench.workload import build_net, paper_sgd, synthetic_cifar
from jackpot.machine.malloc import keep_freed_cpu_memory


def malloc_child(model: str, batch: int, steps: int, tuned: bool, seed: int) -> dict[str, Any]:
    """Bare (b)-style steps on CPU; ms per step and minor page faults per step after 3 warm-up steps."""
    if tuned:
        keep_freed_cpu_memory()
    from jackpot.data.device_loader import DeviceLoader

    images, targets = synthetic_cifar(steps * batch, 10, seed)
    loader = DeviceLoader(images, targets, batch, MEAN, STD, train=True, seed=seed, channels_last=True)
    net = build_net(model, 10, seed).to(memory_format=torch.channels_last)
    optimizer = paper_sgd(list(net.parameters()), torch.device("cpu"), jackpot_style=True)
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
