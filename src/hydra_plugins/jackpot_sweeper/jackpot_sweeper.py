"""Hydra's basic sweeper, plus: every job's config is validated before the first job starts, and jobs whose
cell is already complete are not launched.

Hydra composes each job up front but only checks that it composes; a value that composes but is wrong
(`ratio=1.5`, a check that cannot apply to a pruner) would otherwise surface hours into a sweep. So would a job
whose output dir already holds a run of another config (a changed schedule rerun under the same `name`).
A complete job would only skip itself, but on SLURM or Ray only after taking a GPU and starting a process:
rerunning a 360-job sweep to fill its last 10 cells launches those 10.

Jobs that share a dense trunk (or IMP rounds) not yet cached are launched in an order that keeps GPUs from
idling on its lock: one job per missing trunk first (it trains it), then the jobs that need nothing missing,
then the ones that will read the trunks the first ones train. Launchers start jobs in the order given (Ray's
queue, SLURM array indices), so on N GPUs the readers start once the trunks are ready, instead of N-1 of
them holding a GPU for a whole dense training while one job trains the trunk they all wait for.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from jackpot.cache_keys import missing_work
from jackpot.config import ConfigError, join_limited, validate
from jackpot.errors import format_user_error
from jackpot.run_identity import holds_finished_run, run_identity

log = logging.getLogger(__name__)
Job = TypeVar("Job")


class JackpotSweeper(BasicSweeper):
    """`hydra/sweeper=jackpot` (the default in conf/hydra/default.yaml)."""

    def sweep(self, arguments: list[str]):
        from hydra.core.hydra_config import HydraConfig

        # `${hydra:runtime.cwd}` (paths.root_dir) appears in hydra.sweep.dir, which the sweeper reads in the driver
        HydraConfig.instance().set_config(self.config)
        self.complete_jobs: set[tuple[str, ...]] = set()
        # per job, the shared work (trunk, IMP rounds) it needs that is not cached yet; None: order left alone
        self.missing_work: dict[tuple[str, ...], list[str]] | None = {}
        self.launcher = LaunchUnfinished(self.launcher, self.complete_jobs, self)
        return super().sweep(arguments)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        # Hydra's own check only composes each job; composing it here once does that and ours (a composition
        # costs ~0.1-0.3 s, so composing twice made a 360-job sweep wait 3 minutes on 2 cores before its first job)
        log.info(f"jackpot: checking {len(batch)} jobs before launching any")
        loader = self.hydra_context.config_loader
        problems: list[str] = []
        for overrides in batch:
            cfg = loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
            try:
                validate(cfg)
                output_dir = _job_output_dir(cfg)
                if output_dir is not None and holds_finished_run(output_dir, run_identity(cfg)):
                    self.complete_jobs.add(tuple(overrides))
                elif output_dir is None:  # a job's dir depends on its launch position: keep the positions
                    self.missing_work = None
                elif self.missing_work is not None:
                    self.missing_work[tuple(overrides)] = missing_work(cfg)
            except ConfigError as err:
                problems.append(f"[{' '.join(overrides)}]: {err}")
        if problems:
            error = ConfigError(
                f"{len(problems)} of {len(batch)} sweep jobs are invalid, nothing was run: {join_limited(problems)}"
            )
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise error
            print(format_user_error(error), file=sys.stderr)
            sys.exit(2)


class LaunchUnfinished:
    """The configured launcher (basic, Ray, submitit), handed only the jobs whose cell is not complete, those
    that train shared work first."""

    def __init__(self, launcher, complete_jobs: set[tuple[str, ...]], sweeper: JackpotSweeper) -> None:
        self.launcher = launcher
        self.complete_jobs = complete_jobs
        self.sweeper = sweeper

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        todo = [overrides for overrides in job_overrides if tuple(overrides) not in self.complete_jobs]
        done = len(job_overrides) - len(todo)
        if done and todo:
            log.info(f"jackpot: {done} of {len(job_overrides)} jobs already complete, not launched; "
                     f"launching {len(todo)}")
        elif done:
            log.info(f"jackpot: all {done} jobs already complete, nothing launched")
        missing = self.sweeper.missing_work
        if missing is not None and todo:
            todo, trainers, readers = shared_work_first(todo, lambda job: missing.get(tuple(job), []))
            if trainers and readers:
                log.info(f"jackpot: {trainers} jobs that train shared dense trunks or IMP rounds go first, "
                         f"the {readers} that read them last")
        return self.launcher.launch(todo, initial_job_idx=initial_job_idx) if todo else []

    def __getattr__(self, name: str):
        return getattr(self.launcher, name)


def shared_work_first(jobs: Sequence[Job], missing: Callable[[Job], list[str]]) -> tuple[list[Job], int, int]:
    """(jobs reordered, how many train shared work, how many read it): first the jobs whose first missing piece
    no earlier job claims (each trains its pieces), then those missing nothing, then the rest (they read what the
    first ones train). Stable within each group."""
    trainers: list[Job] = []
    free: list[Job] = []
    readers: list[Job] = []
    claimed: set[str] = set()
    for job in jobs:
        needs = missing(job)
        if not needs:
            free.append(job)
        elif needs[0] in claimed:
            readers.append(job)
        else:
            trainers.append(job)
            claimed.update(needs)
    return trainers + free + readers, len(trainers), len(readers)


def _job_output_dir(cfg) -> Path | None:
    """Where the launcher will put this job (hydra.sweep.dir/subdir); None when that depends on values only the
    launcher sets (e.g. a subdir naming `hydra.job.num`): the job's own check at its start still applies."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
    except OmegaConfBaseException:
        return None
