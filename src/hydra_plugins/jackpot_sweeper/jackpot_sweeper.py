"""Hydra's basic sweeper, plus: every job's config is validated before the first job starts, and jobs whose
cell is already complete are not launched.

Hydra composes each job up front but only checks that it composes; a value that composes but is wrong
(`ratio=1.5`, a check that cannot apply to a pruner) would otherwise surface hours into a sweep. So would a job
whose output dir already holds a run of another config (a changed schedule rerun under the same `name`).
A complete job would only skip itself, but on SLURM or Ray only after taking a GPU and starting a process:
rerunning a 360-job sweep to fill its last 10 cells launches those 10.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from jackpot.config import ConfigError, join_limited, validate
from jackpot.errors import format_user_error
from jackpot.run_identity import holds_finished_run, run_identity

log = logging.getLogger(__name__)


class JackpotSweeper(BasicSweeper):
    """`hydra/sweeper=jackpot` (the default in conf/hydra/default.yaml)."""

    def sweep(self, arguments: list[str]):
        from hydra.core.hydra_config import HydraConfig

        # `${hydra:runtime.cwd}` (paths.root_dir) appears in hydra.sweep.dir, which the sweeper reads in the driver
        HydraConfig.instance().set_config(self.config)
        self.complete_jobs: set[tuple[str, ...]] = set()
        self.launcher = LaunchUnfinished(self.launcher, self.complete_jobs)
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
    """The configured launcher (basic, Ray, submitit), handed only the jobs whose cell is not complete."""

    def __init__(self, launcher, complete_jobs: set[tuple[str, ...]]) -> None:
        self.launcher = launcher
        self.complete_jobs = complete_jobs

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        todo = [overrides for overrides in job_overrides if tuple(overrides) not in self.complete_jobs]
        done = len(job_overrides) - len(todo)
        if done and todo:
            log.info(f"jackpot: {done} of {len(job_overrides)} jobs already complete, not launched; "
                     f"launching {len(todo)}")
        elif done:
            log.info(f"jackpot: all {done} jobs already complete, nothing launched")
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
