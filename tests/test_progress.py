"""A run shows its progress: one line per epoch on the terminal and in train.log, named by cell, and none of
Lightning's banner or torch's deprecation notes."""

from __future__ import annotations

import json
import logging
import math
import re

import lightning.pytorch as L
import pytest
import torch
from conftest import train_py
from torch.utils.data import DataLoader, TensorDataset

from jackpot.lightning.module import ClassificationModule, MultiStepClassificationModule, Schedule
from jackpot.lightning.progress import EpochLog, format_duration
from jackpot.models import build_model

# The quickstart (GraSP on digits) cut to two short epochs
TINY_QUICKSTART = ["experiment=quickstart", "schedule.epochs=2", "schedule.milestones=[1]",
                   "trainer.limit_train_batches=3", "dataset.samples_per_class=2"]
LINE = re.compile(r"\]\[jackpot\.lightning\.progress\]\[INFO\] - (?P<cell>\S+) ticket epoch (?P<k>\d+)/(?P<n>\d+): "
                  r"train loss (?P<loss>\S+), test acc (?P<acc>[\d.]+) %, (?P<speed>[\d,]+) img/s, (?P<left>\S+) left$")
NOISE = ("GPU available", "TPU available", "💡", "litlogger", "jit.script", "`Trainer.fit` stopped", "srun")


def _epoch_lines(text: str) -> list[re.Match]:
    return [m for m in map(LINE.search, text.splitlines()) if m]


def _check_lines(lines: list[re.Match], results: dict) -> None:
    """Two lines, epoch 1/2 and 2/2, of this cell, whose accuracy is the one results.json records."""
    assert [(int(m["k"]), int(m["n"])) for m in lines] == [(1, 2), (2, 2)]
    assert {m["cell"] for m in lines} == {results["cell_name"]}
    for m, entry in zip(lines, results["history"], strict=True):
        assert math.isfinite(float(m["loss"])) and float(m["loss"]) == pytest.approx(entry["train/loss"], abs=1e-4)
        assert float(m["acc"]) == pytest.approx(entry["test/acc"], abs=0.005)
        assert int(m["speed"].replace(",", "")) > 0


def test_a_run_prints_one_line_per_epoch_to_the_terminal_and_train_log_and_no_noise(tmp_path):
    # GraSP's forward-AD path (offload=disk), whose first use made torch warn about its own torch.jit.script
    proc = train_py([*TINY_QUICKSTART, "pruner.options.offload=disk", f"paths.root_dir={tmp_path}"], cwd=tmp_path,
                    env={"PYTHONWARNINGS": "default"}, timeout=300)  # warnings shown, as a user sees them
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = [p.parent for p in (tmp_path / "outputs").rglob("results.json")]
    results = json.loads((run_dir / "results.json").read_text())
    printed = _epoch_lines(proc.stdout)
    _check_lines(printed, results)
    assert [m.group(0) for m in _epoch_lines((run_dir / "train.log").read_text())] == [m.group(0) for m in printed]
    for noise in NOISE:
        assert noise not in proc.stdout + proc.stderr, noise


def test_a_sweep_says_which_job_each_line_belongs_to(tmp_path):
    proc = train_py(["-m", *TINY_QUICKSTART, "seed=0,1", f"paths.root_dir={tmp_path}",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = sorted((tmp_path / "sweep").rglob("results.json"))
    assert len(found) == 2
    printed = _epoch_lines(proc.stdout)
    for path in found:
        results = json.loads(path.read_text())
        _check_lines([m for m in printed if m["cell"] == results["cell_name"]], results)
        _check_lines(_epoch_lines((path.parent / "train.log").read_text()), results)  # its own lines only
    assert len(printed) == 4


class _RandomImages(L.LightningDataModule):
    """20 random images in batches of 8 (the last one partial), with ImageDataModule's batch_size and
    train_size."""

    batch_size, train_size = 8, 20

    def _loader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(self.train_size, 3, 32, 32, generator=gen),
                             torch.randint(0, 10, (self.train_size,), generator=gen))
        return DataLoader(data, batch_size=self.batch_size)

    train_dataloader = val_dataloader = _loader


@pytest.mark.filterwarnings("ignore:.*dataloader_iter.*")
@pytest.mark.parametrize(("steps_per_call", "limit", "images"), [(8, None, 20), (2, 2, 16), (None, None, 20)])
def test_images_count_every_optimizer_step_of_a_call(steps_per_call, limit, images, one_thread, caplog):
    """Several optimizer steps per Lightning step (the last batch partial), a batch limit, one step per step."""
    model, schedule = build_model("resnet8", 10), Schedule(epochs=2, milestones=(1,))
    module = (ClassificationModule(model, schedule) if steps_per_call is None
              else MultiStepClassificationModule(model, schedule, steps_per_call=steps_per_call))
    epoch_log = EpochLog("ticket", "cell")
    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_train_batches=limit, callbacks=[epoch_log])
    with caplog.at_level(logging.INFO, logger="jackpot.lightning.progress"):
        trainer.fit(module, datamodule=_RandomImages())
    assert epoch_log.images == images
    logged = [r.getMessage() for r in caplog.records if r.name == "jackpot.lightning.progress"]
    assert logged[0] == "cell ticket: 2 epochs"
    assert [line.split(":")[0] for line in logged[1:]] == ["cell ticket epoch 1/2", "cell ticket epoch 2/2"]


def test_durations_read_at_a_glance():
    assert [format_duration(s) for s in (0.4, 45, 245, 7380)] == ["0s", "45s", "4m05s", "2h03m"]


@pytest.mark.filterwarnings("ignore:Checkpoint directory")  # the second fit's, where the first wrote
def test_a_resumed_stage_says_where_it_resumed(tmp_path, one_thread, caplog):
    ckpt_dir = tmp_path / "checkpoints"

    def fit(epochs: int, ckpt_path: str | None) -> EpochLog:
        epoch_log = EpochLog("dense trunk", "cell")
        trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(tmp_path),
                            callbacks=[epoch_log, L.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), filename="last")])
        trainer.fit(ClassificationModule(build_model("resnet8", 10), Schedule(epochs=2, milestones=(1,))),
                    datamodule=_RandomImages(), ckpt_path=ckpt_path)
        return epoch_log

    assert fit(1, None).timeline()["first_epoch"] == 0
    with caplog.at_level(logging.INFO, logger="jackpot.lightning.progress"):
        resumed = fit(2, str(ckpt_dir / "last.ckpt")).timeline()
    assert resumed["first_epoch"] == 1 and len(resumed["ended_at"]) == 1  # the epochs of this fit only
    logged = [r.getMessage() for r in caplog.records if r.name == "jackpot.lightning.progress"]
    assert logged[0] == f"cell dense trunk: 2 epochs, resumed after epoch 1/2 ({ckpt_dir / 'last.ckpt'})"
    assert [line.split(":")[0] for line in logged[1:]] == ["cell dense trunk epoch 2/2"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_epoch_end_on_cuda_waits_for_its_own_stream_only():
    """A pack's runs train on their own streams: a run's epoch end waits for its queued work, not for another
    run's (a device-wide synchronize held each run up until every stream had drained)."""
    from types import SimpleNamespace

    from jackpot.lightning.progress import _synchronized_now

    mine, other = torch.cuda.Stream(), torch.cuda.Stream()
    with torch.cuda.stream(other):
        torch.cuda._sleep(4_000_000_000)  # seconds of GPU clock cycles
    with torch.cuda.stream(mine):
        torch.cuda._sleep(50_000_000)
        _synchronized_now(SimpleNamespace(device=torch.device("cuda")))
        assert mine.query() and not other.query()
    other.synchronize()
