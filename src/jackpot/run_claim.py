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

from jackpot.cell_lock import CellBusy, acquire_patience_s
from jackpot.file_lock import exclusive
from jackpot.io import write_json_atomic
from jackpot.results import is_complete

CLAIMS_DIR = "runs"
# how long a job waits for the holder's record to appear (it writes it right after taking the lock)
RECORD_PATIENCE_S = 2.0


class RunElsewhere(CellBusy):
    """Another sweep this one reuses from is training this run, or has finished it."""


def claim_paths(cache_dir: Path, digest: str) -> tuple[Path, Path]:
    """The claim's lock file and the record of its holder."""
    folder = Path(cache_dir) / CLAIMS_DIR
    return folder / f"{digest}.lock", folder / f"{digest}.json"


def read_holder(record: Path) -> dict[str, str] | None:
    """The sweep `name` and `output_dir` of the job that last claimed the run; None when unreadable."""
    try:
        holder = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not {"name", "output_dir"} <= holder.keys():
        return None
    return holder


@contextmanager
def claim_run(cache_dir: Path, digest: str, identity: Mapping[str, Any], name: str, output_dir: Path,
              reuse_from: Sequence[str]) -> Iterator[None]:
    """Hold the claim on run `digest` for the block, recording this job's sweep and output dir.

    Raises RunElsewhere before the block when a sweep of `reuse_from` (other than `name`) holds the claim, or
    last held it and its output dir now holds this run, complete. A claim held by a sweep this one does not
    reuse from is not waited for: both train, as the user asked."""
    lock, record = claim_paths(cache_dir, digest)
    others = {sweep for sweep in reuse_from if sweep != name}
    with exclusive(lock, "this run's claim across sweeps", patience_s=acquire_patience_s()) as held:
        holder = _holder_once_written(record) if not held else read_holder(record)
        if holder is not None and holder["name"] in others:
            if not held:
                raise RunElsewhere(f"the same run is training in sweep {holder['name']} ({holder['output_dir']}); "
                                   "skipped here (hydra.sweeper.reuse_from): the tables take it from there")
            if is_complete(holder["output_dir"], identity):
                raise RunElsewhere(f"the same run finished in sweep {holder['name']} ({holder['output_dir']}) "
                                   "after this sweep was launched; skipped here (hydra.sweeper.reuse_from)")
        if held:
            write_json_atomic(record, {"name": name, "output_dir": str(output_dir)})
        yield


def _holder_once_written(record: Path) -> dict[str, str] | None:
    """The holder's record, waiting briefly for a holder that has just taken the lock to write it."""
    deadline = time.monotonic() + RECORD_PATIENCE_S
    while (holder := read_holder(record)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return holder
