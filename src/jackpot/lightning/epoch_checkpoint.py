"""The run's `last.ckpt`: written at an epoch's end, at most once per `trainer.checkpoint_interval_s` of training.

On a GPU an epoch of these networks takes about 2 s, and a checkpoint every epoch meant 160 writes of VGG19's
160 MB per run (25 GB), each a copy to the host and a write beside training: a host-bound thread ran at 0.87x
its speed beside one (`scripts/checkpoint_contention.py` on the 2-core VM; 0.57x beside `torch.save` to a path,
which holds the GIL while it serializes, so jackpot writes through a file handle); a pack trains four runs in
one process, and training waits when a write outlasts an epoch. A resume needs one recent checkpoint, not one
per epoch: written once a minute, a kill loses at most about a minute of training, and a CPU epoch of CIFAR
(over a minute) is still saved every time. The interval never skips a stage's last epoch, so a kill between it
and the results file does not train the stage again, nor the epoch training stops after (a diverged loss).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint


class EpochCheckpoint(ModelCheckpoint):
    """`<dirpath>/last.ckpt`, overwritten at the end of every `every_n_epochs`-th epoch once `min_interval_s`
    seconds (of `clock`) have passed since this process's last save, or since its training started; the
    interval does not hold back the stage's last epoch or the one training stops after.

    `on_saved(epochs_done)` is called after each save, with the epochs the checkpoint holds: the progress file
    says from where a rerun resumes (`jackpot.lightning.callbacks.ProgressFile`).
    """

    def __init__(self, dirpath: str, every_n_epochs: int, min_interval_s: float,
                 on_saved: Callable[[int], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(dirpath=dirpath, filename="last", save_top_k=1, save_last=False,
                         enable_version_counter=False, save_on_train_epoch_end=True, every_n_epochs=every_n_epochs)
        self.min_interval_s = float(min_interval_s)
        self.on_saved = on_saved
        self.clock = clock
        self._last_saved_at: float | None = None

    @property
    def state_key(self) -> str:
        """The key a `ModelCheckpoint` of the same settings stores its state under, as runs checkpointed before
        this class (jackpot <= 2026-12-04) did: they resume without Lightning asking for a missing callback."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_saved_at = self.clock()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = self.clock()
        # the stage's last epoch, or the one it stops after (a diverged loss: the checkpoint then carries the
        # divergence, so a rerun stops at once instead of training the same epochs into it again)
        last_epoch = trainer.should_stop or trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        started = self._last_saved_at if self._last_saved_at is not None else now
        if not last_epoch and now - started < self.min_interval_s:
            return
        before = self._last_global_step_saved
        super().on_train_epoch_end(trainer, pl_module)
        if self._last_global_step_saved != before:  # saved (every_n_epochs may skip this epoch)
            self._last_saved_at = now
            if self.on_saved is not None:
                self.on_saved(trainer.current_epoch + 1)
