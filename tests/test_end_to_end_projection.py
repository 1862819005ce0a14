"""scripts/end_to_end.py's arithmetic: a pack's rate from its runs' epoch ends, whether compile pays, and the
projection (each sweep's jobs composed as Hydra does, runs and shared dense trunks counted once, one at a time and
in packs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from end_to_end import (  # noqa: E402
    compile_verdict,
    epoch_seconds,
    epoch_split,
    pack_rate,
    project,
    setup_split,
    setup_text,
    split_text,
    start_split,
    start_text,
)

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


def test_a_packs_rate_counts_the_epochs_its_runs_complete_while_all_of_them_train():
    # two runs side by side, 2 s per epoch each, a second apart: one run-epoch per second
    assert pack_rate([[1.0, 3.0, 5.0, 7.0], [2.0, 4.0, 6.0, 8.0]]) == pytest.approx(1.0)
    # the first run had the device to itself until the second one's first epoch ended (3 s): left out
    assert pack_rate([[1.0, 2.0, 4.0, 6.0], [3.0, 5.0, 7.0]]) == pytest.approx(1.0)
    # three runs at 3 s per epoch each: one run-epoch per second, whatever their stagger within an epoch
    assert pack_rate([[3.0, 6.0, 9.0, 12.0], [4.0, 7.0, 10.0, 13.0], [5.5, 8.5, 11.5, 14.5]]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="never all trained at once"):
        pack_rate([[1.0, 2.0], [3.0, 4.0]])


def test_a_runs_epoch_time_leaves_its_first_epoch_out():
    result = {"cell_name": "c", "runtime": {"epochs_timed": {"first_epoch": 0, "started_at": 0.0,
                                                              "ended_at": [10.0, 12.0, 14.5]}}}
    assert epoch_seconds(result) == pytest.approx(2.25)
    with pytest.raises(SystemExit, match="1 epoch"):
        epoch_seconds({"cell_name": "c", "runtime": {"epochs_timed": {"ended_at": [10.0]}}})


def test_an_epochs_split_is_the_median_of_its_later_epochs():
    timed = {"ended_at": [10.0, 12.0, 14.5, 16.5], "split_s": [[3.0, 0.5, 0.1], [1.7, 0.05, 0.25], [1.8, 0.05, 0.65],
                                                              [1.6, 0.07, 0.33]]}
    assert epoch_split({"runtime": {"epochs_timed": timed}}) == {"train": 1.7, "eval": 0.05, "rest": 0.33}
    assert split_text({"train": 1.7, "eval": 0.05, "rest": 0.33}) == (
        " (training 1.70 s, evaluation 0.05 s, the rest 0.33 s: checkpoint, logs)")
    # one epoch, or a results file from before the split was recorded: nothing to say
    assert epoch_split({"runtime": {"epochs_timed": {"ended_at": [1.0], "split_s": [[1.0, 0.0, 0.0]]}}}) is None
    assert epoch_split({"runtime": {"epochs_timed": {"ended_at": [1.0, 2.0]}}}) is None and split_text(None) == ""


def test_a_runs_set_up_splits_into_before_its_first_epoch_its_first_epochs_extra_and_after_its_last():
    # a 10 s run: 2 s before the first epoch (0.5 s of it the ticket), a first epoch of 3 s, two of 2 s, 1 s after
    result = {"started_at": 100.0, "finished_at": 110.0, "wall_time_s": 10.0,
              "runtime": {"ticket_s": 0.5, "epochs_timed": {"started_at": 102.0, "ended_at": [105.0, 107.0, 109.0]}}}
    per_epoch = epoch_seconds({"cell_name": "c", **result})
    parts = setup_split(result, per_epoch)
    assert parts == {"before_first_epoch": 2.0, "ticket": 0.5, "first_epoch_extra": 1.0, "after_last_epoch": 1.0}
    assert parts["before_first_epoch"] + parts["first_epoch_extra"] + parts["after_last_epoch"] == (
        result["wall_time_s"] - 3 * per_epoch)
    assert setup_text(parts) == (" (before the first epoch 2.0 s, 0.5 s of it making the ticket; the first epoch 1.0 s "
                                 "more than the others; after the last 1.0 s)")
    assert "ticket" not in setup_text({**parts, "ticket": None})


def test_a_process_start_splits_at_its_marks():
    result = {"started_at": 110.0, "runtime": {"process": {"main_at": 103.0, "validated_at": 104.5,
                                                           "imported_at": 108.0}}}
    parts = start_split(result, spawned_at=100.0)
    assert parts == {"main": 3.0, "validated": 1.5, "imported": 3.5, "to_the_run": 2.0}
    assert start_text(parts) == (": to main (Python, Hydra, composing the config) 3.0 s, validating (torch's import, "
                                 "CUDA's devices) 1.5 s, importing Lightning and jackpot's training 3.5 s, then to "
                                 "the run's start 2.0 s")
    # a pack's process marks main only; a results file from before the marks has none
    assert start_split({**result, "runtime": {"process": {"main_at": 103.0}}}, 100.0) == {"main": 3.0,
                                                                                           "to_the_run": 7.0}
    assert start_split({**result, "runtime": {}}, 100.0) == {"to_the_run": 10.0}


def _figures(epoch_s: float, cold_s: float | None = None, pack_epoch_s: float | None = None) -> dict:
    costs = {"epoch_s": epoch_s, "setup_s": 6.0, "process_start_s": 20.0}
    if cold_s is not None:
        costs["cold_extra_s"] = cold_s
    packs = {} if pack_epoch_s is None else {"vgg19": {"size": 4, "epoch_s": pack_epoch_s, "overhead_per_run_s": 7.0}}
    return {"costs": {"vgg19": costs}, "packs": packs, "extra": "trainer=gpu"}


def test_compile_pays_when_its_saving_over_a_run_covers_the_first_runs_cold_compile():
    eager = _figures(2.0, pack_epoch_s=1.0)
    # 160 epochs at 0.5 s less save 80 s, more than a 53 s cold compile; a pack saves 4 x 160 x 0.25 s = 160 s
    alone, packed = compile_verdict(eager, _figures(1.5, cold_s=53.0, pack_epoch_s=0.75))
    assert alone == ("vgg19 alone, 160 epochs: 346 s without `trainer=gpu`, 266 s with it (319 s for the first run "
                     "of a sweep, caches cold): pays")
    assert packed == ("vgg19 in packs of 4, 160 epochs, a pack's device time: 668 s without `trainer=gpu`, 508 s "
                      "with it (561 s for the first pack of a sweep, caches cold): pays")
    (alone,) = compile_verdict(eager, _figures(1.9, cold_s=53.0))  # saves 16 s a run: not the first one
    assert alone.endswith(": pays from the second run of a sweep")
    (alone,) = compile_verdict(eager, _figures(2.1, cold_s=0.0))
    assert alone.endswith(": does not pay")
    assert compile_verdict(eager, {"costs": {"resnet32": _figures(1.0)["costs"]["vgg19"]}}) == []  # not in eager
