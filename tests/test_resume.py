"""Fault injection: a run SIGKILLed at random points and rerun ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import torch
from conftest import TINY, compose_cfg, train_py

from jackpot.pruning import Masks
from jackpot.runs.atomic_io import torch_load_safe
from jackpot.train import run

CELL = ["pruner=lr_rewinding", "ratio=0.8", "pruner.pretrain_epochs=2", "schedule.epochs=2",
        "schedule.milestones=[1]", "trainer.limit_train_batches=3"]


def _overrides(cifar_root: Path) -> list[str]:
    return [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", "dataset.download=false", *CELL]


def _train_py(args: list[str], fault: str | None) -> subprocess.CompletedProcess:
    return train_py(args, fault=fault)


def _final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch_load_safe(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, cifar_root):
    """Kills alternate between inline checkpoint writes and `background` ones (the GPU default: written by a
    thread, so a kill there lands mid-write in that thread); each resume also switches the mode, which is a speed
    knob only (run_identity.SPEED_ONLY), so the cell resumes across it."""
    reference = run(compose_cfg(tmp_path / "ref", _overrides(cifar_root)))
    ref_dir = tmp_path / "ref" / "run"

    # Random kill points over the whole life of a run (steps: 2 trunk epochs + 2 ticket epochs of 3 steps).
    rng = random.Random(20201)
    # The last kill lands in the ticket's second epoch, so the final rerun must resume from a checkpoint.
    plan = ["score:1", f"step:{rng.randint(1, 5)}", "trunk:1", f"write:{rng.randint(1, 3)}",
            f"write:{rng.randint(1, 3)}", "step:4"]
    out = tmp_path / "killed"
    args = [*_overrides(cifar_root), f"paths.root_dir={out}", f"hydra.run.dir={out}/run"]
    modes = ["inline", "background"]
    kills = 0
    for attempt, fault in enumerate(plan):
        proc = _train_py([*args, f"trainer.checkpoint_writes={modes[attempt % 2]}"], fault)
        if proc.returncode == -9:
            kills += 1
        else:  # the run finished before reaching the point: nothing more to kill
            assert proc.returncode == 0, proc.stderr[-2000:]
            break
    assert kills >= 4, f"only {kills} of the planned kills happened"
    final = _train_py([*args, f"trainer.checkpoint_writes={modes[len(plan) % 2]}"], None)
    assert final.returncode == 0, final.stderr[-2000:]

    resumed = json.loads((out / "run" / "results.json").read_text())
    assert resumed["status"] == "complete" and resumed["resumed"] is True
    assert resumed["final_acc"] == reference["final_acc"] and resumed["best_acc"] == reference["best_acc"]
    assert resumed["history"] == reference["history"]
    assert Masks.load(out / "run" / "masks.pt").equal(Masks.load(ref_dir / "masks.pt"))
    ref_state, got_state = _final_state(ref_dir), _final_state(out / "run")
    assert ref_state.keys() == got_state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], got_state[key]), key


def test_a_run_resumed_with_loader_workers_replays_the_resumed_epochs_own_order(tmp_path, cifar_root):
    """With worker processes, a DataLoader draws its first indices when its iterator is made, and on a resume
    Lightning makes that iterator before any epoch-start hook runs: the resumed epoch must still get its own
    shuffle and augmentation, not epoch 0's (dataset.num_workers is a speed knob: it must not change results).
    The resumed run takes its masks from the checkpoint, without scoring the ticket again."""
    cell = [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", "dataset.download=false",
            "dataset.loader=torch", "dataset.num_workers=1", "pruner=smart_ratio", "ratio=0.8",
            "schedule.epochs=3", "schedule.milestones=[2]", "trainer.limit_train_batches=3"]
    reference = run(compose_cfg(tmp_path / "ref", cell))
    out = tmp_path / "killed"
    args = [*cell, f"paths.root_dir={out}", f"hydra.run.dir={out}/run"]
    killed = _train_py(args, "step:8")  # the third epoch's second step: resumes from epoch 2's checkpoint
    assert killed.returncode == -9, killed.stderr[-2000:]
    final = _train_py(args, "score:1")  # the rerun restores the masks from the checkpoint: scoring again dies
    assert final.returncode == 0, final.stderr[-2000:]
    resumed = json.loads((out / "run" / "results.json").read_text())
    assert resumed["resumed"] is True and resumed["history"] == reference["history"]
    ref_state, got_state = _final_state(tmp_path / "ref" / "run"), _final_state(out / "run")
    assert all(torch.equal(ref_state[key], got_state[key]) for key in ref_state)


def test_a_write_killed_midway_leaves_no_temp_file_once_the_cell_reruns(tmp_path, cifar_root):
    """A SIGKILL between an atomic write's temp file and its rename leaves the temp file (for a VGG19 checkpoint,
    160 MB); the cell's next run, holding its lock, clears them before it writes anything."""
    out = tmp_path / "killed"
    args = [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false", "dataset.download=false",
            "pruner=smart_ratio", "ratio=0.8", "schedule.epochs=1", "schedule.milestones=[]",
            f"paths.root_dir={out}", f"hydra.run.dir={out}/run"]
    killed = _train_py(args, "write:2")  # the run's claim record, then its stored config: killed before the rename
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [p.name.split(".")[1] for p in (out / "run").glob(".*.tmp")] == ["run_config"]
    final = _train_py(args, None)
    assert final.returncode == 0, final.stderr[-2000:]
    assert not list((out / "run").rglob(".*.tmp")) and (out / "run" / "results.json").exists()
