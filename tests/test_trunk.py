"""Tickets made after training: the cached dense trunk, rewinding, LR restart, and their sanity checks."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_cfg, lock_held_by_another_process

from jackpot.models import build_model
from jackpot.pruning import Masks, prunable_weights
from jackpot.runs.atomic_io import torch_load_safe
from jackpot.runs.results import PROGRESS_FILE, read_progress
from jackpot.runs.trunk import TrunkCache, trunk_hash
from jackpot.ticket import TicketRecipe, build_ticket
from jackpot.train import _waiting_notice, run

TRAINED = ["pruner.pretrain_epochs=2", "schedule.epochs=1", "schedule.milestones=[]"]


def _cfg(tmp_path: Path, cifar_root: Path, *overrides: str):
    cfg = compose_cfg(tmp_path, [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
                                 "dataset.download=false", *TRAINED, *overrides])
    cfg.paths.cache_dir = str(tmp_path.parent / "trunks")  # shared by the runs of one test
    return cfg


def test_trunk_is_trained_once_and_reused_across_methods(tmp_path, cifar_root):
    first = run(_cfg(tmp_path / "lottery", cifar_root, "pruner=lottery", "ratio=0.8"))
    assert first["trunk"]["reused"] is False
    started = time.time()
    second = run(_cfg(tmp_path / "lrr", cifar_root, "pruner=lr_rewinding", "ratio=0.8"))
    assert second["trunk"] == {**first["trunk"], "reused": True}
    third = run(_cfg(tmp_path / "hybrid", cifar_root, "pruner=hybrid", "ratio=0.8"))
    assert third["trunk"]["reused"] and third["trunk"]["hash"] == first["trunk"]["hash"]
    assert time.time() - started < 600
    # lottery and LR rewinding share the mask (conv-only magnitude on the same trained weights)
    assert [la["kept"] for la in first["layers"]] == [lb["kept"] for lb in second["layers"]]
    # the classifier stays dense
    assert first["layers"][-1]["kept"] == first["layers"][-1]["total"]


def test_other_seed_or_data_check_gets_its_own_trunk(tmp_path, cifar_root):
    base = run(_cfg(tmp_path / "a", cifar_root, "pruner=lottery", "ratio=0.5", "schedule.epochs=0"))
    other_seed = run(_cfg(tmp_path / "b", cifar_root, "pruner=lottery", "ratio=0.5", "schedule.epochs=0", "seed=1"))
    half = run(_cfg(tmp_path / "c", cifar_root, "pruner=lottery", "ratio=0.5", "schedule.epochs=0",
                    "sanity_check=half_dataset"))
    hashes = {base["trunk"]["hash"], other_seed["trunk"]["hash"], half["trunk"]["hash"]}
    assert len(hashes) == 3
    assert not other_seed["trunk"]["reused"] and not half["trunk"]["reused"]


def test_learning_rate_restarts_after_pruning(tmp_path, cifar_root):
    results = run(_cfg(tmp_path, cifar_root, "pruner=lr_rewinding", "ratio=0.5", "pruner.pretrain_epochs=3",
                       "schedule.epochs=3", "schedule.milestones=[1,2]"))
    lrs = [entry["lr"] for entry in results["history"]]
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.005)


@pytest.mark.parametrize("check", ["layerwise_shuffle", "reinit", "random_labels", "random_pixels_labels",
                                   "half_dataset", "layerwise_rearrange"])
def test_checks_on_trained_tickets_run(tmp_path, cifar_root, check):
    results = run(_cfg(tmp_path, cifar_root, "pruner=lr_rewinding", "ratio=0.7", f"sanity_check={check}"))
    assert results["status"] == "complete" and results["cell"]["sanity_check"] == check


def test_obd_runs_end_to_end(tmp_path, cifar_root):
    results = run(_cfg(tmp_path, cifar_root, "pruner=obd", "ratio=0.7", "pruner.options.probes=2"))
    assert results["status"] == "complete"
    assert abs(results["kept"] - int(results["total"] * 0.3)) <= 1


def test_lottery_ticket_is_the_stored_init_under_the_mask_bit_for_bit():
    torch.manual_seed(3)
    model = build_model("resnet8", 10)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    trained = {k: v + torch.randn_like(v) if v.is_floating_point() else v for k, v in init.items()}
    masks = build_ticket(model, TicketRecipe("lottery", 0.8, ticket_weights="init"), init_state=init,
                         trained_state=trained)
    for name, weight in prunable_weights(model):
        assert torch.equal(weight.detach(), init[name] * masks[name])
    bn = "bn1.weight" if "bn1.weight" in init else next(k for k in init if "bn" in k)
    assert torch.equal(model.state_dict()[bn], init[bn])
    # LR rewinding starts from the trained values instead
    model_lrr = build_model("resnet8", 10)
    masks_lrr = build_ticket(model_lrr, TicketRecipe("lr_rewinding", 0.8, ticket_weights="trained"),
                             init_state=init, trained_state=trained)
    assert masks_lrr.equal(masks)
    name, weight = prunable_weights(model_lrr)[1]
    assert torch.equal(weight.detach(), trained[name] * masks[name])


def _race(cache_dir: str, log: str, barrier) -> None:
    def train(work: Path):
        with open(log, "a") as handle:
            handle.write("trained\n")
        time.sleep(1.0)
        state = {"w": torch.ones(3)}
        return state, state

    barrier.wait()
    trunk = TrunkCache(cache_dir).obtain({"seed": 0, "model": "x"}, train)
    assert torch.equal(trunk.trained_state["w"], torch.ones(3))


def test_two_processes_racing_for_one_trunk_train_it_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(3)
    log = tmp_path / "log.txt"
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "cache"), str(log), barrier)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert log.read_text().count("trained") == 1
    assert trunk_hash({"seed": 0, "model": "x"}) != trunk_hash({"seed": 1, "model": "x"})


def test_iterative_magnitude_pruning_reaches_the_ratio_over_rounds(tmp_path, cifar_root):
    results = run(_cfg(tmp_path / "imp", cifar_root, "pruner=lottery", "ratio=0.75", "pruner.rounds=2"))
    assert results["rounds"] == 2 and results["status"] == "complete"
    conv_total = sum(la["total"] for la in results["layers"][:-1])
    conv_kept = sum(la["kept"] for la in results["layers"][:-1])
    assert results["layers"][-1]["kept"] == results["layers"][-1]["total"]  # classifier dense
    # each round removes 1 - sqrt(0.25) = 50 % of what remains (counted over all layers, taken from convs)
    assert abs(results["kept"] - 0.25 * results["total"]) <= 0.01 * results["total"] + 2
    assert conv_kept < conv_total
    one_round = run(_cfg(tmp_path / "oneshot", cifar_root, "pruner=lottery", "ratio=0.75"))
    assert one_round["trunk"]["hash"] == results["trunk"]["hash"] and one_round["trunk"]["reused"]
    assert not Masks.load(tmp_path / "imp" / "run" / "masks.pt").equal(
        Masks.load(tmp_path / "oneshot" / "run" / "masks.pt"))


def test_imp_rounds_are_shared_only_by_runs_whose_rounds_are_the_same(tmp_path, cifar_root):
    """An intermediate round depends on the per-round ratio (so on `ratio`), and not on the final sanity check:
    ratio=0.5 after ratio=0.75 (same trunk, same cache) must prune as it does alone, and a layerwise_rearrange
    run must reuse the plain run's rounds and rearrange only its own final mask."""
    imp = ["pruner=lottery", "pruner.rounds=2", "schedule.epochs=0"]
    run(_cfg(tmp_path / "r75", cifar_root, *imp, "ratio=0.75"))
    after = run(_cfg(tmp_path / "r50", cifar_root, *imp, "ratio=0.5"))
    alone_cfg = _cfg(tmp_path / "alone" / "r50", cifar_root, *imp, "ratio=0.5")
    alone = run(alone_cfg)
    assert alone["trunk"]["reused"] is False  # its own cache: nothing shared with the 0.75 chain
    assert [la["kept"] for la in after["layers"]] == [la["kept"] for la in alone["layers"]]
    assert Masks.load(tmp_path / "r50" / "run" / "masks.pt").equal(
        Masks.load(tmp_path / "alone" / "r50" / "run" / "masks.pt"))

    rounds_before = sorted(p.parent.name for p in (tmp_path.parent / "trunks").rglob("trunk.pt"))
    rearranged = run(_cfg(tmp_path / "rearranged", cifar_root, *imp, "ratio=0.5",
                          "sanity_check=layerwise_rearrange"))
    assert sorted(p.parent.name for p in (tmp_path.parent / "trunks").rglob("trunk.pt")) == rounds_before
    plain = Masks.load(tmp_path / "r50" / "run" / "masks.pt")
    moved = Masks.load(tmp_path / "rearranged" / "run" / "masks.pt")
    assert [la["kept"] for la in rearranged["layers"]] == [la["kept"] for la in after["layers"]]
    assert not moved.equal(plain)  # the final mask is rearranged within each layer, same counts
    # ... and the check does not enter the rounds: run alone, it caches the plain run's round 1
    run(_cfg(tmp_path / "fresh" / "rearranged", cifar_root, *imp, "ratio=0.5", "sanity_check=layerwise_rearrange"))
    assert _round_masks(tmp_path / "fresh" / "trunks").equal(_round_masks(tmp_path / "alone" / "trunks"))


def _round_masks(cache_dir: Path) -> Masks:
    """The masks of the one cached IMP round in `cache_dir`."""
    (spec,) = [p for p in cache_dir.glob("*/spec.json") if '"imp"' in p.read_text()]
    return Masks(torch_load_safe(spec.parent / "trunk.pt")["masks"])


def test_imp_rounds_retrain_on_the_data_checks_data_and_the_ticket_on_clean_data(tmp_path, cifar_root, monkeypatch):
    """A round's retraining decides the next mask, so under a data check it sees the corrupted data, as the
    trunk does; the run's own ticket trains on clean data."""
    import inspect

    import jackpot.train as train_module

    calls: list[tuple[str, str | None]] = []  # (the function that asked for the data, its corruption)
    make = train_module.make_datamodule

    def recording(cfg, corruption):
        calls.append((inspect.stack()[1].function, corruption))
        return make(cfg, corruption)

    monkeypatch.setattr(train_module, "make_datamodule", recording)
    results = run(_cfg(tmp_path / "imp", cifar_root, "pruner=lottery", "pruner.rounds=2", "ratio=0.75",
                       "sanity_check=random_labels"))  # its own trunk cache: tmp_path / "trunks"
    assert results["status"] == "complete"
    assert calls == [("_run_cell", None),  # the ticket's training and test data
                     ("train_trunk", "random_labels"), ("train_round", "random_labels"),
                     ("_run_cell", "random_labels")]  # the scoring data (unused by magnitude pruning)


def test_a_job_waiting_for_a_trunk_another_process_trains_says_so(tmp_path, caplog):
    """`on_wait` runs once, before the wait, only when another process holds the trunk; the run's notice goes to
    the log and to its progress file, which `jackpot-tables` shows."""
    cache, spec = TrunkCache(tmp_path / "cache"), {"seed": 0, "model": "x"}
    folder = cache.folder(trunk_hash(spec))
    state = {"w": torch.ones(2)}
    waited: list = []  # the folder on_wait was told, then the trunk obtain returned
    waiting = threading.Event()

    def on_wait(where: Path) -> None:
        waited.append(where)
        waiting.set()

    with lock_held_by_another_process(folder / "trunk.lock"):
        reader = threading.Thread(target=lambda: waited.append(cache.obtain(spec, lambda work: (state, state),
                                                                             on_wait=on_wait)))
        reader.start()
        assert waiting.wait(30) and reader.is_alive()  # told, and still waiting while the holder lives
    reader.join(30)
    assert waited[0] == folder and waited[1].reused is False  # the holder died without a trunk: it trains it
    again: list[Path] = []
    assert cache.obtain(spec, lambda work: (state, state), on_wait=again.append).reused and again == []

    progress = tmp_path / "cell" / PROGRESS_FILE
    progress.parent.mkdir()
    with caplog.at_level(logging.INFO, logger="jackpot.train"):
        _waiting_notice(progress, "dense trunk")(folder)
    assert f"jackpot: waiting for the dense trunk that another job is training ({folder})" in caplog.text
    assert read_progress(progress.parent) == "waiting for the dense trunk another job trains"


def test_a_trunk_on_a_file_system_without_flock_is_trained_unguarded_with_a_warning(tmp_path, monkeypatch):
    import errno

    from jackpot.runs import file_lock

    def no_flock(fd, mode):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(file_lock.fcntl, "flock", no_flock)
    state = {"w": torch.ones(2)}
    with pytest.warns(RuntimeWarning, match="no flock; this trunk's training is not guarded"):
        trunk = TrunkCache(tmp_path).obtain({"seed": 0}, lambda work: (state, state))
    assert trunk.reused is False and torch.equal(trunk.trained_state["w"], state["w"])
