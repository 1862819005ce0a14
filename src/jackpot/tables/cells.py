"""What a table cell is: the five axes that key it, and ratios rounded so that 0.9 from YAML, JSON and wandb
meet in one cell."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AXES = ("model", "dataset", "pruner", "sanity_check", "ratio")
RATIO_DIGITS = 6

Cell = tuple[str, str, str, str, float]


def norm_ratio(value: Any) -> float:
    """Ratios as dictionary keys: 0.9 from YAML, JSON and wandb must compare equal."""
    return round(float(value), RATIO_DIGITS)


def cell_key(values: Mapping[str, Any]) -> Cell:
    """The table cell a run or a grid point belongs to (the seed is not part of it)."""
    return (str(values["model"]), str(values["dataset"]), str(values["pruner"]), str(values["sanity_check"]),
            norm_ratio(values["ratio"]))
