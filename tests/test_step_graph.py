"""The step program behind K steps per training step: what may be recorded as a CUDA graph, the hooks' order,
the learning rate as a device tensor, and (on a CUDA machine only) recorded training equal to eager training."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from jackpot.lightning.callbacks import FaultPoints, PruningCallback
from jackpot.lightning.module import EpochTotals, MultiStepClassificationModule, Schedule
from jackpot.lightning.step_graph import (
    DEVICE_HOOK,
    HOST_HOOK,
    StepHook,
    StepProgram,
    capture_blockers,
    learning_rate_on_device,
)
from jackpot.models import build_model
from jackpot.pruning import Masks, prunable_weights

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*dataloader_iter.*", "ignore:.*Here be dragons.*")]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="records CUDA graphs: needs a CUDA device")


def _masks(model: torch.nn.Module, keep: float = 0.2) -> Masks:
    gen = torch.Generator().manual_seed(1)
    return Masks({n: torch.rand(w.shape, generator=gen) < keep for n, w in prunable_weights(model)})


def _module(cls: type = MultiStepClassificationModule, **kwargs) -> MultiStepClassificationModule:
    torch.manual_seed(0)
    schedule = Schedule(epochs=2, lr=0.1, weight_decay=5e-2, milestones=(1,))
    return cls(build_model("resnet8", 10), schedule, True, steps_per_call=4, **kwargs)


class CountSteps(L.Callback):
    """A host-only step hook: counts the optimizer steps it sees."""

    step_hook = HOST_HOOK

    def __init__(self) -> None:
        self.calls = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.calls += 1


class ReadsGradients(L.Callback):
    """A hook that declares nothing: it may read gradients on the host, so a step with it is never recorded."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.norm = float(sum(p.grad.norm() for p in pl_module.parameters() if p.grad is not None))


def _fit(module, masks: Masks, extra: tuple = (), accelerator: str = "cpu", precision: str = "32-true",
         n: int = 92, batch: int = 8, epochs: int = 2) -> tuple[L.Trainer, PruningCallback]:
    def make_ticket(net: torch.nn.Module) -> Masks:
        masks.apply(net)
        return masks

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)
    pruning = PruningCallback(make_ticket)
    trainer = L.Trainer(accelerator=accelerator, devices=1, max_epochs=epochs, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, precision=precision, callbacks=[pruning, *extra])
    trainer.fit(module, train_dataloaders=DataLoader(TensorDataset(x, y), batch_size=batch),
                val_dataloaders=DataLoader(TensorDataset(x[:24], y[:24]), batch_size=12))
    return trainer, pruning


def _assert_pruned_zero(module, masks: Masks) -> None:
    for name, weight in prunable_weights(module.model):
        assert torch.count_nonzero(weight.detach()[~masks[name].to(weight.device)]) == 0, name


# What may be recorded ---------------------------------------------------------------------------------------------
def test_capture_blockers_name_each_obstacle() -> None:
    net = torch.nn.Linear(2, 2)
    fused = torch.optim.SGD(net.parameters(), lr=0.1, fused=True)
    plain = torch.optim.SGD(net.parameters(), lr=0.1)
    hooks = [StepHook("PruningCallback", lambda: None, DEVICE_HOOK), StepHook("FaultPoints", lambda: None, HOST_HOOK)]
    cuda = torch.device("cuda", 0)

    assert capture_blockers(cuda, fused, hooks) == []
    assert capture_blockers(cuda, fused, hooks, compile_mode="default") == []
    (cpu,) = capture_blockers(torch.device("cpu"), fused, hooks)
    assert "trains on cpu" in cpu
    (optimizer,) = capture_blockers(cuda, plain, hooks)
    assert "SGD" in optimizer and "fused=True" in optimizer
    (hook,) = capture_blockers(cuda, fused, [*hooks, StepHook("ReadsGradients", lambda: None, None)])
    assert "ReadsGradients" in hook and "PruningCallback" not in hook
    (compiled,) = capture_blockers(cuda, fused, hooks, compile_mode="reduce-overhead")
    assert "reduce-overhead" in compiled


def test_jackpot_callbacks_declare_their_step_hooks() -> None:
    assert PruningCallback.step_hook == DEVICE_HOOK  # the mask multiply is recorded with the step
    assert FaultPoints.step_hook == HOST_HOOK  # the fault point fires on the host before every step


def test_requiring_a_cuda_graph_on_cpu_fails_before_the_first_step() -> None:
    module = _module(cuda_graph=True)
    masks = _masks(module.model)
    masks.apply(module.model)  # what the pruning callback does first
    before = [p.detach().clone() for p in module.parameters()]
    with pytest.raises(RuntimeError, match="cannot be recorded as a CUDA graph: the run trains on cpu"):
        _fit(module, masks, epochs=1)
    assert all(torch.equal(p, q) for p, q in zip(before, module.parameters(), strict=True))


def test_cuda_graph_option_is_checked() -> None:
    with pytest.raises(ValueError, match="cuda_graph must be None"):
        _module(cuda_graph="yes")


# Eager steps: every hook, in order, every step ---------------------------------------------------------------------
def test_eager_steps_run_every_hook_on_every_step() -> None:
    module = _module()
    masks = _masks(module.model)
    counter, reader = CountSteps(), ReadsGradients()
    trainer, _ = _fit(module, masks, extra=(counter, reader))

    assert trainer.global_step == counter.calls == 24  # 2 epochs x (11 full batches + 1 partial)
    assert reader.norm > 0
    assert not module._program.recorded and module._program.eager_steps == 24
    _assert_pruned_zero(module, masks)


# A recording that fails ------------------------------------------------------------------------------------------
def _program_about_to_record(required: bool, monkeypatch) -> tuple[StepProgram, torch.nn.Module]:
    """A CPU program put in the state where its next full batch is recorded, with recording made to fail."""

    class FailingRecording:
        def __init__(self, graph) -> None:
            pass

        def __enter__(self):
            raise RuntimeError("operation not permitted when stream is capturing")

        def __exit__(self, *exc) -> bool:
            return False

    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", FailingRecording)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    program = StepProgram(net, optimizer, EpochTotals().add, [], torch.device("cpu"), required=required)
    program.capture, program.eager_steps = True, program.warmup_steps  # as after the warm-up on a GPU
    return program, net


def test_a_failed_recording_falls_back_to_the_same_eager_step(monkeypatch) -> None:
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    program, net = _program_about_to_record(required=False, monkeypatch=monkeypatch)
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    eager = StepProgram(reference, torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9),
                        EpochTotals().add, [], torch.device("cpu"))
    with pytest.warns(RuntimeWarning, match="recording the training step as a CUDA graph failed"):
        program.step(x, y)
    eager.step(x, y)
    assert not program.recorded and not program.capture and "not permitted" in program.fallback_reason
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), reference.parameters(), strict=True))
    program.step(x, y)  # later steps stay eager, without another attempt
    assert program.eager_steps == program.warmup_steps + 2


def test_a_required_recording_that_fails_raises(monkeypatch) -> None:
    program, _ = _program_about_to_record(required=True, monkeypatch=monkeypatch)
    with pytest.raises(RuntimeError, match="not permitted"):
        program.step(torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]))


# The learning rate as a device tensor ----------------------------------------------------------------------------
class FusedSGD(MultiStepClassificationModule):
    tensor_lr = False

    def configure_optimizers(self):
        s = self.schedule
        optimizer = torch.optim.SGD(self.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
                                    fused=True)
        if self.tensor_lr:
            learning_rate_on_device(optimizer, self.device)
        return optimizer


class FusedSGDTensorLR(FusedSGD):
    tensor_lr = True


def test_a_tensor_learning_rate_follows_the_schedule_like_a_float() -> None:
    """A recorded update reads the LR from a tensor that the module fills each epoch (milestone after epoch 0)."""
    plain, tensor = _module(FusedSGD), _module(FusedSGDTensorLR)
    masks = _masks(plain.model)
    trainer_plain, _ = _fit(plain, masks)
    trainer_tensor, _ = _fit(tensor, masks)

    (lr,) = [group["lr"] for group in trainer_tensor.optimizers[0].param_groups]
    assert isinstance(lr, torch.Tensor) and lr.item() == pytest.approx(0.01)
    assert trainer_plain.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01)
    for p, q in zip(plain.state_dict().values(), tensor.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    assert plain.history == tensor.history


# Recorded steps (CUDA only; run by scripts/gpu_check.sh) ---------------------------------------------------------
@needs_cuda
def test_recorded_training_equals_eager_training_on_cuda(monkeypatch) -> None:
    """2 epochs of 11 full batches and 1 partial: 3 warm-up steps, the 4th recorded, the partial ones eager."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    eager, recorded = _module(cuda_graph=False), _module(cuda_graph=True)
    masks = _masks(eager.model)
    counter = CountSteps()
    _fit(eager, masks, accelerator="gpu")
    trainer, _ = _fit(recorded, masks, extra=(counter,), accelerator="gpu")

    program = recorded._program
    assert program.recorded and program.replays == 19 and program.eager_steps == 5
    assert counter.calls == trainer.global_step == 24  # host hooks ran before every replay too
    _assert_pruned_zero(recorded, masks)
    for (name, a), b in zip(eager.state_dict().items(), recorded.state_dict().values(), strict=True):
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name
        else:
            assert torch.equal(a, b), name
    for before, after in zip(eager.history, recorded.history, strict=True):
        assert after == pytest.approx(before, rel=1e-5)


@needs_cuda
def test_recorded_bf16_training_keeps_masks_exact_on_cuda() -> None:
    module = _module()  # auto: recorded on CUDA
    masks = _masks(module.model, keep=0.1)
    _fit(module, masks, accelerator="gpu", precision="bf16-mixed")
    assert module._program.recorded
    _assert_pruned_zero(module, masks)
    assert all(torch.isfinite(torch.tensor(h["train/loss"])) for h in module.history)


@needs_cuda
def test_an_undeclared_hook_keeps_cuda_steps_eager() -> None:
    module = _module()
    reader = ReadsGradients()
    _fit(module, _masks(module.model), extra=(reader,), accelerator="gpu", epochs=1)
    assert not module._program.recorded and reader.norm > 0
