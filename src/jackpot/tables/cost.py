"""What a sweep cost in device time, read from its runs' results.json: the GPU-hours a lab pays, measured.

A run alone holds its device for its `wall_time_s`. The runs of a pack trained side by side (jackpot.runs.pack)
share one device, so such a pack counts once, for the span from its first member's start to its last member's
end; the runs of a pack run one after another count one by one. Each figure is what a run's last process
recorded: a run resumed after a kill counts only what it did after the resume, and a process's start and end
(imports, CUDA start-up) are outside every run's figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class SweepCost:
    runs: int  # runs with a recorded wall time
    hours: float
    packed_runs: int  # of them, runs trained side by side in a pack
    packs: int
    devices: tuple[str, ...]

    def describe(self, name: str) -> str:
        shared = (f"; {self.packed_runs} of them side by side in {self.packs} packs, each pack counted once"
                  if self.packs else "")
        where = ", ".join(self.devices) or "an unrecorded device"
        took = f"{self.hours:.2f} device-hours" if self.hours >= 0.1 else f"{self.hours * 3600:.0f} device-seconds"
        return (f"{name}: {self.runs} runs took {took} on {where} (each run's own wall time, as its last process "
                f"recorded it{shared})")


def sweep_cost(runs: pd.DataFrame) -> SweepCost | None:
    """The device time of `runs` (rows of jackpot.tables.loading, columns wall_time_s, started_at, finished_at,
    pack, device); None when none of them recorded a wall time (runs read from wandb, say)."""
    if runs.empty or "wall_time_s" not in runs:
        return None
    timed = runs[runs["wall_time_s"].notna()]
    if timed.empty:
        return None
    in_pack = timed["pack"].notna()
    seconds = float(timed.loc[~in_pack, "wall_time_s"].sum())
    packs = timed[in_pack].groupby("pack")
    for _, members in packs:
        span = members["finished_at"].max() - members["started_at"].min()
        seconds += float(span) if not math.isnan(span) else float(members["wall_time_s"].max())
    devices = tuple(sorted({str(d) for d in timed["device"] if isinstance(d, str) and d}))
    return SweepCost(runs=len(timed), hours=seconds / 3600, packed_runs=int(in_pack.sum()), packs=packs.ngroups,
                     devices=devices)
