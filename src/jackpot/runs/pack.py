"""Several runs of a sweep in one process: a pack (`hydra.sweeper.pack`).

At batch 64 one run leaves most of a large GPU idle (small kernels). Four runs as four processes time-slice
the GPU (0.64x of one run's throughput on an H200) unless the user starts a CUDA MPS daemon; four runs' recorded
steps on four CUDA streams of one process gave 2.02x (ResNet32) and 1.89x (VGG19) with nothing to set up
(docs/benchmarks.md). So the sweeper groups runs that share a model, a dataset and the trainer settings, and
launches each group as one job; that job runs every member's `jackpot.train.run`, unchanged, in its own thread on
its own CUDA stream ("side by side"), or one after another where side by side cannot pay (on a CPU the cores are
already shared), which still pays the process start once instead of once per run.

Everything that holds per run holds per member: its own output dir, cell lock, claim, masks, checkpoint,
results.json, progress file, wandb run and `train.log`. A member that fails (an error, a NaN loss) fails alone
while the others go on; the job then fails at its end, naming the failed members, so the launcher reports it.
A member's numbers are bit-identical to the same run alone: its randomness comes from its own seeded
generators, and the two uses of the global ones (the network init, the epoch re-seed) take turns
(jackpot.machine.global_rng).

The sweeper writes each pack's members (overrides, output dir, composed config) to
`<sweep dir>/.jackpot_packs/<id>.json` and launches the first member's job with `+jackpot_pack=<id>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from jackpot.config import ConfigError, uses_gpu
from jackpot.runs.atomic_io import write_json_atomic

log = logging.getLogger(__name__)

# The runs of a pack make their tickets one at a time: a scoring's peak (GraSP on CIFAR-100's 1,000 images holds
# several GiB of activations) is sized as if the run were alone on its device, and it takes seconds next to the
# minutes of training that the members then do side by side.
TICKET_TURN = threading.Lock()

PACK_KEY = "jackpot_pack"  # the override that makes a job a pack: +jackpot_pack=<id>
PACKS_DIR = ".jackpot_packs"  # under the sweep dir
SIDE_BY_SIDE = ("auto", True, False)  # auto: side by side on a GPU, one after another elsewhere


@dataclass(frozen=True)
class PackMember:
    """One run of a pack: its sweep overrides, where it writes, and its composed config (no `hydra` node)."""

    overrides: tuple[str, ...]
    output_dir: Path
    config: dict[str, Any]


@dataclass
class MemberOutcome:
    """How one member ended: its results, busy (another process runs the cell: not a failure), or an error."""

    cfg: DictConfig
    overrides: tuple[str, ...] = ()
    results: dict[str, Any] | None = None
    busy: str | None = None
    error: BaseException | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.paths.output_dir)

    @property
    def refused(self) -> bool:
        """Failed on the user's input (a config or the data), as a job alone would exit with code 2."""
        from jackpot.errors import USER_ERRORS

        return isinstance(self.error, USER_ERRORS)


def check_side_by_side(value: Any) -> bool | str:
    if value not in SIDE_BY_SIDE or (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"hydra.sweeper.pack_side_by_side={value!r} is not allowed; use auto (side by side on a "
                          "GPU, one after another elsewhere), true or false")
    return value


def pack_path(sweep_dir: Path, pack_id: str) -> Path:
    return Path(sweep_dir) / PACKS_DIR / f"{pack_id}.json"


def write_pack(sweep_dir: Path, members: Sequence[PackMember], side_by_side: bool | str) -> str:
    """Store a pack's members for its job; returns the pack's id (the same members give the same id, so a rerun
    of the sweep rewrites the same file)."""
    check_side_by_side(side_by_side)
    payload = {
        "side_by_side": side_by_side,
        "members": [{"overrides": list(m.overrides), "output_dir": str(m.output_dir), "config": m.config}
                    for m in members],
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    pack_id = f"pack-{digest}"
    write_json_atomic(pack_path(sweep_dir, pack_id), payload)
    return pack_id


def member_container(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """A composed job config as a pack stores it: without the `hydra` node (a job's config has none) and with
    the output dir the launcher would have given the job (`${hydra:runtime.output_dir}` is the pack job's)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra", None)
    container["paths"]["output_dir"] = str(output_dir)
    return container


def read_pack(sweep_dir: Path, pack_id: str) -> tuple[list[MemberOutcome], bool | str]:
    """The members (config and overrides; no outcome yet), in pack order, and the side-by-side setting."""
    path = pack_path(sweep_dir, pack_id)
    if not path.is_file():
        raise ConfigError(f"+{PACK_KEY}={pack_id}: no pack file {path}. The sweeper writes it there before it "
                          "launches the pack (hydra.sweeper.pack), so the sweep dir must be on storage every node "
                          "sees; with outputs on each node's own disk, launch with hydra.sweeper.pack=1")
    payload = json.loads(path.read_text())
    members = []
    for member in payload["members"]:
        # resolved here, on the launching thread, where `${hydra:...}` reads this job's Hydra config (through a
        # container: OmegaConf.resolve refuses a resolver's list, such as schedule.milestones' milestones_at)
        cfg = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(member["config"]), resolve=True))
        OmegaConf.set_struct(cfg, True)
        members.append(MemberOutcome(cfg, tuple(member["overrides"])))
    return members, check_side_by_side(payload["side_by_side"])


def runs_side_by_side(cfgs: Sequence[DictConfig], setting: bool | str) -> bool:
    """Whether the members train side by side (threads, one CUDA stream each): `auto` does on CUDA only."""
    if len(cfgs) < 2 or setting is False:
        return False
    if setting is True:
        return True
    import torch

    return torch.cuda.is_available() and all(uses_gpu(cfg) for cfg in cfgs)


def run_pack(outcomes: Sequence[MemberOutcome], reuse_from: Sequence[str] = (), side_by_side: bool = False,
             pack_id: str | None = None) -> Sequence[MemberOutcome]:
    """Run every member, filling in its outcome; a member's failure never stops another member. Each member's
    results.json says which pack it trained in (`runtime.pack`; a pack without an id gets one)."""
    about = {"id": pack_id or f"pack-{uuid.uuid4().hex[:16]}", "size": len(outcomes), "side_by_side": side_by_side}
    how = "one after another"
    if side_by_side:
        how = "side by side, each in its own thread" + (" and CUDA stream" if _cuda_members(outcomes) else "")
    log.info(f"jackpot: a pack of {len(outcomes)} runs in this process, {how}")
    cuda = side_by_side and _cuda_members(outcomes)
    with member_logs([outcome.cfg for outcome in outcomes]), _cache_emptied_between_recordings(cuda):
        if side_by_side:
            # daemon: Ctrl-C or a SIGTERM ends the process as it ends a run alone, without waiting for the other
            # members (every write is atomic; each run resumes from its last checkpoint)
            threads = [threading.Thread(target=_run_member, args=(index, outcome, reuse_from, about),
                                        name=f"jackpot-pack-{index}", daemon=True)
                       for index, outcome in enumerate(outcomes)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            for index, outcome in enumerate(outcomes):
                _run_member(index, outcome, reuse_from, about)
    return outcomes


@contextlib.contextmanager
def _cache_emptied_between_recordings(active: bool) -> Iterator[None]:
    """While members train side by side on CUDA, `torch.cuda.empty_cache` (Lightning calls it when a fit ends, a
    member's dense trunk say) waits until no other member is recording its step: freeing device memory
    synchronises the device, which a recording under way does not survive."""
    if not active:
        yield
        return
    import torch

    from jackpot.lightning.step_graph import capture_turn

    empty_cache = torch.cuda.empty_cache

    def empty_cache_between_recordings() -> None:
        with capture_turn():
            empty_cache()

    torch.cuda.empty_cache = empty_cache_between_recordings
    try:
        yield
    finally:
        torch.cuda.empty_cache = empty_cache


def _cuda_members(outcomes: Sequence[MemberOutcome]) -> bool:
    import torch

    return torch.cuda.is_available() and any(uses_gpu(outcome.cfg) for outcome in outcomes)


def failure_message(outcomes: Sequence[MemberOutcome], side_by_side: bool) -> str:
    """Why the pack's job fails: each failed member, and, when device memory ran out while members trained side
    by side, how to launch the sweep again with fewer runs per GPU (the same packs would run out again)."""
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    message = (f"{len(failed)} of {len(outcomes)} runs of this pack failed (the others ran to their end): "
               + "; ".join(f"{o.output_dir}: {type(o.error).__name__}: {o.error}" for o in failed))
    import torch

    if side_by_side and len(outcomes) > 1 and any(isinstance(o.error, torch.OutOfMemoryError) for o in failed):
        fewer = "1 (a run per GPU)" if len(outcomes) == 2 else f"{len(outcomes) // 2}, or 1 (a run per GPU)"
        message += (f". The device ran out of memory with {len(outcomes)} runs side by side: launch the sweep "
                    f"again with hydra.sweeper.pack={fewer}; complete runs are kept and the others resume")
    return message


def current_pack() -> dict[str, Any] | None:
    """The pack this thread's run trains in (id, size, side_by_side), None for a run alone."""
    return getattr(_member, "pack", None)


def _run_member(index: int, outcome: MemberOutcome, reuse_from: Sequence[str], pack: dict[str, Any]) -> None:
    from jackpot.runs.cell_lock import CellBusy
    from jackpot.runs.output_dir import discard_unstarted
    from jackpot.train import run

    _member.index, _member.pack = index, pack
    try:
        _record_job(outcome)
        with _own_cuda_stream(outcome.cfg) if pack["side_by_side"] else contextlib.nullcontext():
            outcome.results = run(outcome.cfg, reuse_from=reuse_from)
    except CellBusy as busy:
        outcome.busy = str(busy)
    except Exception as err:  # this member alone: the others go on
        outcome.error = err
        if outcome.refused:  # as a job alone: the folder made for it goes again (train.py prints the one line)
            with contextlib.suppress(Exception):
                discard_unstarted(outcome.output_dir, Path(outcome.cfg.paths.log_dir))
        else:
            log.error(f"jackpot: {outcome.output_dir} failed: {type(err).__name__}: {err}", exc_info=err)
    finally:
        _member.index, _member.pack = None, None


def _record_job(outcome: MemberOutcome) -> None:
    """The member's output dir with the `.hydra/` record that Hydra writes for a job of its own (the first
    member's is Hydra's: the pack job is launched as it)."""
    record = outcome.output_dir / ".hydra"
    if record.is_dir():
        return
    record.mkdir(parents=True)
    OmegaConf.save(outcome.cfg, record / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(outcome.overrides)), record / "overrides.yaml")


@contextlib.contextmanager
def _own_cuda_stream(cfg: DictConfig) -> Iterator[None]:
    """The member's work on a CUDA stream of its own (the current stream is per thread), so the GPU overlaps the
    members' kernels; waited for before the thread ends."""
    import torch

    if not (torch.cuda.is_available() and uses_gpu(cfg)):
        yield
        return
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(stream):
            yield
    finally:
        stream.synchronize()


# Each member's log lines go to its own train.log ------------------------------------------------------------------
_member = threading.local()  # .index: the member this thread runs (None: the pack itself); .pack: current_pack


class _MemberFilter(logging.Filter):
    """Passes the records logged while member `index` runs (on a thread of its own or in turn), and, with
    `pack_lines`, the pack's own lines too."""

    def __init__(self, index: int, pack_lines: bool = False) -> None:
        super().__init__()
        self.index, self.pack_lines = index, pack_lines

    def filter(self, record: logging.LogRecord) -> bool:
        current = getattr(_member, "index", None)
        return current == self.index or (self.pack_lines and current is None)


@contextlib.contextmanager
def member_logs(cfgs: Sequence[DictConfig]) -> Iterator[None]:
    """Give each member's records to a `train.log` in its own output dir, as a job of its own has.

    Hydra's job log file (the pack job's: the first member's `train.log`) keeps the first member's lines and the
    pack's own; every other member gets a file handler of its own, opened at its first line."""
    root = logging.getLogger()
    hydra_files = {Path(h.baseFilename).resolve(): h for h in root.handlers if isinstance(h, logging.FileHandler)}
    formatter = next(iter(hydra_files.values())).formatter if hydra_files else logging.Formatter(
        "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    added: list[logging.Handler] = []
    filtered: list[tuple[logging.Handler, logging.Filter]] = []
    for index, cfg in enumerate(cfgs):
        path = (Path(cfg.paths.output_dir) / "train.log").resolve()
        if path in hydra_files:
            only = _MemberFilter(index, pack_lines=True)
            hydra_files[path].addFilter(only)
            filtered.append((hydra_files[path], only))
            continue
        handler = logging.FileHandler(path, delay=True)  # a member refused before its first line leaves no file
        handler.setFormatter(formatter)
        handler.addFilter(_MemberFilter(index))
        root.addHandler(handler)
        added.append(handler)
    try:
        yield
    finally:
        for handler in added:
            root.removeHandler(handler)
            handler.close()
        for handler, only in filtered:
            handler.removeFilter(only)
