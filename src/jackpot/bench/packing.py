"""Packing: N processes training (c) at once against one, each warmed up before they start together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from jackpot.bench.config import KEEP, MEAN, STD, BenchConfig
from jackpot.bench.variants import LightningRun, quiet_lightning
from jackpot.bench.workload import apply_process_settings, build_net, random_masks, sync_device, synthetic_cifar


def pack_child(cfg: BenchConfig, window: float, threads: int) -> dict[str, Any]:
    """Warm up (c) (and compile), report READY, wait for the parent's go, train epochs for `window` s.
    Runs under the benchmark's process settings with `threads` CPU threads (its share of the cores)."""
    apply_process_settings(cfg.device, cfg.device, threads)
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
        sync_device(device)
        print("READY", flush=True)
        sys.stdin.readline()
        began = time.perf_counter()
        epochs = 0
        while time.perf_counter() - began < window:
            run.run_round()
            epochs += 1
        sync_device(device)
        elapsed = time.perf_counter() - began
    return {"epochs": epochs, "images": epochs * cfg.steps * cfg.batch, "seconds": elapsed,
            "img_per_s": epochs * cfg.steps * cfg.batch / elapsed, "threads": torch.get_num_threads()}


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which a cgroup or taskset narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pack(cfg: BenchConfig, procs: int, window: float) -> dict[str, Any]:
    """`procs` processes training (c) at once: all warm up, then start together; their images/s summed.

    Each child trains whole epochs of `cfg.steps` batches until `window` seconds have passed, so children
    overrun the window by up to one epoch; keep epochs short next to the window. Each child gets an equal share
    of the CPU cores for its torch threads (`cfg.threads` if set), as a launcher shares them (Ray's num_cpus
    sets OMP_NUM_THREADS per job): children that each start one thread per core only fight over the cores."""
    threads = cfg.threads or max(1, usable_cores() // procs)
    args = json.dumps({"cfg": asdict(cfg), "window": window, "threads": threads})
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
    return {"procs": procs, "window_s": window, "threads_per_child": threads, "children": results,
            "total_img_per_s": sum(r["img_per_s"] for r in results),
            "max_seconds": max(r["seconds"] for r in results)}
