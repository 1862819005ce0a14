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

Paper tables share cells (the random-tickets table's CIFAR-10 cells are the initial-ticket figure's plain
cells, for instance). A sweep file lists the sweeps it shares cells with in `hydra.sweeper.reuse_from`; a job
whose run (same identity: the config minus where, how fast and how loudly it runs, `name` included) is
complete in one of them is not launched, and `jackpot-tables` takes that seed from there.

A sanity battery (multirun_sweeps/sanity_battery.yaml, battery.py) lists every check for any method:
`hydra.sweeper.drop_inapplicable=true` drops, with a line saying why, the jobs whose check the method's
declaration rules out (any other invalid job still refuses the sweep), and `hydra.sweeper.baselines` adds
the jobs the method is compared with (random tickets, the dense network) whatever `pruner=` says.

`hydra.sweeper.pack` (packing.py) runs several jobs in one process, on a GPU side by side (jackpot.runs.pack):
consecutive jobs of the launch order that share a model, a dataset and the trainer settings are launched as
one job, which runs each of them with its own output dir, results and logs.

`hydra.sweeper.dry_run=true` does all of that and prints the jobs it would launch, in order, instead of
launching them. `hydra.sweeper.cost_from=<end-to-end figures>` (scripts/end_to_end.py --out) also says what the
jobs about to launch will cost in device-hours on the device those figures were measured on
(jackpot.tables.projection), so a lab sees the price of a sweep before paying it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from omegaconf import OmegaConf

from hydra_plugins.jackpot_sweeper.battery import dropped_lines, parse_baselines, with_baselines
from hydra_plugins.jackpot_sweeper.packing import check_pack, form_packs, pack_key, pack_size
from hydra_plugins.jackpot_sweeper.slurm_fit import check_fits
from jackpot.config import ConfigError, InapplicableCheck, join_limited, validate
from jackpot.errors import exit_with_user_error
from jackpot.machine.gpu_sharing import packing_warning
from jackpot.runs.atomic_io import write_bytes_atomic
from jackpot.runs.cache_keys import missing_work, shared_work, shared_work_index
from jackpot.runs.identity import run_identity
from jackpot.runs.output_dir import holds_finished_run
from jackpot.runs.pack import PACK_KEY, PackMember, check_side_by_side, member_container, write_pack
from jackpot.runs.results import Progress, is_complete, progress_of
from jackpot.runs.sweep_plan import JobPlan, job_state, shared_work_first

log = logging.getLogger(__name__)
JobKey = tuple[str, ...]


class JackpotSweeper(BasicSweeper):
    """`hydra/sweeper=jackpot` (the default in conf/hydra/default.yaml)."""

    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None,
                 dry_run: bool = False, wait_for_trunks: bool = False,
                 reuse_from: Sequence[str] | None = None, drop_inapplicable: bool = False,
                 baselines: Sequence[Sequence[str]] | None = None, pack: int | str = "auto",
                 pack_side_by_side: bool | str = "auto", cost_from: str | None = None) -> None:
        super().__init__(max_batch_size, params)
        self.dry_run = dry_run
        self.wait_for_trunks = wait_for_trunks
        self.reuse_from = reuse_from
        self.drop_inapplicable = drop_inapplicable  # a sanity battery (battery.py): jobs whose check the
        self.baselines = baselines                  # method rules out are dropped; baseline jobs are added
        self.pack = pack  # runs per process (packing.py), checked when the sweep starts
        self.pack_side_by_side = pack_side_by_side
        self.cost_from = cost_from  # end-to-end figures to price the jobs with (jackpot.tables.projection)
        self.figures: dict | None = None
        self.plans: dict[JobKey, JobPlan] = {}
        self.dropped: dict[JobKey, str] = {}

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.hydra_config import HydraConfig

        # `${hydra:runtime.cwd}` (paths.root_dir) appears in hydra.sweep.dir, which the sweeper reads in the driver
        # and submitit's folder interpolates when Hydra instantiates the launcher, here
        HydraConfig.instance().set_config(config)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]):
        launcher = self.config.hydra.launcher
        if warning := packing_warning(OmegaConf.select(launcher, "ray.remote.num_gpus", default=None),
                                      OmegaConf.select(launcher, "ray.init.address", default=None)):
            log.warning(warning)
        try:  # before anything is written or submitted: jobs no node can hold would pend forever
            check_fits(launcher)
            check_pack(self.pack)
            check_side_by_side(self.pack_side_by_side)
            self.figures = _figures(self.cost_from)
        except ConfigError as err:
            exit_with_user_error(err)
        self.launcher = LaunchUnfinished(self.launcher, self)
        # Hydra records the sweep in <sweep dir>/multirun.yaml before the jobs are checked; a dry run or a refused
        # sweep leaves that as it was, and so does one that launches nothing when an earlier launch wrote one
        # (jackpot-tables reads the grid of a sweep without a sweep file from it).
        record = SweepRecord(Path(self.config.hydra.sweep.dir))
        try:
            returns = super().sweep(arguments)
        except BaseException:
            if not self.launcher.launched:
                record.restore()
            raise
        if not self.launcher.launched and (self.dry_run or record.previous is not None):
            record.restore()
        return returns

    def split_arguments(self, overrides, max_batch_size: int | None) -> list[list[list[str]]]:
        """Hydra's grid, plus the `hydra.sweeper.baselines` jobs (battery.py), in batches."""
        try:
            baselines = parse_baselines(self.baselines)
        except ConfigError as err:
            exit_with_user_error(err)
        (jobs,) = BasicSweeper.split_arguments(overrides, None)
        return list(self.split_overrides_to_chunks(with_baselines(jobs, baselines), max_batch_size))

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        # Hydra's own check only composes each job; composing it here once does that and ours (a composition
        # costs ~0.1-0.3 s, so composing twice made a 360-job sweep wait 3 minutes on 2 cores before its first job)
        log.info(f"jackpot: checking {len(batch)} jobs before launching any")
        try:
            reuse_from = _sweep_names(self.reuse_from)
        except ConfigError as err:
            exit_with_user_error(err)
        loader = self.hydra_context.config_loader
        problems: list[str] = []
        for index, overrides in enumerate(batch):
            cfg = loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
            if index == 0 and reuse_from and (absent := _absent_sweeps(cfg, reuse_from)):
                log.info(f"jackpot: hydra.sweeper.reuse_from: no runs of {', '.join(absent)} yet")
            try:
                validate(cfg)
                plan = JobPlan(_job_output_dir(cfg), config=cfg)
                if plan.output_dir is not None:
                    identity = run_identity(cfg)
                    plan.complete = holds_finished_run(plan.output_dir, identity)
                    if not plan.complete:
                        plan.complete_in = _complete_elsewhere(cfg, identity, reuse_from)
                    if not (plan.complete or plan.complete_in):
                        plan.missing_work = missing_work(cfg)
                self.plans[tuple(overrides)] = plan
            except InapplicableCheck as err:
                if self.drop_inapplicable:
                    self.dropped[tuple(overrides)] = str(err)
                else:
                    problems.append(f"[{' '.join(overrides)}]: {err}")
            except ConfigError as err:
                problems.append(f"[{' '.join(overrides)}]: {err}")
        if problems:
            exit_with_user_error(ConfigError(
                f"{len(problems)} of {len(batch)} sweep jobs are invalid, nothing was run: {join_limited(problems)}"
            ))
        if shared := _shared_output_dirs(self.plans):
            exit_with_user_error(ConfigError(
                f"{len(shared)} output dirs would each hold several jobs of this sweep, nothing was run: "
                f"{join_limited(shared)}"
            ))
        jobs = set(map(tuple, batch))
        for line in dropped_lines({job: why for job, why in self.dropped.items() if job in jobs}):
            log.info(line)


class LaunchUnfinished:
    """The configured launcher (basic, Ray, submitit), handed only the jobs whose cell is not complete, those
    that train shared work first; with `hydra.sweeper.dry_run=true`, handed nothing: the plan is printed."""

    def __init__(self, launcher, sweeper: JackpotSweeper) -> None:
        self.launcher = launcher
        self.sweeper = sweeper
        self.launched = False  # whether any job was handed to the launcher

    def _launch(self, jobs: Sequence[Sequence[str]], initial_job_idx: int):
        self.launched = True
        return self.launcher.launch(self._packed(jobs), initial_job_idx=initial_job_idx)

    def _packs(self, jobs: Sequence[Sequence[str]]) -> list[list[Sequence[str]]]:
        """The jobs grouped into packs (hydra.sweeper.pack; packing.py), each a list of one job when not packing."""
        plans = [self.sweeper.plans[tuple(job)] for job in jobs]
        if not jobs or any(plan.output_dir is None or plan.config is None for plan in plans):
            return [[job] for job in jobs]  # a member's output dir must be known before its pack starts
        size = pack_size(self.sweeper.pack, plans[0].config, self.sweeper.config.hydra.launcher)
        return form_packs(jobs, lambda job: pack_key(self.sweeper.plans[tuple(job)].config), size)

    def _packed(self, jobs: Sequence[Sequence[str]]) -> list[Sequence[str]]:
        """What the launcher starts: a job alone as it is; a pack as its first job plus `+jackpot_pack=<id>`, the
        pack's members stored under the sweep dir (jackpot.runs.pack)."""
        packs = self._packs(jobs)
        if len(packs) == len(jobs):
            return list(jobs)
        sweep_dir = Path(self.sweeper.config.hydra.sweep.dir)
        launched: list[Sequence[str]] = []
        for pack in packs:
            if len(pack) == 1:
                launched.append(pack[0])
                continue
            plans = [self.sweeper.plans[tuple(job)] for job in pack]
            members = [PackMember(tuple(job), plan.output_dir, member_container(plan.config, plan.output_dir))
                       for job, plan in zip(pack, plans, strict=True)]
            pack_id = write_pack(sweep_dir, members, self.sweeper.pack_side_by_side)
            launched.append([*pack[0], f"+{PACK_KEY}={pack_id}"])
        log.info(f"jackpot: {len(jobs)} runs launched as {len(launched)} jobs, up to {max(map(len, packs))} runs "
                 f"in one process (hydra.sweeper.pack={self.sweeper.pack})")
        return launched

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        def plan(job: Sequence[str]) -> JobPlan:
            return self.sweeper.plans[tuple(job)]

        dropped = getattr(self.sweeper, "dropped", {})  # a battery's inapplicable checks (battery.py)
        job_overrides = [job for job in job_overrides if tuple(job) not in dropped]
        elsewhere = Counter(plan(job).complete_in for job in job_overrides if plan(job).complete_in)
        if elsewhere:
            where = ", ".join(f"{count} in {name}" for name, count in elsewhere.items())
            log.info(f"jackpot: {sum(elsewhere.values())} jobs already complete in other sweeps ({where}; "
                     "hydra.sweeper.reuse_from), not launched: jackpot-tables takes those seeds from there")
        todo = [job for job in job_overrides if not (plan(job).complete or plan(job).complete_in)]
        done = sum(plan(job).complete for job in job_overrides)
        if done and todo:
            log.info(f"jackpot: {done} of {len(job_overrides)} jobs already complete, not launched; "
                     f"launching {len(todo)}")
        elif not todo:
            log.info(f"jackpot: all {len(job_overrides)} jobs already complete, nothing launched")
        trainers: list = []
        readers: list = []
        # a job whose output dir depends on its launch position keeps its position
        if all(plan(job).output_dir is not None for job in todo):
            trainers, free, readers = shared_work_first(todo, lambda job: plan(job).missing_work)
            todo = trainers + free + readers
            if trainers and readers:
                log.info(f"jackpot: {len(trainers)} jobs that train shared dense trunks or IMP rounds go first, "
                         f"the {len(readers)} that read them last")
        if self.sweeper.figures is not None and todo:
            log.info(cost_line(self.sweeper.figures, self.sweeper.cost_from,
                               [plan(job) for job in todo if plan(job).config is not None
                                and not job_state(plan(job).output_dir).startswith("running")],
                               self._packs(todo)))
        if self.sweeper.dry_run:
            roles = {**{tuple(job): "trains" for job in trainers}, **{tuple(job): "reads" for job in readers}}
            waiting = self.sweeper.wait_for_trunks and readers and len(readers) < len(todo)
            launches = [todo[:len(todo) - len(readers)], readers] if waiting else [todo]
            packs = [pack for launch in launches for pack in self._packs(launch)]  # as the launches form them
            numbers = {tuple(job): number for number, pack in enumerate([p for p in packs if len(p) > 1], start=1)
                       for job in pack}
            for index, job in enumerate(todo, start=initial_job_idx):
                state = job_state(plan(job).output_dir)
                in_pack = f" (pack {numbers[tuple(job)]})" if tuple(job) in numbers else ""
                log.info(f"  #{index} {roles.get(tuple(job), '-')} {state}: {' '.join(job)}{in_pack}")
            waits = f", the last {len(readers)} once the others finished" if waiting else ""
            processes = (f" in {len(packs)} processes (hydra.sweeper.pack={self.sweeper.pack})"
                         if len(packs) < len(todo) else "")
            log.info(f"jackpot: dry run (hydra.sweeper.dry_run=true): {len(todo)} jobs would be launched{processes}, "
                     f"in the order above{waits}; nothing launched")
            return []
        if self.sweeper.wait_for_trunks and readers and len(readers) < len(todo):
            first = todo[:len(todo) - len(readers)]
            log.info(f"jackpot: launching the {len(readers)} jobs that read shared trunks once these {len(first)} "
                     "finished (hydra.sweeper.wait_for_trunks=true)")
            try:
                results = list(self._launch(first, initial_job_idx=initial_job_idx))
            except Exception:  # Ray and submitit raise a failed job's error: the readers still run, as they do
                # without the wait (one that finds its trunk missing trains it), then the error is raised
                readers_results = self._launch(readers, initial_job_idx=initial_job_idx + len(first))
                log.info(f"jackpot: {len(readers_results)} reader jobs ran after a failed first launch")
                raise
            return results + list(self._launch(readers, initial_job_idx=initial_job_idx + len(first)))
        return self._launch(todo, initial_job_idx=initial_job_idx) if todo else []

    def __getattr__(self, name: str):
        return getattr(self.launcher, name)


def _figures(path: str | None) -> dict | None:
    """hydra.sweeper.cost_from's end-to-end figures, read before anything runs (a bad file is refused)."""
    if path is None:
        return None
    from jackpot.tables.projection import read_figures

    try:
        return read_figures(Path(path))
    except ValueError as err:
        raise ConfigError(f"hydra.sweeper.cost_from={path}: {err}") from err


def cost_line(figures: dict, source: str, plans: Sequence[JobPlan], packs: Sequence[Sequence]) -> str:
    """What these jobs cost in device-hours at `figures`: one run at a time, and in the packs they launch in."""
    from jackpot.runs.cache_keys import pretrain_epochs
    from jackpot.tables.projection import PlannedRun, figures_device, pack_size_of, project

    runs = []
    for plan in plans:
        epochs, shared_done = _epochs_left(plan)
        runs.append(PlannedRun(plan.config.model.name, epochs, tuple(plan.missing_work), pretrain_epochs(plan.config),
                               shared_done))
    hours = project(runs, figures)
    left_out = ", ".join(f"{n} {model} runs" for model, n in sorted(hours.without_figures.items()))
    if not hours.runs:
        return f"jackpot: {source} holds no figures for these runs' models ({left_out}): no cost to say"
    shared = f" and {hours.shared_work} dense trunks or IMP rounds" if hours.shared_work else ""
    line = (f"jackpot: at the figures in {source} ({figures_device(figures)}), these {hours.runs} runs{shared} take "
            f"about {hours.hours:.1f} device-hours one run at a time")
    if hours.hours_packed is not None:
        here = max(map(len, packs), default=1)
        line += (f", about {hours.hours_packed:.1f} in packs of {pack_size_of(figures)} "
                 + (f"(here they launch in packs of up to {here})" if here > 1 else
                    "(here they launch one run per process: hydra.sweeper.pack=auto packs on a GPU)"))
    if left_out:
        line += f"; not counted, no figures for their model: {left_out}"
    return line


def _epochs_left(plan: JobPlan) -> tuple[int, tuple[tuple[str, int], ...]]:
    """The ticket epochs a job still trains, and the epochs of its shared work that a killed launch of it
    checkpointed: its progress file names the stage it stopped in (its ticket, its dense trunk, IMP round i)
    and the epochs its newest checkpoint holds, from which the rerun resumes."""
    epochs = int(plan.config.schedule.epochs)
    progress = progress_of(plan.output_dir) if plan.output_dir is not None else Progress("")
    if progress.checkpointed is None:
        return epochs, ()
    if progress.stage == "ticket":
        return max(epochs - progress.checkpointed, 0), ()
    index = shared_work_index(progress.stage)
    if index is None:
        return epochs, ()
    work = shared_work(plan.config)
    return epochs, ((work[index], progress.checkpointed),) if index < len(work) else ()


class SweepRecord:
    """A sweep dir's multirun.yaml as it was before Hydra rewrote it, to put back."""

    FILE = "multirun.yaml"

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = sweep_dir
        # the folders Hydra will create for it (the sweep dir and any missing parent), deepest first
        self.new_dirs = [d for d in (sweep_dir, *sweep_dir.parents) if not d.exists()]
        path = sweep_dir / self.FILE
        self.previous = path.read_bytes() if path.is_file() else None

    def restore(self) -> None:
        path = self.sweep_dir / self.FILE
        if self.previous is not None:
            write_bytes_atomic(path, self.previous)
            return
        path.unlink(missing_ok=True)
        for folder in self.new_dirs:
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()


def _sweep_names(names: Sequence[str] | None) -> tuple[str, ...]:
    """`hydra.sweeper.reuse_from` checked: sweep names (`name`), each one path component."""
    if names is None:
        return ()

    def is_name(value) -> bool:
        return isinstance(value, str) and value not in ("", ".", "..") and "/" not in value

    if isinstance(names, str) or not isinstance(names, Sequence) or not all(is_name(n) for n in names):
        raise ConfigError(f"hydra.sweeper.reuse_from={names!r} is not allowed; give a list of sweep names "
                          "(the `name` of other sweeps), e.g. [random_tickets]")
    return tuple(names)


def _shared_output_dirs(plans: dict[JobKey, JobPlan]) -> list[str]:
    """One problem per output dir that several jobs of the sweep would share: each would resume, skip or refuse
    the other's run, and all but one variant would be lost (a swept key the dir name does not show)."""
    jobs_by_dir: dict[Path, list[str]] = {}
    for overrides, plan in plans.items():
        if plan.output_dir is not None:
            jobs_by_dir.setdefault(plan.output_dir, []).append(f"[{' '.join(overrides)}]")
    return [f"{folder} is the output dir of {len(jobs)} jobs ({' and '.join(jobs[:3])}), which would overwrite or "
            f"skip each other: run each value of that key under its own name=..., or add it to hydra.sweep.subdir"
            for folder, jobs in jobs_by_dir.items() if len(jobs) > 1]


def _complete_elsewhere(cfg, identity, names: Sequence[str]) -> str | None:
    """The first of the sweeps `names` whose output dir for this job (the job's, with `name` set to it) holds
    this run, complete; None if none does (a run of another config there is simply not this run)."""
    for name in names:
        if name == cfg.name:
            continue
        folder = _as_sweep(cfg, name, _job_output_dir)
        if folder is not None and is_complete(folder, identity):
            return name
    return None


def _absent_sweeps(cfg, names: Sequence[str]) -> list[str]:
    """The sweeps of `names` (other than this one) without an output dir yet: nothing to reuse from them, or a
    typo; "name (its dir)" each."""
    dirs = {name: _as_sweep(cfg, name, lambda c: Path(c.hydra.sweep.dir)) for name in names if name != cfg.name}
    return [f"{name} ({folder})" for name, folder in dirs.items() if not folder.is_dir()]


def _as_sweep(cfg, name: str, read):
    """`read(cfg)` with the job's `name` set to `name` (the sweep dir interpolates it), then set back."""
    from omegaconf import open_dict, read_write

    own = cfg.name
    try:
        with read_write(cfg), open_dict(cfg):
            cfg.name = name
            return read(cfg)
    finally:
        with read_write(cfg), open_dict(cfg):
            cfg.name = own


def _job_output_dir(cfg) -> Path | None:
    """Where the launcher will put this job (hydra.sweep.dir/subdir); None when that depends on values only the
    launcher sets (e.g. a subdir naming `hydra.job.num`): the job's own check at its start still applies."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)
    except OmegaConfBaseException:
        return None
