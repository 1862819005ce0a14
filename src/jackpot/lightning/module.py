"""The classification LightningModule: the paper's SGD recipe, accuracy accumulated on the device.

Per-step work is kept to the forward, the loss and two on-device accumulations: no `.item()`, no per-step
logging. Epoch metrics are read once per epoch, which is where Lightning's overhead would otherwise show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import lightning.pytorch as L
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Schedule:
    """SGD with step decay, as in the official code: lr 0.1, momentum 0.9, wd 1e-4, x0.1 at 80 and 120 of 160."""

    epochs: int = 160
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    milestones: tuple[int, ...] = (80, 120)
    gamma: float = 0.1
    extra: dict = field(default_factory=dict)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of `epoch` (MultiStepLR's rule), a pure function of the epoch: nothing to restore."""
        return self.lr * self.gamma ** sum(1 for milestone in self.milestones if milestone <= epoch)


class ClassificationModule(L.LightningModule):
    """Wraps a network; trains with cross-entropy, evaluates the test set every epoch, tracks final and best."""

    def __init__(self, model: nn.Module, schedule: Schedule, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.schedule = schedule
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # Per step: (mean loss, correct count) device tensors and the batch size; summed once per epoch.
        self._train_parts: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self._eval_parts: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self.history: list[dict] = []  # one entry per evaluated epoch: epoch, test_acc, test_loss, train_*
        self.best_acc: float = float("nan")
        self.final_acc: float = float("nan")
        self.nonfinite_loss: bool = False

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets `_current_fx_name` twice around every hook call (~40 times per training step);
        # nn.Module.__setattr__ checks parameters, buffers and modules each time. A plain string attribute
        # needs none of that.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def compile_model(self, **options) -> None:
        """Compile the network's forward. The compiled callable is kept outside the module tree, so parameter
        names (and therefore mask names and checkpoints) stay those of the plain network; masks are applied to
        the gradients outside the graph, so a new mask needs no recompile."""
        object.__setattr__(self, "_compiled", torch.compile(self.model, dynamic=False, **options))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        compiled = self.__dict__.get("_compiled")
        return compiled(x) if compiled is not None else self.model(x)

    # Training ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _accumulate(parts: list, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        """Keep the step's loss and correct count on the device: three small kernels, no host sync."""
        with torch.no_grad():
            parts.append((loss.detach(), (logits.argmax(dim=1) == y).sum(), int(y.shape[0])))

    @staticmethod
    def _totals(parts: list) -> tuple[float, float, int]:
        """(sum of loss * n, correct, n) over the steps in `parts`, read with one host sync."""
        if not parts:
            return 0.0, 0.0, 0
        losses = torch.stack([p[0] for p in parts]).float()
        sizes = torch.tensor([p[2] for p in parts], dtype=torch.float32).to(losses.device)
        correct = torch.stack([p[1] for p in parts]).sum().float()
        loss_sum, correct_sum = torch.stack(((losses * sizes).sum(), correct)).tolist()
        return loss_sum, correct_sum, sum(p[2] for p in parts)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self._accumulate(self._train_parts, logits, y, loss)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_parts = []
        # The LR is set from the epoch number, not stepped by a stateful scheduler: a run resumed from an
        # epoch-end checkpoint gets exactly the LR of the uninterrupted run.
        self._epoch_lr = self.schedule.lr_at(self.current_epoch)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self._epoch_lr

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, n = self._totals(self._train_parts)  # one host sync per epoch
        self._train_parts = []
        if n:
            train = {"train/loss": loss_sum / n, "train/acc": correct / n,
                     "lr": self._epoch_lr}
            if not math.isfinite(loss_sum):
                self._stop_nonfinite()
            if self.history and self.history[-1]["epoch"] == self.current_epoch:
                self.history[-1].update(train)
            else:
                self.history.append({"epoch": self.current_epoch, **train})
            self._log_scalars(train)

    # Evaluation (the test set, every epoch, as the official code) --------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._eval_parts = []

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self._accumulate(self._eval_parts, logits, y, loss)

    test_step = validation_step
    on_test_epoch_start = on_validation_epoch_start

    def _close_eval(self, prefix: str) -> dict[str, float]:
        loss_sum, correct, n = self._totals(self._eval_parts)
        self._eval_parts = []
        metrics = {f"{prefix}/loss": loss_sum / max(n, 1), f"{prefix}/acc": 100.0 * correct / max(n, 1)}
        return metrics

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        metrics = self._close_eval("test")
        if not math.isfinite(metrics["test/loss"]):
            self._stop_nonfinite()
        acc = metrics["test/acc"]
        self.final_acc = acc
        self.best_acc = acc if math.isnan(self.best_acc) else max(self.best_acc, acc)
        entry = {"epoch": self.current_epoch, "test/acc": acc, "test/loss": metrics["test/loss"]}
        if self.history and self.history[-1]["epoch"] == self.current_epoch:
            self.history[-1].update(entry)
        else:
            self.history.append(entry)
        self._log_scalars({**metrics, "test/best_acc": self.best_acc})

    def _stop_nonfinite(self) -> None:
        """A NaN or infinite loss: stop now and let the run be recorded as failed (the sweep goes on)."""
        self.nonfinite_loss = True
        self.trainer.should_stop = True

    def on_test_epoch_end(self) -> None:
        self.final_acc = self._close_eval("test")["test/acc"]

    def _log_scalars(self, metrics: dict[str, float]) -> None:
        """Log plain floats straight to the loggers (no per-step ResultCollection work)."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.current_epoch)

    # Optimiser --------------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        s = self.schedule
        on_cuda = next(self.parameters()).is_cuda
        optimizer = torch.optim.SGD(
            self.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.nesterov,
            **({"fused": True} if on_cuda else {"foreach": True}),
        )
        return optimizer

    # Checkpoint extras: the accuracy history survives a resume ---------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["jackpot"] = {"history": self.history, "best_acc": self.best_acc, "final_acc": self.final_acc}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("jackpot", {})
        self.history = list(state.get("history", []))
        self.best_acc = float(state.get("best_acc", float("nan")))
        self.final_acc = float(state.get("final_acc", float("nan")))
