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

    A cell is filled from the runs named like the table. A seed the sweep files list that the table has no
    complete run of takes the complete run of that seed from another sweep that ran the same experiment (the
    same identity but for the seed: `hydra.sweeper.reuse_from` skips those jobs). A cell the table has no runs
    of at all is taken from the sweep with the most complete runs of it (the dense rows come from `dense`).
    `source` names them all.
    """
    expected = spec.expected()
    own = runs[runs["name"] == spec.name]
    cells: dict[Cell, int] = dict(expected)
    for cell in own[list(AXES)].itertuples(index=False, name=None):
        cells.setdefault(cell_key(dict(zip(AXES, cell, strict=True))), 0)

    by_cell = {key: group for key, group in runs.groupby(list(AXES), sort=False)} if not runs.empty else {}
    seeds = spec.seeds()
    rows = []
    for cell, n_expected in cells.items():
        group = by_cell.get(cell)
        chosen, sources = _cell_runs(group, spec.name, seeds.get(cell)) if group is not None else (None, [])
        rows.append(_cell_row(cell, chosen, n_expected, spec.published.get(cell), metric, "+".join(sources)))
    return pd.DataFrame(rows)


def _cell_runs(group: pd.DataFrame, table: str, seeds: set[int] | None) -> tuple[pd.DataFrame, list[str]]:
    """The runs one cell shows and the sweeps they come from, the lead first: the table's own runs (else those
    of the sweep with the most complete runs of the cell), then, for each of `seeds` (any seed when None) the
    lead has no complete run of, a complete run with the identity of the lead's runs from another sweep (the
    one with the most complete runs of the cell first). A lender's run replaces the lead's failed run of it."""
    complete = group["status"] == "complete"
    counts = group[complete].groupby("name").size()
    ranked = sorted(set(group["name"]), key=lambda n: (n != table, -int(counts.get(n, 0)), str(n)))
    lead, others = ranked[0], ranked[1:]
    mine = group[group["name"] == lead]
    lenders = group[complete & group["name"].isin(others) & group["identity"].isin(set(mine["identity"].dropna()))]
    lenders = lenders[~lenders["seed"].isin(set(mine.loc[mine["status"] == "complete", "seed"]))]
    if seeds is not None:
        lenders = lenders[lenders["seed"].isin(seeds)]
    rank = {name: i for i, name in enumerate(others)}
    lenders = lenders.sort_values("name", key=lambda names: names.map(rank), kind="stable")
    lenders = lenders.drop_duplicates("seed")
    mine = mine[~mine["seed"].isin(set(lenders["seed"]))]
    return pd.concat([mine, lenders]), [lead, *[n for n in others if n in set(lenders["name"])]]


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
