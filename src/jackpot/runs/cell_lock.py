"""One process per cell: a second job for a cell that another process is running skips it instead of
training into the same output dir (both would write its checkpoint and results, and each would resume from
the other's epochs).

That happens when a sweep is launched again while the first launch still runs (to fill the gaps of a
preempted SLURM array, or on a second machine); with the lock, the two launches share the cells out.

The lock is `flock` on `run.lock` in the output dir (`jackpot.runs.file_lock`): a killed or preempted job never
leaves a cell locked; where the file system has no flock, runs go unguarded, as before this lock existed,
with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jackpot.runs.file_lock import exclusive, fcntl, try_flock

LOCK_FILE = "run.lock"
# A job retries this long before calling a cell busy, so a reader's probe (`is_running`) never makes it skip.
ACQUIRE_PATIENCE_S = 2.0
# A requeued SLURM job may find its cell still locked by its own previous run when that run's node died: an NFS
# server keeps a dead client's locks until its lease ends (90 s by default), so a requeued job waits past that.
REQUEUED_PATIENCE_S = 150.0


def acquire_patience_s() -> float:
    """How long a job waits for its cell's lock: longer when SLURM requeued it (SLURM_RESTART_COUNT > 0)."""
    restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
    return REQUEUED_PATIENCE_S if restarts.isdigit() and int(restarts) > 0 else ACQUIRE_PATIENCE_S


class CellBusy(RuntimeError):
    """Another process holds this cell's output dir."""


@contextmanager
def cell_lock(output_dir: Path, patience_s: float | None = None) -> Iterator[None]:
    """Hold `output_dir`'s lock for the block; raise CellBusy if another process holds it past `patience_s`
    (default: `acquire_patience_s()`)."""
    patience_s = acquire_patience_s() if patience_s is None else patience_s
    with exclusive(Path(output_dir) / LOCK_FILE, "this cell's run", patience_s=patience_s) as held:
        if not held:
            raise CellBusy(f"another process is running this cell in {output_dir}; skipped here")
        yield


def is_running(output_dir: Path) -> bool:
    """Whether a live process holds `output_dir`'s lock (a shared probe held for microseconds)."""
    path = Path(output_dir) / LOCK_FILE
    if fcntl is None or not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return try_flock(fd, fcntl.LOCK_SH) is False
    finally:
        os.close(fd)
