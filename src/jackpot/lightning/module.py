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


class ClassificationModule(L.LightningModule):
    """Wraps a network; trains with cross-entropy, evaluates the test set every epoch, tracks final and best."""

    def __init__(self, model: nn.Module, schedule: Schedule, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.schedule = schedule
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.register_buffer("_train_sums", torch.zeros(3), persistent=False)  # loss*n, correct, n
        self.register_buffer("_eval_sums", torch.zeros(3), persistent=False)
        self.history: list[dict] = []  # one entry per evaluated epoch: epoch, test_acc, test_loss, train_*
        self.best_acc: float = float("nan")
        self.final_acc: float = float("nan")
        self.nonfinite_loss: bool = False

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
    def _accumulate(self, sums: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        n = y.shape[0]
        with torch.no_grad():
            sums[0] += loss.detach().float() * n
            sums[1] += (logits.argmax(dim=1) == y).sum()
            sums[2] += n

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self._accumulate(self._train_sums, logits, y, loss)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_sums.zero_()
        # read here: Lightning steps epoch schedulers before on_train_epoch_end
        self._epoch_lr = self.trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, n = self._train_sums.tolist()  # one host sync per epoch
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
        self._eval_sums.zero_()

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self._accumulate(self._eval_sums, logits, y, loss)

    test_step = validation_step
    on_test_epoch_start = on_validation_epoch_start

    def _close_eval(self, prefix: str) -> dict[str, float]:
        loss_sum, correct, n = self._eval_sums.tolist()
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
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(s.milestones), gamma=s.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    # Checkpoint extras: the accuracy history survives a resume ---------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["jackpot"] = {"history": self.history, "best_acc": self.best_acc, "final_acc": self.final_acc}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("jackpot", {})
        self.history = list(state.get("history", []))
        self.best_acc = float(state.get("best_acc", float("nan")))
        self.final_acc = float(state.get("final_acc", float("nan")))
