"""Loggers for one run: none, CSV, or wandb (online, offline or disabled through WANDB_MODE).

Every job is its own wandb run: grouped by the sweep's name, named by cell and seed, the table axes logged as
flat config keys, and the run id stored in the output dir so a resumed job continues the same run.
"""

from __future__ import annotations

import secrets
import string
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf

from jackpot.runs.atomic_io import write_bytes_atomic


def cell_keys(cfg: DictConfig) -> dict[str, Any]:
    """The table axes of a run, flat (what a dashboard groups by)."""
    return {
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "pruner": cfg.pruner.name,
        "sanity_check": cfg.sanity_check.name,
        "ratio": float(cfg.ratio),
        "seed": int(cfg.seed),
    }


def cell_name(cfg: DictConfig) -> str:
    c = cell_keys(cfg)
    return f"{c['model']}-{c['dataset']}-{c['pruner']}-{c['sanity_check']}-r{c['ratio']}-s{c['seed']}"


def _wandb_id(output_dir: Path) -> str:
    """The run's wandb id, created once and kept in the output dir so a resume appends to the same run."""
    path = output_dir / "wandb_id.txt"
    if path.exists() and (stored := path.read_text().strip()):
        return stored
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    write_bytes_atomic(path, run_id.encode())  # a kill mid-write must not leave an empty id (a new run each resume)
    return run_id


def build_loggers(cfg: DictConfig, output_dir: Path, config_hash: str) -> list[Logger]:
    kind = cfg.logger.kind
    if kind == "none":
        return []
    if kind == "csv":
        return [CSVLogger(save_dir=str(output_dir), name="csv", version="")]
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    full = OmegaConf.to_container(cfg, resolve=True)
    for table_only in ("published", "table"):  # a sweep file's numbers and layout for jackpot-tables
        full.pop(table_only, None)
    config = {**cell_keys(cfg), "config_hash": config_hash, "cell": cell_name(cfg), "full": full}
    tags = [str(t)[:64] for t in cfg.get("tags", []) if str(t)]
    # The run is made here, as its own ("create_new"): Lightning's logger would attach to wandb's global run,
    # which is another run's when the runs of a pack (jackpot.runs.pack) share the process.
    run = wandb.init(
        project=cfg.logger.project, entity=cfg.logger.entity, group=str(cfg.logger.group),
        job_type=cfg.logger.job_type, name=cell_name(cfg), dir=str(output_dir), id=_wandb_id(output_dir),
        resume="allow", config=config, tags=tags, reinit="create_new",
    )
    return [WandbLogger(experiment=run, save_dir=str(output_dir))]


def finish_loggers(loggers: list[Logger], summary: dict[str, Any], failed: bool) -> None:
    """Write the summary and close every wandb run, also after a crash (Lightning would reuse a live run)."""
    for logger in loggers:
        logger.finalize("failed" if failed else "success")
        if type(logger).__name__ == "WandbLogger":  # this run's own wandb run, not wandb's global one
            logger.experiment.summary.update(summary)
            logger.experiment.finish(exit_code=1 if failed else 0)
