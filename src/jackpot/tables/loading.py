"""Runs read from results.json files or wandb: one row per (name, cell, seed), and the sources that could not
be trusted, so that a bad file is reported instead of ending the command."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from jackpot.runs.identity import identity_hash, run_identity
from jackpot.runs.results import RESULTS_FILE, MalformedResults, read_results
from jackpot.tables.cells import AXES, norm_ratio


@dataclass
class Loaded:
    """Runs read from the sources: one row per run, plus the files that could not be trusted."""

    runs: pd.DataFrame
    malformed: list[str]
    roots: list[Path]


RUN_COLUMNS = ["name", *AXES, "seed", "status", "final_acc", "best_acc", "layers", "identity", "source_path",
               "mtime", "wall_time_s", "started_at", "finished_at", "pack", "device"]


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
        "identity": _identity(data), "source_path": path, "mtime": mtime,
        **_timing(data),
    }
    return record


def _timing(data: Mapping[str, Any]) -> dict[str, Any]:
    """What the run's device time was (jackpot.tables.cost): wall time, start and end, its pack if it trained
    side by side in one, its device."""
    runtime = data.get("runtime") if isinstance(data.get("runtime"), dict) else {}
    pack = runtime.get("pack") if isinstance(runtime.get("pack"), dict) else {}
    return {"wall_time_s": _number(data.get("wall_time_s")), "started_at": _number(data.get("started_at")),
            "finished_at": _number(data.get("finished_at")),
            "pack": str(pack["id"]) if pack.get("side_by_side") and pack.get("id") else None,
            "device": runtime.get("device") if isinstance(runtime.get("device"), str) else None}


def _identity(data: Mapping[str, Any]) -> str | None:
    """The hash of the run's identity (`jackpot.runs.identity`) without its seed, recomputed from its stored
    config (None without one): runs of one cell with the same such identity are seeds of the same experiment,
    whatever sweep (`name`) ran them."""
    config = data.get("config")
    if not isinstance(config, dict):
        return None
    identity = run_identity(config)
    identity.pop("seed", None)
    return identity_hash(identity)


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
                    "cell": {k: config[k] for k in (*AXES, "seed")}, "config": config.get("full"),
                    "final_acc": summary.get("final_acc"), "best_acc": summary.get("best_acc")}
            created = pd.Timestamp(run.created_at).timestamp() if run.created_at else 0.0
            records.append(_run_record(data, where, created))
        except (KeyError, TypeError, ValueError) as err:
            malformed.append(f"{where}: {type(err).__name__}: {err}")
    return records, malformed


def load_sources(sources: Sequence[str]) -> Loaded:
    """Runs from results folders, single results files and wandb projects, one per (name, cell, seed):
    a rerun replaces the run it repeats, and a complete run beats a failed one."""
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
