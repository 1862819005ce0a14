"""What to run next when a battery's verdict is inconclusive: the overrides that add exactly the seeds its
inconclusive rows need, and nothing else.

A battery is read in two steps, as a lab with a budget reads one: three seeds first, then more seeds only where
a row could not be decided. Added to the battery's own launch command, each set of overrides narrows it to the
method's cell (model, dataset, ratio), its plain runs and the inconclusive rows that need the same number of seeds
(their checks, and a baseline only when its own row is inconclusive: `hydra.sweeper.baselines`), with the seeds up
to that number; the sweeper skips every run already complete, so only the new seeds train. The method stays
the launch command's own (`pruner=snip`, or `pruner=custom pruner.method=...`, which runs under its function's
name): a battery launched for several methods at once narrows `pruner=` by hand. Rows needing fewer
seeds get their own, cheaper set, so that one slow row does not multiply the others' runs; cells needing the
same runs share one (`merged`), so a paper-scale battery of six cells reads as a few lines, not dozens.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pandas as pd

from jackpot.tables.labels import CHECK_LABELS

# comparison -> the baseline overrides that run its reference (as in multirun_sweeps/sanity_battery.yaml)
BASELINES = {
    "random tickets": ("pruner=smart_ratio", "sanity_check=none"),
    "dense": ("pruner=dense", "sanity_check=none", "ratio=0.0"),
}


@dataclass(frozen=True)
class FollowUp:
    """One set of overrides: the cells and rows it would decide, the seeds a side it runs to, its new runs."""

    method: str
    models: tuple[str, ...]
    datasets: tuple[str, ...]
    ratios: tuple[float, ...]
    checks: tuple[str, ...]  # the inconclusive rows' checks (the plain runs always come along)
    baselines: tuple[tuple[str, ...], ...]  # the baselines whose rows are inconclusive
    seed_list: tuple[int, ...]
    rows: tuple[str, ...]
    new_runs: int

    @property
    def seeds(self) -> int:
        return len(self.seed_list)

    @property
    def overrides(self) -> str:
        """What to add to the battery's launch command."""
        listed = ",".join("[" + ",".join(f'"{o}"' for o in overrides) + "]" for overrides in self.baselines)
        return (f"model={','.join(self.models)} dataset={','.join(self.datasets)} "
                f"ratio={','.join(f'{r:g}' for r in self.ratios)} sanity_check={','.join(['none', *self.checks])} "
                f"{_seed_override(list(self.seed_list))} 'hydra.sweeper.baselines=[{listed}]'")


def follow_ups(group: pd.DataFrame) -> list[FollowUp]:
    """For one method cell's verdict rows (one model, dataset, method and ratio), a set of overrides per seed
    count its inconclusive rows need, fewest first; rows past MAX_SEEDS (`seeds_to_decide` empty) are left out:
    their seeds' spread is too wide for the margin."""
    open_rows = group[(group["outcome"] == "inconclusive") & group["seeds_to_decide"].notna()]
    if open_rows.empty:
        return []
    first = group.iloc[0]
    plain = _seed_set(first["ref_seeds"] if first["comparison"] == "check" else first["seeds"])
    out = []
    for target, rows in open_rows.groupby("seeds_to_decide", sort=True):
        seeds = _seeds_up_to(plain, int(target))
        # each compared cell's seeds: a check's own (`seeds`), a baseline's (`ref_seeds`); the plain cell's too
        others = [_seed_set(r["seeds"] if r["comparison"] == "check" else r["ref_seeds"]) for _, r in rows.iterrows()]
        names = [CHECK_LABELS.get(r["check"], r["check"]) if r["comparison"] == "check" else
                 f"plain vs {r['comparison']}" for _, r in rows.iterrows()]
        out.append(FollowUp(
            method=str(first["method"]), models=(str(first["model"]),), datasets=(str(first["dataset"]),),
            ratios=(float(first["ratio"]),), checks=tuple(rows.loc[rows["comparison"] == "check", "check"]),
            baselines=tuple(BASELINES[c] for c in rows["comparison"] if c in BASELINES), seed_list=tuple(seeds),
            rows=tuple(names), new_runs=sum(len(set(seeds) - have) for have in [plain, *others])))
        plain = plain | set(seeds)
    return out


def merged(steps: Sequence[FollowUp]) -> list[FollowUp]:
    """The follow-ups of several method cells, those that run the same checks, baselines and seeds of the same
    method joined into one set of overrides where their cells form a full grid (models x datasets x ratios: a
    sweep runs exactly those), else per model and dataset across ratios; fewest seeds first."""
    def same(step: FollowUp) -> tuple:
        return step.method, step.checks, step.baselines, step.seed_list

    out: list[FollowUp] = []
    for _, group in itertools.groupby(sorted(steps, key=lambda s: (s.seeds, repr(same(s)))), key=same):
        group = list(group)
        cells = {(s.models[0], s.datasets[0], s.ratios[0]) for s in group}
        axes = [tuple(dict.fromkeys(cell[i] for cell in sorted(cells))) for i in range(3)]
        parts = ([group] if len(cells) == len(axes[0]) * len(axes[1]) * len(axes[2]) else
                 [list(g) for _, g in itertools.groupby(sorted(group, key=lambda s: (s.models, s.datasets)),
                                                         key=lambda s: (s.models, s.datasets))])
        for part in parts:
            out.append(replace(part[0], models=tuple(dict.fromkeys(m for s in part for m in s.models)),
                               datasets=tuple(dict.fromkeys(d for s in part for d in s.datasets)),
                               ratios=tuple(sorted({r for s in part for r in s.ratios})),
                               new_runs=sum(s.new_runs for s in part)))
    return out


def _seed_set(text: object) -> set[int]:
    return {int(s) for s in str(text).split(",") if s.strip()}


def _seeds_up_to(have: set[int], target: int) -> list[int]:
    """`have` and the smallest seeds not in it, `target` in all (the plain cell's seeds kept, so that the checks
    and baselines run the same seeds as the runs they are compared with)."""
    seeds, candidate = set(have), 0
    while len(seeds) < target:
        seeds.add(candidate)
        candidate += 1
    return sorted(seeds)


def _seed_override(seeds: list[int]) -> str:
    """`'seed=range(0,9)'` for seeds 0..8, else the list."""
    if seeds == list(range(len(seeds))):
        return f"'seed=range(0,{len(seeds)})'"
    return f"seed={','.join(map(str, seeds))}"


def battery_follow_ups(verdicts: pd.DataFrame) -> list[FollowUp]:
    """Every method cell's follow-ups in a battery's verdict frame, cells needing the same runs joined."""
    cells = verdicts.groupby(["model", "dataset", "method", "ratio"], sort=False)
    return merged([step for _, group in cells for step in follow_ups(group)])


def follow_ups_frame(steps: Sequence[FollowUp]) -> pd.DataFrame:
    """The follow-ups as a table (logged to wandb beside the verdicts): one row per set of overrides."""
    return pd.DataFrame([{"method": s.method, "models": ",".join(s.models), "datasets": ",".join(s.datasets),
                          "ratios": ",".join(f"{r:g}" for r in s.ratios), "decides": ", ".join(s.rows),
                          "seeds_a_side": s.seeds, "new_runs": s.new_runs, "overrides": s.overrides} for s in steps],
                        columns=["method", "models", "datasets", "ratios", "decides", "seeds_a_side", "new_runs",
                                 "overrides"])
