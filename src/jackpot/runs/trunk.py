"""The dense trunk: trained once, stored under a hash of everything that decides it, shared by every run.

Two jobs that need the same trunk at the same time take a lock (`flock`, `jackpot.runs.file_lock`): the first
trains it, the second waits and then reads it. The trunk file is written to a temp file and renamed, so a
reader never sees half of it. It holds the init weights too (lottery tickets rewind to them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from jackpot.runs.atomic_io import remove_stale_temp_files, torch_load_safe, torch_save_atomic
from jackpot.runs.file_lock import exclusive

TRUNK_FORMAT = 1
TRUNK_FILE = "trunk.pt"
StateDict = Mapping[str, torch.Tensor]


def trunk_hash(spec: Mapping[str, Any]) -> str:
    """A stable short hash of the trunk's spec (JSON with sorted keys)."""
    text = json.dumps({"format": TRUNK_FORMAT, **spec}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Trunk:
    hash: str
    path: Path
    reused: bool
    init_state: dict[str, torch.Tensor]
    trained_state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor] | None = None  # set for the intermediate rounds of iterative pruning


class TrunkCache:
    """A folder of trunks: `<cache_dir>/<hash>/{trunk.pt, spec.json, work/}`."""

    def __init__(self, cache_dir: str | Path):
        self.cache_dir = Path(cache_dir)

    def folder(self, key: str) -> Path:
        return self.cache_dir / key

    def holds(self, key: str) -> bool:
        """The trunk (or IMP round) under `key` is stored: reading it waits for no one."""
        return (self.folder(key) / TRUNK_FILE).exists()

    def obtain(
        self,
        spec: Mapping[str, Any],
        train: Callable[[Path], tuple[StateDict, StateDict] | tuple[StateDict, StateDict, StateDict]],
        on_wait: Callable[[Path], None] | None = None,
    ) -> Trunk:
        """Return the trunk for `spec`, training it with `train(work_dir) -> (init, trained[, masks])` if absent;
        `on_wait(folder)` is called first when another process holds it (training it), before waiting."""
        key = trunk_hash(spec)
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / TRUNK_FILE
        with exclusive(folder / "trunk.lock", "this trunk's training",  # waits as long as it takes: always held
                       on_wait=None if on_wait is None else lambda: on_wait(folder)):
            if path.exists():
                stored = torch_load_safe(path)
                return Trunk(key, path, True, stored["init"], stored["trained"], stored.get("masks"))
            remove_stale_temp_files(folder, folder / "work" / "checkpoints")  # a killed trainer's partial writes
            (folder / "spec.json").write_text(json.dumps(spec, indent=2, sort_keys=True, default=str))
            states = train(folder / "work")
            payload = {
                name: {k: v.detach().cpu().clone() for k, v in state.items()}
                for name, state in zip(("init", "trained", "masks"), states, strict=False)
            }
            torch_save_atomic(payload, path)
            return Trunk(key, path, False, payload["init"], payload["trained"], payload.get("masks"))
