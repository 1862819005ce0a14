"""Wall-clock marks of this process's way to its first run: where the seconds before a run go.

A GPU run's process spent 16-22 s before its run started (issue #19), against 4-5 s on the 2-core VM, and
`python -X importtime` sees only imports. `train.py` marks when its `main` is entered (Python's start, Hydra's
import and the config's composition are before it), when the config is validated (torch is imported there,
and CUDA's driver asked for its devices) and when Lightning and jackpot's training code are imported;
results.json's `runtime.process` holds the marks, and `scripts/end_to_end.py` splits a process's start with them
and its own spawn time. The first mark of each name stays: a sweep's later jobs in the same process (Hydra's
basic launcher, a pack) report how this process started, not their own.
"""

from __future__ import annotations

import time

_marks: dict[str, float] = {}


def mark(name: str) -> None:
    """Remember when `name` was first reached in this process (wall clock)."""
    _marks.setdefault(name, time.time())


def marks() -> dict[str, float]:
    """Every mark so far, `<name>_at` -> wall-clock seconds (3 decimals), in the order they were reached."""
    return {f"{name}_at": round(at, 3) for name, at in _marks.items()}
