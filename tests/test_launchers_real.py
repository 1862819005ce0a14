"""The cluster launchers against real clusters: a Ray head and a one-node SLURM cluster, each started on loopback
by its test (tests/clusters.py) and stopped at its end. CPU jobs, tiny runs on the embedded digits dataset.

Slow (each 40-90 s on 2 busy cores, the cluster's start included): `make test-full`, after `make clusters`;
skipped, saying what is missing, where the cluster software is not installed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from clusters import SLURM_PROGRAMS, missing_programs, ray_head, ray_program, slurm_cluster
from conftest import train_py

pytestmark = pytest.mark.slow

# 2 jobs, one epoch of two batches each; sweep=quickstart trains on the CPU (trainer=cpu)
SWEEP = ["sweep=quickstart", "pruner=smart_ratio", "ratio=0.9", "seed=0,1", "schedule.epochs=1",
         "schedule.milestones=[]", "trainer.limit_train_batches=2", "dataset.samples_per_class=2"]
CELLS = ["smart_ratio-none-r0.9-s0", "smart_ratio-none-r0.9-s1"]


def sweep(tmp_path: Path, *overrides: str, env: dict[str, str], expect: int = 0):
    proc = train_py(["-m", *SWEEP, *overrides], cwd=tmp_path, env=env, timeout=600)
    printed = proc.stdout + proc.stderr
    assert proc.returncode == expect, printed[-6000:]
    return printed


def completed_cells(tmp_path: Path) -> dict[str, dict]:
    found = {path.parent.name: json.loads(path.read_text())
             for path in (tmp_path / "outputs" / "quickstart").rglob("results.json")}
    assert sorted(found) == CELLS
    assert all(result["status"] == "complete" for result in found.values())
    return found


def wait_for_states(slurm, expected: list[str], timeout: float = 60.0) -> list[str]:
    """sacct's `JobID|State` of every job, once it equals `expected` (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        states = sorted(slurm.run("sacct", "-X", "--noheader", "--parsable2", "--format=JobID,State").stdout.split())
        if states == expected or time.monotonic() > deadline:
            assert states == expected
            return states
        time.sleep(1)


def test_ray_cluster_launcher_runs_a_cpu_sweep_on_a_running_cluster(tmp_path):
    """hydra/launcher=ray_cluster as documented (no GPU override: trainer=cpu asks for none, and a GPU request
    would never be scheduled on this GPU-less head), then a rerun that launches nothing."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]'")
    if ray_program() is None:
        pytest.skip("no `ray` command in this venv: pip install -e '.[ray]'")
    started = time.monotonic()
    with ray_head(num_cpus=2) as env:
        printed = sweep(tmp_path, "hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_cpus=1", env=env)
        assert "Ray Launcher is launching 2 jobs" in printed
        assert f"Creating a file package for local module '{tmp_path}'" in printed  # working_dir: the launch folder
        completed_cells(tmp_path)
        again = sweep(tmp_path, "hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_cpus=1", env=env)
        assert "jackpot: all 2 jobs already complete, nothing launched" in again
    print(f"ray cluster sweep: {time.monotonic() - started:.0f} s")


def test_slurm_launcher_refuses_jobs_no_node_holds_then_runs_a_cpu_sweep(tmp_path):
    """hydra/launcher=slurm on a node of 2 CPUs without GPUs: its default 4 CPUs and 32 GB are refused before
    anything is submitted, as is a GPU for trainer=gpu; with 1 CPU and 1 GB the array runs without a GPU flag,
    SLURM's accounting has both tasks COMPLETED, and a rerun launches nothing."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    if missing := missing_programs(SLURM_PROGRAMS):
        pytest.skip(f"SLURM not installed (no {', '.join(missing)}): make clusters")
    if os.geteuid() != 0:
        pytest.skip("slurmd runs jobs as root here: run the SLURM test as root")
    started = time.monotonic()
    with slurm_cluster() as slurm:
        env = {"SLURM_CONF": slurm.env["SLURM_CONF"]}
        largest = f"the largest node is {slurm.node} with {slurm.cpus} CPUs, {slurm.memory_mb} MB, 0 GPUs"

        refused = sweep(tmp_path, "hydra/launcher=slurm", env=env, expect=2)
        assert (f"asks each job for 4 CPUs, 32768 MB, 0 GPUs, which no node of partition {slurm.partition} can hold"
                in refused and largest in refused)
        small = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
                 "hydra.launcher.timeout_min=10"]
        refused = sweep(tmp_path, *small, "trainer=gpu", env=env, expect=2)
        assert "asks each job for 1 CPUs, 1024 MB, 1 GPUs" in refused and largest in refused
        assert not (tmp_path / "outputs").exists()
        assert slurm.run("squeue", "--noheader").stdout.strip() == ""

        printed = sweep(tmp_path, *small, env=env)
        assert "Submitit 'slurm' sweep output dir" in printed
        completed_cells(tmp_path)
        scripts = list((tmp_path / "outputs" / "quickstart" / ".submitit").rglob("*_submission.sh"))
        assert scripts and not any("gpu" in line for s in scripts for line in s.read_text().splitlines()
                                   if line.startswith("#SBATCH"))
        if slurm.accounting:  # a task's state turns COMPLETED shortly after it wrote its result
            assert wait_for_states(slurm, ["1_0|COMPLETED", "1_1|COMPLETED"])

        again = sweep(tmp_path, *small, env=env)
        assert "jackpot: all 2 jobs already complete, nothing launched" in again
        assert slurm.run("squeue", "--noheader").stdout.strip() == ""
    print(f"slurm sweep: {time.monotonic() - started:.0f} s")


def _pack_ran(tmp_path: Path) -> None:
    """Both cells complete, written by one process: the first cell's job log names the pack."""
    completed_cells(tmp_path)
    first = tmp_path / "outputs" / "quickstart" / "resnet8-digits" / CELLS[0] / "train.log"
    assert "a pack of 2 runs in this process, side by side" in first.read_text()


def test_ray_cluster_launcher_runs_a_pack_of_two_runs_as_one_job(tmp_path):
    """hydra.sweeper.pack=2 on the Ray cluster: one Ray task trains both runs side by side (forced on the CPU),
    reading its members from the sweep dir, which the head node shares with itself here."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]'")
    if ray_program() is None:
        pytest.skip("no `ray` command in this venv: pip install -e '.[ray]'")
    packed = ["hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_cpus=1", "hydra.sweeper.pack=2",
              "hydra.sweeper.pack_side_by_side=true"]
    with ray_head(num_cpus=2) as env:
        printed = sweep(tmp_path, *packed, env=env)
        assert "Ray Launcher is launching 1 jobs" in printed
        _pack_ran(tmp_path)


def test_slurm_launcher_runs_a_pack_of_two_runs_as_one_array_task(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    if missing := missing_programs(SLURM_PROGRAMS):
        pytest.skip(f"SLURM not installed (no {', '.join(missing)}): make clusters")
    if os.geteuid() != 0:
        pytest.skip("slurmd runs jobs as root here: run the SLURM test as root")
    with slurm_cluster() as slurm:
        env = {"SLURM_CONF": slurm.env["SLURM_CONF"]}
        sweep(tmp_path, "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
              "hydra.launcher.timeout_min=10", "hydra.sweeper.pack=2", "hydra.sweeper.pack_side_by_side=true",
              env=env)
        _pack_ran(tmp_path)
        scripts = list((tmp_path / "outputs" / "quickstart" / ".submitit").rglob("*_submission.sh"))
        assert len(scripts) == 1 and "#SBATCH --array" not in scripts[0].read_text()  # one task, not an array of 2
        if slurm.accounting:
            assert wait_for_states(slurm, ["1|COMPLETED"])
