"""Background checkpoint writes (the GPU default): a snapshot of the moment of the save, one write in flight,
errors raised, and a Lightning fit whose last checkpoint holds its final state."""

from __future__ import annotations

import threading
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from jackpot.lightning.module import ClassificationModule, Schedule
from jackpot.models import build_model
from jackpot.runs.atomic_io import torch_load_safe
from jackpot.runs.checkpoint_io import AtomicCheckpointIO, BackgroundCheckpointIO


def test_the_file_holds_the_tensors_as_they_were_at_the_save(tmp_path: Path) -> None:
    io = BackgroundCheckpointIO()
    weights = torch.arange(6, dtype=torch.float32)
    io.save_checkpoint({"state_dict": {"w": weights}, "epoch": 3}, tmp_path / "last.ckpt")
    weights.mul_(-1)  # training goes on while the thread writes
    io.teardown()
    saved = torch_load_safe(tmp_path / "last.ckpt")
    assert torch.equal(saved["state_dict"]["w"], torch.arange(6, dtype=torch.float32)) and saved["epoch"] == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_snapshot_is_copied_to_the_host_on_a_stream_of_its_own(tmp_path: Path, monkeypatch) -> None:
    """Training on its own stream (a pack's run) goes on changing the weights while the thread writes; the file
    holds them as they were at the save, and the thread's copies ran on the writer's stream, not on the legacy
    default stream (where each copy would hold up every stream's work)."""
    streams = []
    original = AtomicCheckpointIO.save_checkpoint

    def recording(self, checkpoint, path, storage_options=None):
        streams.append(torch.cuda.current_stream())
        original(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", recording)
    io = BackgroundCheckpointIO()
    expected = torch.arange(1 << 20, dtype=torch.float32)
    with torch.cuda.stream(torch.cuda.Stream()):
        weights = torch.zeros(1 << 20, device="cuda")
        torch.cuda._sleep(20_000_000)  # queued work ahead of the weights' last change and of the clone
        weights.copy_(expected, non_blocking=False)
        io.save_checkpoint({"state_dict": {"w": weights}}, tmp_path / "last.ckpt")
        weights.mul_(-1)
        io.teardown()
    assert torch.equal(torch_load_safe(tmp_path / "last.ckpt")["state_dict"]["w"], expected)
    assert streams == [io._copy_stream] and streams[0] != torch.cuda.default_stream()


def test_a_save_waits_for_the_write_in_flight(tmp_path: Path, monkeypatch) -> None:
    io = BackgroundCheckpointIO()
    release, writes = threading.Event(), []
    original = BackgroundCheckpointIO._write

    def slow_write(self, snapshot, path, cloned):
        writes.append(path)
        release.wait(timeout=30)
        original(self, snapshot, path, cloned)

    monkeypatch.setattr(BackgroundCheckpointIO, "_write", slow_write)
    io.save_checkpoint({"step": torch.tensor(1)}, tmp_path / "a.ckpt")
    second = threading.Thread(target=io.save_checkpoint, args=({"step": torch.tensor(2)}, tmp_path / "b.ckpt"))
    second.start()
    second.join(timeout=0.5)
    assert second.is_alive() and len(writes) <= 1  # blocked behind the first write, nothing queued
    release.set()
    second.join(timeout=30)
    io.teardown()
    assert [p.name for p in writes] == ["a.ckpt", "b.ckpt"]
    assert torch_load_safe(tmp_path / "b.ckpt")["step"].item() == 2


def test_a_failed_write_is_raised_at_the_next_save_and_at_teardown(tmp_path: Path) -> None:
    io = BackgroundCheckpointIO()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the checkpoint folder should be")
    io.save_checkpoint({"w": torch.ones(2)}, blocker / "last.ckpt")
    with pytest.raises(OSError):
        io.save_checkpoint({"w": torch.ones(2)}, tmp_path / "last.ckpt")
    assert not (tmp_path / "last.ckpt").exists()  # the save that raised wrote nothing
    io.save_checkpoint({"w": torch.ones(2)}, blocker / "again.ckpt")
    with pytest.raises(OSError):
        io.teardown()
    assert io._executor is None


@pytest.mark.usefixtures("one_thread")
def test_a_fit_ends_with_its_final_state_on_disk(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = ClassificationModule(build_model("resnet8", 10), Schedule(epochs=2, milestones=(1,)))
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 32, 32, generator=gen), torch.randint(0, 10, (32,), generator=gen))
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path), filename="last", save_on_train_epoch_end=True,
                                 enable_version_counter=False)
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[checkpoint], plugins=[BackgroundCheckpointIO()])
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=8))

    saved = torch_load_safe(tmp_path / "last.ckpt")
    assert saved["epoch"] == 1 and saved["global_step"] == 8
    for name, value in module.state_dict().items():
        assert torch.equal(saved["state_dict"][name], value), name
