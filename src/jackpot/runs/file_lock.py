"""Locks between processes: `flock` on a file, taken directly rather than through `filelock`.

filelock falls back, where the file system has no flock, to a lock file that outlives its process; on a
cluster, a job killed on one node could then leave a trunk or a cell locked for every other node. A flock
always goes with the process that holds it (a killed or preempted job never leaves one behind); where the
file system has no flock, the work goes on unguarded, with a warning, which at worst does it twice.
"""

from __future__ import annotations

import errno
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not a POSIX system: no lock
    fcntl = None  # type: ignore[assignment]

_CONTENDED = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
_UNSUPPORTED = (errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP)


def try_flock(fd: int, mode: int) -> bool | None:
    """True when locked, False when another process holds it, None when the file system cannot lock."""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in _CONTENDED:
            return False
        if err.errno in _UNSUPPORTED:
            return None
        raise
    return True


@contextmanager
def exclusive(path: Path, what: str, on_wait: Callable[[], None] | None = None,
              patience_s: float | None = None) -> Iterator[bool]:
    """Hold `path`'s flock for the block and yield True; when another process holds it, call `on_wait()` once
    and wait, as long as it takes (`patience_s=None`) or up to `patience_s` seconds, then yield False (not
    held: the block must not do the guarded work). `what` names that work in the no-flock warning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        locked = try_flock(fd, fcntl.LOCK_EX)
        if locked is False and on_wait is not None:
            on_wait()
        if locked is False and patience_s is None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder releases it or dies
            locked = True
        deadline = time.monotonic() + (patience_s or 0.0)
        while locked is False and time.monotonic() < deadline:
            time.sleep(0.1)
            locked = try_flock(fd, fcntl.LOCK_EX)
        if locked is None:
            warnings.warn(f"{path.parent}: the file system has no flock; {what} is not guarded against a second "
                          "process", RuntimeWarning, stacklevel=3)
        yield locked is not False
    finally:
        os.close(fd)  # closing the descriptor releases the flock
