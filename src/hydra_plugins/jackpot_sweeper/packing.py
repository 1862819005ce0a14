"""Which jobs of a sweep run together as one pack (jackpot.runs.pack), and how many to a pack.

`hydra.sweeper.pack`: an integer (1: every job its own process), or `auto`: 4 where each job trains on a GPU of
its own with its data on the device at batch <= 128 (4 runs side by side on an H200: 1.89-2.02x the throughput
of one, docs/benchmarks.md), else 1; also 1 where the launcher already puts several processes on a GPU (a Ray
share below one GPU).

Members share the model, the dataset, its batch size and every trainer setting, so they are alike in memory and
speed and each member's process-wide settings (cuDNN autotuning, determinism) are what it would have alone.
Packs are formed from consecutive jobs of the launch order, which keeps the order's meaning: shared work
(trunks, IMP rounds) is still trained before it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from jackpot.config import ConfigError

Job = TypeVar("Job")
AUTO_PACK = 4  # runs per GPU under `auto`
AUTO_MAX_BATCH = 128  # above this a run keeps a GPU busy enough on its own


def check_pack(value: Any) -> int | str:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ConfigError(f"hydra.sweeper.pack={value!r} is not allowed; use an integer >= 1 (runs per process; 1: "
                      f"each its own) or auto ({AUTO_PACK} on a GPU at batch <= {AUTO_MAX_BATCH}, else 1)")


def pack_key(cfg: DictConfig) -> Hashable:
    """What the members of a pack share."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    return (cfg.model.name, cfg.dataset.name, int(cfg.dataset.batch_size), repr(sorted(trainer.items())))


def jobs_get_a_gpu(cfg: DictConfig, launcher: DictConfig) -> bool:
    """Whether each job trains on a GPU: trainer.accelerator=gpu, or auto where the launcher asks for GPUs
    (Ray's num_gpus, SLURM's gpus_per_node / gpus_per_task / gres) or, for jobs run on this machine by a launcher
    that asks for none (the basic one), where this machine has CUDA."""
    accelerator = cfg.trainer.accelerator
    if accelerator != "auto":
        return accelerator == "gpu"
    requests = [OmegaConf.select(launcher, key, default=None)
                for key in ("ray.remote.num_gpus", "gpus_per_node", "gpus_per_task", "gres")]
    if any(key in launcher for key in ("ray", "gpus_per_node", "gpus_per_task", "gres")):
        return any(bool(request) for request in requests)
    import torch

    return torch.cuda.is_available()


def pack_size(setting: int | str, cfg: DictConfig, launcher: DictConfig) -> int:
    """Runs per pack for a sweep whose jobs look like `cfg`."""
    if setting != "auto":
        return int(setting)
    share = OmegaConf.select(launcher, "ray.remote.num_gpus", default=None)
    if isinstance(share, float) and 0 < share < 1:  # ray_local_fractional: processes share each GPU already
        return 1
    on_device = cfg.dataset.loader in ("auto", "device")
    if jobs_get_a_gpu(cfg, launcher) and on_device and int(cfg.dataset.batch_size) <= AUTO_MAX_BATCH:
        return AUTO_PACK
    return 1


def form_packs(jobs: Sequence[Job], key: Callable[[Job], Hashable], size: int) -> list[list[Job]]:
    """Consecutive jobs with the same key, up to `size` per pack; order kept (a pack of one is a plain job)."""
    packs: list[list[Job]] = []
    for job in jobs:
        if packs and len(packs[-1]) < size and key(packs[-1][0]) == key(job):
            packs[-1].append(job)
        else:
            packs.append([job])
    return packs
