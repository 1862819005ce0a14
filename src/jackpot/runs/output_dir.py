"""Whether an output dir holds this run (finished: skip it), nothing yet, or another config's work (refuse)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jackpot.config import ConfigError
from jackpot.runs.identity import describe_differences, stored_identity
from jackpot.runs.results import RESULTS_FILE, is_complete


def check_output_dir(output_dir: Path, identity: Mapping[str, Any]) -> None:
    """Refuse to resume another config's checkpoint or overwrite its results in `output_dir`, naming what differs."""
    output_dir = Path(output_dir)
    has_work = (output_dir / "checkpoints" / "last.ckpt").exists() or (output_dir / RESULTS_FILE).exists()
    stored = stored_identity(output_dir) if has_work else None
    if stored is not None and stored != identity:
        raise ConfigError(
            f"output dir {output_dir} holds a run of another config ({describe_differences(stored, identity)}); "
            f"give this variant its own name=... or remove that folder"
        )


def holds_finished_run(output_dir: Path, identity: Mapping[str, Any]) -> bool:
    """Whether `output_dir` holds this run, complete (skip it); ConfigError if it holds another config's work."""
    check_output_dir(output_dir, identity)
    return is_complete(output_dir, identity)


# What Hydra and the cell lock put in a run's folder before the run writes anything of its own.
BEFORE_ANY_WORK = frozenset({".hydra", "train.log", "run.lock"})


def discard_unstarted(output_dir: Path, log_dir: Path) -> bool:
    """Remove a run folder that holds only what Hydra wrote before the config was refused (`.hydra/`, the job
    log, the cell lock), and the folders above it left empty, up to `log_dir`: jackpot-tables and later sweeps
    would otherwise see a run folder with no run. Returns whether it removed the folder."""
    output_dir, log_dir = Path(output_dir).resolve(), Path(log_dir).resolve()
    if not output_dir.is_dir() or any(p.name not in BEFORE_ANY_WORK for p in output_dir.iterdir()):
        return False
    shutil.rmtree(output_dir, ignore_errors=True)
    for folder in output_dir.parents:
        if folder == log_dir or log_dir not in folder.parents or any(folder.iterdir()):
            break
        folder.rmdir()
    return True
