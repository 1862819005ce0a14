"""Rebuild the paper's tables and figures from a sweep's results.

    jackpot-tables outputs/random_tickets              # one sweep dir (recursively: every results.json)
    jackpot-tables outputs/ --sweep partially_trained  # all runs, one table (empty cells: other sweeps)
    jackpot-tables wandb:my-entity/jackpot/random_tickets --format md,csv
    jackpot-tables outputs/quickstart --figures --out tables/

Each table cell (model, dataset, pruner, sanity_check, ratio) shows the mean ± sample std over seeds of
the final test accuracy (%), the published value from the sweep file's `published:` block, the difference
(ours − paper) and the seed count. Cells the sweep's grid expects but nobody ran show as "missing", cells
whose runs all failed show as "failed": a table never silently loses a cell. Malformed results files are
listed at the end, never fatal.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from jackpot.results import RESULTS_FILE, MalformedResults, read_results

AXES = ("model", "dataset", "pruner", "sanity_check", "ratio")
FORMATS = ("rich", "md", "latex", "csv")
METRICS = ("final_acc", "best_acc")
DEFAULT_AXIS_VALUES = {"sanity_check": ["none"]}
RATIO_DIGITS = 6

MODEL_LABELS = {"vgg19": "VGG19", "resnet32": "ResNet32", "resnet8": "ResNet8",
                "resnet32_thin": "ResNet32-thin", "vgg_tiny": "VGG-tiny"}
DATASET_LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits"}
PRUNER_LABELS = {"dense": "Full network", "lottery": "Lottery tickets", "snip": "SNIP", "grasp": "GraSP",
                 "smart_ratio": "Random tickets", "random": "Uniform random", "obd": "OBD",
                 "lr_rewinding": "LR rewinding", "hybrid": "Hybrid tickets"}
CHECK_LABELS = {"none": "", "random_labels": "random labels", "random_pixels": "random pixels",
                "random_pixels_labels": "random pixels+labels", "half_dataset": "half dataset",
                "layerwise_rearrange": "layerwise rearrange", "layerwise_shuffle": "shuffled weights",
                "reinit": "reinit"}

Cell = tuple[str, str, str, str, float]


def norm_ratio(value: Any) -> float:
    """Ratios as dictionary keys: 0.9 from YAML, JSON and wandb must compare equal."""
    return round(float(value), RATIO_DIGITS)


# ----------------------------------------------------------------------------------------------- sweep files


@dataclass
class SweepSpec:
    """What one table expects: the union of the grids of all sweep files of this `name`, and their numbers."""

    name: str
    files: list[str] = field(default_factory=list)
    grids: list[dict[str, list]] = field(default_factory=list)
    published: dict[Cell, Any] = field(default_factory=dict)

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

    def expected(self) -> dict[Cell, int]:
        """Every cell the table should hold -> how many seeds each should have."""
        cells: dict[Cell, int] = {}
        for grid in self.grids:
            if any(axis not in grid for axis in AXES):
                continue  # an axis left to the config's default: its value is unknown here
            n_seeds = len(grid.get("seed", [0]))
            for combo in itertools.product(*(grid[axis] for axis in AXES)):
                cell = _cell(dict(zip(AXES, combo, strict=True)))
                cells[cell] = max(cells.get(cell, 0), n_seeds)
        for cell in self.published:
            cells.setdefault(cell, 0)  # published but run by another sweep (dense rows): seed count unknown
        return cells


def _cell(values: Mapping[str, Any]) -> Cell:
    return (str(values["model"]), str(values["dataset"]), str(values["pruner"]), str(values["sanity_check"]),
            norm_ratio(values["ratio"]))


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


def spec_from_config(data: Mapping[str, Any], source: str) -> tuple[str, dict[str, list], dict[Cell, Any]]:
    """(name, grid, published) of one sweep file or one Hydra multirun.yaml."""
    name = str(data.get("name") or Path(source).stem)
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
    return Path(__file__).resolve().parents[2] / "multirun_sweeps"


def load_sweep_specs(sweeps_dir: str | Path) -> tuple[dict[str, SweepSpec], dict[str, str]]:
    """All sweep files -> ({table name: spec}, {file stem: table name}); several files may share one name."""
    specs: dict[str, SweepSpec] = {}
    stems: dict[str, str] = {}
    for path in sorted(Path(sweeps_dir).glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        name, grid, published = spec_from_config(data, str(path))
        spec = specs.setdefault(name, SweepSpec(name))
        spec.files.append(str(path))
        spec.grids.append(grid)
        spec.published.update(published)
        stems[path.stem] = name
    return specs, stems


def specs_from_multirun_files(roots: Sequence[Path]) -> dict[str, SweepSpec]:
    """Hydra's multirun.yaml in a sweep dir: the grid of a sweep without a file (e.g. run with name=other)."""
    specs: dict[str, SweepSpec] = {}
    for root in roots:
        for path in sorted(root.rglob("multirun.yaml")):
            try:
                data = yaml.safe_load(path.read_text()) or {}
                name, grid, published = spec_from_config(data, str(path))
            except Exception:  # noqa: BLE001 - an odd multirun.yaml only costs the "missing" detection
                continue
            spec = specs.setdefault(name, SweepSpec(name))
            spec.files.append(str(path))
            spec.grids.append(grid)
            spec.published.update(published)
    return specs


# ----------------------------------------------------------------------------------------------- results


@dataclass
class Loaded:
    """Runs read from the sources: one row per run, plus the files that could not be trusted."""

    runs: pd.DataFrame
    malformed: list[str]
    roots: list[Path]


RUN_COLUMNS = ["name", *AXES, "seed", "status", "final_acc", "best_acc", "layers", "source_path", "mtime"]


def _run_record(data: Mapping[str, Any], path: str, mtime: float) -> dict[str, Any]:
    cell = data["cell"]
    record = {
        "name": str(data.get("name") or (data.get("config") or {}).get("name") or "unnamed"),
        "model": str(cell["model"]), "dataset": str(cell["dataset"]), "pruner": str(cell["pruner"]),
        "sanity_check": str(cell["sanity_check"]), "ratio": norm_ratio(cell["ratio"]),
        "seed": int(cell["seed"]),
        "status": str(data["status"]),
        "final_acc": _number(data.get("final_acc")), "best_acc": _number(data.get("best_acc")),
        "layers": data.get("layers") if isinstance(data.get("layers"), list) else None,
        "source_path": path, "mtime": mtime,
    }
    return record


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def load_results_dir(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every results.json under `root`; a bad one goes to the malformed list with the reason."""
    records, malformed = [], []
    for path in sorted(root.rglob(RESULTS_FILE)):
        try:
            data = read_results(path)
            records.append(_run_record(data, str(path), path.stat().st_mtime))
        except MalformedResults as err:
            malformed.append(str(err))
        except (KeyError, TypeError, ValueError, OSError) as err:
            malformed.append(f"{path}: {type(err).__name__}: {err}")
    return records, malformed


def load_wandb(source: str) -> tuple[list[dict[str, Any]], list[str]]:
    """`wandb:entity/project[/group]`: cell keys from each run's flat config, accuracies from its summary."""
    import wandb

    parts = source.removeprefix("wandb:").strip("/").split("/")
    if len(parts) < 2:
        raise SystemExit(f"{source}: expected wandb:entity/project[/group]")
    project, group = "/".join(parts[:2]), (parts[2] if len(parts) > 2 else None)
    runs = wandb.Api().runs(project, filters={"group": group} if group else {}, lazy=False)
    records, malformed = [], []
    for run in runs:
        where = f"wandb:{project}/{run.id}"
        if run.state == "running":
            continue
        config, summary = dict(run.config), dict(run.summary)
        try:
            done = run.state == "finished" and isinstance(summary.get("final_acc"), int | float)
            data = {"name": run.group or config.get("name"), "status": "complete" if done else "failed",
                    "cell": {k: config[k] for k in (*AXES, "seed")},
                    "final_acc": summary.get("final_acc"), "best_acc": summary.get("best_acc")}
            created = pd.Timestamp(run.created_at).timestamp() if run.created_at else 0.0
            records.append(_run_record(data, where, created))
        except (KeyError, TypeError, ValueError) as err:
            malformed.append(f"{where}: {type(err).__name__}: {err}")
    return records, malformed


def load_sources(sources: Sequence[str]) -> Loaded:
    records, malformed, roots = [], [], []
    for source in sources:
        if source.startswith("wandb:"):
            got, bad = load_wandb(source)
        else:
            root = Path(source)
            if not root.exists():
                malformed.append(f"{source}: no such file or directory")
                continue
            roots.append(root if root.is_dir() else root.parent)
            got, bad = load_results_dir(root) if root.is_dir() else _load_one(root)
        records += got
        malformed += bad
    runs = pd.DataFrame(records, columns=RUN_COLUMNS)
    if not runs.empty:
        # One run per (name, cell, seed): a complete one over a failed one, then the newest.
        runs["_complete"] = runs["status"] == "complete"
        runs = runs.sort_values(["_complete", "mtime"]).drop_duplicates(["name", *AXES, "seed"], keep="last")
        runs = runs.drop(columns="_complete").reset_index(drop=True)
    return Loaded(runs, malformed, roots)


def _load_one(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        return [_run_record(read_results(path), str(path), path.stat().st_mtime)], []
    except (MalformedResults, KeyError, TypeError, ValueError) as err:
        return [], [str(err)]


# ----------------------------------------------------------------------------------------------- aggregation


def summarize(runs: pd.DataFrame, spec: SweepSpec, metric: str = "final_acc") -> pd.DataFrame:
    """One row per cell of the table: expected cells, plus any other cell the table's own runs hold.

    A cell is filled from the runs named like the table; a cell with no such runs takes the runs of the same
    cell from another sweep (the dense rows come from `dense`, for instance), the one with the most complete
    runs, and says so in `source`.
    """
    expected = spec.expected()
    own = runs[runs["name"] == spec.name]
    cells: dict[Cell, int] = dict(expected)
    for cell in own[list(AXES)].itertuples(index=False, name=None):
        cells.setdefault(_cell(dict(zip(AXES, cell, strict=True))), 0)

    by_cell = {key: group for key, group in runs.groupby(list(AXES), sort=False)} if not runs.empty else {}
    rows = []
    for cell, n_expected in cells.items():
        group = by_cell.get(cell)
        source = spec.name
        if group is not None and not (group["name"] == spec.name).any():
            complete = group[group["status"] == "complete"].groupby("name").size()
            source = str(complete.idxmax()) if not complete.empty else str(group["name"].iloc[0])
        chosen = group[group["name"] == source] if group is not None else None
        rows.append(_cell_row(cell, chosen, n_expected, spec.published.get(cell), metric, source))
    return pd.DataFrame(rows)


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


# ----------------------------------------------------------------------------------------------- layout


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

    cells: dict[tuple, dict[str, Any]] = {}
    for rec in summary.to_dict("records"):
        row = tuple(rec[a] for a in row_axes)
        ratio = rec["ratio"]
        if rec["pruner"] == "dense" and ratio not in ratios:
            ratio = ratios[0]  # the paper prints the full network under the first ratio, "-" elsewhere
        cells[(row, (rec[col_axis], ratio))] = rec
    return Layout(title, col_axis, columns, rows, row_axes, cells)


def row_label(row: tuple[str, ...], row_axes: tuple[str, ...]) -> str:
    values = dict(zip(row_axes, row, strict=True))
    label = PRUNER_LABELS.get(values["pruner"], values["pruner"])
    check = CHECK_LABELS.get(values["sanity_check"], values["sanity_check"])
    if check:
        label += f" · {check}"
    if "model" in values:
        label = f"{MODEL_LABELS.get(values['model'], values['model'])} · {label}"
    return label


def group_label(axis: str, value: str) -> str:
    return (DATASET_LABELS if axis == "dataset" else MODEL_LABELS).get(value, value)


def fmt_ours(rec: Mapping[str, Any], pm: str = "±") -> str:
    if rec["status"] == "missing":
        return "missing"
    if rec["status"] == "failed":
        return f"failed ({rec['n_failed']})"
    text = f"{rec['mean']:.2f}" if rec["n"] < 2 else f"{rec['mean']:.2f} {pm} {rec['std']:.2f}"
    if rec["n_failed"]:
        text += f" (+{rec['n_failed']} failed)"
    return text


def fmt_seeds(rec: Mapping[str, Any]) -> str:
    n_expected = rec["n_expected"]
    return f"n={rec['n']}" if not n_expected or n_expected == rec["n"] else f"n={rec['n']}/{n_expected}"


def fmt_diff(rec: Mapping[str, Any]) -> str:
    return "" if math.isnan(rec["diff"]) else f"{rec['diff']:+.2f}"


def fmt_published(rec: Mapping[str, Any], pm: str = "±") -> str:
    if math.isnan(rec["published_mean"]):
        return ""
    if math.isnan(rec["published_std"]):
        return f"{rec['published_mean']:.2f}"
    return f"{rec['published_mean']:.2f} {pm} {rec['published_std']:.2f}"


def cell_detail(rec: Mapping[str, Any], pm: str = "±", delta: str = "Δ", sep: str = ", ") -> str:
    """The small print of a cell: the paper's value, then the difference and the seed count."""
    pub = fmt_published(rec, pm)
    rest = []
    if fmt_diff(rec):
        rest.append(f"{delta} {fmt_diff(rec)}")
    if rec["status"] != "missing":
        rest.append(fmt_seeds(rec))
    parts = ([f"paper {pub}"] if pub else []) + ([", ".join(rest)] if rest else [])
    return sep.join(parts)


def _borrowed(layout: Layout, table: str) -> list[str]:
    return sorted({rec["source"] for rec in layout.cells.values() if rec["source"] not in ("", table)})


# ----------------------------------------------------------------------------------------------- outputs


def _row_texts(layout: Layout, cell: Callable[[Mapping[str, Any]], str],
               empty: str = "-") -> Iterator[tuple[str, list[str]]]:
    """(row label, one text per column) for every row: `cell(record)` where a cell has one, else `empty`."""
    for row in layout.rows:
        texts = [empty if (rec := layout.cells.get((row, column))) is None else cell(rec)
                 for column in layout.columns]
        yield row_label(row, layout.row_axes), texts


def render_rich(layout: Layout, table_name: str, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{layout.title}  (test accuracy %, mean ± std over seeds)", show_lines=True)
    table.add_column("method", no_wrap=True)
    for group, ratio in layout.columns:
        table.add_column(f"{group_label(layout.col_axis, group)}\n{ratio:.0%}", justify="center")

    def cell(rec: Mapping[str, Any]) -> str:
        style = {"missing": "yellow", "failed": "red"}.get(rec["status"], "bold")
        detail = cell_detail(rec, sep="\n")
        return f"[{style}]{fmt_ours(rec)}[/{style}]" + (f"\n[dim]{detail}[/dim]" if detail else "")

    for label, texts in _row_texts(layout, cell, empty="[dim]-[/dim]"):
        table.add_row(label, *texts)
    console.print(table)
    borrowed = _borrowed(layout, table_name)
    if borrowed:
        console.print(f"[dim]cells without runs of their own were taken from: {', '.join(borrowed)}[/dim]")


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
        lines += ["", f"Cells without runs of their own are taken from the sweeps: {', '.join(borrowed)}."]
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


# ----------------------------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_ratio(summary: pd.DataFrame, spec: SweepSpec, path: Path) -> Path | None:
    """Accuracy against the pruning ratio: a line per sanity check, a panel per (model, dataset), method."""
    data = summary[(summary["pruner"] != "dense") & (summary["n"] > 0)]
    if data["ratio"].nunique() < 2:
        return None
    plt = _plt()
    order = {axis: spec.axis_order(axis) for axis in AXES}
    panels_rows = sorted(set(zip(data["model"], data["dataset"], strict=True)),
                         key=lambda md: (_rank(order["model"], md[0]), _rank(order["dataset"], md[1])))
    pruners = sorted(data["pruner"].unique(), key=lambda p: _rank(order["pruner"], p))
    fig, axes = plt.subplots(len(panels_rows), len(pruners), squeeze=False,
                             figsize=(4.2 * len(pruners), 3.4 * len(panels_rows)))
    for i, (model, dataset) in enumerate(panels_rows):
        dense = summary[(summary["pruner"] == "dense") & (summary["model"] == model)
                        & (summary["dataset"] == dataset) & (summary["n"] > 0)]
        for j, pruner in enumerate(pruners):
            ax = axes[i][j]
            sub = data[(data["model"] == model) & (data["dataset"] == dataset) & (data["pruner"] == pruner)]
            for check in sorted(sub["sanity_check"].unique(), key=lambda c: _rank(order["sanity_check"], c)):
                line = sub[sub["sanity_check"] == check].sort_values("ratio")
                ax.errorbar(line["ratio"] * 100, line["mean"], yerr=line["std"].fillna(0.0), marker="o",
                            capsize=3, label=CHECK_LABELS.get(check) or "original")
                paper = line[line["published_mean"].notna()]
                if not paper.empty:
                    ax.plot(paper["ratio"] * 100, paper["published_mean"], linestyle="none", marker="x",
                            color="black", label="paper" if check == "none" else None)
            if not dense.empty:
                ax.axhline(float(dense["mean"].iloc[0]), color="grey", linestyle="--", linewidth=1,
                           label="dense")
            ax.set_title(f"{PRUNER_LABELS.get(pruner, pruner)}: {MODEL_LABELS.get(model, model)}, "
                         f"{DATASET_LABELS.get(dataset, dataset)}", fontsize=9)
            ax.set_xlabel("weights removed (%)")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _rank(order: list, value: Any) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), str(value))


def layer_densities(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, layer): kept / total, averaged over the complete runs that recorded their layers."""
    rows = []
    for rec in runs[runs["status"] == "complete"].to_dict("records"):
        for index, layer in enumerate(rec["layers"] or []):
            try:
                rows.append({**{a: rec[a] for a in AXES}, "index": index, "layer": str(layer["name"]),
                             "density": float(layer["kept"]) / float(layer["total"])})
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                continue
    frame = pd.DataFrame(rows, columns=[*AXES, "index", "layer", "density"])
    if frame.empty:
        return frame
    return frame.groupby([*AXES, "index", "layer"], as_index=False)["density"].mean()


def plot_layer_densities(runs: pd.DataFrame, spec: SweepSpec, out: Path, table_name: str) -> list[Path]:
    """The layerwise-ratio picture: kept fraction per layer, one line per method, one panel per ratio."""
    dens = layer_densities(runs)
    dens = dens[dens["pruner"] != "dense"] if not dens.empty else dens
    if dens.empty:
        return []
    plt = _plt()
    order = {axis: spec.axis_order(axis) for axis in AXES}
    paths = []
    for (model, dataset), sub in dens.groupby(["model", "dataset"]):
        ratios = sorted(sub["ratio"].unique())
        fig, axes = plt.subplots(1, len(ratios), squeeze=False, figsize=(5.0 * len(ratios), 3.6), sharey=True)
        for j, ratio in enumerate(ratios):
            ax = axes[0][j]
            at = sub[sub["ratio"] == ratio]
            methods = sorted(set(zip(at["pruner"], at["sanity_check"], strict=True)),
                             key=lambda m: (_rank(order["pruner"], m[0]), _rank(order["sanity_check"], m[1])))
            for pruner, check in methods:
                line = at[(at["pruner"] == pruner) & (at["sanity_check"] == check)].sort_values("index")
                label = PRUNER_LABELS.get(pruner, pruner) + (f" ({CHECK_LABELS.get(check, check)})"
                                                             if check != "none" else "")
                ax.plot(line["index"], line["density"], marker=".", label=label)
            ax.set_title(f"{MODEL_LABELS.get(model, model)}, {DATASET_LABELS.get(dataset, dataset)}: "
                         f"{ratio:.0%} removed", fontsize=9)
            ax.set_xlabel("layer (prunable, in network order)")
            ax.set_ylabel("kept fraction")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{table_name}_layers_{model}_{dataset}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------- driver


def build_tables(loaded: Loaded, specs: Mapping[str, SweepSpec], table_names: Sequence[str], out: Path | None,
                 formats: Sequence[str], figures: bool, metric: str = "final_acc",
                 console: Any = None) -> dict[str, pd.DataFrame]:
    """Summaries per table, printed and written; returns {table name: summary frame}."""
    summaries = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for name in table_names:
        spec = specs.get(name) or SweepSpec(name)
        summary = summarize(loaded.runs, spec, metric)
        if summary.empty:
            continue
        summaries[name] = summary
        layout = make_layout(summary, spec)
        if "rich" in formats:
            render_rich(layout, name, console)
        if out is None:
            continue
        if "md" in formats:
            (out / f"{name}.md").write_text(to_markdown(layout, name))
        if "latex" in formats:
            (out / f"{name}.tex").write_text(to_latex(layout, name))
        if "csv" in formats:
            to_csv(summary, name, out / f"{name}.csv")
        if figures:
            plot_accuracy_vs_ratio(summary, spec, out / f"{name}_accuracy_vs_ratio.png")
            own = loaded.runs[loaded.runs["name"] == name]
            plot_layer_densities(own if not own.empty else loaded.runs, spec, out, name)
    return summaries


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jackpot-tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="sweep dir(s) (searched recursively for results.json) "
                        "or wandb:entity/project[/group]")
    parser.add_argument("--sweep", action="append", default=None,
                        help="table(s) to build: a sweep file name or a run name (default: every name found)")
    parser.add_argument("--sweeps-dir", default=None,
                        help="folder of sweep files (default: multirun_sweeps/)")
    parser.add_argument("--out", default=None,
                        help="where to write md/tex/csv/png (default: <first dir>/tables)")
    parser.add_argument("--format", default=",".join(FORMATS),
                        help=f"comma-separated subset of {','.join(FORMATS)}")
    parser.add_argument("--figures", action="store_true", help="also write PNG figures")
    parser.add_argument("--metric", choices=METRICS, default="final_acc",
                        help="final_acc (last epoch, default) or best_acc (best epoch on the test set)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from rich.console import Console

    console = Console()
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        console.print(f"[red]unknown format(s) {unknown}; choose from {', '.join(FORMATS)}[/red]")
        return 2

    loaded = load_sources(args.sources)
    sweeps_dir = Path(args.sweeps_dir) if args.sweeps_dir else default_sweeps_dir()
    specs, stems = load_sweep_specs(sweeps_dir) if sweeps_dir.is_dir() else ({}, {})
    for name, spec in specs_from_multirun_files(loaded.roots).items():
        specs.setdefault(name, spec)  # a sweep file wins over a (possibly narrowed) multirun.yaml

    if args.sweep:
        names = [stems.get(s, s) for s in args.sweep]
        names = list(dict.fromkeys(names))
    else:
        names = list(dict.fromkeys(loaded.runs["name"])) if not loaded.runs.empty else []
        names = sorted(names, key=lambda n: (n not in specs, n))
    if not names:
        console.print(f"[yellow]no results.json found under {', '.join(args.sources)}[/yellow]")
        _report_malformed(console, loaded.malformed)
        return 1

    if args.out:
        out: Path | None = Path(args.out)
    elif loaded.roots:
        out = loaded.roots[0] / "tables"
    else:
        out = Path("tables")
    written_formats = [f for f in formats if f != "rich"]
    writes = bool(written_formats or args.figures)
    summaries = build_tables(loaded, specs, names, out if writes else None, formats, args.figures,
                             args.metric, console)
    for name in names:
        if name not in summaries:
            console.print(f"[yellow]{name}: no runs and no sweep file with that name[/yellow]")
    if summaries and writes:
        console.print(f"written to {out}/")
    _report_malformed(console, loaded.malformed)
    return 0


def _report_malformed(console: Any, malformed: Sequence[str]) -> None:
    if malformed:
        console.print(f"[red]{len(malformed)} malformed results file(s), skipped:[/red]")
        for line in malformed:
            console.print(f"  {line}", markup=False, highlight=False)


if __name__ == "__main__":
    sys.exit(main())
