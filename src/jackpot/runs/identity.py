"""What makes two runs the same run: the config minus the keys that only decide where, how fast or how loudly.

A run's output dir is named by its cell, so a rerun must tell "the same run, resume or skip it" from "another
config, refuse it". Equal identities mean the same numbers; a knob documented as never changing the numbers
(`trainer.steps_per_call`, `dataset.eval_batch_size`, ...) is left out, so changing it keeps a finished sweep
finished. The identity is recomputed from each output dir's stored config, so a change to these rules never
orphans runs written before it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from jackpot.config import join_limited

RUN_CONFIG_FILE = "run_config.json"

# Where the run reads and writes, what it is called and how it reports: not what it computes.
NOT_THE_RUN = (
    "hydra", "paths", "logger", "tags", "name", "published", "table",
    "dataset.root", "dataset.download", "dataset.verify_md5",
)
# How fast or how often, never the numbers (bit for bit, or evaluation summed in another order).
SPEED_ONLY = (
    "dataset.num_workers", "dataset.eval_batch_size",
    "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.checkpoint_every_n_epochs",
    "trainer.checkpoint_interval_s",
    "trainer.cuda_graph", "trainer.checkpoint_writes", "trainer.steps_per_call",
    "pruner.options.offload",
)
EXCLUDED = frozenset(NOT_THE_RUN + SPEED_ONLY)


def _identity_of(node: DictConfig, prefix: str = "") -> dict[str, Any]:
    """The kept keys of `node`, interpolations resolved in the whole config's context."""
    kept: dict[str, Any] = {}
    for key in node:
        path = f"{prefix}{key}"
        if path in EXCLUDED:
            continue
        value = node[key]
        if isinstance(value, DictConfig):
            kept[str(key)] = _identity_of(value, f"{path}.")
        elif isinstance(value, ListConfig):
            kept[str(key)] = OmegaConf.to_container(value, resolve=True)
        else:
            kept[str(key)] = value
    return kept


def run_identity(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The config as a plain dict without the excluded keys (a composed config or a stored one)."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    return _identity_of(node)


def identity_hash(identity: Mapping[str, Any]) -> str:
    """A short stable hash of an identity (JSON with sorted keys)."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stored_identity(output_dir: Path) -> dict[str, Any] | None:
    """The identity of the run an output dir holds, from its stored config; None if it holds none."""
    marker = Path(output_dir) / RUN_CONFIG_FILE
    if not marker.exists():
        return None
    return run_identity(json.loads(marker.read_text())["config"])


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


_ABSENT = object()


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """`key: stored -> current` for each dotted key that differs, sorted; `(unset)` where a side lacks it."""
    old, new = _flatten(stored), _flatten(current)

    def shown(value: Any) -> str:
        return "(unset)" if value is _ABSENT else json.dumps(value, default=str)

    return [f"{key}: {shown(old.get(key, _ABSENT))} -> {shown(new.get(key, _ABSENT))}"
            for key in sorted(old.keys() | new.keys()) if old.get(key, _ABSENT) != new.get(key, _ABSENT)]


def describe_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """The differences in one line, at most 5 of them."""
    return join_limited(differences(stored, current))
