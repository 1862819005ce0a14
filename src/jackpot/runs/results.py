"""The per-run results file: what a table cell needs, written atomically, read defensively."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

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


class Progress(NamedTuple):
    """A run's progress file: its stage; for a stage that trains, the epochs done of its total and the epochs its
    newest checkpoint holds (where a rerun resumes; files written before checkpoints had an interval say the
    epochs done)."""

    stage: str
    done: int | None = None
    total: int | None = None
    checkpointed: int | None = None

    def __str__(self) -> str:
        if self.total is None:
            return self.stage
        text = f"{self.stage} epoch {self.done}/{self.total}"
        return text if self.checkpointed == self.done else f"{text}, checkpoint at {self.checkpointed}"


def write_progress(path: str | Path, stage: str, epoch: int | None = None, epochs: int | None = None,
                   checkpointed: int | None = None) -> None:
    """Rewrite a run's progress file (atomically): its stage, and if it trains the epochs done of the stage's
    total and the epochs its newest checkpoint holds (`epoch` when not given)."""
    payload: dict[str, Any] = {"stage": stage, "time": time.time()}
    if epochs is not None:
        payload.update(epoch=epoch, epochs=epochs, checkpointed=epoch if checkpointed is None else checkpointed)
    write_json_atomic(Path(path), payload)


def read_progress(output_dir: str | Path) -> str:
    """`<stage> epoch k/n` (`, checkpoint at j` when a rerun would resume from an earlier epoch), or just the
    stage (e.g. while waiting for a trunk), from a run's progress file; empty when there is none (yet) or it
    cannot be read."""
    return str(progress_of(output_dir))


def progress_of(output_dir: str | Path) -> Progress:
    """A run's progress file: Progress("") when there is none (yet) or it cannot be read, only a stage for a
    stage that trains nothing."""
    try:
        data = json.loads((Path(output_dir) / PROGRESS_FILE).read_text())
        if "epochs" not in data:
            return Progress(str(data["stage"]))
        done = int(data["epoch"])
        return Progress(str(data["stage"]), done, int(data["epochs"]), int(data.get("checkpointed", done)))
    except (OSError, ValueError, KeyError, TypeError):
        return Progress("")


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
