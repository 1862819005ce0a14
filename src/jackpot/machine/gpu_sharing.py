"""Whether runs packed several to a GPU will pay. On an H200, 4 ResNet32 runs as separate processes trained at
1.99x the throughput of one under CUDA MPS, and slower than one run alone without it (docs/benchmarks.md):
without MPS the GPU time-slices between the processes; with it their kernels run side by side."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_MPS_PIPE_DIRECTORY = "/tmp/nvidia-mps"


def mps_pipe_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """Where CUDA's clients look for the MPS control daemon: CUDA_MPS_PIPE_DIRECTORY, else /tmp/nvidia-mps."""
    return Path(environ.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_MPS_PIPE_DIRECTORY)


def mps_running(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether an MPS control daemon has set up its control pipe where this process's CUDA clients will look.
    (A daemon killed without `quit` can leave the pipe behind; this cannot tell that apart.)"""
    return (mps_pipe_directory(environ) / "control").exists()


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
    return (f"jackpot: hydra.launcher.ray.remote.num_gpus={gpus_per_job:g} packs {per_gpu:g} jobs per GPU, but no "
            f"CUDA MPS daemon is running (no control pipe in {mps_pipe_directory(environ)}). Without MPS the GPU "
            f"time-slices between the processes and packed runs train slower in all than one alone; under MPS 4 "
            f"ResNet32 runs trained at 1.99x one (H200, docs/benchmarks.md). Start it first with "
            f"`nvidia-cuda-mps-control -d` (stop it with `echo quit | nvidia-cuda-mps-control`), or use "
            f"hydra/launcher=ray_local.")
