"""Rebuild the paper's tables and figures from a sweep's results: the `jackpot-tables` command.

One module per step: cells (what keys a table cell), specs (what each table expects, from the sweep files),
loading (runs from results.json or wandb), summary (mean ± std over seeds per cell), layout (the paper's
arrangement), cell_text and labels (how cells and rows read), render (rich, markdown, LaTeX, CSV), figures
(matplotlib) and cli (the command; its docstring is the command's help). The names below are re-exported so
that `jackpot.tables.X` keeps working for every public X.
"""

from jackpot.tables.cell_text import cell_detail, fmt_diff, fmt_ours, fmt_published, fmt_seeds
from jackpot.tables.cells import AXES, RATIO_DIGITS, Cell, norm_ratio
from jackpot.tables.cli import FORMATS, METRICS, build_tables, main, parse_args
from jackpot.tables.figures import layer_densities, plot_accuracy_vs_ratio, plot_layer_densities
from jackpot.tables.labels import CHECK_LABELS, DATASET_LABELS, MODEL_LABELS, PRUNER_LABELS, group_label, row_label
from jackpot.tables.layout import Layout, make_layout
from jackpot.tables.loading import RUN_COLUMNS, Loaded, load_results_dir, load_sources, load_wandb
from jackpot.tables.render import CSV_COLUMNS, render_rich, to_csv, to_latex, to_markdown
from jackpot.tables.specs import (
    DEFAULT_AXIS_VALUES,
    SweepSpec,
    default_sweeps_dir,
    flatten_published,
    load_sweep_specs,
    parse_published,
    parse_sweep_params,
    spec_from_config,
    specs_from_multirun_files,
)
from jackpot.tables.summary import summarize

__all__ = [
    "AXES",
    "CHECK_LABELS",
    "CSV_COLUMNS",
    "Cell",
    "DATASET_LABELS",
    "DEFAULT_AXIS_VALUES",
    "FORMATS",
    "Layout",
    "Loaded",
    "METRICS",
    "MODEL_LABELS",
    "PRUNER_LABELS",
    "RATIO_DIGITS",
    "RUN_COLUMNS",
    "SweepSpec",
    "build_tables",
    "cell_detail",
    "default_sweeps_dir",
    "flatten_published",
    "fmt_diff",
    "fmt_ours",
    "fmt_published",
    "fmt_seeds",
    "group_label",
    "layer_densities",
    "load_results_dir",
    "load_sources",
    "load_sweep_specs",
    "load_wandb",
    "main",
    "make_layout",
    "norm_ratio",
    "parse_args",
    "parse_published",
    "parse_sweep_params",
    "plot_accuracy_vs_ratio",
    "plot_layer_densities",
    "render_rich",
    "row_label",
    "spec_from_config",
    "specs_from_multirun_files",
    "summarize",
    "to_csv",
    "to_latex",
    "to_markdown",
]
