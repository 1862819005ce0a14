"""Locks between processes: `flock` on a file, taken directly rather than through `filelock`.

filelock falls back, where the file system has no flock, to a lock file that outlives its process; on a
cluster, a job killed on one node could then leave a trunk or a cell locked for every other node. A flock
always goes with the process that holds it (a killed or preempted job never leaves one behind); where the
file system has no flock, the work goes on unguarded, with a warning, which at worst does it twice.
"""

from __future__ import annotations

import errno
import os
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


def warn_unguarded(path: Path, what: str) -> None:
    warnings.warn(f"{path.parent}: the file system has no flock; {what} is not guarded against a second process",
                  RuntimeWarning, stacklevel=4)


@contextmanager
def exclusive(path: Path, what: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold `path`'s flock for the block, waiting as long as another process holds it; `on_wait()` is called
    once, before waiting, when it does. `what` names the guarded work in the no-flock warning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        locked = try_flock(fd, fcntl.LOCK_EX)
        if locked is False:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder releases it or dies
        elif locked is None:
            warn_unguarded(path, what)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
