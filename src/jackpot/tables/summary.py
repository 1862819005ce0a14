"""One row per table cell: mean ± sample std over seeds next to the paper's value; cells nobody ran or whose
runs all failed stay in the table as "missing" or "failed"."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from jackpot.tables.cells import AXES, Cell, cell_key
from jackpot.tables.specs import SweepSpec, parse_published


def summarize(runs: pd.DataFrame, spec: SweepSpec, metric: str = "final_acc") -> pd.DataFrame:
    """One row per cell of the table: expected cells, plus any other cell the table's own runs hold.

    A cell is filled from the runs named like the table, seed by seed; a seed the table has no complete run of
    takes the same cell's complete run of that seed from another sweep (the dense rows come from `dense`, the
    cells two tables share from whichever ran them: `hydra.sweeper.reuse_from`), and `source` names them all.
    """
    expected = spec.expected()
    own = runs[runs["name"] == spec.name]
    cells: dict[Cell, int] = dict(expected)
    for cell in own[list(AXES)].itertuples(index=False, name=None):
        cells.setdefault(cell_key(dict(zip(AXES, cell, strict=True))), 0)

    by_cell = {key: group for key, group in runs.groupby(list(AXES), sort=False)} if not runs.empty else {}
    rows = []
    for cell, n_expected in cells.items():
        group = by_cell.get(cell)
        chosen, sources = _runs_by_seed(group, spec.name) if group is not None else (None, [])
        rows.append(_cell_row(cell, chosen, n_expected, spec.published.get(cell), metric, "+".join(sources)))
    return pd.DataFrame(rows)


def _runs_by_seed(group: pd.DataFrame, table: str) -> tuple[pd.DataFrame, list[str]]:
    """The runs one cell shows and the sweeps they come from, the table first. Per seed: the first sweep with a
    complete run of it, in order of preference (the table, then the sweeps with the most complete runs of the
    cell); a seed nobody completed shows the failed runs of the first sweep that has any."""
    complete = group["status"] == "complete"
    counts = group[complete].groupby("name").size()
    names = sorted(set(group["name"]), key=lambda n: (n != table, -int(counts.get(n, 0)), str(n)))
    picked = []
    for _, runs in group.groupby("seed", sort=True):
        done = runs[runs["status"] == "complete"]
        pool = done if not done.empty else runs
        first = min(pool["name"], key=names.index)
        picked.append(pool[pool["name"] == first])
    chosen = pd.concat(picked)
    return chosen, [n for n in names if n in set(chosen["name"])]


def _cell_row(cell: Cell, runs: pd.DataFrame | None, n_expected: int, published: Any, metric: str,
              source: str) -> dict[str, Any]:
    row: dict[str, Any] = dict(zip(AXES, cell, strict=True))
    complete = runs[(runs["status"] == "complete") & runs[metric].notna()] if runs is not None else None
    n = 0 if complete is None else len(complete)
    n_failed = 0 if runs is None else len(runs) - n
    values = complete[metric] if complete is not None else pd.Series(dtype=float)
    mean = float(values.mean()) if n else math.nan
    std = float(values.std(ddof=1)) if n > 1 else math.nan
    if n:
        status = "ok"
    elif n_failed:
        status = "failed"
    else:
        status = "missing"
    pub = parse_published(published)
    pub_mean, pub_std = pub if pub else (math.nan, math.nan)
    row.update({
        "n": n, "n_expected": n_expected, "n_failed": n_failed, "mean": mean, "std": std, "status": status,
        "published": "" if published is None else str(published),
        "published_mean": pub_mean, "published_std": math.nan if pub_std is None else pub_std,
        "diff": mean - pub_mean if n and pub else math.nan,
        "source": source if runs is not None else "",
        "seeds": "" if runs is None else ",".join(str(s) for s in sorted(complete["seed"])),
    })
    return row
