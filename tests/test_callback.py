"""The pruning callback: pruned weights stay exactly zero through training with momentum and weight decay."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from jackpot.lightning.callbacks import PruningCallback
from jackpot.lightning.module import ClassificationModule, Schedule
from jackpot.models import build_model
from jackpot.pruning import Masks, prunable_weights


def _random_masks(model: torch.nn.Module, keep: float, seed: int) -> Masks:
    gen = torch.Generator().manual_seed(seed)
    return Masks({n: torch.rand(w.shape, generator=gen) < keep for n, w in prunable_weights(model)})


def _loader(n: int = 96, classes: int = 10) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=32)


def _trainer(callbacks, epochs: int = 2, accelerator: str = "cpu") -> L.Trainer:
    return L.Trainer(accelerator=accelerator, devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     callbacks=callbacks)


def test_pruned_weights_stay_exactly_zero_with_momentum_and_weight_decay():
    torch.manual_seed(0)
    model = build_model("resnet8", 10)
    masks = _random_masks(model, keep=0.2, seed=1)
    before = {n: w.detach().clone() for n, w in prunable_weights(model)}

    def make_ticket(net):
        masks.apply(net)
        return masks

    callback = PruningCallback(make_ticket)
    module = ClassificationModule(model, Schedule(epochs=2, lr=0.5, weight_decay=5e-2, milestones=(1,)))
    _trainer([callback], epochs=2).fit(module, train_dataloaders=_loader(), val_dataloaders=_loader(32))

    for name, weight in prunable_weights(model):
        mask = masks[name]
        assert torch.count_nonzero(weight.detach()[~mask]) == 0, name
        # the kept weights really trained (momentum and weight decay act on them)
        assert not torch.equal(weight.detach()[mask], before[name][mask]), name
    assert module.history and module.history[-1]["epoch"] == 1


def test_without_callback_the_same_training_revives_pruned_weights():
    """The control: the test above can fail — weight decay alone leaves zeros, but gradients revive them."""
    torch.manual_seed(0)
    model = build_model("resnet8", 10)
    masks = _random_masks(model, keep=0.2, seed=1)
    masks.apply(model)
    module = ClassificationModule(model, Schedule(epochs=1, lr=0.5, weight_decay=5e-2, milestones=()))
    _trainer([], epochs=1).fit(module, train_dataloaders=_loader())
    name, weight = prunable_weights(model)[0]
    assert torch.count_nonzero(weight.detach()[~masks[name]]) > 0


def test_masks_are_saved_and_part_of_the_callback_state(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet8", 10)
    masks = _random_masks(model, keep=0.5, seed=2)
    callback = PruningCallback(lambda net: masks, masks_path=tmp_path / "masks.pt")
    module = ClassificationModule(model, Schedule(epochs=1, milestones=()))
    _trainer([callback], epochs=1).fit(module, train_dataloaders=_loader(32))
    assert Masks.load(tmp_path / "masks.pt").equal(masks)
    restored = PruningCallback(lambda net: None)
    restored.load_state_dict(callback.state_dict())
    assert restored.masks.equal(masks) and restored.was_restored


@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_the_ticket_is_scored_on_the_device_the_run_trains_on(accelerator):
    """Lightning moves the model to the GPU only after the callbacks' setup, where the ticket is made: scoring
    there on the host would make a GPU run's SNIP/GraSP/OBD minutes long."""
    torch.manual_seed(0)
    model = build_model("resnet8", 10)
    masks = _random_masks(model, keep=0.5, seed=1)
    seen: list[torch.device] = []

    def make_ticket(net):
        seen.append(next(net.parameters()).device)
        masks.apply(net)
        return masks

    module = ClassificationModule(model, Schedule(epochs=1, lr=0.1, milestones=()))
    _trainer([PruningCallback(make_ticket)], epochs=1, accelerator=accelerator).fit(
        module, train_dataloaders=_loader(32), val_dataloaders=_loader(32))
    assert [device.type for device in seen] == [accelerator]
