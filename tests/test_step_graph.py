"""The step program behind K steps per training step: what may be recorded as a CUDA graph, the hooks' order,
the learning rate as a device tensor, and (on a CUDA machine only) recorded training equal to eager training."""

from __future__ import annotations

import contextlib
import threading
import warnings
from functools import partial

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from jackpot.lightning.callbacks import FaultPoints, PruningCallback
from jackpot.lightning.module import EpochTotals, MultiStepClassificationModule, Schedule
from jackpot.lightning.step_graph import (
    DEVICE_HOOK,
    HOST_HOOK,
    SYNC_WARNING,
    HostSyncs,
    StepHook,
    StepProgram,
    capture_blockers,
    learning_rate_on_device,
    set_learning_rate,
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
    assert capture_blockers(cuda, fused, hooks, compile_options={"mode": "default"}) == []
    (cpu,) = capture_blockers(torch.device("cpu"), fused, hooks)
    assert "trains on cpu" in cpu
    (optimizer,) = capture_blockers(cuda, plain, hooks)
    assert "SGD" in optimizer and "fused=True" in optimizer
    (hook,) = capture_blockers(cuda, fused, [*hooks, StepHook("ReadsGradients", lambda: None, None)])
    assert "ReadsGradients" in hook and "PruningCallback" not in hook
    (compiled,) = capture_blockers(cuda, fused, hooks, compile_options={"mode": "reduce-overhead"})
    assert "reduce-overhead" in compiled
    (inductor,) = capture_blockers(cuda, fused, hooks, compile_options={"options": {"triton.cudagraphs": True}})
    assert "triton.cudagraphs" in inductor


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
class FakeStreams:
    """Stands in for torch.cuda's stream functions on a CPU: remembers which stream was made current."""

    def __init__(self, monkeypatch) -> None:
        class Stream:
            def __init__(self, *args) -> None:
                pass

            def wait_stream(self, other) -> None:
                pass

        self.current, self.set_to, self.pool_calls = Stream(), [], []
        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: self.current)
        monkeypatch.setattr(torch.cuda, "set_stream", self.set_to.append)
        monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
        monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: POOL)
        for name in ("_cuda_endAllocateToPool", "_cuda_releasePool"):
            monkeypatch.setattr(torch._C, name, partial(self._pool_call, name), raising=False)

    def _pool_call(self, name: str, device: int, pool: tuple) -> None:
        self.pool_calls.append((name, device, pool))


POOL = (7, 1)  # the memory pool id a recording is given


class FailingRecording:
    """torch.cuda.graph made to fail as torch fails: when the capture begins (`at_begin`: nothing of the step
    runs, as nothing runs while a GPU records) or when it ends, after an error in the recorded body if a hook
    raises one while `active`."""

    active = False

    def __init__(self, error: str, at_begin: bool) -> None:
        self.error, self.at_begin = error, at_begin

    def __call__(self, graph, **options) -> FailingRecording:
        assert options == {"pool": POOL, "capture_error_mode": "thread_local"}
        return self

    def __enter__(self) -> None:
        if self.at_begin:
            raise RuntimeError(self.error)
        self.active = True

    def __exit__(self, *exc) -> bool:
        self.active = False
        raise RuntimeError(self.error)


def _failing_recording(monkeypatch, error: str, at_begin: bool = True) -> FailingRecording:
    recording = FailingRecording(error, at_begin)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", recording)
    return recording


def _program(required: bool = False, warmed: bool = True, hooks: tuple = ()) -> tuple[StepProgram, torch.nn.Module]:
    """A CPU program in the state of a GPU one after its warm-up (`warmed`: the next full batch is recorded) or
    before its last warm-up step."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    program = StepProgram(net, optimizer, EpochTotals().add, list(hooks), torch.device("cpu"), required=required)
    program.capture = True
    program.eager_steps = program.warmup_steps - (0 if warmed else 1)
    return program, net


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 0])


def test_a_failed_recording_falls_back_to_the_same_eager_step(monkeypatch) -> None:
    streams = FakeStreams(monkeypatch)
    _failing_recording(monkeypatch, "operation not permitted when stream is capturing")
    x, y = _batch()
    program, net = _program()
    reference, _ = _program()
    reference.capture = False
    with pytest.warns(RuntimeWarning, match="recording the training step as a CUDA graph failed"):
        program.step(x, y)
    reference.step(x, y)
    assert not program.recorded and not program.capture and "not permitted" in program.fallback_reason
    assert streams.set_to == [streams.current]  # the capture stream is not left current
    # and the allocator no longer counts the capture as under way, its pool let go
    assert streams.pool_calls == [("_cuda_endAllocateToPool", 0, POOL), ("_cuda_releasePool", 0, POOL)]
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), reference.forward.parameters(), strict=True))
    program.step(x, y)  # later steps stay eager, without another attempt
    assert program.eager_steps == program.warmup_steps + 2


def test_a_failed_recording_names_the_first_error(monkeypatch) -> None:
    """Ending a broken capture raises a second, generic error; the reason given is the one that broke it."""
    FakeStreams(monkeypatch)
    recording = _failing_recording(monkeypatch, "operation failed due to a previous error", at_begin=False)

    def breaks_the_recording() -> None:
        if recording.active:
            raise RuntimeError("Tensor.item() is not allowed here")

    program, _ = _program(hooks=(StepHook("Breaks", breaks_the_recording, DEVICE_HOOK),))
    with pytest.warns(RuntimeWarning, match=r"Tensor.item\(\) is not allowed"):
        program.step(*_batch())
    assert "previous error" not in program.fallback_reason and program.eager_steps == program.warmup_steps + 1


def test_a_required_recording_that_fails_raises(monkeypatch) -> None:
    FakeStreams(monkeypatch)
    _failing_recording(monkeypatch, "operation not permitted when stream is capturing")
    program, _ = _program(required=True)
    with pytest.raises(RuntimeError, match="not permitted"):
        program.step(*_batch())


def _syncs_on_the_host() -> None:
    warnings.warn(SYNC_WARNING, UserWarning, stacklevel=1)  # what torch's sync debug mode reports


def test_a_step_that_syncs_is_not_recorded_and_stays_whole(monkeypatch) -> None:
    """The last warm-up step runs under the sync check: a sync means no recording, and that step still counts."""
    FakeStreams(monkeypatch)
    monkeypatch.setattr(torch.cuda, "graph", lambda *a, **k: pytest.fail("a step that syncs must not be recorded"))
    x, y = _batch()
    program, net = _program(warmed=False, hooks=(StepHook("Syncs", _syncs_on_the_host, DEVICE_HOOK),))
    reference, _ = _program()
    reference.capture = False
    with pytest.warns(RuntimeWarning, match="makes the host wait for the GPU 1 time"):
        program.step(x, y)
    reference.step(x, y)
    assert not program.capture and SYNC_WARNING in program.fallback_reason
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), reference.forward.parameters(), strict=True))
    with pytest.warns(UserWarning, match=SYNC_WARNING):  # later steps are eager, the hook is as before
        program.step(x, y)
    assert program.eager_steps == program.warmup_steps + 1 and not program.recorded

    required, _ = _program(required=True, warmed=False, hooks=(StepHook("Syncs", _syncs_on_the_host, DEVICE_HOOK),))
    with pytest.raises(RuntimeError, match="cannot be recorded as a CUDA graph: the step makes the host wait"):
        required.step(x, y)


def test_host_syncs_counts_only_the_entering_thread(monkeypatch) -> None:
    modes = []
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)
    other = threading.Thread(target=_syncs_on_the_host)  # e.g. a background checkpoint copying to the host
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with HostSyncs() as syncs:
            _syncs_on_the_host()
            _syncs_on_the_host()
            other.start()
            other.join()
            warnings.warn("an unrelated warning", UserWarning, stacklevel=1)
        _syncs_on_the_host()  # after the check: shown as usual
    assert len(syncs.messages) == 2 and all(SYNC_WARNING in m for m in syncs.messages)
    assert [str(w.message) for w in shown] == ["an unrelated warning", SYNC_WARNING]  # the other thread's: dropped
    assert modes == ["warn", 0]  # the debug mode is restored


# The learning rate as a device tensor ----------------------------------------------------------------------------
class FusedSGD(MultiStepClassificationModule):
    tensor_lr = False

    def configure_optimizers(self):
        s = self.schedule
        optimizer = torch.optim.SGD(self.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
                                    fused=True)
        if self.tensor_lr:
            learning_rate_on_device(optimizer)
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


def test_set_learning_rate_keeps_a_tensor_in_place_and_a_float_a_float() -> None:
    net = torch.nn.Linear(2, 2)
    plain = torch.optim.SGD(net.parameters(), lr=0.1, foreach=True)
    set_learning_rate(plain, 0.01)
    assert plain.param_groups[0]["lr"] == 0.01 and not isinstance(plain.param_groups[0]["lr"], torch.Tensor)

    recorded = torch.optim.SGD(net.parameters(), lr=0.1, fused=True)
    learning_rate_on_device(recorded)
    lr = recorded.param_groups[0]["lr"]
    assert lr.dtype == torch.float32 and lr.dim() == 0 and lr.item() == pytest.approx(0.1)
    set_learning_rate(recorded, 0.01)
    assert recorded.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.01)  # the same tensor, filled

    # as a resumed optimizer's state may bring it back: another dtype is replaced once, keeping the value
    recorded.param_groups[0]["lr"] = torch.tensor(0.5, dtype=torch.float64)
    learning_rate_on_device(recorded)
    assert recorded.param_groups[0]["lr"].dtype == torch.float32 and recorded.param_groups[0]["lr"].item() == 0.5


# Recorded steps (CUDA only; run by scripts/gpu_check.sh) ---------------------------------------------------------
@needs_cuda
def test_recorded_training_equals_eager_training_on_cuda(monkeypatch) -> None:
    """2 epochs of 11 full batches and 1 partial: 3 warm-up steps, the 4th recorded, the partial ones eager."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    eager, recorded = _module(cuda_graph=False), _module(cuda_graph=True)
    masks = _masks(eager.model)
    counter = CountSteps()
    trainer_eager, _ = _fit(eager, masks, accelerator="gpu")
    trainer, _ = _fit(recorded, masks, extra=(counter,), accelerator="gpu")

    program = recorded._program
    assert program.recorded and program.replays == 19 and program.eager_steps == 5
    for fitted in (trainer_eager, trainer):  # both read the same float32 learning rate from the device
        lr = fitted.optimizers[0].param_groups[0]["lr"]
        assert isinstance(lr, torch.Tensor) and lr.is_cuda and lr.dtype == torch.float32
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



@needs_cuda
def test_host_syncs_sees_a_real_cuda_sync() -> None:
    value = torch.ones(1, device="cuda")
    with HostSyncs() as syncs:
        value.add_(1)  # device work only
    assert syncs.messages == []
    with HostSyncs() as syncs:
        value.item()
    assert len(syncs.messages) == 1 and SYNC_WARNING in syncs.messages[0]


@needs_cuda
def test_a_hook_that_reads_a_value_on_the_host_keeps_the_cuda_step_eager() -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, fused=True)
    reads = StepHook("Reads", lambda: net[1].weight.grad.norm().item(), DEVICE_HOOK)  # declared wrongly
    program = StepProgram(net, optimizer, EpochTotals().add, [reads], device, capture=True)
    x, y = torch.randn(4, 3, 2, 2, device=device), torch.tensor([0, 1, 2, 0], device=device)
    with pytest.warns(RuntimeWarning, match="makes the host wait for the GPU"):
        for _ in range(program.warmup_steps + 2):
            program.step(x, y)
    assert not program.recorded and program.eager_steps == program.warmup_steps + 2
    assert "synchronizing" in program.fallback_reason
