"""What decides each piece of work that runs share through the trunk cache: the dense trunk and the rounds of
iterative pruning. Read by a run (to find or store them) and by the sweeper (to launch the jobs that train them
first), so this module imports neither Lightning nor the data loaders."""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from jackpot.config import pruner_options
from jackpot.pruning.registry import get_method
from jackpot.runs.trunk import TrunkCache, trunk_hash


def pretrain_epochs(cfg: DictConfig) -> int:
    epochs = cfg.pruner.get("pretrain_epochs")
    return int(cfg.schedule.epochs if epochs is None else epochs)


def trunk_spec(cfg: DictConfig) -> dict[str, Any]:
    """Everything that decides the dense trunk (its cache key)."""
    d = cfg.dataset
    return {
        "model": cfg.model.name, "dataset": d.name, "train_subset": d.train_subset, "batch_size": d.batch_size,
        "augment": d.augment, "hflip": d.hflip, "data_check": cfg.sanity_check.data,
        "schedule": OmegaConf.to_container(cfg.schedule, resolve=True),
        "pretrain_epochs": pretrain_epochs(cfg), "seed": int(cfg.seed),
        "limit_train_batches": cfg.trainer.limit_train_batches, "precision": cfg.trainer.precision,
        # pixel checks: one scramble per run seed, or one for all (earlier versions did the latter and wrote no
        # such key, so their cached trunks are not reused)
        **({"pixel_scramble": cfg.sanity_check.pixel_scramble} if cfg.sanity_check.get("pixel_scramble") else {}),
    }


def imp_round_spec(cfg: DictConfig, index: int) -> dict[str, Any]:
    """Everything that decides round `index` of iterative pruning (its cache key): the trunk, and the chain of
    prunings up to it (method, rewinding, options, rounds and the overall ratio, which set the per-round ratio);
    not the final sanity check, which applies to the run's own ticket only."""
    pruner = cfg.pruner
    return {**trunk_spec(cfg), "imp": {
        "round": index, "rounds": int(pruner.rounds), "ratio": float(cfg.ratio), "method": pruner.method,
        "ticket_weights": pruner.get("ticket_weights"),
        "options": pruner_options(cfg),
    }}


TRUNK_STAGE = "dense trunk"  # how a run's log lines and progress file name the training of its shared work


def imp_round_stage(index: int, rounds: int) -> str:
    return f"IMP round {index} of {rounds}"


def shared_work_index(stage: str) -> int | None:
    """Which of a run's `shared_work` keys a progress-file stage trains (0: the trunk, i: IMP round i, as
    `imp_round_stage` writes it), else None (its ticket, or waiting)."""
    if stage == TRUNK_STAGE:
        return 0
    imp_round = re.fullmatch(r"IMP round (\d+) of \d+", stage)
    return int(imp_round[1]) if imp_round else None


def shared_work(cfg: DictConfig) -> list[str]:
    """The cache keys of the shared work this run needs, in the order it needs them (trunk, then rounds 1..R-1);
    empty for masks made at init."""
    if get_method(cfg.pruner.method).when != "trained":
        return []
    rounds = int(cfg.pruner.get("rounds", 1))
    return [trunk_hash(trunk_spec(cfg))] + [trunk_hash(imp_round_spec(cfg, i)) for i in range(1, rounds)]


def missing_work(cfg: DictConfig) -> list[str]:
    """`shared_work` not yet in the run's trunk cache."""
    cache = TrunkCache(cfg.paths.cache_dir)
    return [key for key in shared_work(cfg) if not cache.holds(key)]
