"""The tables and figures of `jackpot-tables --wandb`, logged to the sweep's wandb group as a run of their own
(job type "tables"), next to the sweep's job runs: one dashboard holds the runs and what they add up to."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

MODES = ("online", "offline")
FROM_ENV = "env"  # `--wandb` without a value: WANDB_MODE decides


def resolve_mode(flag: str) -> str:
    """The wandb mode: WANDB_MODE=disabled wins (it turns wandb off everywhere), then an explicit
    `--wandb online|offline`, then WANDB_MODE, then online."""
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env == "disabled":
        return "disabled"
    if flag != FROM_ENV:
        return flag
    return env if env in (*MODES, "disabled") else "online"


def _table(frame: pd.DataFrame):
    """A wandb.Table of a summary or verdict frame (strings and plain floats only: what wandb stores)."""
    import wandb

    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: "" if v is None else str(v))
        elif isinstance(frame[column].dtype, pd.Int64Dtype):  # a count with gaps: wandb takes NaN, not pd.NA
            frame[column] = frame[column].astype("float64")
    return wandb.Table(dataframe=frame.reset_index(drop=True))


def log_tables(group: str, frames: Mapping[str, pd.DataFrame], figures: Sequence[Path], mode: str,
               project: str, entity: str | None, save_dir: Path | None) -> str | None:
    """One wandb run in `group` holding every frame as a table and every figure as an image; returns where the
    run is (its URL online, its folder offline), None when wandb is disabled."""
    import wandb

    if mode == "disabled":
        return None
    folder = os.environ.get("WANDB_DIR") or (str(save_dir) if save_dir is not None else None)
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, entity=entity, group=group, job_type="tables", name=f"{group}-tables",
                     mode=mode, dir=folder, config={"tables": sorted(frames)})
    try:
        payload = {name: _table(frame) for name, frame in frames.items()}
        payload.update({f"figures/{path.stem}": wandb.Image(str(path)) for path in figures})
        run.log(payload)
        where = run.url if mode == "online" else str(Path(run.dir).parent)  # the folder `wandb sync` takes
    finally:
        run.finish()
    return where
