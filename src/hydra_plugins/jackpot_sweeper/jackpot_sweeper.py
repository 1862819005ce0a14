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

When there are more GPUs than jobs that need no missing trunk, readers still start before their trunk is
ready; `hydra.sweeper.wait_for_trunks=true` launches them only once the first launch (the trainers and the
jobs that need no missing trunk) has finished, so no GPU is ever held waiting for a trunk (on a shared SLURM
cluster), at the price of the slowest first-launch job's tail.

`hydra.sweeper.dry_run=true` does all of that and prints the jobs it would launch, in order, instead of
launching them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from jackpot.cache_keys import missing_work
from jackpot.config import ConfigError, join_limited, validate
from jackpot.errors import format_user_error
from jackpot.run_identity import holds_finished_run, run_identity
from jackpot.sweep_plan import JobPlan, job_state, shared_work_first

log = logging.getLogger(__name__)
JobKey = tuple[str, ...]


class JackpotSweeper(BasicSweeper):
    """`hydra/sweeper=jackpot` (the default in conf/hydra/default.yaml)."""

    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None,
                 dry_run: bool = False, wait_for_trunks: bool = False) -> None:
        super().__init__(max_batch_size, params)
        self.dry_run = dry_run
        self.wait_for_trunks = wait_for_trunks
        self.plans: dict[JobKey, JobPlan] = {}

    def sweep(self, arguments: list[str]):
        from hydra.core.hydra_config import HydraConfig

        # `${hydra:runtime.cwd}` (paths.root_dir) appears in hydra.sweep.dir, which the sweeper reads in the driver
        HydraConfig.instance().set_config(self.config)
        self.launcher = LaunchUnfinished(self.launcher, self)
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
                plan = JobPlan(_job_output_dir(cfg))
                if plan.output_dir is not None:
                    plan.complete = holds_finished_run(plan.output_dir, run_identity(cfg))
                    plan.missing_work = [] if plan.complete else missing_work(cfg)
                self.plans[tuple(overrides)] = plan
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
    that train shared work first; with `hydra.sweeper.dry_run=true`, handed nothing: the plan is printed."""

    def __init__(self, launcher, sweeper: JackpotSweeper) -> None:
        self.launcher = launcher
        self.sweeper = sweeper

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        def plan(job: Sequence[str]) -> JobPlan:
            return self.sweeper.plans[tuple(job)]

        todo = [overrides for overrides in job_overrides if not plan(overrides).complete]
        done = len(job_overrides) - len(todo)
        if done and todo:
            log.info(f"jackpot: {done} of {len(job_overrides)} jobs already complete, not launched; "
                     f"launching {len(todo)}")
        elif done:
            log.info(f"jackpot: all {done} jobs already complete, nothing launched")
        trainers: list = []
        readers: list = []
        # a job whose output dir depends on its launch position keeps its position
        if all(plan(job).output_dir is not None for job in todo):
            trainers, free, readers = shared_work_first(todo, lambda job: plan(job).missing_work)
            todo = trainers + free + readers
            if trainers and readers:
                log.info(f"jackpot: {len(trainers)} jobs that train shared dense trunks or IMP rounds go first, "
                         f"the {len(readers)} that read them last")
        if self.sweeper.dry_run:
            roles = {**{tuple(job): "trains" for job in trainers}, **{tuple(job): "reads" for job in readers}}
            for index, job in enumerate(todo, start=initial_job_idx):
                state = job_state(plan(job).output_dir)
                log.info(f"  #{index} {roles.get(tuple(job), '-')} {state}: {' '.join(job)}")
            waits = f", the last {len(readers)} once the others finished" if self.sweeper.wait_for_trunks else ""
            log.info(f"jackpot: dry run (hydra.sweeper.dry_run=true): {len(todo)} jobs would be launched, "
                     f"in the order above{waits}; nothing launched")
            return []
        if self.sweeper.wait_for_trunks and readers and len(readers) < len(todo):
            first = todo[:len(todo) - len(readers)]
            log.info(f"jackpot: launching the {len(readers)} jobs that read shared trunks once these {len(first)} "
                     "finished (hydra.sweeper.wait_for_trunks=true)")
            try:
                results = list(self.launcher.launch(first, initial_job_idx=initial_job_idx))
            except Exception:  # Ray and submitit raise a failed job's error: the readers still run, as they do
                # without the wait (one that finds its trunk missing trains it), then the error is raised
                readers_results = self.launcher.launch(readers, initial_job_idx=initial_job_idx + len(first))
                log.info(f"jackpot: {len(readers_results)} reader jobs ran after a failed first launch")
                raise
            return results + list(self.launcher.launch(readers, initial_job_idx=initial_job_idx + len(first)))
        return self.launcher.launch(todo, initial_job_idx=initial_job_idx) if todo else []

    def __getattr__(self, name: str):
        return getattr(self.launcher, name)


def _job_output_dir(cfg) -> Path | None:
    """Where the launcher will put this job (hydra.sweep.dir/subdir); None when that depends on values only the
    launcher sets (e.g. a subdir naming `hydra.job.num`): the job's own check at its start still applies."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
    except OmegaConfBaseException:
        return None
