"""The per-run results file: what a table cell needs, written atomically, read defensively."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jackpot.runs.atomic_io import write_json_atomic
from jackpot.runs.identity import run_identity

RESULTS_FILE = "results.json"
PROGRESS_FILE = "progress.json"  # a running cell's stage and epoch, rewritten at each epoch end
SCHEMA_VERSION = 1
CELL_KEYS = ("model", "dataset", "pruner", "sanity_check", "ratio", "seed")
STATUSES = ("complete", "failed")


class MalformedResults(ValueError):
    """A results file that cannot be trusted (unreadable JSON, missing keys, wrong types)."""


def write_results(output_dir: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(output_dir) / RESULTS_FILE
    write_json_atomic(path, {"schema": SCHEMA_VERSION, **payload})
    return path


def write_progress(path: str | Path, stage: str, epoch: int | None = None, epochs: int | None = None) -> None:
    """Rewrite a run's progress file (atomically): its stage, and the epochs done of the stage's total if it trains."""
    payload: dict[str, Any] = {"stage": stage, "time": time.time()}
    if epochs is not None:
        payload.update(epoch=epoch, epochs=epochs)
    write_json_atomic(Path(path), payload)


def read_progress(output_dir: str | Path) -> str:
    """`<stage> epoch k/n` (or just the stage, e.g. while waiting for a trunk) from a run's progress file; empty
    when there is none (yet) or it cannot be read."""
    stage, done, total = progress_of(output_dir)
    return stage if total is None else f"{stage} epoch {done}/{total}"


def progress_of(output_dir: str | Path) -> tuple[str, int | None, int | None]:
    """(stage, epochs done, the stage's epochs) from a run's progress file: ("", None, None) when there is none
    (yet) or it cannot be read, (stage, None, None) for a stage that trains nothing."""
    try:
        data = json.loads((Path(output_dir) / PROGRESS_FILE).read_text())
        if "epochs" not in data:
            return str(data["stage"]), None, None
        return str(data["stage"]), int(data["epoch"]), int(data["epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        return "", None, None


def read_results(path: str | Path) -> dict[str, Any]:
    """Parse and check one results file; raise MalformedResults saying what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedResults(f"{path}: not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise MalformedResults(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in ("status", "cell") if k not in data]
    if missing:
        raise MalformedResults(f"{path}: missing keys {missing}")
    if data["status"] not in STATUSES:
        raise MalformedResults(f"{path}: status={data['status']!r}, expected one of {STATUSES}")
    cell = data["cell"]
    if not isinstance(cell, dict) or any(k not in cell for k in CELL_KEYS):
        raise MalformedResults(f"{path}: cell must hold {CELL_KEYS}")
    if data["status"] == "complete":
        for key in ("final_acc", "best_acc"):
            if not isinstance(data.get(key), int | float):
                raise MalformedResults(f"{path}: {key} must be a number for a complete run")
    return data


def is_complete(output_dir: str | Path, identity: Mapping[str, Any] | None = None) -> bool:
    """True when `output_dir` holds a complete results file (of a run with this identity, if one is given:
    see `jackpot.runs.identity`, recomputed from the config the results file stores)."""
    path = Path(output_dir) / RESULTS_FILE
    if not path.exists():
        return False
    try:
        data = read_results(path)
    except MalformedResults:
        return False
    if data["status"] != "complete":
        return False
    return identity is None or (isinstance(data.get("config"), dict) and run_identity(data["config"]) == identity)
