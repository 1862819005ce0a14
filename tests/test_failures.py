"""Numerical failures are recorded, not fatal: the run says `failed` and why; its sweep goes on."""

from __future__ import annotations

import json

from conftest import TINY, compose_cfg, train_py

from jackpot.train import run


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
