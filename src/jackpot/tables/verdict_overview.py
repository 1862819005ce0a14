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


def _entries(verdicts: pd.DataFrame) -> tuple[list[str], dict[str, dict[str, tuple[str, str]]]]:
    """The method cells, and {comparison: {cell: (`-1.2 ?`, its outcome)}}."""
    records = verdicts.to_dict("records")
    cells = list(dict.fromkeys(ticket_label(rec) for rec in records))
    table: dict[str, dict[str, tuple[str, str]]] = {}
    for rec in records:
        diff = "–" if math.isnan(rec["diff"]) else f"{rec['diff']:+.1f}"
        table.setdefault(comparison_label(rec), {})[ticket_label(rec)] = (
            f"{diff} {SYMBOLS[rec['outcome']]}", rec["outcome"])
    return cells, table


def overview(verdicts: pd.DataFrame) -> pd.DataFrame | None:
    """Comparison × method cell: `-1.2 ?` entries (empty where a cell has no such comparison); None with fewer
    than two method cells, where the detailed table is already the overview."""
    cells, table = _entries(verdicts)
    if len(cells) < 2:
        return None
    texts = {comparison: {cell: entries.get(cell, ("", ""))[0] for cell in cells}
             for comparison, entries in table.items()}
    return pd.DataFrame.from_dict(texts, orient="index", columns=cells)


def render_overview_rich(verdicts: pd.DataFrame, table_name: str, console: Any) -> None:
    """The overview in the terminal, each entry in its outcome's colour."""
    cells, entries = _entries(verdicts)
    if len(cells) < 2:
        return
    from rich.table import Table

    table = Table(title=f"{table_name}: verdicts at a glance", caption=LEGEND)
    table.add_column("comparison", style="bold")
    for cell in cells:
        table.add_column(cell, justify="right")
    for comparison, by_cell in entries.items():
        colored = []
        for cell in cells:
            text, outcome = by_cell.get(cell, ("", ""))
            color = COLORS.get(outcome, "")
            colored.append(f"[{color}]{text}[/{color}]" if color else text)
        table.add_row(comparison, *colored)
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
