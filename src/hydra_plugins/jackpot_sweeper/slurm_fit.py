"""Refuse a SLURM sweep whose jobs no node of the partition can ever hold, before anything is submitted.

SLURM accepts such an array and leaves it pending forever (reason `PartitionConfig` or `Resources`), and
submitit's launcher waits on it without a word. `sinfo` knows every node's CPUs, memory and GPUs, so the sweeper
asks it once and names the request and the largest node instead. Lives with the sweeper (not in jackpot): it reads
`hydra.launcher` (submitit's keys), runs only where sweeps are launched, and no job needs it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from jackpot.config import ConfigError

SLURM_LAUNCHER = "SlurmLauncher"  # the end of hydra_plugins.hydra_submitit_launcher...SlurmLauncher
SINFO = ["sinfo", "--noheader", "--Node", "--format=%N|%P|%c|%m|%G"]
_GPU_GRES = re.compile(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)")  # gpu:4, gpu:a100:4(S:0-1); not shard:8 or mps:100


class Node(NamedTuple):  # tuples compare by value: Hydra's plugin scan re-executes this module (new classes)
    name: str
    cpus: int
    memory_mb: int
    gpus: int

    def describe(self) -> str:
        return f"{self.name} with {self.cpus} CPUs, {self.memory_mb} MB, {self.gpus} GPUs"


class Request(NamedTuple):
    """What each job of the array asks of one node."""

    cpus: int
    memory_mb: int | None  # None: no --mem, the partition's default applies
    gpus: int

    def fits(self, node: Node) -> bool:
        return (self.cpus <= node.cpus and self.gpus <= node.gpus
                and (self.memory_mb is None or self.memory_mb <= node.memory_mb))

    def describe(self) -> str:
        memory = "" if self.memory_mb is None else f", {self.memory_mb} MB"
        return f"{self.cpus} CPUs{memory}, {self.gpus} GPUs"


def gres_gpus(gres: str | None) -> int:
    """GPUs in a `--gres` or sinfo %G string: `gpu:2` -> 2, `gpu:a100:4(S:0-1),shard:8` -> 4, `(null)` -> 0."""
    return sum(int(count) for count in _GPU_GRES.findall(gres or ""))


def _count(value: Any, default: int = 0) -> int:
    return default if value is None else int(value)


def request_of(launcher: Mapping[str, Any]) -> Request:
    """The per-node request of a resolved `hydra.launcher` of submitit's SLURM launcher (sbatch's own meaning:
    `mem_gb` per node, `cpus_per_task` x `tasks_per_node` CPUs, GPUs from gpus_per_node, gpus_per_task or gres)."""
    tasks = _count(launcher.get("tasks_per_node"), 1)
    extra = launcher.get("additional_parameters") or {}
    gpus = max(_count(launcher.get("gpus_per_node")), _count(launcher.get("gpus_per_task")) * tasks,
               gres_gpus(launcher.get("gres") or extra.get("gres")))
    mem_gb = launcher.get("mem_gb")
    memory_mb = None if mem_gb is None else int(float(mem_gb) * 1024)
    return Request(cpus=_count(launcher.get("cpus_per_task"), 1) * tasks, memory_mb=memory_mb, gpus=gpus)


def parse_sinfo(text: str) -> tuple[dict[str, list[Node]], str | None]:
    """Nodes by partition and the default partition (sinfo marks it with `*`) from `SINFO` output."""
    partitions: dict[str, list[Node]] = {}
    default = None
    for line in text.splitlines():
        if not line.strip():
            continue
        name, partition, cpus, memory, gres = line.strip().split("|", 4)
        if partition.endswith("*"):
            partition = default = partition[:-1]
        partitions.setdefault(partition, []).append(
            Node(name, int(cpus.rstrip("+")), int(memory.rstrip("+")), gres_gpus(gres)))
    return partitions, default


def run_sinfo() -> str | None:
    """`SINFO`'s output; None when sinfo is not installed here (then sbatch is not either, and says so)."""
    try:
        proc = subprocess.run(SINFO, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess(SINFO, 1, "", "no answer in 60 s")
    if proc.returncode != 0:
        raise ConfigError(f"hydra/launcher=slurm: `{' '.join(SINFO)}` failed ({proc.stderr.strip()}); is the SLURM "
                          "controller reachable from here?")
    return proc.stdout


def check_fits(launcher: Mapping[str, Any], sinfo: Callable[[], str | None] = run_sinfo) -> None:
    """Raise ConfigError when no node of the launcher's partition(s) can hold one job of the array; nothing for
    other launchers, or where sinfo is missing."""
    if not str(launcher.get("_target_", "")).endswith(SLURM_LAUNCHER):
        return
    text = sinfo()
    if text is None:
        return
    partitions, default = parse_sinfo(text)
    wanted = launcher.get("partition")
    known = ", ".join(sorted(partitions)) or "none"
    if wanted is None:
        if default is None:
            raise ConfigError(f"hydra.launcher.partition=null but this cluster has no default partition; choose one "
                              f"of: {known}")
        names = [default]
    else:
        names = [name.strip() for name in str(wanted).split(",")]
        if unknown := [name for name in names if name not in partitions]:
            raise ConfigError(f"hydra.launcher.partition={wanted}: {', '.join(unknown)} is not a partition of this "
                              f"cluster; choose one of: {known}")
    nodes = [node for name in names for node in partitions[name]]
    request = request_of(launcher)
    fitting = [node for node in nodes if request.fits(node)]
    needed = _count(launcher.get("nodes"), 1)
    if len(fitting) >= needed:
        return
    largest = max(nodes, key=lambda node: (node.gpus, node.cpus, node.memory_mb))
    where = f"partition {', '.join(names)}"
    short = (f"on each of {needed} nodes, but {len(fitting)} nodes of {where} can hold that" if needed > 1
             else f"which no node of {where} can hold")
    raise ConfigError(
        f"hydra/launcher=slurm asks each job for {request.describe()}, {short}, so the array would pend forever; "
        f"the largest node is {largest.describe()}: lower "
        "hydra.launcher.cpus_per_task, mem_gb or gpus_per_node (GPUs follow trainer=cpu|gpu), or choose another "
        "hydra.launcher.partition"
    )
