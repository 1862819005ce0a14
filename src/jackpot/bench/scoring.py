"""SNIP and GraSP scoring time and peak memory, each offload mode, and how far apart their scores are.
CPU peaks are taken in fresh processes, so the training sections' high-water mark is not counted."""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from jackpot.bench.config import GIB, BenchConfig
from jackpot.bench.workload import build_net, sync_device


def score_once(model_name: str, classes: int, per_class: int, method: str, device: str, seed: int,
               threads: int | None = None, offload: str = "auto", save: str | None = None,
               dtype: str = "float32") -> dict[str, Any]:
    """Time one SNIP/GraSP scoring on a fresh model and batch; peak memory (CUDA allocator or CPU RSS).
    ``save``: also write the scores there (to compare the offload modes' scores). ``dtype`` float64 makes the
    modes' float32 rounding noise vanish, so their scores must then agree to ~1e-15 (the test's check)."""
    from jackpot.pruning.low_memory.memory_fit import forget, last_choice
    from jackpot.pruning.scores import grasp_scores, snip_scores

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    net = build_net(model_name, classes, seed).to(dev, getattr(torch, dtype))
    gen = torch.Generator().manual_seed(seed)
    n = classes * per_class
    x = torch.randn(n, 3, 32, 32, generator=gen).to(dev, getattr(torch, dtype))
    y = torch.arange(n).remainder(classes).sort().values.to(dev)  # class-sorted, as the scoring batch
    if dev.type == "cuda":
        sync_device(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    rss_before = _maxrss_bytes()
    forget()
    began = time.perf_counter()
    if method == "snip":
        scores = snip_scores(net, (x, y), offload=offload)
    else:
        scores = grasp_scores(net, (x, y), generator=torch.Generator().manual_seed(seed), offload=offload)
    sync_device(dev)
    out: dict[str, Any] = {"method": method, "n": n, "classes": classes, "seconds": time.perf_counter() - began,
                           "offload": offload, "on_disk": last_choice().on_disk,  # auto: what it chose
                           "offload_choice": last_choice().describe()}
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


def scoring(cfg: BenchConfig, announce: Callable[[str], None] = lambda what: None,
            on_run: Callable[[dict[str, Any]], None] = lambda run: None) -> dict[str, Any]:
    """SNIP and GraSP time and peak memory per scoring set (10 images per class, as the official code), for
    each offload mode; where two modes ran, how far apart their scores and 98 % masks are. ``announce`` gets
    what is scored next and ``on_run`` each run as soon as it is measured: a long scoring shows progress."""
    runs, agreement = [], []
    with tempfile.TemporaryDirectory(prefix="jackpot-bench-scores-") as folder:
        for classes in cfg.score_classes:
            for method in ("snip", "grasp"):
                saved = {}
                for offload in cfg.score_offload:
                    saved[offload] = str(Path(folder) / f"{method}-{classes}-{offload}.pt")
                    kwargs = {"model_name": cfg.model, "classes": classes, "per_class": cfg.score_per_class,
                              "method": method, "device": cfg.device, "seed": cfg.seed, "threads": cfg.threads,
                              "offload": offload, "save": saved[offload], "dtype": cfg.score_dtype}
                    announce(f"{method} N={classes * cfg.score_per_class} offload={offload}")
                    runs.append(score_once(**kwargs) if cfg.device == "cuda" else score_in_subprocess(**kwargs))
                    on_run(runs[-1])
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
