"""The classification LightningModule: the paper's SGD recipe, accuracy accumulated on the device.

Per-step work is kept to the forward, the loss and two on-device accumulations: no `.item()`, no per-step
logging. Epoch metrics are read once per epoch, which is where Lightning's overhead would otherwise show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import lightning.pytorch as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn import functional as F

from jackpot.lightning.step_graph import StepHook, StepProgram, capture_blockers, set_learning_rate
from jackpot.machine.malloc import keep_freed_cpu_memory


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


class EpochTotals:
    """Sum of (loss x batch size), correct predictions and examples over an epoch, as one tensor on the device.

    Each step adds in place (a few small kernels, no host sync) to a tensor that is allocated once and never
    replaced, so the additions can also be recorded in a CUDA graph (`jackpot.lightning.step_graph`); the
    totals are read, with one host sync, once per epoch.
    """

    def __init__(self) -> None:
        self._sums: torch.Tensor | None = None
        self._parts: tuple[torch.Tensor, ...] = ()  # views of the three sums, made once (indexing costs per step)

    def add(self, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        # nothing here records gradients: the loss is detached, argmax and == have none
        if self._sums is None or self._sums.device != loss.device:  # first use, or the module moved
            self._sums = torch.zeros(3, dtype=torch.float32, device=loss.device)
            self._parts = self._sums.unbind()
        loss_sum, correct, count = self._parts
        n = y.shape[0]
        loss_sum.add_(loss.detach(), alpha=n)
        correct.add_((logits.argmax(dim=1) == y).sum())
        count.add_(n)

    def read_and_reset(self) -> tuple[float, float, int]:
        """(sum of loss x n, correct, n) since the last reset; zeroes the sums in place."""
        if self._sums is None:
            return 0.0, 0.0, 0
        loss_sum, correct, n = self._sums.tolist()
        self._sums.zero_()
        return loss_sum, correct, int(n)


class ClassificationModule(L.LightningModule):
    """Wraps a network; trains with cross-entropy, evaluates the test set every epoch, tracks final and best."""

    def __init__(self, model: nn.Module, schedule: Schedule, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.schedule = schedule
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._train_totals = EpochTotals()  # on the device, read once per epoch
        self._eval_totals = EpochTotals()
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
        object.__setattr__(self, "_compile_options", dict(options))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        compiled = self.__dict__.get("_compiled")
        return compiled(x) if compiled is not None else self.model(x)

    def on_fit_start(self) -> None:
        if self.device.type == "cpu":
            keep_freed_cpu_memory()

    # Training ---------------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self._train_totals.add(logits, y, loss)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_totals.read_and_reset()  # drops what an interrupted epoch left
        # The LR is set from the epoch number, not stepped by a stateful scheduler: a run resumed from an
        # epoch-end checkpoint gets exactly the LR of the uninterrupted run.
        self._epoch_lr = self.schedule.lr_at(self.current_epoch)
        for optimizer in self.trainer.optimizers:
            set_learning_rate(optimizer, self._epoch_lr)  # in place where a recorded step reads it

    def on_train_epoch_end(self) -> None:
        loss_sum, correct, n = self._train_totals.read_and_reset()  # one host sync per epoch
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
        self._eval_totals.read_and_reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self._eval_totals.add(logits, y, loss)

    test_step = validation_step
    on_test_epoch_start = on_validation_epoch_start

    def _close_eval(self, prefix: str) -> dict[str, float]:
        loss_sum, correct, n = self._eval_totals.read_and_reset()
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

    # Checkpoint extras: the accuracy history and a divergence survive a resume ------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["jackpot"] = {"history": self.history, "best_acc": self.best_acc, "final_acc": self.final_acc,
                                 "nonfinite_loss": self.nonfinite_loss}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("jackpot", {})
        self.history = list(state.get("history", []))
        self.best_acc = float(state.get("best_acc", float("nan")))
        self.final_acc = float(state.get("final_acc", float("nan")))
        # A run that diverged wrote its last checkpoint with the non-finite weights: resumed (a rerun of the
        # failed cell), it must stay failed, not train on from them nor, when it diverged in its last epoch,
        # finish with nothing left to train and be recorded as complete.
        if state.get("nonfinite_loss"):
            self.nonfinite_loss = True
            if self._trainer is not None:
                self.trainer.should_stop = True


class MultiStepClassificationModule(ClassificationModule):
    """ClassificationModule that runs up to `steps_per_call` optimizer steps per Lightning training step, and on a
    CUDA device replays each step as one recorded CUDA graph (`jackpot.lightning.step_graph`).

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

    `cuda_graph`: None (auto) records the step when `capture_blockers` finds nothing in the way and says why
    not otherwise; True requires it (an error names what is in the way); False never records.
    """

    def __init__(self, model: nn.Module, schedule: Schedule, channels_last: bool = False,
                 steps_per_call: int = 8, cuda_graph: bool | None = None):
        super().__init__(model, schedule, channels_last)
        if steps_per_call < 1:
            raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
        if cuda_graph not in (None, True, False):
            raise ValueError(f"cuda_graph must be None (auto), True or False, got {cuda_graph!r}")
        self.steps_per_call = int(steps_per_call)
        self.cuda_graph = cuda_graph
        self.automatic_optimization = False
        self._program: StepProgram | None = None
        self._program_owner: tuple | None = None  # ids of the (trainer, optimizer) the program was built for

    def _step_hooks(self, optimizer) -> list[StepHook]:
        """Every callback's `on_before_optimizer_step` that is overridden, then the module's, with its kind."""
        trainer = self.trainer
        hooks = [StepHook(type(cb).__name__, partial(cb.on_before_optimizer_step, trainer, self, optimizer),
                          getattr(cb, "step_hook", None))
                 for cb in trainer.callbacks
                 if type(cb).on_before_optimizer_step is not L.Callback.on_before_optimizer_step]
        if type(self).on_before_optimizer_step is not L.LightningModule.on_before_optimizer_step:
            hooks.append(StepHook(type(self).__name__, partial(self.on_before_optimizer_step, optimizer),
                                  getattr(self, "step_hook", None)))
        return hooks

    def _step_program(self, optimizer) -> StepProgram:
        """The program of this fit (built at its first step: the optimizer and callbacks are known by then)."""
        if self._program is not None and self._program_owner == (id(self.trainer), id(optimizer)):
            return self._program
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            raise RuntimeError("steps_per_call > 1 and recorded CUDA-graph steps do not support a gradient scaler "
                               "(use 32-true or bf16-mixed)")
        device = self.device
        hooks = self._step_hooks(optimizer)
        blockers = [] if self.cuda_graph is False else capture_blockers(
            device, optimizer, hooks, self.__dict__.get("_compile_options"))
        if self.cuda_graph and blockers:
            raise RuntimeError("trainer.cuda_graph=true, but this step cannot be recorded as a CUDA graph: "
                               + "; ".join(blockers))
        capture = self.cuda_graph is not False and not blockers
        if self.cuda_graph is None and blockers and device.type == "cuda":
            rank_zero_info("jackpot: training steps run eagerly, not as a CUDA graph: " + "; ".join(blockers))
        mixed = torch.is_autocast_enabled(device.type)
        program = StepProgram(self, optimizer, self._train_totals.add, hooks, device,
                              autocast_dtype=torch.get_autocast_dtype(device.type) if mixed else None,
                              capture=capture, required=bool(self.cuda_graph))
        self._program, self._program_owner = program, (id(self.trainer), id(optimizer))
        return program

    def on_fit_end(self) -> None:
        if self._program is not None:
            self._program.release()  # the recorded graph's memory pool is not needed past this fit

    def training_step(self, dataloader_iter) -> None:
        wrapped = self.optimizers()  # LightningOptimizer: its before/after-step callbacks count global_step
        program = self._step_program(wrapped.optimizer)
        device = self.device
        for _ in range(self.steps_per_call):
            if dataloader_iter.done:
                break
            try:
                (x, y), _, _ = next(dataloader_iter)
            except StopIteration:
                break
            if x.device != device:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            wrapped._on_before_step()
            program.step(x, y)
            wrapped._on_after_step()
