"""A laid-out table as text: rich for the terminal, markdown, LaTeX; and the summary as CSV."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from jackpot.tables.cell_text import cell_detail, fmt_ours
from jackpot.tables.cells import AXES
from jackpot.tables.labels import group_label, row_label
from jackpot.tables.layout import Layout


def _borrowed(layout: Layout, table: str) -> list[str]:
    return sorted({name for rec in layout.cells.values() for name in rec["source"].split("+")} - {"", table})


def _row_texts(layout: Layout, cell: Callable[[Mapping[str, Any]], str],
               empty: str = "-") -> Iterator[tuple[str, list[str]]]:
    """(row label, one text per column) for every row: `cell(record)` where a cell has one, else `empty`."""
    for row in layout.rows:
        texts = [empty if (rec := layout.cells.get((row, column))) is None else cell(rec)
                 for column in layout.columns]
        yield row_label(row, layout.row_axes), texts


def _rich_table(layout: Layout, columns: list[tuple[str, float]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=f"{title}  (test accuracy %, mean ± std over seeds)", show_lines=True)
    table.add_column("method", no_wrap=True)
    for group, ratio in columns:
        table.add_column(f"{group_label(layout.col_axis, group)}\n{ratio:.0%}", justify="center")

    def cell(rec: Mapping[str, Any]) -> str:
        style = {"missing": "yellow", "failed": "red"}.get(rec["status"], "bold")
        detail = cell_detail(rec, sep="\n")
        return f"[{style}]{fmt_ours(rec)}[/{style}]" + (f"\n[dim]{detail}[/dim]" if detail else "")

    for label, texts in _row_texts(replace(layout, columns=columns), cell, empty="[dim]-[/dim]"):
        table.add_row(label, *texts)
    return table


def render_rich(layout: Layout, table_name: str, console: Any = None) -> None:
    """The table in the terminal, never with a number cut to "9…": a file or pipe gets it at full width (no edge
    to fit), a terminal too narrow for it gets one table per column group (per dataset or model)."""
    from rich.console import Console

    console = console or Console()
    table = _rich_table(layout, layout.columns, layout.title)
    full = console.measure(table, options=console.options.update_width(1 << 16)).maximum
    if full <= console.width:
        console.print(table)
    elif not console.is_terminal:
        width, console.width = console.width, full
        try:
            console.print(table)
        finally:
            console.width = width
    else:
        for group in dict.fromkeys(g for g, _ in layout.columns):
            columns = [c for c in layout.columns if c[0] == group]
            console.print(_rich_table(layout, columns, f"{layout.title} · {group_label(layout.col_axis, group)}"))
    borrowed = _borrowed(layout, table_name)
    if borrowed:
        console.print(f"[dim]seeds without a complete run of this table's own were taken from: "
                      f"{', '.join(borrowed)}[/dim]")


def to_markdown(layout: Layout, table_name: str) -> str:
    head = ["method", *(f"{group_label(layout.col_axis, g)} {r:.0%}" for g, r in layout.columns)]
    lines = [f"### {layout.title}", "",
             "Test accuracy (%), mean ± sample std over seeds; below: the published value, "
             "the difference (ours − paper) and the number of seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(rec: Mapping[str, Any]) -> str:
        detail = cell_detail(rec)
        ours = fmt_ours(rec)
        ours = f"**{ours}**" if rec["status"] in ("missing", "failed") else ours
        return ours + (f"<br><sub>{detail}</sub>" if detail else "")

    for label, texts in _row_texts(layout, cell):
        lines.append("| " + " | ".join([label, *texts]) + " |")
    borrowed = _borrowed(layout, table_name)
    if borrowed:
        lines += ["", f"Seeds without a complete run of this table's own are taken from the sweeps: "
                      f"{', '.join(borrowed)}."]
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                          ("·", "/")):
        text = text.replace(char, escaped)
    return text


def _multicolumn(span: int, text: str) -> str:
    return rf"\multicolumn{{{span}}}{{c}}{{{_tex(text)}}}"


def to_latex(layout: Layout, table_name: str) -> str:
    """A plain tabular (no packages beyond LaTeX itself): one line ours ± std, one small line paper and Δ."""
    groups = list(dict.fromkeys(g for g, _ in layout.columns))
    per_group = {g: [r for gg, r in layout.columns if gg == g] for g in groups}
    lines = [f"% {table_name}: test accuracy (%), mean $\\pm$ sample std over seeds; small: paper value and "
             "difference (ours - paper)",
             r"\begin{tabular}{l" + "c" * len(layout.columns) + "}", r"\hline",
             " & ".join(["", *(_multicolumn(len(per_group[g]), group_label(layout.col_axis, g))
                             for g in groups)]) + r" \\",
             " & ".join(["Method", *(f"{r * 100:g}\\%" for _, r in layout.columns)]) + r" \\", r"\hline"]

    def cell(rec: Mapping[str, Any]) -> str:
        ours = fmt_ours(rec, pm="$\\pm$")
        detail = cell_detail(rec, pm="$\\pm$", delta="$\\Delta$")
        if not detail:
            return ours
        return r"\begin{tabular}[c]{@{}c@{}}" + ours + r" \\ {\scriptsize " + detail + r"}\end{tabular}"

    for label, texts in _row_texts(layout, cell):
        lines.append(" & ".join([_tex(label), *texts]) + r" \\")
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ["table", *AXES, "status", "n", "n_expected", "n_failed", "mean", "std", "published",
               "published_mean", "published_std", "diff", "source", "seeds"]


def to_csv(summary: pd.DataFrame, table_name: str, path: Path) -> None:
    frame = summary.assign(table=table_name)[CSV_COLUMNS]
    frame.to_csv(path, index=False, float_format="%.4f")
