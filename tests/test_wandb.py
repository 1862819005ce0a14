"""wandb offline: one run per job, grouped by sweep, named by cell, flat table axes, same run after a resume."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import TINY, train_py
from wandb_records import logged_epochs, run_summary

TINY_DIGITS = [*TINY, "dataset=digits", "schedule.epochs=2", "schedule.milestones=[1]", "logger=wandb",
               "name=wandb_sweep", "pruner=random"]


def _train_py(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    return train_py(args, fault=fault, env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"}, timeout=600)


def _runs(job_dir: Path) -> list[dict]:
    return [run_summary(p) for p in sorted(job_dir.glob("wandb/offline-run-*/run-*.wandb"))]


def test_offline_multirun_writes_one_grouped_run_per_job(tmp_path):
    proc = _train_py(["-m", *TINY_DIGITS, "ratio=0.5,0.9", f"paths.root_dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    job_dirs = sorted(p.parent for p in (tmp_path / "outputs").rglob("results.json"))
    assert len(job_dirs) == 2
    for job_dir in job_dirs:
        (run,) = _runs(job_dir)
        cell = json.loads((job_dir / "results.json").read_text())["cell"]
        assert run["group"] == "wandb_sweep" and run["job_type"] == "ticket"
        assert run["name"] == f"resnet8-digits-random-none-r{cell['ratio']}-s0"
        for key in ("model", "dataset", "pruner", "sanity_check", "ratio", "seed"):
            assert json.loads(run["config"][key]) == cell[key]
        assert "final_acc" in run["summary"] and run["exit_code"] == 0


def test_a_resumed_job_continues_the_same_wandb_run(tmp_path):
    args = [*TINY_DIGITS, "ratio=0.5", f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/job"]
    killed = _train_py(args, fault="step:3")  # mid-way through the second epoch
    assert killed.returncode == -9
    assert _train_py(args).returncode == 0
    run_dirs = sorted((tmp_path / "job").glob("wandb/offline-run-*"))
    assert len(run_dirs) == 2  # the killed attempt and the resumed one, one wandb run id
    assert len({d.name.rsplit("-", 1)[1] for d in run_dirs}) == 1
    assert _runs(tmp_path / "job")[-1]["id"] == run_dirs[0].name.rsplit("-", 1)[1]
    assert json.loads((tmp_path / "job" / "results.json").read_text())["resumed"] is True


def test_a_job_resumed_from_an_older_checkpoint_logs_every_epoch_it_trains_again(tmp_path):
    """Checkpoints come at most once per `trainer.checkpoint_interval_s` (here an hour: only after the last
    epoch), so a job killed in its third epoch trains all three again, and logs all three into the same wandb
    run: a SIGKILLed offline run's own records never reach its file, so skipping epochs would lose them."""
    args = [*TINY_DIGITS, "ratio=0.5", "schedule.epochs=3", "schedule.milestones=[2]",
            "trainer.checkpoint_interval_s=3600", f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/job"]
    killed = _train_py(args, fault="step:5")  # 2 steps per epoch: step 5 is in the third
    assert killed.returncode == -9
    assert _train_py(args).returncode == 0
    files = sorted((tmp_path / "job").glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2 and len({f.name for f in files}) == 1  # one wandb run id
    # the density row at the start, then each epoch's test and training rows
    assert logged_epochs(files[-1]) == [0, 0, 0, 1, 1, 2, 2]
    assert [e["epoch"] for e in json.loads((tmp_path / "job" / "results.json").read_text())["history"]] == [0, 1, 2]


def test_an_empty_stored_wandb_id_is_replaced_not_reused(tmp_path):
    """A kill between creating wandb_id.txt and filling it used to leave an empty id, and every resume then
    started a new wandb run; the id is written atomically, and an empty file counts as none."""
    from jackpot.lightning.loggers import _wandb_id

    (tmp_path / "wandb_id.txt").write_text("")
    run_id = _wandb_id(tmp_path)
    assert len(run_id) == 8 and (tmp_path / "wandb_id.txt").read_text() == run_id
    assert _wandb_id(tmp_path) == run_id


def test_runs_of_a_pack_side_by_side_each_log_their_own_wandb_run(tmp_path):
    """Two runs in one process at once (hydra.sweeper.pack): wandb's global run would be one of them; each logs
    to its own, with its own name, config and summary."""
    proc = _train_py(["-m", *TINY_DIGITS, "ratio=0.5,0.9", f"paths.root_dir={tmp_path}", "hydra.sweeper.pack=2",
                      "hydra.sweeper.pack_side_by_side=true"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "a pack of 2 runs in this process, side by side" in proc.stdout
    job_dirs = sorted(p.parent for p in (tmp_path / "outputs").rglob("results.json"))
    assert len(job_dirs) == 2
    ids = set()
    for job_dir in job_dirs:
        (run,) = _runs(job_dir)
        results = json.loads((job_dir / "results.json").read_text())
        assert run["name"] == f"resnet8-digits-random-none-r{results['cell']['ratio']}-s0"
        assert json.loads(run["config"]["ratio"]) == results["cell"]["ratio"]
        assert json.loads(run["summary"]["final_acc"]) == results["final_acc"] and run["exit_code"] == 0
        ids.add(run["id"])
    assert len(ids) == 2
