"""A sanity battery's verdicts: each check's effect on accuracy against the plain method, and the plain method
against random tickets and the dense network at the same cell, with whether the difference is told apart from
zero by a two-sided Welch t-test (unequal variances: a check can change the spread over seeds, not only the mean).

Everything is read from the table's summary (mean, sample std and seed count per cell), so the seeds a battery
takes from other sweeps (`reuse_from`) count exactly as they do in its accuracy table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from jackpot.tables.cells import AXES
from jackpot.tables.readings import Outcome, check_reading, dense_reading, random_ticket_reading

ALPHA = 0.05
RANDOM_TICKETS = "smart_ratio"  # the paper's random tickets
DENSE = "dense"
VERDICT_COLUMNS = ["model", "dataset", "method", "ratio", "comparison", "check", "mean", "std", "n", "ref_mean",
                   "ref_std", "ref_n", "diff", "se", "df", "t", "p", "outcome", "distinguishable", "reading"]


@dataclass(frozen=True)
class Difference:
    """mean_b − mean_a with its standard error sqrt(s_a²/n_a + s_b²/n_b), Welch–Satterthwaite degrees of
    freedom, t and the two-sided p-value; NaN where a side has fewer than 2 seeds (no spread to test)."""

    diff: float
    se: float
    df: float
    t: float
    p: float

    def outcome(self, alpha: float = ALPHA) -> Outcome:
        if math.isnan(self.p):
            return "unknown"
        if self.p >= alpha:
            return "none"
        return "hurts" if self.diff < 0 else "helps"


def welch(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int) -> Difference:
    """Welch's t-test of b against a from their summaries (sample std, ddof=1)."""
    from scipy import stats

    diff = mean_b - mean_a
    nan = math.nan
    if n_a < 2 or n_b < 2 or math.isnan(diff):
        return Difference(diff, nan, nan, nan, nan)
    var_a, var_b = std_a**2 / n_a, std_b**2 / n_b
    se = math.sqrt(var_a + var_b)
    if se == 0:  # no spread on either side: any difference is exact
        return Difference(diff, 0.0, nan, math.copysign(math.inf, diff) if diff else 0.0, 0.0 if diff else 1.0)
    df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    result = stats.ttest_ind_from_stats(mean_b, std_b, n_b, mean_a, std_a, n_a, equal_var=False)
    return Difference(diff, se, df, float(result.statistic), float(result.pvalue))


def battery_verdicts(summary: pd.DataFrame, check_order: Sequence[str] = (),
                     method_labels: Mapping[str, str] | None = None, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (method cell, comparison): every check the summary holds for the method at that cell against
    its plain cell, then the plain cell against random tickets and against the dense network (of that model and
    dataset). A method is every pruner but the dense network, and random tickets only when checked themselves."""
    cells = {tuple(row[a] for a in AXES): row for row in summary.to_dict("records")}
    rows: list[dict[str, Any]] = []
    for (model, dataset, pruner, check, ratio), plain in cells.items():
        if check != "none" or pruner == DENSE:
            continue
        checks = [c for (m, d, p, c, r) in cells if (m, d, p, r) == (model, dataset, pruner, ratio) and c != "none"]
        if pruner == RANDOM_TICKETS and not checks:
            continue
        checks.sort(key=lambda c: (check_order.index(c) if c in check_order else len(check_order), c))
        label = (method_labels or {}).get(pruner, pruner)
        base = {"model": model, "dataset": dataset, "method": pruner, "ratio": ratio}
        for name in checks:
            rows.append(_row(base, "check", name, cells[(model, dataset, pruner, name, ratio)], plain, alpha,
                             partial(check_reading, name, method=label)))
        for reference, comparison, reading in (
            ((model, dataset, RANDOM_TICKETS, "none", ratio), "random tickets", random_ticket_reading),
            (_dense_cell(cells, model, dataset), "dense", dense_reading),
        ):
            if pruner != reference[2] and reference in cells:
                rows.append(_row(base, comparison, "none", plain, cells[reference], alpha,
                                 partial(reading, method=label)))
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def _dense_cell(cells: Mapping[tuple, Any], model: str, dataset: str) -> tuple:
    """The dense network's cell of this model and dataset (its ratio is 0.0: one per seed, whatever the ratio)."""
    dense = [cell for cell in cells if cell[:4] == (model, dataset, DENSE, "none")]
    return dense[0] if dense else (model, dataset, DENSE, "none", 0.0)


def _row(base: Mapping[str, Any], comparison: str, check: str, ours: Mapping[str, Any], ref: Mapping[str, Any],
         alpha: float, reading) -> dict[str, Any]:
    """`ours` against `ref`: the difference of means, its test, and the reading of the outcome."""
    n, ref_n = int(ours["n"]), int(ref["n"])
    diff = welch(ref["mean"], ref["std"], ref_n, ours["mean"], ours["std"], n)
    outcome = diff.outcome(alpha)
    if not (n and ref_n):
        empty = "this cell" if not n else "its reference"
        text = f"no complete runs of {empty} ({(ours if not n else ref)['status']}): nothing to compare"
    else:
        text = reading(outcome)
    return {**base, "comparison": comparison, "check": check, "mean": ours["mean"], "std": ours["std"], "n": n,
            "ref_mean": ref["mean"], "ref_std": ref["std"], "ref_n": ref_n, "diff": diff.diff, "se": diff.se,
            "df": diff.df, "t": diff.t, "p": diff.p, "outcome": outcome,
            "distinguishable": {"unknown": "n/a", "none": "no"}.get(outcome, "yes"), "reading": text}
