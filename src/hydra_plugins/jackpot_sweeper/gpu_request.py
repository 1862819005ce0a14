"""How many GPUs a launcher asks for per job, from the trainer (conf/hydra/launcher/*.yaml interpolate these).

A fixed GPU request breaks CPU sweeps: SLURM refuses `--gpus-per-node` on a cluster without GPUs (`Invalid
generic resource`), and Ray never schedules a task that needs a GPU no node has. A CPU job holding a GPU also
keeps it from a job that needs it. So the request follows `trainer.accelerator`, as the job itself will.
"""

from __future__ import annotations

from typing import Any

CLUSTER_RESOLVER = "jackpot.gpus"
LOCAL_RESOLVER = "jackpot.local_gpus"


def cluster_gpus(accelerator: Any, amount: Any, none: Any = 0) -> Any:
    """`${jackpot.gpus:${trainer.accelerator},<amount>[,<none>]}`: `amount` GPUs per job unless the trainer is
    on the CPU, then `none` (0 for Ray, null for SLURM, which then sends no GPU flag at all).

    The jobs run on the cluster's nodes, not on the launching one (often a login node without CUDA), so `auto`
    asks for a GPU: on the node that gets one, jackpot.config.uses_gpu then decides to use it."""
    return none if accelerator == "cpu" else amount


def local_gpus(accelerator: Any, amount: Any, none: Any = 0) -> Any:
    """`${jackpot.local_gpus:...}`, for launchers whose jobs run on this machine (ray_local): `auto` asks for a
    GPU only if this machine has CUDA, which is what jackpot.config.uses_gpu decides in each job."""
    if accelerator == "auto":
        import torch

        return amount if torch.cuda.is_available() else none
    return none if accelerator == "cpu" else amount


def register() -> None:
    """Make both resolvers known to OmegaConf (Hydra imports this package while it scans its plugins, before it
    composes or instantiates any launcher)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver(CLUSTER_RESOLVER, cluster_gpus, replace=True)
    OmegaConf.register_new_resolver(LOCAL_RESOLVER, local_gpus, replace=True)
