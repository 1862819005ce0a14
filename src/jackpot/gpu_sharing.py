"""Whether runs packed several to a GPU will pay: on an H200, 4 ResNet32 runs as separate processes trained at
0.64x the throughput of one without CUDA MPS, and at 1.99x with it (docs/benchmarks.md). Without MPS the
GPU time-slices between processes; with it their kernels run side by side."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_MPS_PIPE_DIRECTORY = "/tmp/nvidia-mps"


def mps_running(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether an MPS control daemon is running for this user: its control pipe exists in the pipe directory
    (CUDA_MPS_PIPE_DIRECTORY, /tmp/nvidia-mps by default), which is where CUDA's clients look for it."""
    return (Path(environ.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_MPS_PIPE_DIRECTORY) / "control").exists()


def packed_jobs_per_gpu(gpus_per_job: Any, ray_address: str | None) -> float | None:
    """How many jobs a local Ray launcher puts on one GPU (1 / hydra.launcher.ray.remote.num_gpus), or None when
    it packs none: not Ray (no share), whole GPUs, CPU jobs, or a cluster (whose nodes this one cannot see)."""
    if ray_address not in (None, "local") or isinstance(gpus_per_job, bool):
        return None
    if not isinstance(gpus_per_job, int | float) or not 0 < gpus_per_job < 1:
        return None
    return 1 / gpus_per_job


def packing_warning(gpus_per_job: Any, ray_address: str | None,
                    environ: Mapping[str, str] = os.environ) -> str | None:
    """The warning for a sweep that packs jobs on a GPU without MPS running, else None."""
    per_gpu = packed_jobs_per_gpu(gpus_per_job, ray_address)
    if per_gpu is None or mps_running(environ):
        return None
    pipe = environ.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_MPS_PIPE_DIRECTORY
    return (f"jackpot: hydra.launcher.ray.remote.num_gpus={gpus_per_job:g} packs {per_gpu:g} jobs per GPU, but no "
            f"CUDA MPS daemon is running (no control pipe in {pipe}). Without MPS the GPU time-slices between the "
            f"processes: 4 packed ResNet32 runs trained at 0.64x the speed of one (H200, docs/benchmarks.md), "
            f"1.99x with MPS. Start it first with `nvidia-cuda-mps-control -d` (stop it with "
            f"`echo quit | nvidia-cuda-mps-control`), or use hydra/launcher=ray_local.")
