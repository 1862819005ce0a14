"""scripts/end_to_end.py's projection: each sweep's jobs composed as Hydra does, runs and shared dense trunks
counted once, one at a time and in packs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from end_to_end import project  # noqa: E402

ONE_SECOND_EPOCHS = {"vgg19": {"epoch_s": 1.0, "setup_s": 0.0, "process_start_s": 0.0},
                     "resnet32": {"epoch_s": 1.0, "setup_s": 0.0, "process_start_s": 0.0}}


def test_a_sweep_costs_its_runs_epochs_and_overheads_alone_and_packed():
    packs = {"resnet32": {"speedup": 2.0, "overhead_per_run_s": 36.0}}  # vgg19 takes resnet32's
    row = project(["dense"], ONE_SECOND_EPOCHS, packs)["dense"]
    assert (row["runs"], row["trunks_and_rounds"]) == (12, 0)  # 2 models x 2 datasets x 3 seeds
    assert row["hours"] == pytest.approx(12 * 160 / 3600)
    assert row["hours_packed"] == pytest.approx(12 * (36 + 160 / 2) / 3600)
    alone_with_overhead = {m: {**c, "setup_s": 10.0, "process_start_s": 20.0} for m, c in ONE_SECOND_EPOCHS.items()}
    assert project(["dense"], alone_with_overhead)["dense"]["hours"] == pytest.approx(12 * (30 + 160) / 3600)


def test_the_poster_tables_together_run_shared_cells_and_trunks_once():
    names = ["dense", "random_tickets", "hybrid_tickets", "partially_trained", "partially_trained_lottery"]
    report = project(names, ONE_SECOND_EPOCHS)
    together = report["poster tables together"]
    assert (together["runs"], together["trunks_and_rounds"]) == (300, 18)
    assert together["runs"] < sum(report[name]["runs"] for name in names)
    assert together["trunks_and_rounds"] < sum(report[name]["trunks_and_rounds"] for name in names)
