"""The paper's figures (matplotlib, no display needed): accuracy against the pruning ratio, and the kept
fraction per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from jackpot.tables.cells import AXES
from jackpot.tables.labels import CHECK_LABELS, DATASET_LABELS, MODEL_LABELS, PRUNER_LABELS
from jackpot.tables.specs import SweepSpec


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
