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

from jackpot.malloc import keep_freed_cpu_memory


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
        # Per step: (mean loss, predicted classes, targets) on the device; reduced once per epoch.
        self._train_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._eval_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
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

    def on_fit_start(self) -> None:
        if self.device.type == "cpu":
            keep_freed_cpu_memory()

    # Training ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _accumulate(parts: list, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        """Keep the step's loss, predictions and targets on the device: one small kernel, no host sync."""
        with torch.no_grad():
            parts.append((loss.detach(), logits.argmax(dim=1), y))

    @staticmethod
    def _totals(parts: list) -> tuple[float, float, int]:
        """(sum of loss * n, correct, n) over the steps in `parts`, read with one host sync."""
        if not parts:
            return 0.0, 0.0, 0
        losses = torch.stack([p[0] for p in parts]).float()
        sizes = [p[1].shape[0] for p in parts]
        weights = torch.tensor(sizes, dtype=torch.float32).to(losses.device)
        correct = (torch.cat([p[1] for p in parts]) == torch.cat([p[2] for p in parts])).sum().float()
        loss_sum, correct_sum = torch.stack(((losses * weights).sum(), correct)).tolist()
        return loss_sum, correct_sum, sum(sizes)

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


class MultiStepClassificationModule(ClassificationModule):
    """ClassificationModule that runs up to `steps_per_call` optimizer steps per Lightning training step.

    Lightning's per-batch loop (fetcher, batch hooks, closure, precision and strategy wrappers, progress
    counters, logger connector) costs a fixed amount of host time per training step. That shows on small
    networks on a CPU and on a GPU, where a step is about a millisecond of launches. Here one `training_step`
    pulls up to K batches from Lightning's `dataloader_iter` and takes K optimizer steps with manual
    optimization, so that cost is paid once per K batches.

    Per step the arithmetic is ClassificationModule's, bit for bit: forward and loss under the precision's
    autocast, backward outside it, every callback's and the module's `on_before_optimizer_step` (the pruning
    callback's mask multiply), then the optimizer step; `global_step` counts steps, the learning rate is set
    per epoch and `limit_train_batches` counts batches. Not run per step: the `on_before_backward`,
    `on_after_backward`, `on_before_zero_grad` and per-batch hooks, which jackpot's callbacks do not use.
    16-bit precision with a gradient scaler is not supported.
    """

    def __init__(self, model: nn.Module, schedule: Schedule, channels_last: bool = False,
                 steps_per_call: int = 8):
        super().__init__(model, schedule, channels_last)
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
        self.steps_per_call = int(steps_per_call)
        self.automatic_optimization = False

    def _step_hooks(self) -> list:
        """Bound `on_before_optimizer_step` of every callback that overrides it, then the module's."""
        hooks = [cb.on_before_optimizer_step for cb in self.trainer.callbacks
                 if type(cb).on_before_optimizer_step is not L.Callback.on_before_optimizer_step]
        if type(self).on_before_optimizer_step is not L.LightningModule.on_before_optimizer_step:
            hooks.append(lambda trainer, module, optimizer: self.on_before_optimizer_step(optimizer))
        return hooks

    def training_step(self, dataloader_iter) -> None:
        trainer = self.trainer
        wrapped = self.optimizers()  # LightningOptimizer: its before/after-step callbacks count global_step
        optimizer = wrapped.optimizer
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            raise RuntimeError("steps_per_call > 1 does not support a gradient scaler (use 32-true or bf16-mixed)")
        hooks = self._step_hooks()
        device = self.device
        mixed = torch.is_autocast_enabled(device.type)
        for _ in range(self.steps_per_call):
            if dataloader_iter.done:
                break
            try:
                (x, y), _, _ = next(dataloader_iter)
            except StopIteration:
                break
            if x.device != device:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            logits = self(x)
            loss = F.cross_entropy(logits, y)
            self._accumulate(self._train_parts, logits, y, loss)
            optimizer.zero_grad(set_to_none=True)
            if mixed:  # automatic optimization runs backward outside the autocast region
                with torch.autocast(device.type, enabled=False):
                    loss.backward()
            else:
                loss.backward()
            for hook in hooks:
                hook(trainer, self, optimizer)
            wrapped._on_before_step()
            optimizer.step()
            wrapped._on_after_step()
