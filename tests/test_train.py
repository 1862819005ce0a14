"""End to end through the real configs: a ticket per pruner and per check, on generated CIFAR-format data."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_cfg, lock_held_by_another_process, start_train_py, train_py

from jackpot import tables
from jackpot.config import ConfigError
from jackpot.models import build_model
from jackpot.pruning import Masks, prunable_weights
from jackpot.pruning.budget import smart_ratio_counts
from jackpot.runs.atomic_io import torch_load_safe
from jackpot.runs.cache_keys import trunk_spec
from jackpot.runs.cell_lock import LOCK_FILE, CellBusy
from jackpot.runs.results import PROGRESS_FILE, read_progress
from jackpot.runs.trunk import trunk_hash
from jackpot.train import run


def _cfg(tmp_path: Path, cifar_root: Path, *overrides: str):
    return compose_cfg(tmp_path, [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
                                  "dataset.download=false", *overrides])


def _final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    state = torch_load_safe(output_dir / "checkpoints" / "last.ckpt")["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items()}


def test_random_ticket_trains_with_exact_smart_ratio_counts_and_zeros(tmp_path, cifar_root):
    results = run(_cfg(tmp_path, cifar_root, "pruner=smart_ratio", "ratio=0.9"))
    assert results["status"] == "complete"
    model = build_model("resnet8", 10)
    sizes = [w.numel() for _, w in prunable_weights(model)]
    expected = smart_ratio_counts(sizes, 0.9, vgg_depth_factor=False, linear_keep_ratio=0.3)
    assert [layer["kept"] for layer in results["layers"]] == expected
    assert [layer["name"] for layer in results["layers"]] == [n for n, _ in prunable_weights(model)]
    masks = Masks.load(tmp_path / "run" / "masks.pt")
    weights = _final_weights(tmp_path / "run")
    for name, mask in masks.items():
        assert torch.count_nonzero(weights[name][~mask]) == 0
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["cell"] == {"model": "resnet8", "dataset": "cifar10", "pruner": "smart_ratio",
                               "sanity_check": "none", "ratio": 0.9, "seed": 0}
    assert 0.0 <= on_disk["final_acc"] <= 100.0 and on_disk["best_acc"] >= on_disk["final_acc"]
    runtime = on_disk["runtime"]  # what `auto` resolved to on this CPU
    assert runtime["device"].startswith("cpu: ") and (runtime["precision"], runtime["loader"]) == ("32-true", "torch")
    assert (runtime["compiled"], runtime["steps_per_call"], runtime["step"]) == (False, 8, "eager")
    timed = runtime["epochs_timed"]  # both epochs, in order, inside the run's own start and end
    assert timed["first_epoch"] == 0 and len(timed["ended_at"]) == 2
    assert on_disk["started_at"] <= timed["started_at"] <= timed["ended_at"][0] <= timed["ended_at"][1]
    assert timed["ended_at"][1] <= on_disk["finished_at"]
    # each epoch's training, evaluation and the rest (checkpoint, progress file): all of it, nothing twice. The
    # epoch's parts are perf_counter intervals and its ends wall-clock readings taken microseconds apart, rounded
    # to 1 ms: 10 ms covers both.
    (first, second) = timed["split_s"]
    assert all(part >= 0 for part in (*first, *second)) and first[1] > 0 and second[1] > 0
    assert sum(second) == pytest.approx(timed["ended_at"][1] - timed["ended_at"][0], abs=0.01)
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert (progress["stage"], progress["epoch"], progress["epochs"]) == ("ticket", 2, 2)


@pytest.mark.parametrize("pruner", ["snip", "grasp", "random"])
def test_global_pruners_reach_their_budget(tmp_path, cifar_root, pruner):
    results = run(_cfg(tmp_path, cifar_root, f"pruner={pruner}", "ratio=0.8", "schedule.epochs=1",
                       "schedule.milestones=[]"))
    total = results["total"]
    assert results["status"] == "complete"
    assert abs(results["kept"] - int(total * 0.2)) <= len(results["layers"]) + 1


def test_epochs_zero_builds_and_evaluates_without_training(tmp_path, cifar_root):
    results = run(_cfg(tmp_path, cifar_root, "pruner=snip", "ratio=0.5", "schedule.epochs=0",
                       "schedule.milestones=[]"))
    assert results["epochs"] == 0 and results["history"][0]["epoch"] == 0
    assert results["runtime"]["step"] == "none in this process"
    assert results["final_acc"] == results["best_acc"]
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert Masks.load(tmp_path / "run" / "masks.pt").kept() == results["kept"]


def test_a_run_resumed_after_its_last_epoch_says_it_ran_no_step(tmp_path, cifar_root):
    """Killed between its last checkpoint and its results file, a rerun trains nothing: results.json must not
    claim a step kind this process never ran (a GPU run would otherwise say "eager" for recorded steps)."""
    cfg = _cfg(tmp_path, cifar_root, "pruner=random", "ratio=0.5", "schedule.epochs=1", "schedule.milestones=[]")
    first = run(cfg)
    assert first["runtime"]["step"] == "eager"
    (tmp_path / "run" / "results.json").unlink()
    again = run(cfg)
    assert again["resumed"] and again["final_acc"] == first["final_acc"]
    assert again["runtime"]["step"] == "none in this process"
    assert again["runtime"]["epochs_timed"] is None and len(first["runtime"]["epochs_timed"]["ended_at"]) == 1
    # the first process made the ticket; the rerun took it from the checkpoint
    assert first["runtime"]["ticket_s"] >= 0 and again["runtime"]["ticket_s"] is None


def test_rerun_of_a_complete_cell_is_skipped(tmp_path, cifar_root):
    cfg = _cfg(tmp_path, cifar_root, "pruner=random", "ratio=0.5", "schedule.epochs=1", "schedule.milestones=[]")
    first = run(cfg)
    second = run(cfg)
    assert second["skipped"] and second["final_acc"] == first["final_acc"]
    # Speed-only settings are not part of a cell's identity: a finished sweep stays finished when they change.
    faster = _cfg(tmp_path, cifar_root, "pruner=random", "ratio=0.5", "schedule.epochs=1", "schedule.milestones=[]",
                  "trainer.cuda_graph=false", "trainer.enable_progress_bar=true",
                  "trainer.checkpoint_writes=background", "trainer.steps_per_call=1",
                  "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_epochs=2",
                  "dataset.eval_batch_size=7", "dataset.num_workers=1")
    assert run(faster)["skipped"]


def test_rerun_of_another_config_into_the_same_dir_is_refused_naming_what_changed(tmp_path, cifar_root):
    common = ("pruner=random", "ratio=0.5", "schedule.epochs=1", "schedule.milestones=[]")
    run(_cfg(tmp_path, cifar_root, *common))
    stored = (tmp_path / "run" / "results.json").read_bytes()
    with pytest.raises(ConfigError) as caught:
        run(_cfg(tmp_path, cifar_root, *common, "schedule.lr=0.07", "dataset.hflip=false"))
    message = str(caught.value)
    assert f"output dir {tmp_path / 'run'} holds a run of another config" in message
    assert "dataset.hflip: true -> false" in message and "-> 0.07" in message and "name=..." in message
    assert (tmp_path / "run" / "results.json").read_bytes() == stored


def test_a_finished_run_is_recognised_by_its_stored_config_not_by_a_stored_hash(tmp_path, cifar_root):
    # Runs written before a change to the hash rules (or by another jackpot version) must stay finished.
    cfg = _cfg(tmp_path, cifar_root, "pruner=random", "ratio=0.5", "schedule.epochs=1", "schedule.milestones=[]")
    run(cfg)
    for name in ("results.json", "run_config.json"):
        path = tmp_path / "run" / name
        path.write_text(path.read_text().replace(json.loads(path.read_text())["config_hash"], "0" * 16))
    assert run(cfg)["skipped"]


def test_a_cell_another_process_runs_is_skipped_until_that_process_is_gone(tmp_path, cifar_root):
    # A second launch of a sweep must not train into a dir a live job is using; a killed job frees its cells.
    cfg = _cfg(tmp_path, cifar_root, "pruner=random", "ratio=0.5", "schedule.epochs=1", "schedule.milestones=[]")
    lock_path = tmp_path / "run" / LOCK_FILE
    with lock_held_by_another_process(lock_path):
        with pytest.raises(CellBusy, match=f"another process is running this cell in {tmp_path / 'run'}"):
            run(cfg)
        assert sorted(p.name for p in lock_path.parent.iterdir()) == [LOCK_FILE]  # nothing written
    assert run(cfg)["status"] == "complete"


def test_cli_skips_a_busy_cell_with_one_line_and_success(tmp_path):
    cell = tmp_path / "outputs" / "default" / "resnet8-digits" / "smart_ratio-none-r0.5-s0"
    with lock_held_by_another_process(cell / LOCK_FILE):
        proc = train_py(["dataset=digits", "model=resnet8", "trainer=cpu", "ratio=0.5", "schedule.epochs=0",
                         "schedule.milestones=[]", f"paths.root_dir={tmp_path}"], cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"jackpot: another process is running this cell in {cell}; skipped here" in proc.stderr
    assert "Traceback" not in proc.stderr and not (cell / "results.json").exists()


def test_an_interrupted_run_shows_its_stage_and_epoch_in_jackpot_tables(tmp_path, cifar_root, capsys):
    args = [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", "dataset.download=false",
            "pruner=lr_rewinding", "ratio=0.5", "name=watch", f"paths.root_dir={tmp_path}"]
    proc = train_py(args, cwd=tmp_path, fault="trunk:1", timeout=300)  # SIGKILLed once the dense trunk is trained
    assert proc.returncode != 0
    (run_dir,) = [marker.parent for marker in (tmp_path / "outputs").rglob("run_config.json")]
    progress = json.loads((run_dir / "progress.json").read_text())
    assert (progress["stage"], progress["epoch"], progress["epochs"]) == ("dense trunk", 2, 2)
    assert tables.main([str(tmp_path / "outputs"), "--format", "rich"]) == 1  # no results yet
    out = capsys.readouterr().out
    assert f"  interrupted {run_dir}  (dense trunk epoch 2/2, last written " in out


def test_a_job_waiting_for_its_trunk_says_so_in_the_log_and_in_jackpot_tables(tmp_path, cifar_root, capsys):
    args = [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", "dataset.download=false",
            "pruner=lr_rewinding", "ratio=0.5", "name=watch", f"paths.root_dir={tmp_path}"]
    cfg = compose_cfg(tmp_path, args)
    trunk_dir = Path(cfg.paths.cache_dir) / trunk_hash(trunk_spec(cfg))
    with lock_held_by_another_process(trunk_dir / "trunk.lock"):  # as a job training this trunk holds it
        job = start_train_py(args, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 120
            while not list((tmp_path / "outputs").rglob(PROGRESS_FILE)) and time.monotonic() < deadline:
                assert job.poll() is None, job.stdout.read()[-3000:]
                time.sleep(0.2)
            (run_dir,) = [progress.parent for progress in (tmp_path / "outputs").rglob(PROGRESS_FILE)]
            assert read_progress(run_dir) == "waiting for the dense trunk another job trains"
            assert tables.main([str(tmp_path / "outputs"), "--format", "rich"]) == 1  # no results yet
            listed = capsys.readouterr().out
            assert f"  running     {run_dir}  (waiting for the dense trunk another job trains, last written " in listed
        except BaseException:
            job.kill()
            raise
    # the holder is gone without a trunk: the job trains it itself and completes
    out, _ = job.communicate(timeout=300)
    assert job.returncode == 0, out[-3000:]
    assert f"jackpot: waiting for the dense trunk that another job is training ({trunk_dir})" in out
    assert read_progress(run_dir) == "ticket epoch 2/2"


def test_layerwise_rearrange_keeps_counts_and_moves_positions(tmp_path, cifar_root):
    common = ("pruner=snip", "ratio=0.7", "schedule.epochs=0", "schedule.milestones=[]")
    plain = run(_cfg(tmp_path / "a", cifar_root, *common))
    moved = run(_cfg(tmp_path / "b", cifar_root, *common, "sanity_check=layerwise_rearrange"))
    assert [layer["kept"] for layer in plain["layers"]] == [layer["kept"] for layer in moved["layers"]]
    a, b = Masks.load(tmp_path / "a" / "run" / "masks.pt"), Masks.load(tmp_path / "b" / "run" / "masks.pt")
    assert not a.equal(b)


def test_random_labels_change_the_snip_mask_and_not_the_training_data(tmp_path, cifar_root):
    common = ("pruner=snip", "ratio=0.7", "schedule.epochs=0", "schedule.milestones=[]")
    run(_cfg(tmp_path / "a", cifar_root, *common))
    run(_cfg(tmp_path / "b", cifar_root, *common, "sanity_check=random_labels"))
    a, b = Masks.load(tmp_path / "a" / "run" / "masks.pt"), Masks.load(tmp_path / "b" / "run" / "masks.pt")
    assert a.kept() == b.kept() and not a.equal(b)


def test_reinit_starts_from_another_init_under_the_same_mask(tmp_path, cifar_root):
    common = ("pruner=grasp", "ratio=0.7", "schedule.epochs=0", "schedule.milestones=[]")
    run(_cfg(tmp_path / "a", cifar_root, *common))
    run(_cfg(tmp_path / "b", cifar_root, *common, "sanity_check=reinit"))
    a, b = Masks.load(tmp_path / "a" / "run" / "masks.pt"), Masks.load(tmp_path / "b" / "run" / "masks.pt")
    assert a.equal(b)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["pruner=smart_ratio", "sanity_check=random_labels"], "uses no data"),
        (["pruner=snip", "sanity_check=half_dataset"], "half_dataset"),
        (["pruner=smart_ratio", "sanity_check=layerwise_rearrange"], "already random"),
        (["pruner=dense", "sanity_check=reinit"], "pruner=dense"),
        (["ratio=1.0"], "ratio=1.0"),
        (["ratio=-0.1"], "ratio=-0.1"),
        (["schedule.epochs=10", "schedule.milestones=[80,120]"], "schedule.milestones"),
        (["model.name=vgg20"], "vgg20"),
    ],
)
def test_invalid_combinations_fail_before_any_work(tmp_path, cifar_root, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        run(_cfg(tmp_path, cifar_root, *overrides))
    assert not (tmp_path / "run").exists()


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return train_py(args, cwd=cwd)


def _tiny_cli(cifar_root: Path, tmp_path: Path) -> list[str]:
    return [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", "dataset.download=false",
            f"paths.root_dir={tmp_path}", "schedule.epochs=1", "schedule.milestones=[]"]


def test_every_init_pruner_runs_through_train_py(tmp_path, cifar_root):
    proc = train_py(["-m", *_tiny_cli(cifar_root, tmp_path), "pruner=dense,snip,grasp,smart_ratio,random",
                     "ratio=0.9"], cwd=tmp_path, env={"PYTHONWARNINGS": "default"})  # warnings shown, as a user sees
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one progress line per epoch and job, printed once (through Hydra's log format); no Lightning banner
    assert (proc.stdout + proc.stderr).count(" ticket epoch 1/1: ") == 5
    assert "GPU available" not in proc.stdout + proc.stderr
    assert "dataloader_iter" not in proc.stdout + proc.stderr  # the K-step module's flavor, by design
    assert "LeafSpec" not in proc.stdout + proc.stderr  # Lightning's use of a torch API, once per job
    found = sorted((tmp_path / "outputs").rglob("results.json"))
    pruners = sorted(json.loads(p.read_text())["cell"]["pruner"] for p in found)
    assert pruners == ["dense", "grasp", "random", "smart_ratio", "snip"]
    assert all(json.loads(p.read_text())["status"] == "complete" for p in found)
    # the process's way to its first run, which every job it ran reports (Hydra's basic launcher: one process)
    marks = [json.loads(p.read_text())["runtime"]["process"] for p in found]
    assert all(m == marks[0] for m in marks) and list(marks[0]) == ["main_at", "validated_at", "imported_at"]
    first_run = min(json.loads(p.read_text())["started_at"] for p in found)
    assert marks[0]["main_at"] <= marks[0]["validated_at"] <= marks[0]["imported_at"] <= first_run


def test_every_init_check_runs_through_train_py(tmp_path, cifar_root):
    checks = "none,random_labels,random_pixels,random_pixels_labels,layerwise_rearrange,reinit"
    proc = _cli(["-m", *_tiny_cli(cifar_root, tmp_path), "pruner=snip", f"sanity_check={checks}", "ratio=0.9",
                 "dataset=cifar100"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = sorted((tmp_path / "outputs").rglob("results.json"))
    assert len(found) == 6
    assert {json.loads(p.read_text())["cell"]["dataset"] for p in found} == {"cifar100"}


def test_cli_bad_input_is_one_clear_line(tmp_path, cifar_root):
    proc = _cli([*_tiny_cli(cifar_root, tmp_path), "pruner=smart_ratio", "sanity_check=random_labels"], tmp_path)
    assert proc.returncode == 2
    assert "config error" in proc.stderr and "Traceback" not in proc.stderr


def test_several_steps_per_call_train_the_same_run(tmp_path, cifar_root):
    """trainer.steps_per_call=3 (5 batches per epoch: calls of 3 and 2) gives the one-step run bit for bit."""
    common = ["pruner=smart_ratio", "ratio=0.9", "trainer.limit_train_batches=5"]
    one = run(_cfg(tmp_path / "a", cifar_root, *common))
    three = run(_cfg(tmp_path / "b", cifar_root, *common, "trainer.steps_per_call=3"))
    assert [h["train/loss"] for h in three["history"]] == [h["train/loss"] for h in one["history"]]
    assert three["final_acc"] == one["final_acc"]
    weights_one, weights_three = _final_weights(tmp_path / "a" / "run"), _final_weights(tmp_path / "b" / "run")
    for name, value in weights_one.items():
        assert torch.equal(weights_three[name], value), name
