"""A sanity battery's verdicts: each check's effect on accuracy against the plain method, and the plain method
against random tickets and the dense network at the same cell, with whether the difference is told apart from
zero by a two-sided Welch t-test (unequal variances: a check can change the spread over seeds, not only the mean).

A difference the test cannot tell from zero is not evidence of no effect: with 3 seeds of a few points' spread,
a check could cost 10 points and still not be "distinguishable". So "no effect" is read only when the 95 %
confidence interval also rules out an effect of `margin` points or more in the direction the reading is about
(a check's or the dense network's harm, the method's advantage over random tickets); otherwise the comparison is
"inconclusive", with the seeds a side that would decide it if the measured means and spreads held.

Everything is read from the table's summary (mean, sample std and seed count per cell), so the seeds a battery
takes from other sweeps (`reuse_from`) count exactly as they do in its accuracy table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import pandas as pd

from jackpot.tables.cells import AXES
from jackpot.tables.readings import MAX_SEEDS, Outcome, check_reading, dense_reading, random_ticket_reading

ALPHA = 0.05
MARGIN = 1.0  # accuracy points: the smallest difference a verdict treats as an effect (jackpot-tables --margin)
CORRECTIONS = ("none", "bonferroni")  # jackpot-tables --correction: per row, or alpha / a cell's tested comparisons
RANDOM_TICKETS = "smart_ratio"  # the paper's random tickets
DENSE = "dense"
VERDICT_COLUMNS = ["model", "dataset", "method", "ratio", "comparison", "check", "mean", "std", "n", "ref_mean",
                   "ref_std", "ref_n", "seeds", "ref_seeds", "diff", "se", "df", "t", "p", "alpha", "ci_low",
                   "ci_high", "margin", "outcome", "distinguishable", "seeds_to_decide", "reading"]
# Which side of the difference a comparison's "no effect" reading is about: a check's (or the dense network's)
# harm to the method, the lower bound; the method's advantage over random tickets, the upper one.
Side = Literal["harm", "advantage"]


@dataclass(frozen=True)
class Difference:
    """mean_b − mean_a with its standard error sqrt(s_a²/n_a + s_b²/n_b), Welch–Satterthwaite degrees of
    freedom, t and the two-sided p-value; NaN where a side has fewer than 2 seeds (no spread to test)."""

    diff: float
    se: float
    df: float
    t: float
    p: float

    def interval(self, alpha: float = ALPHA) -> tuple[float, float]:
        """The two-sided (1 − alpha) confidence interval of the difference, diff ± t(1 − alpha/2, df) · se: the
        values the test does not reject (it excludes 0 exactly when p < alpha)."""
        if math.isnan(self.p):
            return math.nan, math.nan
        if self.se == 0:
            return self.diff, self.diff
        from scipy import stats

        half = float(stats.t.ppf(1 - alpha / 2, self.df)) * self.se
        return self.diff - half, self.diff + half

    def outcome(self, alpha: float = ALPHA, margin: float = MARGIN, side: Side = "harm") -> Outcome:
        """hurts / helps when the test tells the difference from zero; none when it cannot and the interval
        also rules out `margin` points or more on `side`; inconclusive when it rules out neither."""
        if math.isnan(self.p):
            return "unknown"
        if self.p < alpha:
            return "hurts" if self.diff < 0 else "helps"
        low, high = self.interval(alpha)
        return "none" if (low > -margin if side == "harm" else high < margin) else "inconclusive"


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


def seeds_to_decide(std_a: float, std_b: float, diff: float, margin: float = MARGIN, side: Side = "harm",
                    alpha: float = ALPHA, at_least: int = 2) -> int | None:
    """The fewest seeds a side (from `at_least`) at which a comparison would be decided if its measured
    difference and spreads held: the interval's half-width t(1 − alpha/2, df) · sqrt((s_a² + s_b²) / n) falls
    below |diff| (the test tells it from zero) or below the distance from diff to the margin on `side` (the
    interval rules the margin out). None past MAX_SEEDS, or when a spread is unknown."""
    from scipy import stats

    spread = std_a**2 + std_b**2
    if math.isnan(spread) or math.isnan(diff):
        return None
    reach = max(abs(diff), diff + margin if side == "harm" else margin - diff)
    for n in range(max(2, at_least), MAX_SEEDS + 1):
        if spread == 0:
            return n
        df = spread**2 * (n - 1) / (std_a**4 + std_b**4)  # Welch–Satterthwaite with n on both sides
        if float(stats.t.ppf(1 - alpha / 2, df)) * math.sqrt(spread / n) < reach:
            return n
    return None


def battery_verdicts(summary: pd.DataFrame, check_order: Sequence[str] = (),
                     method_labels: Mapping[str, str] | None = None, alpha: float = ALPHA,
                     margin: float = MARGIN, correction: str = "none") -> pd.DataFrame:
    """One row per (method cell, comparison): every check the summary holds for the method at that cell against
    its plain cell, then the plain cell against random tickets and against the dense network (of that model and
    dataset). A method is every pruner but the dense network, and random tickets only when checked themselves.
    `margin`: the accuracy points below which a difference is read as no effect (see the module's docstring).
    `correction="bonferroni"`: each of a method cell's m tested comparisons (2 or more seeds a side) is tested,
    and its interval drawn, at alpha / m, so that the chance of any false "hurts" or "helps" (or "no effect")
    in the cell's verdict stays below alpha."""
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
        # (comparison, check, ours, reference, side, reading) of this method cell
        compared = [("check", name, cells[(model, dataset, pruner, name, ratio)], plain, "harm",
                     partial(check_reading, name, method=label)) for name in checks]
        for reference, comparison, side, reading in (
            ((model, dataset, RANDOM_TICKETS, "none", ratio), "random tickets", "advantage", random_ticket_reading),
            (_dense_cell(cells, model, dataset), "dense", "harm", dense_reading),
        ):
            if pruner != reference[2] and reference in cells:
                compared.append((comparison, "none", plain, cells[reference], side, partial(reading, method=label)))
        tested = sum(int(ours["n"]) >= 2 and int(ref["n"]) >= 2 for _, _, ours, ref, _, _ in compared)
        level = alpha / tested if correction == "bonferroni" and tested > 1 else alpha
        for comparison, name, ours, ref, side, reading in compared:
            rows.append(_row(base, comparison, name, ours, ref, ReadingRule(level, margin, side), reading))
    frame = pd.DataFrame(rows, columns=VERDICT_COLUMNS)
    return frame.astype({"seeds_to_decide": "Int64"})  # a count, empty where decided (not 9.0 and NaN)


def confidence(alpha: float) -> str:
    """`95 %` for alpha 0.05, `99.17 %` for 0.05 / 6: the interval's level, as the readings name it."""
    return f"{100 * (1 - alpha):.4g} %"


def _dense_cell(cells: Mapping[tuple, Any], model: str, dataset: str) -> tuple:
    """The dense network's cell of this model and dataset (its ratio is 0.0: one per seed, whatever the ratio)."""
    dense = [cell for cell in cells if cell[:4] == (model, dataset, DENSE, "none")]
    return dense[0] if dense else (model, dataset, DENSE, "none", 0.0)


@dataclass(frozen=True)
class ReadingRule:
    """How a comparison is read: the test's level, the margin of no effect and the side it is about."""

    alpha: float
    margin: float
    side: Side


def _row(base: Mapping[str, Any], comparison: str, check: str, ours: Mapping[str, Any], ref: Mapping[str, Any],
         test: ReadingRule, reading) -> dict[str, Any]:
    """`ours` against `ref`: the difference of means, its test and interval, and the reading of the outcome."""
    n, ref_n = int(ours["n"]), int(ref["n"])
    diff = welch(ref["mean"], ref["std"], ref_n, ours["mean"], ours["std"], n)
    outcome = diff.outcome(test.alpha, test.margin, test.side)
    low, high = diff.interval(test.alpha)
    seeds = (seeds_to_decide(ref["std"], ours["std"], diff.diff, test.margin, test.side, test.alpha,
                             max(n, ref_n) + 1) if outcome == "inconclusive" else None)
    if not (n and ref_n):
        empty = "this cell" if not n else "its reference"
        text = f"no complete runs of {empty} ({(ours if not n else ref)['status']}): nothing to compare"
    elif outcome == "inconclusive":
        text = reading(outcome, bound=low if test.side == "harm" else high, margin=test.margin, seeds=seeds,
                       level=confidence(test.alpha))
    else:
        text = reading(outcome)
    return {**base, "comparison": comparison, "check": check, "mean": ours["mean"], "std": ours["std"], "n": n,
            "ref_mean": ref["mean"], "ref_std": ref["std"], "ref_n": ref_n, "seeds": ours.get("seeds", ""),
            "ref_seeds": ref.get("seeds", ""), "diff": diff.diff, "se": diff.se, "df": diff.df, "t": diff.t,
            "p": diff.p, "alpha": test.alpha, "ci_low": low, "ci_high": high, "margin": test.margin,
            "outcome": outcome, "distinguishable": {"unknown": "n/a", "none": "no", "inconclusive": "no"}.get(
                outcome, "yes"), "seeds_to_decide": seeds, "reading": text}
