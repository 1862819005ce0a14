"""Which cells a sanity battery's table holds (multirun_sweeps/sanity_battery.yaml).

A battery's grid is not its job list: the sweeper drops the checks a method's declaration rules out, adds the
baselines, and the method comes from the command line (`pruner=...`). So its cells are read from its runs: for
every method its own runs hold, at every model, dataset and ratio they hold, the plain cell and each check of the
grid that any run (its own, or another sweep's it reuses) holds, plus random tickets at that ratio and the dense
network. A cell the sweeper would run but nobody has stays out of the table rather than showing as missing; the
verdicts list such checks per method instead (`unrun_checks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from jackpot.tables.cells import AXES, Cell, cell_key
from jackpot.tables.labels import PRUNER_LABELS
from jackpot.tables.specs import SweepSpec
from jackpot.tables.verdict_overview import overview_markdown, render_overview_rich
from jackpot.tables.verdict_render import plot_verdicts, render_verdicts_rich, verdicts_markdown
from jackpot.tables.verdicts import DENSE, MARGIN, RANDOM_TICKETS, battery_verdicts


def is_battery(spec: SweepSpec) -> bool:
    """A sweep whose sweeper drops inapplicable checks or adds baselines reads as a battery."""
    return bool(spec.sweeper.get("drop_inapplicable") or spec.sweeper.get("baselines"))


def battery_cells(spec: SweepSpec, runs: pd.DataFrame) -> list[Cell]:
    """The battery's cells, from its own runs (see the module docstring)."""
    if runs.empty:
        return []
    own = runs[runs["name"] == spec.name]
    held = {cell_key(dict(zip(AXES, row, strict=True))) for row in runs[list(AXES)].itertuples(index=False)}
    grid_checks = [c for c in spec.axis_order("sanity_check") if c != "none"]
    cells: list[Cell] = []
    for method, group in own[own["pruner"] != DENSE].groupby("pruner", sort=False):
        checks = list(dict.fromkeys([*grid_checks, *group["sanity_check"]]))
        if method == RANDOM_TICKETS and set(group["sanity_check"]) == {"none"}:
            continue  # the baseline itself, not a method under test
        for model, dataset, ratio in dict.fromkeys(zip(group["model"], group["dataset"], group["ratio"],
                                                       strict=True)):
            cells.append((model, dataset, method, "none", ratio))
            cells += [(model, dataset, method, c, ratio) for c in checks if c != "none"
                      and (model, dataset, method, c, ratio) in held]
            cells.append((model, dataset, RANDOM_TICKETS, "none", ratio))
            cells.append((model, dataset, DENSE, "none", 0.0))
    return list(dict.fromkeys(cells))


def battery_spec(spec: SweepSpec, runs: pd.DataFrame) -> SweepSpec:
    """`spec` with its grid replaced by the battery's cells, each with the grid's seeds (and any its own runs
    add), so the summary counts and borrows seeds as for any table."""
    own = runs[runs["name"] == spec.name] if not runs.empty else runs
    seeds = sorted({int(s) for grid in spec.grids for s in grid.get("seed", [0])} | set(own.get("seed", [])))
    grids = [{**{axis: [value] for axis, value in zip(AXES, cell, strict=True)}, "seed": seeds}
             for cell in battery_cells(spec, runs)]
    # the file's grids without their pruner axis: they name no cell, but keep the axes' order (the checks the
    # grid lists, for `unrun_checks` and the row order)
    grids += [{axis: values for axis, values in grid.items() if axis != "pruner"} for grid in spec.grids]
    return SweepSpec(spec.name, list(spec.files), grids, dict(spec.published), list(spec.row_order),
                     dict(spec.sweeper))


def unrun_checks(spec: SweepSpec, summary: pd.DataFrame) -> dict[str, list[str]]:
    """Per method of the battery, the grid's checks it has no cell of: dropped by the sweeper as inapplicable
    to the method (its declaration), or not run yet."""
    grid_checks = [c for c in spec.axis_order("sanity_check") if c != "none"]
    methods = summary[(summary["pruner"] != DENSE) & (summary["sanity_check"] != "none")]["pruner"]
    plain = summary[(summary["pruner"] != DENSE) & (summary["pruner"] != RANDOM_TICKETS)]["pruner"]
    unrun = {}
    for method in dict.fromkeys([*plain, *methods]):
        have = set(summary[summary["pruner"] == method]["sanity_check"])
        unrun[method] = [c for c in grid_checks if c not in have]
    return {method: checks for method, checks in unrun.items() if checks}


def report_battery(spec: SweepSpec, summary: pd.DataFrame, out: Path | None, formats: Sequence[str],
                   figures: bool, console: Any = None, margin: float = MARGIN,
                   seconds_per_run: float | None = None, correction: str = "none") -> pd.DataFrame:
    """The battery's verdicts printed (rich) and written (md, csv, png) next to its accuracy table; `margin`:
    the accuracy points below which a difference reads as no effect; `seconds_per_run`: the battery's device
    time per run so far, to price the runs its inconclusive rows need; `correction`: none or bonferroni
    (jackpot.tables.verdicts)."""
    verdicts = battery_verdicts(summary, spec.axis_order("sanity_check"), PRUNER_LABELS, margin=margin,
                                correction=correction)
    unrun = unrun_checks(spec, summary)
    if "rich" in formats:
        render_verdicts_rich(verdicts, spec.name, unrun, console, seconds_per_run,
                             lambda shown: render_overview_rich(verdicts, spec.name, shown))
    if out is not None:
        if "md" in formats:
            glance = overview_markdown(verdicts, spec.name)
            text = verdicts_markdown(verdicts, spec.name, unrun, seconds_per_run, glance)
            (out / f"{spec.name}_verdicts.md").write_text(text)
        if "csv" in formats:
            verdicts.to_csv(out / f"{spec.name}_verdicts.csv", index=False, float_format="%.4f")
        if figures:
            plot_verdicts(verdicts, out / f"{spec.name}_verdicts.png")
    return verdicts
