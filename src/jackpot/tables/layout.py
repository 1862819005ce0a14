"""The paper's arrangement of a summary: which axes make the rows and the column groups, in the sweep files'
order, so every output format prints the same table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from jackpot.tables.cells import AXES
from jackpot.tables.labels import DATASET_LABELS
from jackpot.tables.specs import SweepSpec


@dataclass
class Layout:
    """The paper's arrangement: row = (model,) method (check); column = (dataset or model, ratio)."""

    title: str
    col_axis: str                      # "dataset" or "model": what the column groups are
    columns: list[tuple[str, float]]   # (group value, ratio)
    rows: list[tuple[str, ...]]        # (model?, pruner, check)
    row_axes: tuple[str, ...]
    cells: dict[tuple, dict[str, Any]]  # (row, column) -> summary row


def make_layout(summary: pd.DataFrame, spec: SweepSpec) -> Layout:
    """Arrange a sweep's cells as the paper does: column groups by dataset (by model when one dataset holds
    several), ascending ratios inside each group; rows by (model,) method and check, the full network first, or
    in the order the sweep file's `table.rows` gives."""
    order = {axis: spec.axis_order(axis) for axis in AXES}

    def ordered(axis: str, values: Iterable) -> list:
        values = list(dict.fromkeys(values))
        rank = {v: i for i, v in enumerate(order[axis])}
        return sorted(values, key=lambda v: (rank.get(v, len(rank)), v))

    models = ordered("model", summary["model"])
    datasets = ordered("dataset", summary["dataset"])
    col_axis = "model" if len(datasets) == 1 and len(models) > 1 else "dataset"
    row_axes = ("pruner", "sanity_check") if col_axis == "model" else ("model", "pruner", "sanity_check")
    title = spec.name
    if col_axis == "model":  # a single dataset: say which in the title
        title += f": {DATASET_LABELS.get(datasets[0], datasets[0])}"

    sparse = summary[summary["pruner"] != "dense"]
    ratios = ordered("ratio", (sparse if not sparse.empty else summary)["ratio"])
    ratios = sorted(ratios)
    groups = ordered(col_axis, summary[col_axis])
    columns = [(g, r) for g in groups for r in ratios]

    pruners = ordered("pruner", summary["pruner"])
    pruners = [p for p in pruners if p == "dense"] + [p for p in pruners if p != "dense"]
    checks = ordered("sanity_check", summary["sanity_check"])
    present = set(summary[list(row_axes)].itertuples(index=False, name=None))
    rows: list[tuple[str, ...]] = []
    outer = models if "model" in row_axes else [None]
    for model in outer:
        for pruner in pruners:
            for check in checks:
                row = (pruner, check) if model is None else (model, pruner, check)
                if row in present:
                    rows.append(row)
    if spec.row_order:  # the sweep file's `table.rows`: (pruner, check) in the paper's order, unlisted ones last
        rank = {row: i for i, row in enumerate(spec.row_order)}
        rows.sort(key=lambda row: (outer.index(row[0]) if "model" in row_axes else 0,
                                   rank.get(row[-2:], len(rank))))

    cells: dict[tuple, dict[str, Any]] = {}
    for rec in summary.to_dict("records"):
        row = tuple(rec[a] for a in row_axes)
        ratio = rec["ratio"]
        if rec["pruner"] == "dense" and ratio not in ratios:
            ratio = ratios[0]  # the paper prints the full network under the first ratio, "-" elsewhere
        cells[(row, (rec[col_axis], ratio))] = rec
    return Layout(title, col_axis, columns, rows, row_axes, cells)
