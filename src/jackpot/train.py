"""run(cfg): one table cell, end to end. Validate, build, (dense trunk, cached), ticket, train, results."""

from __future__ import annotations

import copy
import dataclasses
import logging
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import jackpot
from jackpot.config import SCALED_PRECISIONS, pruner_options, ticket_weights_of, uses_gpu, validate
from jackpot.data import ImageDataModule
from jackpot.data.corruption import OFFICIAL_SEED
from jackpot.lightning.callbacks import EpochSeed, FaultPoints, ProgressFile, PruningCallback
from jackpot.lightning.epoch_checkpoint import EpochCheckpoint
from jackpot.lightning.loggers import build_loggers, cell_keys, cell_name, finish_loggers
from jackpot.lightning.module import ClassificationModule, MultiStepClassificationModule, Schedule
from jackpot.lightning.progress import EpochLog, quiet_lightning
from jackpot.machine.compile_cache import use_shared_compile_cache
from jackpot.machine.global_rng import seeded_torch
from jackpot.machine.process_clock import marks as process_marks
from jackpot.models import build_model
from jackpot.pruning import Masks
from jackpot.pruning.low_memory import memory_fit
from jackpot.pruning.registry import get_method
from jackpot.runs import faults
from jackpot.runs.atomic_io import remove_stale_temp_files, write_json_atomic
from jackpot.runs.cache_keys import TRUNK_STAGE, imp_round_spec, imp_round_stage, pretrain_epochs, trunk_spec
from jackpot.runs.cell_lock import cell_lock
from jackpot.runs.checkpoint_io import AtomicCheckpointIO, BackgroundCheckpointIO
from jackpot.runs.claim import SKIPPED, RunElsewhere, claim_run
from jackpot.runs.identity import RUN_CONFIG_FILE, identity_hash, run_identity
from jackpot.runs.output_dir import holds_finished_run
from jackpot.runs.pack import TICKET_TURN, current_pack
from jackpot.runs.results import PROGRESS_FILE, RESULTS_FILE, read_progress, read_results, write_progress, write_results
from jackpot.runs.trunk import Trunk, TrunkCache
from jackpot.ticket import TicketRecipe, build_ticket

log = logging.getLogger(__name__)
REINIT_SEED_OFFSET = 10_000  # the reinit check draws a fresh init from seed + this
WAITING = "waiting for the"  # how a cell's progress file says it waits for shared work (trunk, IMP round)


class TrainingDiverged(RuntimeError):
    """Shared work (a dense trunk, an IMP round) trained to a NaN or infinite loss: it is not cached, so no run
    prunes from it, and every run that needs it fails with this error."""


def make_datamodule(cfg: DictConfig, corruption: str | None) -> ImageDataModule:
    d = cfg.dataset
    gpu = uses_gpu(cfg)
    loader = d.loader if d.loader != "auto" else ("device" if gpu else "torch")
    return ImageDataModule(
        name=d.name, root=str(d.root), batch_size=d.batch_size, eval_batch_size=d.eval_batch_size,
        num_workers=d.num_workers, loader=loader, device="cuda" if gpu and loader == "device" else "cpu",
        augment=d.augment, hflip=d.hflip, corruption=corruption, seed=int(cfg.seed), download=d.download,
        pixel_seed=OFFICIAL_SEED if cfg.sanity_check.get("pixel_scramble") == "fixed" else None,
        verify_md5=d.verify_md5, train_subset=d.train_subset, test_subset=d.test_subset,
    )


def make_model(cfg: DictConfig, num_classes: int, seed: int) -> torch.nn.Module:
    """The network with the init drawn from `seed` (the same seed gives the same init, trunk and ticket alike)."""
    with seeded_torch(seed):  # the global generator, under a lock: the runs of a pack share it
        return build_model(cfg.model.name, num_classes)


def make_schedule(cfg: DictConfig, epochs: int | None = None) -> Schedule:
    s = cfg.schedule
    return Schedule(
        epochs=int(s.epochs if epochs is None else epochs), lr=float(s.lr), momentum=float(s.momentum),
        weight_decay=float(s.weight_decay), nesterov=bool(s.nesterov), milestones=tuple(s.milestones),
        gamma=float(s.gamma),
    )


def make_trainer(cfg: DictConfig, epochs: int, ckpt_dir: Path | None, callbacks: list, loggers: list) -> L.Trainer:
    t = cfg.trainer
    gpu = uses_gpu(cfg)
    precision = t.precision if t.precision != "auto" else ("bf16-mixed" if gpu else "32-true")
    if faults.active():
        callbacks = [*callbacks, FaultPoints()]
    if ckpt_dir is not None:
        # One file, overwritten (atomically) at an epoch's end once a minute: `last.ckpt` is what a rerun resumes
        # from, and the progress file says which epoch it holds.
        progress = next((c for c in callbacks if isinstance(c, ProgressFile)), None)
        callbacks = [*callbacks, EpochCheckpoint(str(ckpt_dir), every_n_epochs=t.checkpoint_every_n_epochs,
                                                 min_interval_s=t.checkpoint_interval_s,
                                                 on_saved=progress.checkpointed if progress else None)]
    # auto: in the background on a GPU, where an epoch can be shorter than writing its checkpoint
    writes = t.get("checkpoint_writes", "auto")
    background = writes == "background" or (writes == "auto" and gpu)
    checkpoint_io = BackgroundCheckpointIO() if background else AtomicCheckpointIO()
    quiet_lightning()
    return L.Trainer(
        accelerator="gpu" if gpu else "cpu", devices=t.devices, precision=precision, max_epochs=epochs,
        deterministic=t.deterministic, enable_progress_bar=t.enable_progress_bar, enable_model_summary=False,
        # cuDNN picks the fastest convolution per input shape (three shapes here: batch, last batch, eval) on a GPU,
        # as the original code and the benchmark do; not when the run asks for determinism.
        benchmark=gpu and not t.deterministic,
        log_every_n_steps=t.log_every_n_steps, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches, num_sanity_val_steps=0, callbacks=callbacks,
        logger=loggers or False, enable_checkpointing=ckpt_dir is not None, plugins=[checkpoint_io],
        default_root_dir=str(ckpt_dir.parent) if ckpt_dir is not None else None,
    )


def _channels_last(cfg: DictConfig) -> bool:
    return cfg.trainer.channels_last in ("auto", True)


def _last_checkpoint(ckpt_dir: Path) -> str | None:
    last = ckpt_dir / "last.ckpt"
    return str(last) if last.exists() else None


def make_module(cfg: DictConfig, model: nn.Module, schedule: Schedule) -> ClassificationModule:
    """The LightningModule: one optimizer step per Lightning step, or ``trainer.steps_per_call`` of them
    (same arithmetic bit for bit, Lightning's per-batch overhead paid once per call), each replayed as a
    recorded CUDA graph on a GPU unless ``trainer.cuda_graph=false``."""
    steps = int(cfg.trainer.get("steps_per_call", 1))
    graph = {"auto": None, True: True, False: False}[cfg.trainer.get("cuda_graph", "auto")]
    if graph is None and str(cfg.trainer.precision) in SCALED_PRECISIONS:
        graph = False  # a gradient scaler needs Lightning's automatic optimization
    if steps > 1 or (graph is not False and uses_gpu(cfg)):
        return MultiStepClassificationModule(model, schedule, _channels_last(cfg), steps_per_call=steps,
                                             cuda_graph=graph)
    return ClassificationModule(model, schedule, _channels_last(cfg))


def describe_runtime(cfg: DictConfig, trainer: L.Trainer, module: ClassificationModule,
                     datamodule: ImageDataModule, epoch_log: EpochLog) -> dict[str, Any]:
    """How the run was computed, `auto` settings resolved: runs of one identity may come from a CPU (fp32) and
    a GPU (bf16, data on the device, recorded steps), and results.json says which."""
    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor()
                                                                             or platform.machine())
    program = getattr(module, "_program", None)
    ran_no_step = hasattr(module, "_program") and (program is None or program.replays + program.eager_steps == 0)
    if int(cfg.schedule.epochs) == 0 or ran_no_step:
        step = "none in this process"  # nothing to train, or resumed after its last epoch: the steps ran before
    else:
        step = "recorded CUDA graph" if program is not None and program.recorded else "eager"
    scoring = memory_fit.last_choice()  # SNIP/GraSP: where scoring ran (offload=auto resolved) and why
    return {
        "device": f"{device.type}: {name}", "precision": str(trainer.precision), "loader": datamodule.loader,
        "compiled": bool(cfg.trainer.compile), "steps_per_call": getattr(module, "steps_per_call", 1),
        "step": step, "scoring": scoring.as_dict() if scoring else "none in this process",
        "pack": current_pack(),  # trained in a pack (hydra.sweeper.pack): its id, size, side by side or not
        "epochs_timed": epoch_log.timeline(),  # this process's epochs on the wall clock (scripts/end_to_end.py)
        "process": process_marks(),  # when this process reached main, validated, imported (machine.process_clock)
    }


def train_trunk(cfg: DictConfig, num_classes: int, work_dir: Path,
                progress: Path | None = None) -> tuple[dict, dict]:
    """Train the dense network on the data of the data check (clean if none); resumable from `work_dir`;
    epochs reported to the `progress` file of the cell that trains it."""
    model = make_model(cfg, num_classes, int(cfg.seed))
    init_state = copy.deepcopy(model.state_dict())
    datamodule = make_datamodule(cfg, corruption=cfg.sanity_check.data)
    module = make_module(cfg, model, make_schedule(cfg, pretrain_epochs(cfg)))
    ckpt_dir = work_dir / "checkpoints"
    callbacks = [EpochSeed(int(cfg.seed)), EpochLog(TRUNK_STAGE, cell_name(cfg))]
    callbacks += [ProgressFile(progress, TRUNK_STAGE)] if progress else []
    trainer = make_trainer(cfg, pretrain_epochs(cfg), ckpt_dir, callbacks, [])
    trainer.fit(module, datamodule=datamodule, ckpt_path=_last_checkpoint(ckpt_dir))
    if module.nonfinite_loss:
        raise TrainingDiverged(f"the dense trunk in {work_dir} diverged (its loss became NaN or infinite); it is not "
                               f"cached, and the runs that prune from it cannot start (schedule.lr={cfg.schedule.lr})")
    return init_state, module.model.state_dict()


def _waiting_notice(progress: Path | None, what: str) -> Callable[[Path], None]:
    """Say, in the log and in the cell's progress file (`jackpot-tables` lists it), that this job waits for
    shared work another job is doing: else it looks hung for as long as a dense training takes."""

    def notice(folder: Path) -> None:
        log.info(f"jackpot: waiting for the {what} that another job is training ({folder})")
        if progress is not None:
            write_progress(progress, f"{WAITING} {what} another job trains")

    return notice


def round_ratio(ratio: float, rounds: int) -> float:
    """The fraction each of `rounds` magnitude-pruning rounds removes so that `ratio` is removed in the end."""
    return 1.0 - (1.0 - ratio) ** (1.0 / rounds)


def iterate_rounds(cfg: DictConfig, num_classes: int, trunk: Trunk, cache: TrunkCache,
                   progress: Path | None = None) -> tuple[Trunk, Masks | None]:
    """Iterative magnitude pruning: rounds 1..R-1 prune, rewind and retrain (each round cached like a trunk);
    returns the weights and masks the last round (the run's own ticket stage) prunes from."""
    rounds = int(cfg.pruner.get("rounds", 1))
    masks: Masks | None = None
    current = trunk
    # The sanity checks apply to the run's own ticket only: a round prunes, rewinds and retrains like the plain
    # method (its retraining on the data check's data, as the trunk's), so runs with other final checks share it.
    recipe = dataclasses.replace(ticket_recipe(cfg, ratio=round_ratio(float(cfg.ratio), rounds)),
                                 mask_check=None, weight_check=None)
    for index in range(1, rounds):
        spec, stage = imp_round_spec(cfg, index), imp_round_stage(index, rounds)
        previous, source = masks, current

        def train_round(work: Path, previous=previous, source=source, recipe=recipe, stage=stage):
            model = make_model(cfg, num_classes, int(cfg.seed))
            ckpt_dir = work / "checkpoints"
            resume_from = _last_checkpoint(ckpt_dir)
            pruning = PruningCallback(lambda net: build_ticket(
                net, recipe, init_state=trunk.init_state, trained_state=source.trained_state,
                previous_masks=previous), resuming=resume_from is not None)
            module = make_module(cfg, model, make_schedule(cfg))
            callbacks = [pruning, EpochSeed(int(cfg.seed)), EpochLog(stage, cell_name(cfg))]
            if progress:
                callbacks.append(ProgressFile(progress, stage))
            trainer = make_trainer(cfg, int(cfg.schedule.epochs), ckpt_dir, callbacks, [])
            trainer.fit(module, datamodule=make_datamodule(cfg, corruption=cfg.sanity_check.data),
                        ckpt_path=resume_from)
            if module.nonfinite_loss:
                raise TrainingDiverged(f"{stage} in {work} diverged (its loss became NaN or "
                                       "infinite); it is not cached, and the runs that need it cannot start")
            return trunk.init_state, module.model.state_dict(), pruning.masks.state_dict()

        current = cache.obtain(spec, train_round, on_wait=_waiting_notice(progress, stage))
        masks = Masks(current.masks)
    return current, masks


def ticket_recipe(cfg: DictConfig, ratio: float | None = None) -> TicketRecipe:
    check = cfg.sanity_check
    return TicketRecipe(
        method=cfg.pruner.method, ratio=float(cfg.ratio if ratio is None else ratio),
        options=pruner_options(cfg),
        ticket_weights=ticket_weights_of(cfg, get_method(cfg.pruner.method)),
        mask_check=check.mask, weight_check=check.weights, seed=int(cfg.seed),
    )


def run(cfg: DictConfig, reuse_from: Sequence[str] = ()) -> dict[str, Any]:
    """Run one cell; returns the results dict (also written to <output_dir>/results.json). `reuse_from`: the
    sweeps whose run of this very experiment stands for this one (hydra.sweeper.reuse_from): RunElsewhere when
    one of them is training it or has finished it."""
    validate(cfg)
    output_dir = Path(cfg.paths.output_dir)
    identity = run_identity(cfg)
    digest = identity_hash(identity)
    with cell_lock(output_dir):  # CellBusy when another process runs this cell
        if holds_finished_run(output_dir, identity):
            return _skipped(output_dir)
        try:
            with claim_run(Path(cfg.paths.cache_dir), digest, identity, str(cfg.name), output_dir, reuse_from):
                return _run_cell(cfg, output_dir, digest)
        except RunElsewhere as elsewhere:
            if (output_dir / RUN_CONFIG_FILE).exists():  # started here before: jackpot-tables says why it stays so
                write_progress(output_dir / PROGRESS_FILE, f"{SKIPPED} {elsewhere}")
            raise


def _skipped(output_dir: Path) -> dict[str, Any]:
    results = read_results(output_dir / RESULTS_FILE)
    results["skipped"] = True
    return results


def _run_cell(cfg: DictConfig, output_dir: Path, digest: str) -> dict[str, Any]:
    """The run itself, under the cell's lock, once the output dir is known to hold nothing else."""
    started = time.time()
    memory_fit.forget()
    remove_stale_temp_files(output_dir, output_dir / "checkpoints")  # under the cell lock: no write of ours is live
    torch.set_float32_matmul_precision("high")
    seed = int(cfg.seed)
    datamodule = make_datamodule(cfg, corruption=None)
    datamodule.prepare_data()  # missing or corrupted files fail here, before any scoring or training
    num_classes = datamodule.num_classes
    write_json_atomic(output_dir / RUN_CONFIG_FILE,
                      {"config_hash": digest, "config": OmegaConf.to_container(cfg, resolve=True)})

    model = make_model(cfg, num_classes, seed)
    init_state = copy.deepcopy(model.state_dict())
    method = get_method(cfg.pruner.method)
    trunk: Trunk | None = None
    source: Trunk | None = None  # the trained weights the ticket is pruned from (the trunk, or the last IMP round)
    previous_masks: Masks | None = None
    rounds = int(cfg.pruner.get("rounds", 1))
    recipe = ticket_recipe(cfg)
    progress = output_dir / PROGRESS_FILE
    if method.when == "trained":
        cache = TrunkCache(cfg.paths.cache_dir)
        trunk = cache.obtain(trunk_spec(cfg), lambda work: train_trunk(cfg, num_classes, work, progress),
                             on_wait=_waiting_notice(progress, TRUNK_STAGE))
        init_state = trunk.init_state
        faults.reach("trunk")
        source, previous_masks = iterate_rounds(cfg, num_classes, trunk, cache, progress)
        if read_progress(output_dir).startswith(WAITING):  # the wait is over
            write_progress(progress, "making the ticket")
        if rounds > 1:
            recipe = ticket_recipe(cfg, ratio=round_ratio(float(cfg.ratio), rounds))

    check = cfg.sanity_check
    # A data check corrupts all the data the mask is made from: the scoring batch (SNIP, GraSP, OBD's Hessian)
    # as well as the dense training of the trunk.
    scoring_module = make_datamodule(cfg, corruption=check.data)

    def scoring_batches():
        return scoring_module.scoring_batch(cfg.dataset.samples_per_class, seed=seed)

    ticket_seconds: list[float] = []  # making the ticket in this process (none when a checkpoint holds it)

    def make_ticket(net: torch.nn.Module):
        with TICKET_TURN:  # one scoring at a time in this process (the runs of a pack)
            began = time.perf_counter()
            masks = build_ticket(
                net, recipe, init_state=init_state, trained_state=source.trained_state if source else None,
                batches=scoring_batches, previous_masks=previous_masks, input_shape=datamodule.input_shape,
                fresh_init=lambda: make_model(cfg, num_classes, seed + REINIT_SEED_OFFSET).state_dict(),
            )
            ticket_seconds.append(time.perf_counter() - began)
        faults.reach("score")
        return masks

    epochs = int(cfg.schedule.epochs)
    ckpt_dir = output_dir / "checkpoints"
    resume_from = _last_checkpoint(ckpt_dir) if epochs > 0 else None
    pruning = PruningCallback(make_ticket, masks_path=output_dir / "masks.pt", resuming=resume_from is not None)
    module = make_module(cfg, model, make_schedule(cfg))
    if cfg.trainer.compile:
        use_shared_compile_cache(cfg.paths.cache_dir)  # a sweep's runs compile once between them
        module.compile_model()
    loggers = build_loggers(cfg, output_dir, digest)
    epoch_log = EpochLog("ticket", cell_name(cfg))
    callbacks = [pruning, EpochSeed(seed), ProgressFile(progress, "ticket"), epoch_log]
    trainer = make_trainer(cfg, epochs, ckpt_dir if epochs > 0 else None, callbacks, loggers)
    try:
        if epochs == 0:
            trainer.validate(module, datamodule=datamodule, verbose=False)
        else:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    except BaseException:
        try:  # close the wandb run as failed; an error doing so must not hide the one that stopped training
            finish_loggers(loggers, {"final_acc": module.final_acc, "best_acc": module.best_acc}, failed=True)
        except Exception:
            log.exception("jackpot: closing the loggers after a failed run failed too")
        raise
    failed = module.nonfinite_loss
    finish_loggers(loggers, {"final_acc": module.final_acc, "best_acc": module.best_acc}, failed)

    masks = pruning.masks
    results = {
        "status": "failed" if failed else "complete",
        "reason": "loss became NaN or infinite (training diverged)" if module.nonfinite_loss else None,
        "cell": cell_keys(cfg),
        "cell_name": cell_name(cfg),
        "name": cfg.name,
        "config_hash": digest,
        "final_acc": module.final_acc,
        "best_acc": module.best_acc,
        "epochs": epochs,
        "kept": masks.kept(),
        "total": masks.total(),
        "density": masks.density(),
        "layers": masks.layer_table(),
        "masks_file": "masks.pt",
        "trunk": None if trunk is None else {"hash": trunk.hash, "reused": trunk.reused, "path": str(trunk.path)},
        "rounds": rounds,
        "resumed": pruning.was_restored,
        "history": module.history,
        "wall_time_s": round(time.time() - started, 3),
        # wall-clock start and end of the run inside its process: what a process spends before and after them
        # (imports, CUDA start-up, teardown) is scripts/end_to_end.py's process start and end
        "started_at": round(started, 3), "finished_at": round(time.time(), 3),
        "runtime": {**describe_runtime(cfg, trainer, module, datamodule, epoch_log),
                    # scoring and the checks on the mask and weights, the scoring data's loading included
                    "ticket_s": round(sum(ticket_seconds), 3) if ticket_seconds else None},
        "versions": {"jackpot": jackpot.__version__, "torch": torch.__version__, "lightning": L.__version__,
                     "python": platform.python_version()},
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_results(output_dir, results)
    return results
