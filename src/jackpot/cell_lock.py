"""One process per cell: a second job for a cell that another process is running skips it instead of
training into the same output dir (both would write its checkpoint and results, and each would resume from
the other's epochs).

That happens when a sweep is launched again while the first launch still runs (to fill the gaps of a
preempted SLURM array, or on a second machine); with the lock, the two launches share the cells out. The lock
is an OS file lock (`filelock`, flock), so it goes with the process that holds it: a killed or preempted job
never leaves a cell locked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = "run.lock"


class CellBusy(RuntimeError):
    """Another process holds this cell's output dir."""


@contextmanager
def cell_lock(output_dir: Path) -> Iterator[None]:
    """Hold `output_dir`'s lock for the block; raise CellBusy at once if another process holds it."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(output_dir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise CellBusy(f"another process is running this cell in {output_dir}; skipped here") from None
    try:
        yield
    finally:
        lock.release()
