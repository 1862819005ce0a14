"""What a sweep's up-front check learns about each job, and the launch order that follows from it.

Kept out of the Hydra plugin module: Hydra imports plugins in a way that dataclasses there cannot resolve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from jackpot.runs.cell_lock import is_running
from jackpot.runs.identity import RUN_CONFIG_FILE
from jackpot.runs.results import read_progress

Job = TypeVar("Job")


@dataclass
class JobPlan:
    """What the up-front check learned about one job."""

    output_dir: Path | None  # None: it depends on values only the launcher sets (e.g. `hydra.job.num`)
    complete: bool = False
    complete_in: str | None = None  # the sweep (`name`) that holds this very run, complete (`reuse_from`)
    missing_work: list[str] = field(default_factory=list)  # shared work (trunk, IMP rounds) not cached yet
    config: Any = field(default=None, repr=False)  # the composed config, which a pack stores for its job


def shared_work_first(jobs: Sequence[Job], missing: Callable[[Job], list[str]]) -> tuple[list[Job], ...]:
    """(trainers, free, readers), each in the given order: the jobs whose first missing piece of shared work no
    earlier job claims (each trains its missing pieces), those missing nothing, and the rest (they read what the
    trainers train). Launched in that order."""
    trainers: list[Job] = []
    free: list[Job] = []
    readers: list[Job] = []
    claimed: set[str] = set()
    for job in jobs:
        needs = missing(job)
        if not needs:
            free.append(job)
        elif needs[0] in claimed:
            readers.append(job)
        else:
            trainers.append(job)
            claimed.update(needs)
    return trainers, free, readers


def job_state(output_dir: Path | None) -> str:
    """new, resumes (from its last checkpoint, at the stage its progress file names) or running elsewhere."""
    if output_dir is None or not (output_dir / RUN_CONFIG_FILE).exists():
        return "new"
    if is_running(output_dir):
        return "running elsewhere (skips)"
    progress = read_progress(output_dir)
    return f"resumes ({progress})" if progress else "resumes"
