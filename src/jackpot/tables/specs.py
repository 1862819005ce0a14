"""What each table expects, read from the sweep files (or a sweep dir's multirun.yaml): the grid of cells, the
seeds per cell and the paper's published numbers."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jackpot.tables.cells import AXES, Cell, cell_key, norm_ratio

DEFAULT_AXIS_VALUES = {"sanity_check": ["none"]}


@dataclass
class SweepSpec:
    """What one table expects: the union of the grids of all sweep files of this `name`, and their numbers."""

    name: str
    files: list[str] = field(default_factory=list)
    grids: list[dict[str, list]] = field(default_factory=list)
    published: dict[Cell, Any] = field(default_factory=dict)
    row_order: list[tuple[str, str]] = field(default_factory=list)  # (pruner, check), a sweep file's `table.rows`
    sweeper: dict[str, Any] = field(default_factory=dict)  # its other `hydra.sweeper` keys (a battery's, say)

    def add(self, data: Mapping[str, Any], source: str) -> None:
        """Add one sweep file's (or multirun.yaml's) grid, published numbers, row order and sweeper keys."""
        _, grid, published = spec_from_config(data, source)
        sweeper = (data.get("hydra") or {}).get("sweeper") or {}
        self.sweeper.update({key: value for key, value in sweeper.items() if key != "params"})
        rows = [str(row).partition("/") for row in (data.get("table") or {}).get("rows") or []]
        self.files.append(source)
        self.grids.append(grid)
        self.published.update(published)
        for pruner, _, check in rows:
            if (pruner, check or "none") not in self.row_order:
                self.row_order.append((pruner, check or "none"))

    def axis_order(self, axis: str) -> list:
        """Values of an axis in the order the sweep files list them (the paper's row/column order)."""
        seen: list = []
        for grid in self.grids:
            for value in grid.get(axis, []):
                value = norm_ratio(value) if axis == "ratio" else str(value)
                if value not in seen:
                    seen.append(value)
        for cell in self.published:
            value = cell[AXES.index(axis)]
            if value not in seen:
                seen.append(value)
        return seen

    def seeds(self) -> dict[Cell, set[int]]:
        """The seeds the sweep files run each cell with (a cell no grid spells out, like the dense rows, has none)."""
        seeds: dict[Cell, set[int]] = {}
        for grid in self.grids:
            for cell in _grid_cells(grid):
                seeds.setdefault(cell, set()).update(int(seed) for seed in grid.get("seed", [0]))
        return seeds

    def expected(self) -> dict[Cell, int]:
        """Every cell the table should hold -> how many seeds each should have."""
        cells: dict[Cell, int] = {}
        for grid in self.grids:
            n_seeds = len(grid.get("seed", [0]))
            for cell in _grid_cells(grid):
                cells[cell] = max(cells.get(cell, 0), n_seeds)
        for cell in self.published:
            cells.setdefault(cell, 0)  # published but run by another sweep (dense rows): seed count unknown
        return cells


def _grid_cells(grid: Mapping[str, list]) -> list[Cell]:
    """The cells of one grid; none when an axis is left to the config's default (its value is unknown here)."""
    if any(axis not in grid for axis in AXES):
        return []
    return [cell_key(dict(zip(AXES, combo, strict=True))) for combo in itertools.product(*(grid[a] for a in AXES))]


def parse_sweep_params(params: Mapping[str, Any] | None) -> dict[str, list]:
    """`hydra.sweeper.params` -> axis -> list of values, parsed by Hydra's override grammar (as -m does)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    grid: dict[str, list] = {}
    for key, value in (params or {}).items():
        override = parser.parse_override(f"{key}={value}")
        if override.is_discrete_sweep():
            grid[str(key)] = list(override.sweep_iterator())
        elif override.is_sweep_override():
            raise ValueError(f"sweep axis {key}={value}: only comma-separated lists (discrete sweeps) work")
        else:
            grid[str(key)] = [override.value()]
    for axis, default in DEFAULT_AXIS_VALUES.items():
        grid.setdefault(axis, list(default))
    return grid


def flatten_published(published: Mapping | None) -> dict[Cell, Any]:
    """published[model][dataset][pruner][sanity_check][ratio] -> {cell: value}."""
    flat: dict[Cell, Any] = {}
    for model, datasets in (published or {}).items():
        for dataset, pruners in (datasets or {}).items():
            for pruner, checks in (pruners or {}).items():
                for check, ratios in (checks or {}).items():
                    for ratio, value in (ratios or {}).items():
                        flat[(str(model), str(dataset), str(pruner), str(check), norm_ratio(ratio))] = value
    return flat


_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_PUBLISHED = re.compile(rf"^\s*({_NUMBER})\s*(?:(?:±|\+-|\\pm)\s*({_NUMBER}))?\s*$")


def parse_published(value: Any) -> tuple[float, float | None] | None:
    """"93.66 ± 0.08" -> (93.66, 0.08); "93.70" or 93.7 -> (93.7, None); None/blank -> None."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), None
    match = _PUBLISHED.match(str(value))
    if not match:
        raise ValueError(f"published value {value!r} is not 'mean ± std' or a number")
    return float(match.group(1)), (float(match.group(2)) if match.group(2) else None)


def sweep_name(data: Mapping[str, Any], source: str) -> str:
    """The table a sweep file (or multirun.yaml) belongs to: its `name`, else its file's stem."""
    return str(data.get("name") or Path(source).stem)


def spec_from_config(data: Mapping[str, Any], source: str) -> tuple[str, dict[str, list], dict[Cell, Any]]:
    """(name, grid, published) of one sweep file or one Hydra multirun.yaml."""
    name = sweep_name(data, source)
    hydra_node = data.get("hydra") or {}
    params = dict((hydra_node.get("sweeper") or {}).get("params") or {})
    # multirun.yaml also records the command line, whose sweeps replace the file's axes (as in Hydra itself).
    for override in (hydra_node.get("overrides") or {}).get("task") or []:
        key, sep, value = str(override).partition("=")
        if sep and key.lstrip("+~") in (*AXES, "seed"):
            params[key.lstrip("+~")] = value
    return name, parse_sweep_params(params), flatten_published(data.get("published"))


def default_sweeps_dir() -> Path:
    """$JACKPOT_SWEEPS_DIR, else ./multirun_sweeps, else the checkout this package is installed from."""
    env = os.environ.get("JACKPOT_SWEEPS_DIR")
    if env:
        return Path(env)
    here = Path.cwd() / "multirun_sweeps"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "multirun_sweeps"


def load_sweep_specs(sweeps_dir: str | Path) -> tuple[dict[str, SweepSpec], dict[str, str]]:
    """All sweep files -> ({table name: spec}, {file stem: table name}); several files may share one name."""
    specs: dict[str, SweepSpec] = {}
    stems: dict[str, str] = {}
    for path in sorted(Path(sweeps_dir).glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        name = sweep_name(data, str(path))
        specs.setdefault(name, SweepSpec(name)).add(data, str(path))
        stems[path.stem] = name
    return specs, stems


def specs_from_multirun_files(roots: Sequence[Path]) -> dict[str, SweepSpec]:
    """Hydra's multirun.yaml in a sweep dir: the grid of a sweep without a file (e.g. run with name=other)."""
    specs: dict[str, SweepSpec] = {}
    for root in roots:
        for path in sorted(root.rglob("multirun.yaml")):
            try:
                data = yaml.safe_load(path.read_text()) or {}
                name = sweep_name(data, str(path))
                specs.setdefault(name, SweepSpec(name)).add(data, str(path))
            except Exception:  # noqa: BLE001 - an odd multirun.yaml only costs the "missing" detection
                continue
    return specs
