"""Runs that started and have no results yet: running now, or interrupted (killed, preempted, out of time).

A table shows such a cell as missing; this says which of them are on their way and which need the sweep run
again (it resumes them from their last checkpoint).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jackpot.runs.cell_lock import is_running
from jackpot.runs.claim import SKIPPED
from jackpot.runs.identity import RUN_CONFIG_FILE
from jackpot.runs.results import RESULTS_FILE, read_progress

MAX_LISTED = 10


@dataclass(frozen=True)
class Unfinished:
    """One started run without a results file."""

    path: Path
    name: str  # the run's `name` (its sweep's table)
    running: bool
    last_written_s: float  # seconds since its newest checkpoint (or its start, before the first one)
    progress: str = ""  # e.g. "ticket epoch 37/160", from its progress file


def find_unfinished(roots: Sequence[Path], names: Sequence[str] | None = None,
                    now: float | None = None) -> list[Unfinished]:
    """Every output dir under `roots` with a stored config and no results file (of runs named in `names`, if
    given), sorted by path."""
    now = time.time() if now is None else now
    found = []
    for marker in sorted({m for root in roots for m in Path(root).rglob(RUN_CONFIG_FILE)}):
        run_dir = marker.parent
        if (run_dir / RESULTS_FILE).exists():
            continue
        try:
            name = str(json.loads(marker.read_text())["config"]["name"])
        except (OSError, ValueError, KeyError, TypeError):
            name = "unnamed"
        if names is not None and name not in names:
            continue
        checkpoint = run_dir / "checkpoints" / "last.ckpt"
        written = (checkpoint if checkpoint.exists() else marker).stat().st_mtime
        found.append(Unfinished(run_dir, name, is_running(run_dir), max(0.0, now - written),
                                read_progress(run_dir)))
    return found


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_unfinished(unfinished: Sequence[Unfinished]) -> list[str]:
    """A heading line and one line per run (at most MAX_LISTED, interrupted ones first); empty when none."""
    if not unfinished:
        return []
    left = [u for u in unfinished if not u.running and u.progress.startswith(SKIPPED)]
    interrupted = [u for u in unfinished if not u.running and u not in left]
    running = len(unfinished) - len(interrupted) - len(left)
    heading = f"unfinished runs: {running} running, {len(interrupted)} interrupted"
    if left:
        heading += f", {len(left)} left to another sweep"
    if interrupted:
        heading += " (run the same sweep command again: it resumes them from their last checkpoint)"
    ordered = interrupted + [u for u in unfinished if u.running] + left
    lines = [heading]
    for u in ordered[:MAX_LISTED]:
        state = "running" if u.running else ("left" if u in left else "interrupted")
        done = f"{u.progress}, " if u.progress else ""
        lines.append(f"  {state:<11} {u.path}  ({done}last written {_age(u.last_written_s)} ago)")
    if len(ordered) > MAX_LISTED:
        lines.append(f"  ... and {len(ordered) - MAX_LISTED} more")
    return lines
