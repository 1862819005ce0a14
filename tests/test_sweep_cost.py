"""What a sweep costs: jackpot-tables' cost line (device-hours from results.json, a pack side by side counted
once), and the projection of runs still to train from end-to-end figures (jackpot.tables.projection)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from jackpot.tables.cost import sweep_cost
from jackpot.tables.projection import PlannedRun, project

NAN = math.nan


def _runs(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["wall_time_s", "started_at", "finished_at", "pack", "device"])


def test_runs_alone_add_up_and_a_pack_side_by_side_counts_its_span_once():
    runs = _runs(
        (100.0, 0.0, 100.0, None, "cuda: NVIDIA H200"),
        (200.0, 50.0, 250.0, None, "cuda: NVIDIA H200"),
        (1000.0, 1000.0, 2000.0, "pack-a", "cuda: NVIDIA H200"),  # two runs side by side: 1000 to 2100
        (1090.0, 1010.0, 2100.0, "pack-a", "cuda: NVIDIA H200"),
        (500.0, 3000.0, 3500.0, "pack-b", "cuda: NVIDIA A100"),  # a pack of which one run was rerun alone later
        (NAN, NAN, NAN, None, None),  # read from wandb: no wall time
    )
    cost = sweep_cost(runs)
    assert cost.runs == 5 and cost.packed_runs == 3 and cost.packs == 2
    assert cost.hours == pytest.approx((100 + 200 + 1100 + 500) / 3600)
    assert cost.devices == ("cuda: NVIDIA A100", "cuda: NVIDIA H200")
    line = cost.describe("random_tickets")
    assert line.startswith("random_tickets: 5 runs took 0.53 device-hours on cuda: NVIDIA A100, cuda: NVIDIA H200")
    assert "3 of them side by side in 2 packs, each pack counted once" in line


def test_a_short_sweep_is_told_in_seconds():
    cost = sweep_cost(_runs((7.4, 0.0, 7.4, None, "cpu: x86_64"), (5.0, 8.0, 13.0, None, "cpu: x86_64")))
    assert cost.describe("quickstart").startswith("quickstart: 2 runs took 12 device-seconds on cpu: x86_64 (")


def test_no_recorded_wall_time_gives_no_cost():
    assert sweep_cost(_runs((NAN, NAN, NAN, None, None))) is None
    assert sweep_cost(_runs()) is None


def test_runs_to_train_cost_their_overheads_and_epochs_and_shared_work_once():
    figures = {"costs": {"vgg19": {"epoch_s": 2.0, "setup_s": 6.0, "process_start_s": 20.0},
                         "resnet32": {"epoch_s": 3.0, "setup_s": 4.0, "process_start_s": 20.0}},
               "packs": {"vgg19": {"speedup": 2.0, "overhead_per_run_s": 8.0}}}  # resnet32 takes vgg19's
    runs = [PlannedRun("vgg19", 160, ("trunk-a",), 160), PlannedRun("vgg19", 160, ("trunk-a",), 160),
            PlannedRun("resnet32", 10), PlannedRun("resnet8", 160), PlannedRun("resnet8", 160)]
    projection = project(runs, figures)
    assert (projection.runs, projection.shared_work) == (3, 1)  # the trunk both vgg19 runs need, once
    assert projection.without_figures == {"resnet8": 2}
    assert projection.hours == pytest.approx((3 * (26 + 320) + (24 + 30)) / 3600)
    assert projection.hours_packed == pytest.approx((3 * (8 + 160) + (8 + 15)) / 3600)
    assert project(runs, {"costs": figures["costs"]}).hours_packed is None  # no packs measured: none projected


def test_shared_work_a_killed_launch_checkpointed_costs_only_the_epochs_after_its_newest_checkpoint():
    figures = {"costs": {"vgg19": {"epoch_s": 2.0, "setup_s": 6.0, "process_start_s": 20.0}}}
    # two runs name how far the trunk got (a rerun resumes from the newest checkpoint: 50); the round is past
    # its epochs (nothing left to train but the process around it)
    runs = [PlannedRun("vgg19", 160, ("trunk-a", "round-1"), 160, (("trunk-a", 30),)),
            PlannedRun("vgg19", 100, ("trunk-a", "round-1"), 160, (("trunk-a", 50), ("round-1", 170)))]
    projection = project(runs, figures)
    assert (projection.runs, projection.shared_work) == (2, 2)
    assert projection.hours == pytest.approx((4 * 26 + (160 + 100 + 110 + 0) * 2.0) / 3600)
