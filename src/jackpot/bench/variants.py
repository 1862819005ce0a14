"""The ways of training compared side by side. Each runs one "epoch" of `steps` batches per round and
returns the time per step after warm-up: a bare loop, jackpot's Lightning run, stock Lightning."""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from jackpot.bench.config import BenchConfig
from jackpot.bench.workload import paper_sgd, precision_context, sync_device


class SyncCounter:
    """Counts this thread's CUDA host synchronisations while active (`jackpot.lightning.step_graph.HostSyncs`).

    A step that synchronises stalls the host until the GPU drains, so the host can no longer queue work
    ahead; the timed steps of (b) and (c) should have none."""

    def __init__(self) -> None:
        self._syncs: Any = None

    def start(self) -> None:
        from jackpot.lightning.step_graph import HostSyncs

        self._syncs = HostSyncs().__enter__()

    def stop(self) -> int:
        self._syncs.__exit__(None, None, None)
        return len(self._syncs.messages)


class Variant:
    """One way of training; `run_round()` -> seconds per optimizer step over the steps after warm-up."""

    name: str = ""

    def run_round(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError


class BareLoop(Variant):
    """A hand-written loop: forward, loss, zero_grad, backward, [mask multiply], step. No host syncs."""

    def __init__(
        self,
        name: str,
        net: nn.Module,
        loader: Any,
        device: torch.device,
        precision: str,
        warmup: int,
        jackpot_sgd: bool,
        masks: Any = None,
        compile_net: bool = False,
        compile_mode: str | None = None,
        sync_check: bool = False,
    ) -> None:
        self.name = name
        self.net = net.to(device).train()
        self.loader = loader
        self.device = device
        self.precision = precision
        self.warmup = warmup
        self.forward = torch.compile(self.net, dynamic=False, mode=compile_mode) if compile_net else self.net
        self.sync_check = sync_check and device.type == "cuda"
        self.syncs: list[int] = []
        self.optimizer = paper_sgd(list(self.net.parameters()), device, jackpot_sgd)
        self.weights: list[torch.Tensor] = []
        self.float_masks: list[torch.Tensor] = []
        if masks is not None:
            masks.apply(self.net)
            self.weights, self.float_masks = masks.as_float(self.net)
        self.epoch = 0

    def run_round(self) -> float:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(self.epoch)
        self.epoch += 1
        start = None
        steps = 0
        for step, (x, y) in enumerate(self.loader):
            steps = step + 1
            if step == self.warmup:
                sync_device(self.device)
                start = time.perf_counter()
                if self.sync_check:
                    counter = SyncCounter()
                    counter.start()
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with precision_context(self.device, self.precision):
                loss = F.cross_entropy(self.forward(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.weights:
                torch._foreach_mul_([w.grad for w in self.weights], self.float_masks)
            self.optimizer.step()
        if self.sync_check and start is not None:
            self.syncs.append(counter.stop())
        sync_device(self.device)
        if start is None:
            raise ValueError("steps must exceed warmup")
        return (time.perf_counter() - start) / (steps - self.warmup)


class _StepTimer:
    """A Lightning callback timing the steps after warm-up: sync, clock at warm-up end and at epoch end.

    With several optimizer steps per training step the clock starts at the first chunk boundary at or after
    the warm-up, and the steps are counted from the batch indices."""

    def __new__(cls, *args: Any, **kwargs: Any):  # built lazily so importing bench does not import Lightning
        import lightning.pytorch as L

        class StepTimer(L.Callback):
            def __init__(self, warmup: int, device: torch.device, sync_check: bool = False) -> None:
                self.warmup, self.device = warmup, device
                self.sync_check = sync_check and device.type == "cuda"
                self.syncs: list[int] = []
                self.counter = SyncCounter()
                self.start: float | None = None
                self.first = self.last = 0
                self.per_step = float("nan")

            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self.start = None

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
                self.last = batch_idx + 1
                if self.start is None and batch_idx >= self.warmup - 1:
                    sync_device(self.device)
                    self.start = time.perf_counter()
                    self.first = batch_idx + 1
                    if self.sync_check:
                        self.counter.start()

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                if self.sync_check and self.start is not None:
                    self.syncs.append(self.counter.stop())
                sync_device(self.device)
                if self.start is None or self.last <= self.first:
                    raise ValueError("steps must exceed warmup (and one chunk of steps)")
                self.per_step = (time.perf_counter() - self.start) / (self.last - self.first)

        return StepTimer(*args, **kwargs)


# jackpot's trainer config in a checkout, and the same defaults for an installed package without the configs
# (a test keeps the two equal)
TRAINER_DEFAULTS_FILE = Path(__file__).resolve().parents[3] / "conf" / "trainer" / "default.yaml"
TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "auto", "devices": 1, "precision": "auto", "channels_last": "auto", "compile": False,
    "cuda_graph": "auto", "steps_per_call": 8, "deterministic": False, "enable_progress_bar": False,
    "log_every_n_steps": 50, "limit_train_batches": None, "limit_val_batches": None,
    "checkpoint_every_n_epochs": 1, "checkpoint_interval_s": 60, "checkpoint_writes": "auto",
}


def trainer_settings(cfg: BenchConfig) -> Any:
    """jackpot's trainer config for this device, as `jackpot.train.make_trainer` takes it."""
    from omegaconf import OmegaConf

    if TRAINER_DEFAULTS_FILE.exists():
        trainer = OmegaConf.to_container(OmegaConf.load(TRAINER_DEFAULTS_FILE))
        trainer.pop("defaults", None)
    else:
        trainer = dict(TRAINER_DEFAULTS)
    trainer.update(accelerator="gpu" if cfg.device == "cuda" else "cpu", precision=cfg.resolved_precision(),
                   enable_progress_bar=cfg.progress_bar, compile=cfg.compile, channels_last=cfg.channels_last,
                   steps_per_call=cfg.steps_per_call, cuda_graph={"on": True, "off": False}.get(cfg.cuda_graph, "auto"))
    return OmegaConf.create({"trainer": trainer})


class LightningRun(Variant):
    """jackpot's module + pruning callback + EpochSeed; one `fit` of one epoch per round, new Trainer each."""

    def __init__(
        self,
        name: str,
        net: nn.Module,
        loader: Any,
        device: torch.device,
        cfg: BenchConfig,
        masks: Any,
        log_dir: Path,
    ) -> None:
        from jackpot.lightning.callbacks import EpochSeed, PruningCallback
        from jackpot.lightning.module import Schedule
        from jackpot.train import make_module

        self.name = name
        self.loader = loader
        self.device = device
        self.cfg = cfg
        self.settings = trainer_settings(cfg)
        self.module = make_module(self.settings, net, Schedule(epochs=1, milestones=()))  # as a run builds it
        if cfg.compile:
            self.module.compile_model(mode=cfg.compile_mode)

        def make_ticket(model: nn.Module):
            masks.apply(model)
            return masks

        self.callbacks = [PruningCallback(make_ticket), EpochSeed(cfg.seed),
                          _StepTimer(cfg.warmup, device, cfg.sync_check)]
        self.log_dir = log_dir
        self.fit_seconds: list[float] = []

    def run_round(self) -> float:
        from lightning.pytorch.loggers import CSVLogger

        from jackpot.train import make_trainer

        logger = CSVLogger(save_dir=str(self.log_dir), name="bench", version="")
        # a fit of one epoch, its last: checkpointed as a real run's last epoch (saved after the step timer's epoch end)
        ckpt_dir = self.log_dir / ("ckpt-" + "".join(c if c.isalnum() else "_" for c in self.name))
        trainer = make_trainer(self.settings, 1, ckpt_dir, list(self.callbacks), [logger])
        began = time.perf_counter()
        trainer.fit(self.module, train_dataloaders=self.loader)
        self.fit_seconds.append(time.perf_counter() - began)
        return self.callbacks[-1].per_step


class StockLightning(Variant):
    """Lightning as a plain user writes it (the issue's 0.8 ms reference): `self.log` of the loss every step,
    automatic optimization, no logger, no checkpoint, no progress bar; same net, loader and SGD as (b)."""

    def __init__(self, name: str, net: nn.Module, loader: Any, device: torch.device, warmup: int) -> None:
        import lightning.pytorch as L

        class Plain(L.LightningModule):
            def __init__(self, net: nn.Module) -> None:
                super().__init__()
                self.net = net

            def training_step(self, batch, batch_idx: int) -> torch.Tensor:
                x, y = batch
                loss = F.cross_entropy(self.net(x), y)
                self.log("train/loss", loss)
                return loss

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return paper_sgd(list(self.parameters()), self.device, jackpot_style=True)

        self.name = name
        self.module = Plain(net)
        self.loader = loader
        self.device = device
        self.timer = _StepTimer(warmup, device)

    def run_round(self) -> float:
        import lightning.pytorch as L

        trainer = L.Trainer(accelerator="gpu" if self.device.type == "cuda" else "cpu", devices=1, max_epochs=1,
                            logger=False, enable_checkpointing=False, enable_model_summary=False,
                            enable_progress_bar=False, num_sanity_val_steps=0, callbacks=[self.timer])
        trainer.fit(self.module, train_dataloaders=self.loader)
        return self.timer.per_step


RoundHook = Callable[[int, int, bool, dict[str, float]], None]


def interleave(variants: Sequence[Variant], rounds: int, warm_rounds: int = 1,
               on_round: RoundHook | None = None) -> dict[str, list[float]]:
    """Run every variant once per round, alternating the order; the first `warm_rounds` are not kept.
    ``on_round(done, total, kept, seconds per step by variant)`` after each round: a long run shows progress."""
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(warm_rounds + rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        this_round = {}
        for variant in order:
            this_round[variant.name] = seconds = variant.run_round()
            if r >= warm_rounds:
                times[variant.name].append(seconds)
        if on_round:
            on_round(r + 1, warm_rounds + rounds, r >= warm_rounds, {v.name: this_round[v.name] for v in variants})
    return times


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of num[i] / den[i] (robust to a slow round hitting every variant)."""
    return statistics.median(n / d for n, d in zip(num, den, strict=True))


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep Lightning's per-fit banners and the worker-count warnings out of the report."""
    import lightning.pytorch  # noqa: F401  (its import sets its logger's level: import first, then quieten)

    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*val_dataloader.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        warnings.filterwarnings("ignore", message=".*dataloader_iter.*")
        warnings.filterwarnings("ignore", message=".*`srun` command is available.*")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
