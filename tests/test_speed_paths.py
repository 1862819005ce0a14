"""The fast training paths change speed, not results: compile, bf16 autocast on CPU, K steps per training step,
the per-epoch metric reduction and the CPU allocator setting."""

from __future__ import annotations

import math

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from jackpot.lightning.callbacks import PruningCallback
from jackpot.lightning.module import ClassificationModule, EpochTotals, MultiStepClassificationModule, Schedule
from jackpot.machine.malloc import keep_freed_cpu_memory
from jackpot.models import build_model
from jackpot.pruning import Masks, prunable_weights

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*dataloader_iter.*", "ignore:.*Here be dragons.*")]


def _masks(model: torch.nn.Module, keep: float = 0.2, seed: int = 1) -> Masks:
    gen = torch.Generator().manual_seed(seed)
    return Masks({n: torch.rand(w.shape, generator=gen) < keep for n, w in prunable_weights(model)})


def _data(n: int, batch: int, seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=batch)  # fixed order: both runs see the same batches


def _fit(module: ClassificationModule, masks: Masks, epochs: int = 2, precision: str = "32-true",
         train_batches: int | None = None, n: int = 88, batch: int = 8) -> tuple[L.Trainer, PruningCallback]:
    def make_ticket(net: torch.nn.Module) -> Masks:
        masks.apply(net)
        return masks

    callback = PruningCallback(make_ticket)
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        precision=precision, limit_train_batches=train_batches, callbacks=[callback])
    trainer.fit(module, train_dataloaders=_data(n, batch), val_dataloaders=_data(24, 12, seed=1))
    return trainer, callback


def _module(cls: type = ClassificationModule, model: str = "resnet8", **kwargs) -> ClassificationModule:
    torch.manual_seed(0)
    schedule = Schedule(epochs=2, lr=0.1, weight_decay=5e-2, milestones=(1,))
    return cls(build_model(model, 10), schedule, True, **kwargs)


def _assert_pruned_zero(module: ClassificationModule, masks: Masks) -> None:
    for name, weight in prunable_weights(module.model):
        assert torch.count_nonzero(weight.detach()[~masks[name]]) == 0, name


def _state_equal(a: ClassificationModule, b: ClassificationModule) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# K optimizer steps per Lightning training step ------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_k_steps_per_call_match_one_step_per_call_bit_for_bit(precision: str) -> None:
    """11 batches per epoch at K=4: chunks of 4, 4, 3; LR drop after epoch 0; validation every epoch."""
    one = _module()
    masks = _masks(one.model)
    trainer_one, _ = _fit(one, masks, precision=precision)
    many = _module(MultiStepClassificationModule, steps_per_call=4)
    trainer_many, _ = _fit(many, masks, precision=precision)

    assert trainer_one.global_step == trainer_many.global_step == 22
    assert _state_equal(one, many)
    assert one.history == many.history and len(one.history) == 2
    assert one.history[1]["lr"] == pytest.approx(0.01)
    _assert_pruned_zero(many, masks)


def test_k_steps_per_call_respect_limit_train_batches() -> None:
    module = _module(MultiStepClassificationModule, steps_per_call=4)
    trainer, _ = _fit(module, _masks(module.model), epochs=1, train_batches=5)
    assert trainer.global_step == 5


def test_steps_per_call_must_be_positive() -> None:
    with pytest.raises(ValueError, match="steps_per_call"):
        _module(MultiStepClassificationModule, steps_per_call=0)


# Compile -----------------------------------------------------------------------------------------------------
def test_graph_captured_training_equals_eager_and_keeps_masks() -> None:
    """The compile path without code generation (dynamo capture, eager backend): same masks, same weights, pruned
    weights zero, parameter names unchanged. The inductor version of this check is the slow test below."""
    eager = _module()
    masks = _masks(eager.model)
    _fit(eager, masks, epochs=1)
    captured = _module()
    captured.compile_model(backend="eager")
    _, callback = _fit(captured, masks, epochs=1)

    assert callback.masks.equal(masks)
    assert [n for n, _ in captured.named_parameters()] == [n for n, _ in eager.named_parameters()]
    _assert_pruned_zero(captured, masks)
    assert _state_equal(eager, captured)


@pytest.mark.slow
def test_inductor_compiled_training_keeps_masks_and_matches_eager() -> None:
    """torch.compile (inductor, ~30-60 s on a 2-core CPU): masks identical, pruned weights exactly zero."""
    torch._dynamo.reset()
    eager = _module(model="vgg_tiny")
    masks = _masks(eager.model)
    _fit(eager, masks, epochs=1)
    compiled = _module(model="vgg_tiny")
    compiled.compile_model()
    _, callback = _fit(compiled, masks, epochs=1)

    assert callback.masks.equal(masks)
    _assert_pruned_zero(compiled, masks)
    # Inductor fuses and reorders float arithmetic, so the trajectories drift apart slightly; they stay close.
    # (Conv biases before BatchNorm are left out: their gradient is zero up to rounding, so they hold noise.)
    for (name, a), (_, b) in zip(prunable_weights(eager.model), prunable_weights(compiled.model), strict=True):
        assert (b - a).norm() / a.norm() < 1e-2, name
    assert math.isfinite(compiled.history[-1]["train/loss"])


# bf16 autocast on CPU --------------------------------------------------------------------------------------------
def test_bf16_mixed_trains_on_cpu_and_keeps_masks_exact() -> None:
    module = _module()
    masks = _masks(module.model, keep=0.1)
    before = {n: w.detach().clone() for n, w in prunable_weights(module.model)}
    _fit(module, masks, precision="bf16-mixed")

    _assert_pruned_zero(module, masks)
    for name, weight in prunable_weights(module.model):
        assert weight.dtype == torch.float32  # autocast computes in bf16, the weights stay fp32
        assert not torch.equal(weight.detach()[masks[name]], before[name][masks[name]]), name
    assert all(math.isfinite(h["train/loss"]) for h in module.history)


# Per-epoch metric reduction ----------------------------------------------------------------------------------
def test_epoch_totals_equal_a_direct_computation_and_reset_in_place() -> None:
    gen = torch.Generator().manual_seed(0)
    totals, losses, correct, sizes = EpochTotals(), [], 0, [5, 5, 3]
    assert totals.read_and_reset() == (0.0, 0.0, 0)
    for n in sizes:
        logits = torch.randn(n, 10, generator=gen)
        y = torch.randint(0, 10, (n,), generator=gen)
        loss = torch.nn.functional.cross_entropy(logits, y)
        totals.add(logits, y, loss)
        losses.append(loss.item() * n)
        correct += int((logits.argmax(1) == y).sum())
    storage = totals._sums.data_ptr()
    loss_sum, correct_sum, total = totals.read_and_reset()
    assert total == 13 and correct_sum == correct
    assert loss_sum == pytest.approx(sum(losses), rel=1e-6)
    assert totals.read_and_reset() == (0.0, 0.0, 0)
    assert totals._sums.data_ptr() == storage  # a recorded CUDA graph keeps adding to this very tensor


def test_keep_freed_cpu_memory_is_idempotent() -> None:
    first = keep_freed_cpu_memory()
    assert isinstance(first, bool) and keep_freed_cpu_memory() == first
