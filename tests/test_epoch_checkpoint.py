"""Epoch-end checkpoints at most once per `trainer.checkpoint_interval_s`: which epochs are saved, what the
progress file says a rerun resumes from, and a run killed between two checkpoints ending like an uninterrupted one."""

from __future__ import annotations

import itertools
import json
import warnings

import lightning.pytorch as L
import pytest
import torch
from conftest import TINY, compose_cfg, train_py
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from jackpot.config import validate
from jackpot.lightning.callbacks import ProgressFile
from jackpot.lightning.epoch_checkpoint import EpochCheckpoint
from jackpot.lightning.module import ClassificationModule, Schedule
from jackpot.models import build_model
from jackpot.runs.atomic_io import torch_load_safe
from jackpot.runs.results import PROGRESS_FILE, Progress, progress_of, read_progress, write_progress
from jackpot.runs.sweep_plan import job_state


def _fit(epochs: int, callbacks: list[L.Callback], ckpt_path: str | None = None) -> None:
    """A tiny Lightning fit of `epochs` epochs of 2 steps, from `ckpt_path` if given."""
    torch.manual_seed(0)
    module = ClassificationModule(build_model("resnet8", 10), Schedule(epochs=epochs, milestones=()))
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen))
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=4), ckpt_path=ckpt_path)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("every_n", "saved"), [(1, [3, 6, 7]), (2, [4, 8])])
def test_an_epoch_is_saved_once_the_interval_has_passed_and_the_last_one_always(tmp_path, every_n, saved):
    """25 s per epoch (a clock read once at the start and once per epoch end), a 60 s interval: epochs 3 and 6
    are the first ones 60 s after a save, and the stage's last is saved whatever the time; with every second
    epoch (every_n_epochs=2) only even epochs qualify, and epoch 7 is not one."""
    calls: list[int] = []
    progress = ProgressFile(tmp_path / PROGRESS_FILE, "ticket")
    clock = itertools.count(0, 25).__next__
    checkpoint = EpochCheckpoint(str(tmp_path / "ckpt"), every_n_epochs=every_n, min_interval_s=60,
                                 on_saved=lambda done: (calls.append(done), progress.checkpointed(done)), clock=clock)
    epochs = 7 if every_n == 1 else 8
    _fit(epochs, [progress, checkpoint])
    assert calls == saved
    assert torch_load_safe(tmp_path / "ckpt" / "last.ckpt")["epoch"] == saved[-1] - 1  # Lightning counts from 0
    assert progress_of(tmp_path) == Progress("ticket", epochs, epochs, saved[-1])


@pytest.mark.usefixtures("one_thread")
def test_an_interval_of_zero_saves_every_epoch(tmp_path):
    progress = ProgressFile(tmp_path / PROGRESS_FILE, "ticket")
    calls: list[int] = []
    checkpoint = EpochCheckpoint(str(tmp_path / "ckpt"), every_n_epochs=1, min_interval_s=0,
                                 on_saved=calls.append, clock=lambda: 0.0)
    _fit(3, [progress, checkpoint])
    assert calls == [1, 2, 3]


@pytest.mark.usefixtures("one_thread")
def test_a_run_checkpointed_before_the_interval_resumes_without_a_missing_callback(tmp_path):
    """Runs in flight when jackpot gained the interval hold the state of a ModelCheckpoint (one file, every
    epoch): they resume under EpochCheckpoint with that state found, so Lightning does not warn about it."""
    _fit(1, [ModelCheckpoint(dirpath=str(tmp_path), filename="last", save_top_k=1, save_last=False,
                             enable_version_counter=False, save_on_train_epoch_end=True, every_n_epochs=1)])
    (stored,) = torch_load_safe(tmp_path / "last.ckpt")["callbacks"]
    checkpoint = EpochCheckpoint(str(tmp_path), every_n_epochs=1, min_interval_s=60)
    assert checkpoint.state_key == stored
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(2, [checkpoint], str(tmp_path / "last.ckpt"))
    assert not [w for w in caught if "callbacks used to create the checkpoint" in str(w.message)]
    assert torch_load_safe(tmp_path / "last.ckpt")["epoch"] == 1  # the resumed fit's last epoch, saved


@pytest.mark.parametrize("interval", ["0", "90.5", "inf"])
def test_an_interval_of_any_number_of_seconds_from_zero_to_inf_is_accepted(tmp_path, interval):
    validate(compose_cfg(tmp_path, [f"trainer.checkpoint_interval_s={interval}"]))


def test_the_progress_file_says_where_a_rerun_resumes(tmp_path):
    path = tmp_path / PROGRESS_FILE
    write_progress(path, "ticket", 40, 160, checkpointed=30)
    assert read_progress(tmp_path) == "ticket epoch 40/160, checkpoint at 30"
    write_progress(path, "ticket", 40, 160)
    assert read_progress(tmp_path) == "ticket epoch 40/160"
    # a progress file written before checkpoints had an interval holds no "checkpointed": every epoch was saved
    path.write_text(json.dumps({"stage": "dense trunk", "epoch": 37, "epochs": 160}))
    assert progress_of(tmp_path) == Progress("dense trunk", 37, 160, 37)
    write_progress(path, "making the ticket")
    assert progress_of(tmp_path) == Progress("making the ticket") and read_progress(tmp_path) == "making the ticket"
    path.write_text("{not json")
    assert progress_of(tmp_path) == Progress("") and read_progress(tmp_path) == ""


def test_a_run_killed_between_checkpoints_resumes_from_the_last_one_and_ends_like_an_uninterrupted_run(
        tmp_path, cifar_root):
    """A 3-epoch ticket whose interval is an hour has one checkpoint, after its last epoch: killed in its third
    epoch, it has none, the progress file says so, and the rerun trains the ticket again from its start to the
    same result, history and weights as a run never killed."""
    cell = [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", "dataset.download=false",
            "pruner=smart_ratio", "ratio=0.8", "schedule.epochs=3", "schedule.milestones=[2]",
            "trainer.limit_train_batches=2", "trainer.checkpoint_interval_s=3600"]
    ref_dir = tmp_path / "ref" / "run"
    uninterrupted = train_py([*cell, f"paths.root_dir={tmp_path / 'ref'}", f"hydra.run.dir={ref_dir}"])
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    reference = json.loads((ref_dir / "results.json").read_text())
    assert progress_of(ref_dir) == Progress("ticket", 3, 3, 3)

    out = tmp_path / "killed"
    args = [*cell, f"paths.root_dir={out}", f"hydra.run.dir={out}/run"]
    killed = train_py(args, fault="step:5")  # steps 1-4 are epochs 1-2, step 5 is in epoch 3
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (out / "run" / "checkpoints" / "last.ckpt").exists()
    assert read_progress(out / "run") == "ticket epoch 2/3, checkpoint at 0"
    assert job_state(out / "run") == "resumes (ticket epoch 2/3, checkpoint at 0)"

    final = train_py(args, fault=None)
    assert final.returncode == 0, final.stderr[-2000:]
    result = json.loads((out / "run" / "results.json").read_text())
    assert result["status"] == "complete" and result["history"] == reference["history"]
    assert result["final_acc"] == reference["final_acc"]
    assert len(result["runtime"]["epochs_timed"]["ended_at"]) == 3  # all three trained again
    ref_state = torch_load_safe(ref_dir / "checkpoints" / "last.ckpt")["state_dict"]
    got_state = torch_load_safe(out / "run" / "checkpoints" / "last.ckpt")["state_dict"]
    assert ref_state.keys() == got_state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], got_state[key]), key
