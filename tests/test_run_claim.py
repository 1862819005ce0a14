"""One training of a run that sweeps share, also when they run at once (jackpot.runs.claim)."""

from __future__ import annotations

import json
import threading

import pytest
from conftest import compose_cfg, lock_held_by_another_process
from omegaconf import OmegaConf, open_dict

from jackpot.runs import claim as run_claim
from jackpot.runs.atomic_io import write_json_atomic
from jackpot.runs.claim import RunElsewhere, claim_paths, claim_run, read_record
from jackpot.runs.identity import RUN_CONFIG_FILE, identity_hash, run_identity
from jackpot.runs.results import PROGRESS_FILE, is_complete, read_progress
from jackpot.tables.unfinished import describe_unfinished, find_unfinished
from jackpot.train import run

IDENTITY = {"model": "resnet8", "ratio": 0.9}


@pytest.fixture
def impatient(monkeypatch):
    """A taken claim is judged at once (a job waits up to 2 s for its lock, a requeued one 150 s)."""
    monkeypatch.setattr(run_claim, "acquire_patience_s", lambda: 0.0)


def holding(name: str, output_dir: str, runs: dict[str, str] | None = None) -> dict:
    return {"active": {"name": name, "output_dir": output_dir}, "runs": runs or {name: output_dir}}


def test_a_run_claimed_by_a_sweep_it_reuses_from_is_skipped_and_others_are_not_waited_for(tmp_path, impatient):
    lock, record = claim_paths(tmp_path, "abc")
    lock.parent.mkdir(parents=True)
    write_json_atomic(record, holding("random_tickets", "/shared/rt/cell"))
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
        assert read_record(record) == holding("random_tickets", "/shared/rt/cell"), \
            "a job without the claim leaves its record alone"
    # the holder is gone (killed, its name still active): the next job takes the claim, keeps the other sweep's
    # output dir on record, and releases the claim when done
    with claim_run(tmp_path, "abc", IDENTITY, "initial_ticket_checks", tmp_path / "mine", ["partially_trained"]):
        assert read_record(record) == holding("initial_ticket_checks", str(tmp_path / "mine"), {
            "random_tickets": "/shared/rt/cell", "initial_ticket_checks": str(tmp_path / "mine")})
    assert read_record(record)["active"] is None


def test_a_holder_that_has_not_said_who_it_is_yet_is_waited_for_briefly(tmp_path, impatient, monkeypatch):
    lock, record = claim_paths(tmp_path, "abc")
    with lock_held_by_another_process(lock):
        # the holder took the lock and writes its record 0.5 s later: the job waits for it, then skips
        timer = threading.Timer(0.5, write_json_atomic, args=(record, holding("a", "/x")))
        timer.start()
        with pytest.raises(RunElsewhere, match="training in sweep a"), \
                claim_run(tmp_path, "abc", IDENTITY, "b", tmp_path / "mine", ["a"]):
            pass
        timer.join()
        # a released record (its holder finished) names nobody: after the wait the job trains, unclaimed
        monkeypatch.setattr(run_claim, "RECORD_PATIENCE_S", 0.3)
        write_json_atomic(record, {"active": None, "runs": {"a": "/x"}})
        with claim_run(tmp_path, "abc", IDENTITY, "b", tmp_path / "mine", ["a"]):
            pass
    record.write_text("{not json")
    assert read_record(record) == {"active": None, "runs": {}}


def test_a_run_finished_in_a_reused_sweep_after_launch_is_not_trained_again(tmp_path):
    """The sweeper left the job in (the other sweep had not finished it then); when the job starts, it has.
    A job of that sweep started here earlier (then preempted) says in its progress file why it stays so."""
    overrides = ["dataset=digits", "model=resnet8", "trainer=cpu", "schedule=quick", "schedule.epochs=1",
                 "schedule.milestones=[]", "trainer.limit_train_batches=2", "dataset.samples_per_class=2",
                 "pruner=smart_ratio", "ratio=0.9"]
    first, second = compose_cfg(tmp_path, overrides), compose_cfg(tmp_path, overrides)
    with open_dict(first), open_dict(second):
        first.name, first.paths.output_dir = "sweep_a", str(tmp_path / "a" / "cell")
        second.name, second.paths.output_dir = "sweep_b", str(tmp_path / "b" / "cell")
    identity = run_identity(second)
    assert identity == run_identity(first)
    run(first)
    assert is_complete(first.paths.output_dir, identity)
    started = tmp_path / "b" / "cell"
    started.mkdir(parents=True)
    write_json_atomic(started / RUN_CONFIG_FILE,  # as a job of sweep_b writes it when it starts
                      {"config_hash": identity_hash(identity), "config": OmegaConf.to_container(second, resolve=True)})

    with pytest.raises(RunElsewhere, match=r"finished in sweep sweep_a .* after this sweep was launched"):
        run(second, reuse_from=["sweep_a"])
    assert not is_complete(started)
    assert read_progress(started).startswith("skipped: the same run finished in sweep sweep_a")
    assert describe_unfinished(find_unfinished([tmp_path / "b"]))[0] == \
        "unfinished runs: 0 running, 0 interrupted, 1 left to another sweep"

    (started / PROGRESS_FILE).unlink()
    results = run(second)  # a sweep that does not reuse sweep_a's runs trains its own
    assert results["status"] == "complete" and is_complete(started, identity)
    record = json.loads(claim_paths(first.paths.cache_dir, identity_hash(identity))[1].read_text())
    assert record == {"active": None, "runs": {"sweep_a": first.paths.output_dir, "sweep_b": str(started)}}
