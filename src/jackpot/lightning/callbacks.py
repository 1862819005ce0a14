"""Lightning callbacks: the pruning callback (make the ticket, keep it pruned) and per-epoch re-seeding."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as L
import torch

from jackpot.lightning.step_graph import DEVICE_HOOK, HOST_HOOK
from jackpot.machine.global_rng import reseed_all
from jackpot.pruning import Masks
from jackpot.runs import faults
from jackpot.runs.results import write_progress


class PruningCallback(L.Callback):
    """Builds the ticket when training (or evaluation) starts and keeps pruned weights exactly zero.

    `make_ticket(model) -> Masks` does the science (see `jackpot.ticket.build_ticket`); this callback decides
    *when* it runs, saves the masks with the run, logs per-layer density, and after every backward multiplies
    the masked gradients by the mask in one fused `_foreach_mul_`. With the weight already zero and its
    gradient zero, SGD's weight decay and momentum add nothing, so the weight stays exactly zero (the official
    code's gradient masking).

    The masks are part of the callback state, so a resumed run restores them instead of scoring again.
    """

    step_hook = DEVICE_HOOK  # the mask multiply is device work only: a recorded CUDA-graph step replays it

    def __init__(self, make_ticket: Callable[[torch.nn.Module], Masks], masks_path: str | Path | None = None,
                 resuming: bool = False):
        """`resuming`: the fit resumes from a checkpoint of this run, which holds the masks. Lightning calls
        `setup` before it even records the checkpoint path (`trainer.ckpt_path` is still None there), so the
        caller, who passes that path to `fit`, says so."""
        self.make_ticket = make_ticket
        self.masks_path = Path(masks_path) if masks_path is not None else None
        self.resuming = resuming
        self.masks: Masks | None = None
        self.was_restored = False

    # Building ---------------------------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        resuming = stage == "fit" and self.resuming
        if self.masks is None and not resuming:
            # Score where the run trains: Lightning moves the model to its device only after `setup`, and SNIP,
            # GraSP or OBD on the host of a GPU run take minutes instead of seconds (masks are kept on the CPU).
            pl_module.model.to(trainer.strategy.root_device)
            self.masks = self.make_ticket(pl_module.model)
            if self.masks_path is not None:
                self.masks.save(self.masks_path)

    def load_state_dict(self, state_dict: dict) -> None:
        self.masks = Masks(state_dict["masks"])
        self.was_restored = True

    def state_dict(self) -> dict:
        return {"masks": self.masks.state_dict()} if self.masks is not None else {}

    def _prepare(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.masks is None:
            raise RuntimeError("resumed from a checkpoint that holds no masks")
        self.masks.apply(pl_module.model)  # no-op on a fresh ticket; a guard after a restore
        weights, floats = self.masks.as_float(pl_module.model)
        self._weights, self._float_masks = weights, floats
        densities = {f"density/{name}": self.masks.density(name) for name in self.masks}
        densities["density/total"] = self.masks.density()
        for logger in trainer.loggers:
            logger.log_metrics(densities, step=0)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._prepare(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.training and not hasattr(self, "_weights"):
            self._prepare(trainer, pl_module)

    # Keeping it pruned ------------------------------------------------------------------------------------------
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        grads = [w.grad for w in self._weights]
        if any(g is None for g in grads):
            pairs = [(g, m) for g, m in zip(grads, self._float_masks, strict=True) if g is not None]
            if not pairs:
                return
            grads, masks = map(list, zip(*pairs, strict=True))
        else:
            masks = self._float_masks
        torch._foreach_mul_(grads, masks)


class FaultPoints(L.Callback):
    """Marks every optimizer step as the fault-injection point `step` (see `jackpot.runs.faults`): reached after
    the step's backward, before its update. `on_before_optimizer_step` runs before every optimizer step also
    when several run per training step (`trainer.steps_per_call`), unlike the per-batch hooks."""

    step_hook = HOST_HOOK  # no tensor work: runs on the host before every step, also a replayed one

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        faults.reach("step")


class EpochSeed(L.Callback):
    """Re-seed every RNG at the start of each epoch from (seed, epoch).

    An epoch's shuffling and augmentation then depend only on the seed and the epoch number, so a run resumed
    from an epoch-end checkpoint replays exactly what the uninterrupted run did.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch_seed = (self.seed * 7919 + trainer.current_epoch * 104729) % (2**31)
        reseed_all(epoch_seed)
        # Lightning sets the sampler epoch from its progress counters, which a restore from an epoch-end checkpoint
        # leaves one behind; the epoch number is what decides the order, so set it again here.
        loader = trainer.train_dataloader
        for target in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(target, "set_epoch"):
                target.set_epoch(trainer.current_epoch)


class ProgressFile(L.Callback):
    """Write `<output dir>/progress.json` at each epoch end: the stage (dense trunk, IMP round, ticket), the
    epochs done of its total, and the epochs its newest checkpoint holds (where a rerun resumes: checkpoints are
    written at most once per `trainer.checkpoint_interval_s`), which `jackpot-tables`, a dry run and the
    sweeper's cost line show for a running or interrupted cell."""

    def __init__(self, path: Path, stage: str):
        self.path = Path(path)
        self.stage = stage
        self._checkpointed = 0
        self._done: int | None = None
        self._total: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._checkpointed = trainer.current_epoch  # 0, or the epochs of the checkpoint this fit resumed from

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._done, self._total = trainer.current_epoch + 1, trainer.max_epochs
        self._write()

    def checkpointed(self, epochs_done: int) -> None:
        """A checkpoint holding `epochs_done` epochs is written (`EpochCheckpoint.on_saved`; on a GPU it is still
        being written in the background, so a kill in those moments resumes from the one before)."""
        self._checkpointed = epochs_done
        self._write()

    def _write(self) -> None:
        write_progress(self.path, self.stage, self._done, self._total, checkpointed=self._checkpointed)
