"""What a run prints while it trains: one line per epoch, and none of Lightning's routine messages.

A 160-epoch run was silent from its start to its end: minutes on a GPU, hours on a CPU. `EpochLog` logs one
line per epoch through Python logging (logger `jackpot.lightning.progress`), so Hydra's job logging writes it
both to the terminal and to the job's `train.log`; each line starts with the cell's name, so the lines of a
sweep's jobs stay readable when they interleave. `quiet_lightning` drops Lightning's per-run banner (device
availability, advertisements, "fit stopped"), which said nothing about the run.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any

import lightning.pytorch as L
import torch

log = logging.getLogger(__name__)

# Lightning's INFO messages that every run printed and no user acts on (prefixes): the device report, the
# "💡 Tip" advertisements, the mixed-precision and CUDA-device notes, the end of fit and the restore notes
# (EpochLog says "resumed after epoch k/n" instead). Its other messages, and all warnings, still show.
ROUTINE_MESSAGES = (
    "GPU available:", "TPU available:", "HPU available:", "💡 Tip", "`Trainer.fit` stopped:",
    "Using bfloat16 Automatic Mixed Precision", "Using 16bit Automatic Mixed Precision", "LOCAL_RANK:",
    "Restoring states from the checkpoint", "Restored all states from the checkpoint",
)
LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda")


class _DropRoutine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not record.getMessage().startswith(ROUTINE_MESSAGES)


_DROP_ROUTINE = _DropRoutine()


def quiet_lightning() -> None:
    """Drop Lightning's routine INFO messages (idempotent). A filter on its loggers, not a level: jackpot's own
    notes that go through `rank_zero_info` (e.g. why steps are not recorded as a CUDA graph) still show.

    Two warnings go too: the hint, on any machine with SLURM installed, to launch the run with `srun` (that is
    for multi-device runs; a jackpot run uses one device, and sweeps reach SLURM through the submitit launcher),
    and, on every resume, that the checkpoint folder is not empty (it holds the run's own `last.ckpt`, which
    the resume reads and the next epoch overwrites)."""
    for name in LIGHTNING_INFO_LOGGERS:
        logger = logging.getLogger(name)
        if _DROP_ROUTINE not in logger.filters:
            logger.addFilter(_DROP_ROUTINE)
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def epoch_images(steps: int, batch_size: int, train_size: int) -> int:
    """Images trained on in an epoch of `steps` optimizer steps: batches are full but the last of a complete
    epoch, which holds the rest of the training set."""
    return min(steps * batch_size, train_size)


def format_duration(seconds: float) -> str:
    """45s, 4m05s, 2h03m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class EpochLog(L.Callback):
    """Logs `<cell> <stage> epoch k/n: train loss L, test acc A %, N img/s, T left` once per epoch.

    Nothing runs per step and nothing new is read from the device: the loss and accuracy are the module's
    `history` entry for the epoch (sums accumulated on the device and read once per epoch by the module). The
    module fills in the training loss in its own `on_train_epoch_end`, which Lightning calls after the
    callbacks', so the line is written when the next epoch starts or training ends. Images/s counts the epoch's
    optimizer steps (several per Lightning step with `trainer.steps_per_call`) over the training phase alone;
    on a GPU that phase ends with one synchronize per epoch, as queued steps would otherwise be timed with the
    evaluation. The time left is the stage's: its remaining epochs at the mean epoch time (evaluation and
    checkpoint included; the first epoch, which records the CUDA graph and tunes cuDNN, left out when others
    are known).

    It also keeps each epoch's wall-clock end (`timeline`, results.json's `runtime.epochs_timed`): a run's
    per-epoch time and set-up then come from one run, and a pack's from its members' overlapping epochs
    (scripts/end_to_end.py), without a second run of another length. And where each epoch's time went:
    training (to its queued steps' end), evaluation (to its end, synchronized too), and the rest (the epoch-end
    hooks: checkpoint, progress file, logging), so one device run says what an epoch beyond its steps costs.
    """

    def __init__(self, stage: str, run_name: str = ""):
        self.stage = stage
        self.prefix = f"{run_name} " if run_name else ""
        self._durations: list[float] = []
        self._epoch: int | None = None  # the epoch under way or not yet logged
        self._started = 0.0
        self._trained: float | None = None  # when the epoch's training phase ended
        self._evaluated: float | None = None  # when its evaluation ended
        self._first_step = self._steps = 0
        self.images: int | None = None  # the last logged epoch's training images (None: no datamodule to say)
        self._first_epoch: int | None = None  # the first epoch this process trained (not 0 once resumed)
        self._first_started_at = 0.0  # its wall-clock start
        self._ended_at: list[float] = []  # wall-clock end of each epoch since, evaluation and checkpoint included
        self._split: list[tuple[float, float, float]] = []  # each one's (training, evaluation, the rest) seconds

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done, total = trainer.current_epoch, trainer.max_epochs
        resumed = f", resumed after epoch {done}/{total} ({trainer.ckpt_path})" if trainer.ckpt_path else ""
        log.info(f"{self.prefix}{self.stage}: {total} epochs{resumed}")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer, pl_module)
        self._epoch, self._started = trainer.current_epoch, time.perf_counter()
        self._trained = self._evaluated = None
        if self._first_epoch is None:
            self._first_epoch, self._first_started_at = trainer.current_epoch, time.time()
        self._first_step = trainer.global_step

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch is not None and self._trained is None:
            self._trained = _synchronized_now(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch is not None and self._trained is not None and self._evaluated is None:
            self._evaluated = _synchronized_now(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._epoch is not None and self._trained is None:  # no evaluation this epoch
            self._trained = _synchronized_now(pl_module)
        self._steps = trainer.global_step - self._first_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._epoch = None  # an epoch cut short has no line

    def _flush(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the finished epoch, if one is waiting."""
        if self._epoch is None or self._trained is None:
            return
        epoch, self._epoch = self._epoch, None
        self._durations.append(time.perf_counter() - self._started)
        self._ended_at.append(time.time())
        training = self._trained - self._started
        evaluation = (self._evaluated or self._trained) - self._trained
        self._split.append((training, evaluation, self._durations[-1] - training - evaluation))
        entry = next((e for e in reversed(getattr(pl_module, "history", [])) if e.get("epoch") == epoch), {})
        loss, acc = entry.get("train/loss", math.nan), entry.get("test/acc")
        parts = [f"train loss {loss:.4f}", "test acc -" if acc is None else f"test acc {acc:.2f} %"]
        data = trainer.datamodule
        if hasattr(data, "batch_size") and hasattr(data, "train_size"):
            self.images = epoch_images(self._steps, data.batch_size, data.train_size)
            parts.append(f"{self.images / max(self._trained - self._started, 1e-9):,.0f} img/s")
        typical = self._durations[1:] or self._durations
        parts.append(f"{format_duration(sum(typical) / len(typical) * (trainer.max_epochs - epoch - 1))} left")
        log.info(f"{self.prefix}{self.stage} epoch {epoch + 1}/{trainer.max_epochs}: {', '.join(parts)}")

    def timeline(self) -> dict[str, Any] | None:
        """The epochs this process trained, on the wall clock: the first one's index and start, each one's end,
        and each one's [training, evaluation, the rest] seconds (None when it trained none: nothing to train,
        or resumed after its last epoch)."""
        if not self._ended_at:
            return None
        return {"first_epoch": self._first_epoch, "started_at": round(self._first_started_at, 3),
                "ended_at": [round(t, 3) for t in self._ended_at],
                "split_s": [[round(part, 4) for part in parts] for parts in self._split]}


def _synchronized_now(pl_module: L.LightningModule) -> float:
    """The time once this run's queued work is done: its stream's, not the whole device's (the runs of a pack
    each train on their own stream, and a device-wide wait would hold each one up until all had drained; a no-op
    on a CPU)."""
    if pl_module.device.type == "cuda":
        torch.cuda.current_stream(pl_module.device).synchronize()
    return time.perf_counter()
