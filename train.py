"""Entry point: `python train.py pruner=grasp ratio=0.98`, or `python train.py -m sweep=random_tickets`."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import NoReturn

import hydra
from omegaconf import DictConfig

from jackpot.errors import USER_ERRORS, exit_with_user_error
from jackpot.machine.process_clock import mark
from jackpot.machine.process_exit import exit_without_teardown
from jackpot.resolvers import method_name  # noqa: F401  (registers the config's resolvers before Hydra uses them)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | list[float | None] | None:
    mark("main")  # Python's start, Hydra's import and the config's composition are behind
    from jackpot.config import validate
    from jackpot.runs.cell_lock import CellBusy
    from jackpot.runs.pack import PACK_KEY

    if cfg.get(PACK_KEY):  # several runs of a sweep in this process (hydra.sweeper.pack)
        return _run_pack(str(cfg[PACK_KEY]))
    try:  # before Lightning and the data loaders are imported: a bad value is reported in seconds, not ~10 s
        validate(cfg)
    except USER_ERRORS as err:
        _refused(cfg, err)
    mark("validated")  # torch imported, CUDA's devices counted
    from jackpot.runs.summary import print_results
    from jackpot.train import run

    mark("imported")  # Lightning and jackpot's training code
    _quiet_lightning_in_jobs()
    try:
        results = run(cfg, reuse_from=_sweeps_reused_from())
    except CellBusy as busy:  # not a failure: another process runs it (or another sweep has); the sweep goes on
        print(f"jackpot: {busy}", file=sys.stderr)
        return None
    except USER_ERRORS as err:
        _refused(cfg, err)
    print_results(results)
    return results.get("final_acc")


def _run_pack(pack_id: str) -> list[float | None]:
    """Run the members of a pack (jackpot.runs.pack); print each one's results. The job fails, once every member
    has ended, when one failed: with exit code 2 when each failure is a refused config or missing data (one line
    each, as a job alone), else with an error naming each failed member."""
    from hydra.core.hydra_config import HydraConfig

    from jackpot.errors import format_user_error
    from jackpot.runs.pack import failure_message, read_pack, run_pack, runs_side_by_side
    from jackpot.runs.summary import print_results

    try:
        members, side_by_side = read_pack(Path(HydraConfig.get().sweep.dir), pack_id)
    except USER_ERRORS as err:
        exit_with_user_error(err)
    _quiet_lightning_in_jobs()
    side_by_side = runs_side_by_side([m.cfg for m in members], side_by_side)
    outcomes = run_pack(members, _sweeps_reused_from(), side_by_side, pack_id=pack_id)
    for outcome in outcomes:
        if outcome.results is not None:
            print_results(outcome.results)
        elif outcome.busy:
            print(f"jackpot: {outcome.busy}", file=sys.stderr)
        elif outcome.refused:
            print(f"{format_user_error(outcome.error)} ({outcome.output_dir})", file=sys.stderr)
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    if failed and all(outcome.refused for outcome in failed):
        sys.exit(2)
    if failed:
        raise RuntimeError(failure_message(outcomes, side_by_side))
    return [None if outcome.results is None else outcome.results.get("final_acc") for outcome in outcomes]


def _quiet_lightning_in_jobs() -> None:
    """Lightning's messages once each, in Hydra's format; none of the warnings a user cannot act on."""
    _lightning_logs_through_hydra()
    # jackpot's K-steps-per-call module pulls K batches from Lightning's `dataloader_iter` on purpose (and keeps
    # global_step, hooks and limits right, tests/test_speed_paths.py); Lightning warns about that flavor per run.
    for message in (".*`dataloader_iter` step flavor.*", ".*Found `dataloader_iter` argument.*"):
        warnings.filterwarnings("ignore", message=message)
    # Lightning 2.6's own pytree helper still uses an API torch 2.14 deprecates; nothing a user can act on,
    # and it printed once per job of a sweep
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def _refused(cfg: DictConfig, err: BaseException) -> NoReturn:
    """A refused config or missing data: the folder Hydra made for the run goes again, then one line, exit 2."""
    from jackpot.runs.output_dir import discard_unstarted

    with contextlib.suppress(Exception):  # never hide the user's error behind a clean-up one
        discard_unstarted(Path(cfg.paths.output_dir), Path(cfg.paths.log_dir))
    exit_with_user_error(err)


def _sweeps_reused_from() -> list[str]:
    """hydra.sweeper.reuse_from in a multirun job (the sweeper has checked the names); none in a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return []
    return [str(name) for name in hydra_cfg.sweeper.get("reuse_from") or []]


def _lightning_logs_through_hydra() -> None:
    """Print each Lightning message once, in Hydra's format and into the job's log file: Hydra's logging setup
    lets Lightning's loggers propagate to the root while Lightning's own console handler stays, so every
    message appeared twice."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


if __name__ == "__main__":
    with exit_without_teardown():  # a finished run leaves at once: no second of freeing torch's modules one by one
        main()
