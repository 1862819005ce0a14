"""One training of a run that several sweeps share (`hydra.sweeper.reuse_from`), also when they run at once.

The sweeper leaves out a job whose very run (same identity, `name` aside) is complete in a sweep it reuses
from; that check happens when the sweep is launched. Two tables launched together, or one queued behind the
other on SLURM, would still both train their shared cells: each job's output dir and cell lock belong to its
own sweep. So each job also claims its run by identity in the cache every sweep shares
(`<paths.cache_dir>/runs/<identity hash>.lock`, a flock like the cell's, and beside it a record of which sweep
and output dir hold the claim). A job whose run is claimed by a sweep it reuses from, or was finished there
since its sweep was launched, skips: `jackpot-tables` takes that seed from the other sweep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jackpot.runs.atomic_io import write_json_atomic
from jackpot.runs.cell_lock import CellBusy, acquire_patience_s
from jackpot.runs.file_lock import exclusive
from jackpot.runs.results import is_complete

CLAIMS_DIR = "runs"
# how the progress file of a run started here and then left to another sweep begins (jackpot-tables lists it)
SKIPPED = "skipped:"
# how long a job that finds the claim taken waits for the holder's record (written right after taking the lock)
RECORD_PATIENCE_S = 2.0


class RunElsewhere(CellBusy):
    """Another sweep this one reuses from is training this run, or has finished it."""


def claim_paths(cache_dir: Path, digest: str) -> tuple[Path, Path]:
    """The claim's lock file and its record: the job holding it (`active`, null once released) and each sweep's
    output dir for this run (`runs`: name -> output dir), kept across holders."""
    folder = Path(cache_dir) / CLAIMS_DIR
    return folder / f"{digest}.lock", folder / f"{digest}.json"


def read_record(path: Path) -> dict[str, Any]:
    """The claim's record; an empty one when missing or unreadable."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return {"active": None, "runs": {}}
    active, runs = record.get("active"), record.get("runs")
    if not (isinstance(active, dict) and {"name", "output_dir"} <= active.keys()):
        active = None
    return {"active": active, "runs": runs if isinstance(runs, dict) else {}}


@contextmanager
def claim_run(cache_dir: Path, digest: str, identity: Mapping[str, Any], name: str, output_dir: Path,
              reuse_from: Sequence[str]) -> Iterator[None]:
    """Hold the claim on run `digest` for the block, as sweep `name`'s job in `output_dir`.

    Raises RunElsewhere before the block when a sweep of `reuse_from` (other than `name`) holds the claim, or
    has a complete run of it in the output dir it recorded. A claim held by a sweep this one does not reuse
    from, or by a holder that has not said who it is, is not waited for: both train, as configured."""
    lock, path = claim_paths(cache_dir, digest)
    others = [sweep for sweep in reuse_from if sweep != name]
    with exclusive(lock, "this run's claim across sweeps", patience_s=acquire_patience_s()) as held:
        if not held:
            active = _active_holder(path)
            if active is not None and active["name"] in others:
                raise RunElsewhere(f"the same run is training in sweep {active['name']} ({active['output_dir']}); "
                                   "skipped here (hydra.sweeper.reuse_from): the tables take it from there")
            yield
            return
        runs = {**read_record(path)["runs"], name: str(output_dir)}
        write_json_atomic(path, {"active": {"name": name, "output_dir": str(output_dir)}, "runs": runs})
        try:
            for sweep in others:
                if sweep in runs and is_complete(runs[sweep], identity):
                    raise RunElsewhere(f"the same run finished in sweep {sweep} ({runs[sweep]}) after this sweep "
                                       "was launched; skipped here (hydra.sweeper.reuse_from)")
            yield
        finally:
            write_json_atomic(path, {"active": None, "runs": runs})


def _active_holder(path: Path) -> dict[str, str] | None:
    """Who holds the claim, waiting briefly for a holder that has just taken the lock to say so; None when no
    record names an active holder by then. (A killed holder leaves its name as active, which the next holder
    overwrites as soon as it takes the lock.)"""
    deadline = time.monotonic() + RECORD_PATIENCE_S
    while (active := read_record(path)["active"]) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return active
