"""What to run next when a battery's verdict is inconclusive: the overrides that add exactly the seeds its
inconclusive rows need, and nothing else.

A battery is read in two steps, as a lab with a budget reads one: three seeds first, then more seeds only where
a row could not be decided. Added to the battery's own launch command, these overrides narrow it to the method's
cell (model, dataset, ratio), its plain runs and the checks left inconclusive, the baselines only when their row is
inconclusive (`hydra.sweeper.baselines`), and the seeds up to the count `seeds_to_decide` gives; the sweeper skips
every run already complete, so only the new seeds train.
"""

from __future__ import annotations

import pandas as pd

# comparison -> the baseline overrides that run its reference (as in multirun_sweeps/sanity_battery.yaml)
BASELINES = {
    "random tickets": ("pruner=smart_ratio", "sanity_check=none"),
    "dense": ("pruner=dense", "sanity_check=none", "ratio=0.0"),
}


def decide_overrides(group: pd.DataFrame) -> str | None:
    """The overrides that would decide one method cell's inconclusive rows (its verdict rows: one model, dataset,
    method and ratio) within MAX_SEEDS seeds a side, or None when no such row is left. Rows out of that reach
    are left out: their seeds' spread is too wide for the margin."""
    open_rows = group[(group["outcome"] == "inconclusive") & group["seeds_to_decide"].notna()]
    if open_rows.empty:
        return None
    target = int(open_rows["seeds_to_decide"].max())
    first = group.iloc[0]
    plain = first["ref_seeds"] if first["comparison"] == "check" else first["seeds"]
    seeds = _seeds_up_to(sorted(int(s) for s in str(plain).split(",") if s), target)
    checks = ["none", *open_rows.loc[open_rows["comparison"] == "check", "check"]]
    baselines = [BASELINES[c] for c in open_rows["comparison"] if c in BASELINES]
    listed = ",".join("[" + ",".join(f'"{o}"' for o in overrides) + "]" for overrides in baselines)
    return (f"pruner={first['method']} model={first['model']} dataset={first['dataset']} ratio={first['ratio']:g} "
            f"sanity_check={','.join(checks)} seed={','.join(map(str, seeds))} "
            f"'hydra.sweeper.baselines=[{listed}]'")


def _seeds_up_to(have: list[int], target: int) -> list[int]:
    """`have` and the smallest seeds not in it, `target` in all (the plain cell's seeds kept, so that the checks
    and baselines run the same seeds as the runs they are compared with)."""
    seeds, candidate = set(have), 0
    while len(seeds) < target:
        seeds.add(candidate)
        candidate += 1
    return sorted(seeds)
