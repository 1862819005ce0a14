"""torch's, Python's and NumPy's global generators, seeded under one lock.

Every thread of a process shares them, and the runs of a pack (jackpot.runs.pack) run in threads: without the
lock, one run's epoch re-seed could land in the middle of another's network init. jackpot's own randomness
(masks, checks, data order, augmentation) draws from seeded generators of its own; only the network init and
the per-epoch re-seed touch the global ones.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

_LOCK = threading.Lock()


@contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """torch's global generator seeded with `seed` for the block, and put back after it; no other thread seeds
    meanwhile (CUDA's generators are left alone: an init is drawn on the CPU)."""
    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def reseed_all(seed: int) -> None:
    """Seed torch's, Python's and NumPy's global generators, not while another thread holds `seeded_torch`."""
    with _LOCK:
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
