"""Whether an output dir holds this run (finished: skip it), nothing yet, or another config's work (refuse)."""

from __future__ import annotations

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
