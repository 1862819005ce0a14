"""A battery's verdicts as text and a figure: rich for the terminal, markdown, CSV, and a bar chart of each
check's effect with its 95 % CI; below them, a closing line per method cell and the follow-ups that would decide
its inconclusive rows (jackpot.tables.follow_up)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from jackpot.tables.follow_up import FollowUp, battery_follow_ups
from jackpot.tables.labels import CHECK_LABELS, DATASET_LABELS, MODEL_LABELS, PRUNER_LABELS
from jackpot.tables.readings import seeds_needed
from jackpot.tables.verdicts import ALPHA, MARGIN, confidence


def how(margin: float = MARGIN, corrected: bool = False) -> str:
    """The caption: what Δ, its test and interval are, and when "no effect" is read."""
    level = (f"p < {ALPHA:g} divided by the cell's number of tested comparisons (--correction bonferroni), and its "
             f"confidence interval at that level" if corrected else
             f"p < {ALPHA:g}, and its {confidence(ALPHA)} confidence interval (CI)")
    return (f"Δ = accuracy − reference (percentage points) ± its standard error sqrt(s1²/n1 + s2²/n2); "
            f"two-sided Welch t-test, distinguishable from zero at {level}. Not distinguishable reads as no effect "
            f"only when the CI rules out {margin:g} point{'s' * (margin != 1)} or more (--margin) of a check's or "
            f"the dense network's harm, or of an advantage over random tickets; else inconclusive")


COLORS = {"hurts": "red", "helps": "green", "none": "", "inconclusive": "dark_orange", "unknown": "yellow"}


def ticket_label(rec: Mapping[str, Any]) -> str:
    """`SNIP · ResNet8 · digits · 90 %`: the method's cell the verdict is about."""
    return (f"{PRUNER_LABELS.get(rec['method'], rec['method'])} · {MODEL_LABELS.get(rec['model'], rec['model'])} · "
            f"{DATASET_LABELS.get(rec['dataset'], rec['dataset'])} · {rec['ratio']:.0%}")


def comparison_label(rec: Mapping[str, Any]) -> str:
    """What is compared: the check against the plain method, or the plain method against a baseline."""
    if rec["comparison"] == "check":
        return f"{CHECK_LABELS.get(rec['check'], rec['check'])} vs plain"
    return f"plain vs {rec['comparison']}"


def _acc(mean: float, std: float, n: int) -> str:
    if not n:
        return "-"
    return f"{mean:.2f} (n={n})" if n < 2 else f"{mean:.2f} ± {std:.2f} (n={n})"


def texts(rec: Mapping[str, Any]) -> dict[str, str]:
    """One verdict row as the columns every format prints."""
    diff = "-" if math.isnan(rec["diff"]) else f"{rec['diff']:+.2f}"
    if not math.isnan(rec["se"]):
        diff += f" ± {rec['se']:.2f}"
    test = "-" if math.isnan(rec["p"]) else f"t={rec['t']:+.2f}" + (
        "" if math.isnan(rec["df"]) else f", df={rec['df']:.1f}") + f", p={rec['p']:.3f}" + (
        f" vs α={rec['alpha']:.3g}" if rec["alpha"] < ALPHA else "")
    interval = "-" if math.isnan(rec["ci_low"]) else f"{rec['ci_low']:+.2f} to {rec['ci_high']:+.2f}"
    return {"ticket": ticket_label(rec), "comparison": comparison_label(rec),
            "accuracy": _acc(rec["mean"], rec["std"], rec["n"]),
            "reference": _acc(rec["ref_mean"], rec["ref_std"], rec["ref_n"]),
            "Δ ± SE": diff, "CI": interval, "Welch test": test, "distinguishable": rec["distinguishable"],
            "reading": rec["reading"]}


def _duration(seconds: float) -> str:
    """`0.25 device-hours at this battery's runs so far`, or minutes below a quarter hour."""
    if seconds >= 900:
        return f"{seconds / 3600:.2f} device-hours at this battery's runs so far"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} device-minute{'s' * (minutes != 1)} at this battery's runs so far"


def _cells_label(step: FollowUp) -> str:
    """`SNIP · ResNet8 · digits · 90%`, or `SNIP · ResNet32/VGG19 · CIFAR-10 · 90%/95%/98%` for joined cells."""
    def joined(values, labels) -> str:
        return "/".join(labels.get(v, v) for v in values)

    return (f"{PRUNER_LABELS.get(step.method, step.method)} · {joined(step.models, MODEL_LABELS)} · "
            f"{joined(step.datasets, DATASET_LABELS)} · {'/'.join(f'{r:.0%}' for r in step.ratios)}")


def _named(checks: pd.DataFrame, outcome: str) -> list[str]:
    """The labels of the checks with this outcome."""
    return [CHECK_LABELS.get(c, c) for c in checks[checks["outcome"] == outcome]["check"]]


def summary_lines(verdicts: pd.DataFrame, unrun: Mapping[str, list[str]],
                  seconds_per_run: float | None = None) -> list[str]:
    """One line per method cell: how many of its checks hurt it; then the overrides that would decide the cells'
    inconclusive rows, cells needing the same runs joined (priced at `seconds_per_run`, the battery's own device
    time per run, when known); then the checks each method has no runs of."""
    lines: list[str] = []
    for _, group in verdicts.groupby(["model", "dataset", "method", "ratio"], sort=False):
        checks = group[group["comparison"] == "check"]
        decided = checks[~checks["outcome"].isin(["unknown", "inconclusive"])]
        hurt, helped, open_ = (_named(checks, outcome) for outcome in ("hurts", "helps", "inconclusive"))
        helps = f"; {len(helped)} help it ({', '.join(helped)})" if helped else ""
        undecided = ""
        if open_:
            needs = [f"{CHECK_LABELS.get(r['check'], r['check'])}: "
                     f"{seeds_needed(None if pd.isna(r['seeds_to_decide']) else int(r['seeds_to_decide']))}"
                     for r in checks[checks["outcome"] == "inconclusive"].to_dict("records")]
            undecided = f"; {len(open_)} cannot tell yet ({', '.join(needs)})"
        rec = group.iloc[0].to_dict()
        if decided.empty and not open_:
            verdict = "no check decided yet (at least 2 seeds on each side)"
        elif hurt:
            tested = len(decided) + len(open_)
            verdict = (f"{len(hurt)} of {tested} checks hurt it ({', '.join(hurt)}): it passes those "
                       f"(it uses what they destroy){helps}{undecided}")
        elif open_:
            verdict = (f"no check hurts it so far{helps}{undecided}: no verdict yet, since a check it cannot tell "
                       f"may still hurt it")
        else:
            verdict = (f"none of its {len(decided)} checks hurts it by {rec['margin']:g} point"
                       f"{'s' * (rec['margin'] != 1)} or more{helps}: it fails the sanity checks, as the paper's "
                       f"initial tickets do")
        lines.append(f"{ticket_label(rec)}: {verdict}")
    for step in battery_follow_ups(verdicts):
        price = "" if seconds_per_run is None else f", about {_duration(step.new_runs * seconds_per_run)}"
        lines.append(f"{_cells_label(step)}: to decide {', '.join(step.rows)} ({step.seeds} seeds a side, "
                     f"{step.new_runs} new runs{price}), add to the battery's launch command: {step.overrides}")
    for method, checks in unrun.items():
        names = ", ".join(CHECK_LABELS.get(c, c) for c in checks)
        lines.append(f"{PRUNER_LABELS.get(method, method)}: no runs of {names} (dropped as inapplicable to it "
                     f"by the sweeper, or not run yet)")
    return lines


def render_verdicts_rich(verdicts: pd.DataFrame, table_name: str, unrun: Mapping[str, list[str]],
                         console: Any = None, seconds_per_run: float | None = None,
                         before_summary: Callable[[Any], None] | None = None) -> None:
    """The verdicts in the terminal: one row per comparison, grouped by the method's cell, then (after
    `before_summary(console)`, the overview) one line per cell."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{table_name}: verdicts (test accuracy %, mean ± std over seeds)",
                  caption=how(*_reading(verdicts)), show_lines=True)
    for column, style in (("ticket", "bold"), ("comparison", ""), ("accuracy", ""), ("reference", ""),
                          ("Δ ± SE", "bold"), ("CI", ""), ("Welch test", "dim"), ("distinguishable", ""),
                          ("reading", "")):
        table.add_column(column, style=style or None, no_wrap=column not in ("reading", "ticket"))
    for rec in verdicts.to_dict("records"):
        row = texts(rec)
        color = COLORS[rec["outcome"]]
        row["distinguishable"] = f"[{color}]{row['distinguishable']}[/{color}]" if color else row["distinguishable"]
        table.add_row(*row.values())
    console.print(table)
    if before_summary is not None:
        before_summary(console)
    for line in summary_lines(verdicts, unrun, seconds_per_run):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def verdicts_markdown(verdicts: pd.DataFrame, table_name: str, unrun: Mapping[str, list[str]],
                      seconds_per_run: float | None = None, before_summary: str = "") -> str:
    rows = [texts(rec) for rec in verdicts.to_dict("records")]
    head = list(rows[0]) if rows else []
    lines = [f"### {table_name}: verdicts", "", how(*_reading(verdicts)) + ".", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row.values()) + " |" for row in rows]
    lines += ["", *([before_summary] if before_summary else []),
              *(f"- {line}" for line in summary_lines(verdicts, unrun, seconds_per_run))]
    return "\n".join(lines) + "\n"


def _reading(verdicts: pd.DataFrame) -> tuple[float, bool]:
    """The margin the verdicts were read with and whether their tests were corrected (defaults when empty)."""
    if not len(verdicts):
        return MARGIN, False
    return float(verdicts["margin"].iloc[0]), bool((verdicts["alpha"] < ALPHA).any())


def plot_verdicts(verdicts: pd.DataFrame, path: Path) -> Path | None:
    """Each comparison's Δ with its CI (Welch's t, 95 % unless corrected) and the margin of no effect dotted, a
    panel per method cell; None when there is nothing to plot."""
    data = verdicts[verdicts["n"].gt(0) & verdicts["ref_n"].gt(0)]
    if data.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(data.groupby(["model", "dataset", "method", "ratio"], sort=False))
    fig, axes = plt.subplots(len(groups), 1, squeeze=False, figsize=(7, 0.5 + 0.45 * len(data) + len(groups)))
    for ax, (_, group) in zip(axes[:, 0], groups, strict=True):
        labels = [comparison_label(rec) for rec in group.to_dict("records")]
        errors = (group["diff"] - group["ci_low"]).fillna(0.0)
        colors = group["outcome"].map({"hurts": "tab:red", "helps": "tab:green",
                                       "inconclusive": "tab:orange"}).fillna("tab:gray")
        ax.barh(labels, group["diff"], xerr=errors, color=colors, capsize=3)
        ax.axvline(0.0, color="black", linewidth=0.8)
        for edge in (-group["margin"].iloc[0], group["margin"].iloc[0]):
            ax.axvline(edge, color="gray", linewidth=0.8, linestyle=":")
        ax.invert_yaxis()
        ax.set_title(ticket_label(group.iloc[0].to_dict()), fontsize=10)
        ax.set_xlabel("Δ test accuracy (points) with its CI; dotted: the margin of no effect")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
