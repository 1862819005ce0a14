"""Fault injection for the resume tests: `JACKPOT_FAULT=<point>:<n>` SIGKILLs the process the n-th time
execution reaches <point>. Points: `score` (mask made, before training), `step` (an optimizer step, after its
backward, before its update), `trunk` (dense trunk stored, before the ticket stage), `write` (an atomic write's
temp file is complete but not yet renamed). Unset, each call is one dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "JACKPOT_FAULT"
_seen: Counter[str] = Counter()


def active() -> bool:
    return bool(os.environ.get(ENV))


def reach(point: str) -> None:
    """Die here if the fault plan says so."""
    plan = os.environ.get(ENV)
    if not plan:
        return
    target, _, count = plan.partition(":")
    if target != point:
        return
    _seen[point] += 1
    if _seen[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
