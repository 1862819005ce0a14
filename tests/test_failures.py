"""Numerical failures are recorded, not fatal: the run says `failed` and why; its sweep goes on."""

from __future__ import annotations

import json

import pytest
from conftest import TINY, compose_cfg, train_py

from jackpot.runs.cache_keys import missing_work
from jackpot.train import TrainingDiverged, run


def test_a_diverging_run_is_recorded_as_failed(tmp_path, cifar_root):
    cfg = compose_cfg(tmp_path, [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
                                 "pruner=random", "ratio=0.5", "schedule.lr=1e12", "schedule.epochs=3",
                                 "schedule.milestones=[1]"])
    results = run(cfg)
    assert results["status"] == "failed"
    assert "NaN or infinite" in results["reason"]
    assert len(results["history"]) == 1  # stopped after the first epoch instead of training on
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["status"] == "failed"


def test_the_sweep_goes_on_past_a_failed_run(tmp_path, cifar_root):
    args = ["-m", *TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", "pruner=random", "ratio=0.5",
            "schedule.epochs=1", "schedule.milestones=[]", "schedule.lr=1e12,0.05", f"paths.root_dir={tmp_path}",
            "hydra.sweep.subdir=job${hydra.job.num}"]
    proc = train_py(args, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    statuses = sorted(json.loads(p.read_text())["status"] for p in tmp_path.rglob("results.json"))
    assert statuses == ["complete", "failed"]


@pytest.mark.parametrize(("epochs", "interval"), [(1, 0), (3, 0), (3, 3600)])
def test_a_diverged_run_stays_failed_when_its_sweep_is_run_again(tmp_path, cifar_root, epochs, interval):
    """A failed cell is launched again by a rerun of its sweep, and resumes from the checkpoint its diverged
    epoch wrote: it must neither train on from those weights (3 epochs: an extra NaN epoch in its history) nor,
    diverged in its last epoch (1 epoch), find nothing left to train and be recorded as complete. The epoch it
    stops after is checkpointed whatever `trainer.checkpoint_interval_s` says (an hour: no other would be)."""
    cfg = compose_cfg(tmp_path, [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
                                 "pruner=random", "ratio=0.5", "schedule.lr=1e12", f"schedule.epochs={epochs}",
                                 "schedule.milestones=[]", f"trainer.checkpoint_interval_s={interval}"])
    first = run(cfg)
    assert first["status"] == "failed" and len(first["history"]) == 1
    again = run(cfg)
    assert again["resumed"] and again["status"] == "failed" and "NaN or infinite" in again["reason"]
    assert [entry["epoch"] for entry in again["history"]] == [entry["epoch"] for entry in first["history"]]


def test_a_diverged_dense_trunk_is_not_cached(tmp_path, cifar_root):
    cfg = compose_cfg(tmp_path, [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
                                 "pruner=lottery", "ratio=0.5", "pruner.pretrain_epochs=1", "schedule.lr=1e12",
                                 "schedule.epochs=1", "schedule.milestones=[]"])
    with pytest.raises(TrainingDiverged, match="dense trunk .* diverged"):
        run(cfg)
    assert missing_work(cfg), "no run may prune from a diverged trunk"
    with pytest.raises(TrainingDiverged):  # a rerun resumes its checkpoint and fails again, without training
        run(cfg)


def test_a_crash_closes_the_loggers_as_failed_and_its_own_error_surfaces(tmp_path, cifar_root, monkeypatch):
    """The loggers are closed (a wandb run marked failed) when training raises; an error while closing them is
    logged, and the error that stopped training is the one raised."""
    import lightning.pytorch as L

    from jackpot import train

    closed = []

    def crashing_fit(*args, **kwargs):
        raise ValueError("out of memory, say")

    def broken_finish(loggers, summary, failed):
        closed.append(failed)
        raise ConnectionError("wandb unreachable")

    monkeypatch.setattr(L.Trainer, "fit", crashing_fit)
    monkeypatch.setattr(train, "finish_loggers", broken_finish)
    cfg = compose_cfg(tmp_path, [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
                                 "pruner=random", "ratio=0.5", "schedule.epochs=1", "schedule.milestones=[]"])
    with pytest.raises(ValueError, match="out of memory, say"):
        run(cfg)
    assert closed == [True]
