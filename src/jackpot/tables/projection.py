"""Device-hours of runs before they run, from end-to-end figures measured on one device.

For: a lab deciding whether a sweep, the paper's or the battery of its own method, fits its GPU budget, before
spending it. The figures are `scripts/end_to_end.py --out`'s (`docs/e2e_h200_issue19.json` holds the issue's
H200 ones): per model, an epoch's time, a run's set-up and its process's start and end; per model measured in
packs, a pack's speed-up and overhead per run. A run costs its process start, set-up and epochs; each dense trunk
or IMP round it needs and no one has trained yet costs as much again, once for all the runs that share it. A
pack of side-by-side runs costs each run its overhead per run and its epochs at the pack's speed-up; a model
without a pack measured takes the first measured model's. Work a killed launch checkpointed (a ticket, a trunk,
an IMP round, as its run's progress file says) costs only the epochs after its checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PlannedRun:
    """A run still to train: its model and epochs, and the shared work it trains if no one has (the cache keys of
    its dense trunk and IMP rounds, each `shared_epochs` long, less the epochs a killed launch's checkpoint of
    it holds: `shared_done`, key -> epochs)."""

    model: str
    epochs: int
    shared_work: tuple[str, ...] = ()
    shared_epochs: int = 0
    shared_done: tuple[tuple[str, int], ...] = ()


@dataclass
class Projection:
    """Hours one run at a time and, where the figures hold packs, in packs; what was counted and what could not
    be (models without figures, by number of runs)."""

    hours: float = 0.0
    hours_packed: float | None = None
    runs: int = 0
    shared_work: int = 0
    without_figures: dict[str, int] = field(default_factory=dict)


def read_figures(path: Path) -> dict[str, Any]:
    """An end-to-end figures file, or ValueError naming what is wrong with it."""
    try:
        figures = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read end-to-end figures from {path}: {err}") from err
    if not isinstance(figures, dict) or not isinstance(figures.get("costs"), dict) or not figures["costs"]:
        raise ValueError(f"{path} holds no end-to-end figures: expected a JSON object with per-model `costs` "
                         "(scripts/end_to_end.py --out writes one)")
    return figures


def figures_device(figures: Mapping[str, Any]) -> str:
    """The device the figures were measured on: the file's `device`, else as its runs recorded it."""
    if figures.get("device"):
        return str(figures["device"])
    devices = {cost.get("runtime", {}).get("device") for cost in figures["costs"].values()} - {None}
    return ", ".join(sorted(devices)) or "device not recorded"


def pack_size_of(figures: Mapping[str, Any]) -> int | None:
    """The size of the packs the figures measured (None: no packs)."""
    packs = figures.get("packs") or {}
    return max((int(pack.get("size", 4)) for pack in packs.values()), default=None)


def project(runs: Iterable[PlannedRun], figures: Mapping[str, Any]) -> Projection:
    """The device-hours of `runs` (each counted once) and of the shared work they need (each key once)."""
    costs, packs = figures["costs"], figures.get("packs") or {}
    runs = list(runs)
    done: dict[str, int] = {}  # a piece of shared work is resumed from its newest checkpoint, whichever run says so
    for run in runs:
        for key, epochs in run.shared_done:
            done[key] = max(done.get(key, 0), epochs)
    projection = Projection()
    alone_s, packed_s, seen_work = 0.0, 0.0, set()
    for run in runs:
        cost = costs.get(run.model)
        if cost is None:
            projection.without_figures[run.model] = projection.without_figures.get(run.model, 0) + 1
            continue
        pack = packs.get(run.model) or next(iter(packs.values()), None)
        jobs = [(run.epochs, True)] + [(max(run.shared_epochs - done.get(key, 0), 0), False)
                                       for key in run.shared_work if key not in seen_work]
        seen_work.update(run.shared_work)
        for epochs, is_run in jobs:
            alone_s += cost["process_start_s"] + cost["setup_s"] + epochs * cost["epoch_s"]
            if pack is not None:
                packed_s += pack["overhead_per_run_s"] + epochs * cost["epoch_s"] / pack["speedup"]
            projection.runs += is_run
            projection.shared_work += not is_run
    projection.hours = alone_s / 3600
    if packs:
        projection.hours_packed = packed_s / 3600
    return projection
