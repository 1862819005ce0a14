"""glibc malloc settings for the two CPU phases with opposite needs: training steps and scoring.

PyTorch allocates CPU tensors with malloc. A **training step** frees and re-allocates the same activation
sizes every step; by default glibc hands large blocks back to the OS (mmap'd blocks, heap trimming), so each
step page-faults its activations in again: thousands of faults per step on the benchmark VM, up to half the
time of a small net's step (docs/benchmarks.md). ``keep_freed_cpu_memory`` keeps freed memory for reuse.

**Scoring** (SNIP/GraSP on 1,000 images) frees activation- and weight-sized blocks of many different sizes
once; glibc's *dynamic* mmap threshold then rises to the largest freed block and later blocks come from the
heap, where fragmentation keeps them resident: on VGG19 the peak RSS was ~0.8 GB higher for the same
computation (measured). ``return_freed_cpu_memory`` maps every block of 128 KiB or more on its own, so freeing
it returns it to the OS at once.

Both are process-wide and glibc-only (elsewhere they do nothing and say so).
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # <malloc.h>
GLIBC_DEFAULT_MMAP_THRESHOLD = 128 << 10
SCORING_MMAP_THRESHOLD = 128 << 10

_state = {"keep_freed": False}


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _apply(libc: ctypes.CDLL, *settings: tuple[int, int]) -> bool:
    return all(libc.mallopt(option, value) for option, value in settings)


def _keep_freed_settings(libc: ctypes.CDLL) -> bool:
    return _apply(libc, (M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 64 << 20))


def keep_freed_cpu_memory() -> bool:
    """Blocks below 32 MiB come from the heap and the heap is never trimmed, so RSS stays at its high-water
    mark (no more than the peak the run needs anyway). Idempotent; returns whether it applied."""
    if _state["keep_freed"]:
        return True
    libc = _libc()
    _state["keep_freed"] = bool(libc is not None and _keep_freed_settings(libc))
    return _state["keep_freed"]


@contextlib.contextmanager
def return_freed_cpu_memory() -> Iterator[bool]:
    """Inside: blocks of 128 KiB or more are mapped on their own and unmapped when freed (yields whether it
    applied). On exit: ``keep_freed_cpu_memory``'s settings again if they were on, else glibc's default
    threshold (fixed from then on: glibc has no way back to its dynamic threshold)."""
    libc = _libc()
    applied = bool(libc is not None and _apply(libc, (M_MMAP_THRESHOLD, SCORING_MMAP_THRESHOLD)))
    try:
        yield applied
    finally:
        if applied:
            libc.malloc_trim(0)
            if _state["keep_freed"]:
                _keep_freed_settings(libc)
            else:
                _apply(libc, (M_MMAP_THRESHOLD, GLIBC_DEFAULT_MMAP_THRESHOLD))
