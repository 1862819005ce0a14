"""A battery's verdicts at a glance: one row per comparison, one column per method cell (model, dataset, ratio),
each entry the difference and its outcome as a symbol. A paper-scale battery has six cells and over thirty
verdict rows; this is the table to read first, the detailed one says why."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from jackpot.tables.verdict_render import COLORS, comparison_label, ticket_label

SYMBOLS = {"hurts": "↓", "helps": "↑", "none": "=", "inconclusive": "?", "unknown": "·"}
LEGEND = ("Δ accuracy (points) of each comparison: ↓ below zero, ↑ above (Welch test), = no effect (the 95 % CI "
          "rules out the margin), ? cannot tell yet, · too few seeds")


def overview(verdicts: pd.DataFrame) -> pd.DataFrame | None:
    """Comparison × method cell: `-1.2 ?` entries (empty where a cell has no such comparison); None with fewer
    than two method cells, where the detailed table is already the overview."""
    records = verdicts.to_dict("records")
    cells = list(dict.fromkeys(ticket_label(rec) for rec in records))
    if len(cells) < 2:
        return None
    table: dict[str, dict[str, str]] = {}
    for rec in records:
        diff = "–" if math.isnan(rec["diff"]) else f"{rec['diff']:+.1f}"
        table.setdefault(comparison_label(rec), dict.fromkeys(cells, ""))[ticket_label(rec)] = (
            f"{diff} {SYMBOLS[rec['outcome']]}")
    return pd.DataFrame.from_dict(table, orient="index", columns=cells)


def render_overview_rich(verdicts: pd.DataFrame, table_name: str, console: Any) -> None:
    """The overview in the terminal, each entry in its outcome's colour."""
    frame = overview(verdicts)
    if frame is None:
        return
    from rich.table import Table

    table = Table(title=f"{table_name}: verdicts at a glance", caption=LEGEND)
    table.add_column("comparison", style="bold")
    for cell in frame.columns:
        table.add_column(cell, justify="right")
    outcome_of = {v: k for k, v in SYMBOLS.items()}
    for comparison, entries in frame.iterrows():
        colored = []
        for entry in entries:
            color = COLORS[outcome_of[entry[-1]]] if entry else ""
            colored.append(f"[{color}]{entry}[/{color}]" if color else entry)
        table.add_row(str(comparison), *colored)
    console.print(table)


def overview_markdown(verdicts: pd.DataFrame, table_name: str) -> str:
    """The overview as a markdown section ("" with fewer than two method cells)."""
    frame = overview(verdicts)
    if frame is None:
        return ""
    lines = [f"### {table_name}: verdicts at a glance", "", LEGEND + ".", "",
             "| comparison | " + " | ".join(frame.columns) + " |", "|---|" + "---:|" * len(frame.columns)]
    lines += [f"| {comparison} | " + " | ".join(entries) + " |" for comparison, entries in frame.iterrows()]
    return "\n".join(lines) + "\n"
