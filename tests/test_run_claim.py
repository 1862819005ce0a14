"""One training of a run that sweeps share, also when they run at once (jackpot.run_claim)."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import compose_cfg, lock_held_by_another_process
from omegaconf import open_dict

from jackpot.io import write_json_atomic
from jackpot.results import is_complete
from jackpot.run_claim import RunElsewhere, claim_paths, claim_run, read_holder
from jackpot.run_identity import identity_hash, run_identity
from jackpot.train import run

IDENTITY = {"model": "resnet8", "ratio": 0.9}


def test_a_run_claimed_by_a_sweep_it_reuses_from_is_skipped_and_others_are_not_waited_for(tmp_path):
    lock, record = claim_paths(tmp_path, "abc")
    lock.parent.mkdir(parents=True)
    write_json_atomic(record, {"name": "random_tickets", "output_dir": "/shared/rt/cell"})
    with lock_held_by_another_process(lock):
        with pytest.raises(RunElsewhere, match=r"training in sweep random_tickets \(/shared/rt/cell\)"), \
                claim_run(tmp_path, "abc", IDENTITY, "initial_ticket_checks", tmp_path / "mine",
                          ["partially_trained", "random_tickets"]):
            pytest.fail("the block must not run")
        ran = []
        for name, reuse_from in [("hybrid_tickets", ["partially_trained"]), ("random_tickets", ["random_tickets"]),
                                 ("solo", [])]:
            with claim_run(tmp_path, "abc", IDENTITY, name, tmp_path / "mine", reuse_from):
                ran.append(name)
        assert ran == ["hybrid_tickets", "random_tickets", "solo"]
        assert read_holder(record)["name"] == "random_tickets", "a job without the claim leaves its record alone"
    # the holder is gone (killed): the next job takes the claim and records itself
    with claim_run(tmp_path, "abc", IDENTITY, "initial_ticket_checks", tmp_path / "mine", ["partially_trained"]):
        assert read_holder(record) == {"name": "initial_ticket_checks", "output_dir": str(tmp_path / "mine")}


def test_a_holder_that_has_not_written_its_record_yet_is_waited_for(tmp_path):
    lock, record = claim_paths(tmp_path, "abc")
    with lock_held_by_another_process(lock), pytest.raises(RunElsewhere):
        threading.Timer(0.5, write_json_atomic, args=(record, {"name": "a", "output_dir": "/x"})).start()
        with claim_run(tmp_path, "abc", IDENTITY, "b", tmp_path / "mine", ["a"]):
            pass
    record.write_text("{not json")
    assert read_holder(record) is None


def test_a_run_finished_in_a_reused_sweep_after_launch_is_not_trained_again(tmp_path):
    """The sweeper left the job in (the other sweep had not finished it then); when the job starts, it has."""
    overrides = ["dataset=digits", "model=resnet8", "trainer=cpu", "schedule=quick", "schedule.epochs=1",
                 "schedule.milestones=[]", "trainer.limit_train_batches=2", "dataset.samples_per_class=2",
                 "pruner=smart_ratio", "ratio=0.9"]
    first = compose_cfg(tmp_path, overrides)
    with open_dict(first):
        first.name, first.paths.output_dir = "sweep_a", str(tmp_path / "a" / "cell")
    run(first)
    second = compose_cfg(tmp_path, overrides)
    with open_dict(second):
        second.name, second.paths.output_dir = "sweep_b", str(tmp_path / "b" / "cell")
    identity = run_identity(second)
    assert identity == run_identity(first) and is_complete(first.paths.output_dir, identity)

    with pytest.raises(RunElsewhere, match=r"finished in sweep sweep_a .* after this sweep was launched"):
        run(second, reuse_from=["sweep_a"])
    assert not is_complete(second.paths.output_dir)
    results = run(second)  # a sweep that does not reuse sweep_a's runs trains its own
    assert results["status"] == "complete" and is_complete(second.paths.output_dir, identity)
    holder = json.loads(claim_paths(first.paths.cache_dir, identity_hash(identity))[1].read_text())
    assert holder == {"name": "sweep_b", "output_dir": str(tmp_path / "b" / "cell")}
