"""Rebuild the paper's tables and figures from a sweep's results.

    jackpot-tables outputs/random_tickets              # one sweep dir (recursively: every results.json)
    jackpot-tables outputs/ --sweep partially_trained  # all runs, one table (empty cells: other sweeps)
    jackpot-tables wandb:my-entity/jackpot/random_tickets --format md,csv
    jackpot-tables outputs/quickstart --figures --out tables/
    jackpot-tables outputs/ --sweep sanity_battery --wandb offline   # also a wandb run in the sweep's group

Each table cell (model, dataset, pruner, sanity_check, ratio) shows the mean ± sample std over seeds of
the final test accuracy (%), the published value from the sweep file's `published:` block, the difference
(ours − paper) and the seed count. Cells the sweep's grid expects but nobody ran show as "missing", cells
whose runs all failed show as "failed": a table never silently loses a cell. Runs that started and have no
results yet are listed at the end as running or interrupted (rerunning the sweep resumes those), and so are
malformed results files, never fatal.

A sanity battery (multirun_sweeps/sanity_battery.yaml) also prints its verdicts: each check's effect on accuracy
against the plain method, and the method against random tickets and the dense network, as the difference of
means ± its standard error with a two-sided Welch t-test and its 95 % confidence interval, and the paper's reading
of the outcome; a difference not told apart from zero reads as no effect only when the interval rules out
--margin points or more, else as inconclusive, with the seeds that would decide it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from jackpot.tables.battery import battery_spec, is_battery, report_battery
from jackpot.tables.cost import sweep_cost
from jackpot.tables.figures import plot_accuracy_vs_ratio, plot_layer_densities
from jackpot.tables.follow_up import battery_follow_ups, follow_ups_frame
from jackpot.tables.layout import make_layout
from jackpot.tables.loading import Loaded, load_sources
from jackpot.tables.render import render_rich, to_csv, to_latex, to_markdown
from jackpot.tables.specs import SweepSpec, default_sweeps_dir, load_sweep_specs, specs_from_multirun_files
from jackpot.tables.summary import summarize
from jackpot.tables.unfinished import describe_unfinished, find_unfinished
from jackpot.tables.verdict_overview import overview
from jackpot.tables.verdicts import CORRECTIONS, MARGIN
from jackpot.tables.wandb_log import FROM_ENV, MODES, log_tables, resolve_mode

FORMATS = ("rich", "md", "latex", "csv")
METRICS = ("final_acc", "best_acc")


def build_tables(loaded: Loaded, specs: Mapping[str, SweepSpec], table_names: Sequence[str], out: Path | None,
                 formats: Sequence[str], figures: bool, metric: str = "final_acc",
                 console: Any = None, verdicts: dict[str, pd.DataFrame] | None = None,
                 margin: float = MARGIN, correction: str = "none") -> dict[str, pd.DataFrame]:
    """Summaries per table, printed and written; returns {table name: summary frame} (and fills `verdicts`
    with {table name: verdict frame} for the sanity batteries among them, read with `margin` and
    `correction`)."""
    summaries = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for name in table_names:
        spec = specs.get(name) or SweepSpec(name)
        battery = is_battery(spec)
        if battery:  # its cells come from its runs, not from its grid (jackpot.tables.battery)
            spec = battery_spec(spec, loaded.runs)
        summary = summarize(loaded.runs, spec, metric)
        if summary.empty:
            continue
        summaries[name] = summary
        layout = make_layout(summary, spec)
        if "rich" in formats:
            render_rich(layout, name, console)
        if battery:
            cost = sweep_cost(loaded.runs[loaded.runs["name"] == name])
            per_run = cost.hours * 3600 / cost.runs if cost is not None else None
            frame = report_battery(spec, summary, out, formats, figures, console, margin, per_run, correction)
            if verdicts is not None:
                verdicts[name] = frame
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
    parser.add_argument("--margin", default=str(MARGIN), metavar="POINTS",
                        help="a sanity battery's verdicts: the accuracy points (> 0) below which a difference the "
                        "test cannot tell from zero reads as no effect; a wider confidence interval reads as "
                        f"inconclusive (default {MARGIN:g})")
    parser.add_argument("--correction", choices=CORRECTIONS, default="none",
                        help="a sanity battery's verdicts: none (each comparison at p < 0.05, as the paper reads "
                        "them) or bonferroni (each of a method cell's m tested comparisons at 0.05 / m, its "
                        "intervals too, so that a cell's verdict is wrong anywhere with at most 5 %% chance)")
    parser.add_argument("--wandb", nargs="?", const=FROM_ENV, default=None, metavar="{online,offline}",
                        help="also log the tables (a battery's verdicts too) and figures as a wandb run in each "
                        "sweep's group (job type tables): online or offline; without a value WANDB_MODE decides "
                        "(default online); WANDB_MODE=disabled turns it off")
    parser.add_argument("--wandb-project", default=os.environ.get("WANDB_PROJECT") or "jackpot",
                        help="wandb project (default: $WANDB_PROJECT, else jackpot, as conf/logger/wandb.yaml)")
    parser.add_argument("--wandb-entity", default=os.environ.get("WANDB_ENTITY"),
                        help="wandb entity (default: $WANDB_ENTITY, else your default entity)")
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

    if args.wandb not in (None, FROM_ENV, *MODES):
        console.print(f"[red]--wandb={args.wandb} is not allowed; choose {' or '.join(MODES)}, or give no value "
                      "(WANDB_MODE decides)[/red]")
        return 2

    margin = _margin(args.margin)
    if margin is None:
        console.print(f"[red]--margin={args.margin} is not allowed; give accuracy points above 0, e.g. "
                      f"--margin {MARGIN:g}[/red]")
        return 2

    loaded = load_sources(args.sources)
    sweeps_dir = Path(args.sweeps_dir) if args.sweeps_dir else default_sweeps_dir()
    specs, stems = load_sweep_specs(sweeps_dir) if sweeps_dir.is_dir() else ({}, {})
    for name, spec in specs_from_multirun_files(loaded.roots).items():
        specs.setdefault(name, spec)  # a sweep file wins over a (possibly narrowed) multirun.yaml

    if args.sweep:
        names = [stems.get(s, s) for s in args.sweep]
        names = list(dict.fromkeys(names))
        run_names = set(loaded.runs["name"]) if not loaded.runs.empty else set()
        unknown = [s for s in args.sweep if stems.get(s, s) not in specs and s not in run_names]
        if unknown:
            known = sorted(set(stems) | set(specs) | run_names)
            console.print(f"[red]--sweep {', '.join(unknown)}: no sweep file and no runs with that name under "
                          f"{', '.join(args.sources)}; known: {', '.join(known) or 'none'}[/red]", soft_wrap=True)
            return 2
    else:
        names = list(dict.fromkeys(loaded.runs["name"])) if not loaded.runs.empty else []
        names = sorted(names, key=lambda n: (n not in specs, n))
    if not names:
        console.print(f"[yellow]no results.json found under {', '.join(args.sources)}[/yellow]")
        _report_unfinished(console, loaded.roots, None)
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
    verdicts: dict[str, pd.DataFrame] = {}
    summaries = build_tables(loaded, specs, names, out if writes else None, formats, args.figures,
                             args.metric, console, verdicts, margin, args.correction)
    for name in names:
        if name not in summaries:
            console.print(f"[yellow]{name}: no cells to show (no runs yet, and its grid leaves an axis to the "
                          "config's defaults)[/yellow]")
    for name in names:  # what each sweep's runs cost in device time
        if not loaded.runs.empty and (cost := sweep_cost(loaded.runs[loaded.runs["name"] == name])) is not None:
            console.print(cost.describe(name), markup=False, highlight=False, soft_wrap=True)
    if summaries and writes:
        console.print(f"written to {out}/")
    if args.wandb and summaries:
        _log_to_wandb(console, args, summaries, verdicts, out if args.figures else None)
    _report_unfinished(console, loaded.roots, names)
    _report_malformed(console, loaded.malformed)
    return 0


def battery_frames(name: str, verdicts: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A battery's tables for wandb: its verdicts, their overview (several cells) and its follow-ups."""
    frames = {f"{name}_verdicts": verdicts}
    if (glance := overview(verdicts)) is not None:
        frames[f"{name}_verdicts_overview"] = glance.rename_axis("comparison").reset_index()
    if steps := battery_follow_ups(verdicts):
        frames[f"{name}_follow_ups"] = follow_ups_frame(steps)
    return frames


def _margin(text: str) -> float | None:
    """--margin as a positive, finite number of accuracy points; None when it is not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


def _log_to_wandb(console: Any, args: argparse.Namespace, summaries: Mapping[str, pd.DataFrame],
                  verdicts: Mapping[str, pd.DataFrame], figures_dir: Path | None) -> None:
    """One wandb run per table, in the group of the sweep of that name (where its jobs log)."""
    mode = resolve_mode(args.wandb)
    if mode == "disabled":
        console.print("[yellow]--wandb: WANDB_MODE=disabled, nothing logged[/yellow]")
        return
    for name, summary in summaries.items():
        frames = {name: summary, **(battery_frames(name, verdicts[name]) if name in verdicts else {})}
        figures = sorted(figures_dir.glob(f"{name}_*.png")) if figures_dir is not None else []
        where = log_tables(name, frames, figures, mode, args.wandb_project, args.wandb_entity, figures_dir)
        console.print(f"wandb ({mode}): {', '.join(frames)} and {len(figures)} figure(s) logged to group {name}: "
                      f"{where}", markup=False, highlight=False, soft_wrap=True)
    import wandb

    wandb.teardown()  # waits until wandb's service has written everything (an offline run is complete on return)


def _report_unfinished(console: Any, roots: Sequence[Path], names: Sequence[str] | None) -> None:
    lines = describe_unfinished(find_unfinished(roots, names))
    if lines:
        console.print(lines[0], style="yellow", markup=False, highlight=False, soft_wrap=True)
        for line in lines[1:]:  # paths whole: a pipe or log gets them unbroken
            console.print(line, markup=False, highlight=False, soft_wrap=True)


def _report_malformed(console: Any, malformed: Sequence[str]) -> None:
    if malformed:
        console.print(f"[red]{len(malformed)} malformed results file(s), skipped:[/red]")
        for line in malformed:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
