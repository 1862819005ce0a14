"""Real multiruns through Hydra's launchers: the quickstart sweep (basic launcher) and a tiny sweep on Ray
(CPU), then the tables command on what they wrote."""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO, compose_cfg, lock_held_by_another_process, train_py

from hydra_plugins.jackpot_sweeper.jackpot_sweeper import LaunchUnfinished, cost_line
from jackpot import tables
from jackpot.runs.atomic_io import write_json_atomic
from jackpot.runs.cache_keys import shared_work
from jackpot.runs.cell_lock import LOCK_FILE
from jackpot.runs.claim import claim_paths
from jackpot.runs.identity import RUN_CONFIG_FILE, identity_hash, run_identity
from jackpot.runs.results import PROGRESS_FILE, write_progress
from jackpot.runs.sweep_plan import JobPlan, job_state, shared_work_first

# Tiny but real: one epoch of two batches, small scoring batches.
TINY_SWEEP = ["trainer.limit_train_batches=2", "schedule.epochs=1", "schedule.milestones=[]",
              "dataset.samples_per_class=2"]


def multirun(tmp_path: Path, *overrides: str, env: dict[str, str] | None = None,
             timeout: int = 600) -> subprocess.CompletedProcess:
    # As a user types it, from a fresh folder: outputs/, data/ and .cache/ land under the current directory.
    proc = train_py(["-m", *overrides, *TINY_SWEEP], cwd=tmp_path, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def results_under(folder: Path) -> dict[tuple, dict]:
    found = {}
    for path in folder.rglob("results.json"):
        data = json.loads(path.read_text())
        cell = data["cell"]
        found[(cell["pruner"], cell["ratio"], cell["seed"])] = {**data, "_path": path}
    return found


def test_quickstart_multirun_writes_one_result_per_job_and_builds_its_table(tmp_path, capsys):
    # The quickstart sweep narrowed on the command line to one ratio: 2 pruners x 2 seeds = 4 jobs, of which
    # a first launch ran seed 0: only the other 2 are launched.
    multirun(tmp_path, "sweep=quickstart", "ratio=0.9", "seed=0")
    sweep_dir = tmp_path / "outputs" / "quickstart"
    first = {key: data["_path"].stat().st_mtime_ns for key, data in results_under(sweep_dir).items()}
    proc = multirun(tmp_path, "sweep=quickstart", "ratio=0.9")
    assert "jackpot: 2 of 4 jobs already complete, not launched; launching 2" in proc.stdout + proc.stderr
    found = results_under(sweep_dir)
    assert {key: found[key]["_path"].stat().st_mtime_ns for key in first} == first
    assert sorted(found) == [(p, 0.9, s) for p in ("smart_ratio", "snip") for s in (0, 1)]
    for (pruner, ratio, seed), data in found.items():
        assert data["status"] == "complete" and data["name"] == "quickstart"
        assert data["_path"].parent.name == f"{pruner}-none-r{ratio}-s{seed}"
        assert data["_path"].parent.parent.name == "resnet8-digits"

    out = tmp_path / "tables"
    code = tables.main([str(sweep_dir), "--out", str(out), "--format", "rich,csv,md"])
    printed = capsys.readouterr().out
    assert code == 0
    rows = {(r["pruner"], float(r["ratio"])): r for r in csv.DictReader((out / "quickstart.csv").open())}
    for pruner in ("smart_ratio", "snip"):
        accs = [found[(pruner, 0.9, s)]["final_acc"] for s in (0, 1)]
        row = rows[(pruner, 0.9)]
        assert row["status"] == "ok" and int(row["n"]) == 2
        assert float(row["mean"]) == pytest.approx(statistics.mean(accs), abs=1e-3)
        assert float(row["std"]) == pytest.approx(statistics.stdev(accs), abs=1e-3)
        # The cells the sweep file expects but this narrowed run skipped stay in the table, as missing.
        assert rows[(pruner, 0.5)]["status"] == "missing"
    assert "Random tickets" in printed and "missing" in printed
    assert (out / "quickstart.md").exists()

    # Rerunning the same sweep, even with knobs that change only how fast it runs, finds every cell complete,
    # launches nothing and leaves the results untouched.
    stamps = {key: data["_path"].stat().st_mtime_ns for key, data in found.items()}
    record = (sweep_dir / "multirun.yaml").read_bytes()  # the last launch's grid, read by jackpot-tables
    proc = multirun(tmp_path, "sweep=quickstart", "ratio=0.9", "trainer.steps_per_call=1",
                    "dataset.eval_batch_size=100")
    assert "jackpot: all 4 jobs already complete, nothing launched" in proc.stdout + proc.stderr
    assert "Launching" not in proc.stdout + proc.stderr
    assert {key: data["_path"].stat().st_mtime_ns for key, data in results_under(sweep_dir).items()} == stamps

    # A rerun of another config under the same name is refused before any job starts, naming what changed.
    proc = train_py(["-m", "sweep=quickstart", "ratio=0.9", "schedule.lr=0.07", *TINY_SWEEP], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "4 of 4 sweep jobs are invalid, nothing was run" in proc.stderr
    assert "holds a run of another config (schedule.lr: " in proc.stderr and "-> 0.07)" in proc.stderr
    assert {key: data["_path"].stat().st_mtime_ns for key, data in results_under(sweep_dir).items()} == stamps
    assert (sweep_dir / "multirun.yaml").read_bytes() == record, "a sweep that launched nothing keeps the record"

    # Another sweep that shares cells with this one (hydra.sweeper.reuse_from) launches only the jobs whose very
    # run is not complete here: not ratio 0.5 (never run), but not the ratio 0.9 runs either, which are (seeds 0
    # and 1, both pruners); and, under another learning rate (another config), all of them.
    proc = multirun(tmp_path, "sweep=quickstart", "name=sharing", "ratio=0.9,0.5",
                    "hydra.sweeper.reuse_from=[quikstart,quickstart]", "hydra.sweeper.dry_run=true")
    printed = proc.stdout + proc.stderr
    assert f"jackpot: hydra.sweeper.reuse_from: no runs of quikstart ({tmp_path / 'outputs' / 'quikstart'}) yet" \
        in printed  # a typo, or a sweep not run yet, is named
    assert ("jackpot: 4 jobs already complete in other sweeps (4 in quickstart; hydra.sweeper.reuse_from), "
            "not launched") in printed
    planned = re.findall(r"#\d+ - new: .*pruner=(\w+).*ratio=([\d.]+).*seed=(\d)", printed)
    assert sorted(planned) == [(p, "0.5", str(s)) for p in ("smart_ratio", "snip") for s in (0, 1)]
    assert "4 jobs would be launched" in printed and not (tmp_path / "outputs" / "sharing").exists()
    proc = multirun(tmp_path, "sweep=quickstart", "name=sharing", "ratio=0.9,0.5", "schedule.lr=0.07",
                    "hydra.sweeper.reuse_from=[quickstart]", "hydra.sweeper.dry_run=true")
    assert "already complete" not in proc.stdout + proc.stderr
    assert "8 jobs would be launched" in proc.stdout + proc.stderr
    assert (sweep_dir / "multirun.yaml").read_bytes() == record

    proc = train_py(["-m", "sweep=quickstart", "hydra.sweeper.reuse_from=quickstart", *TINY_SWEEP], cwd=tmp_path)
    assert proc.returncode == 2 and "hydra.sweeper.reuse_from='quickstart' is not allowed" in proc.stderr


def test_jobs_that_train_a_shared_trunk_are_launched_first_and_its_readers_last(tmp_path):
    """Sweep order is lottery s0, lottery s1, lr_rewinding s0, lr_rewinding s1, smart_ratio s0, smart_ratio s1;
    the lr_rewinding jobs need the trunks the lottery jobs train, so they go after the smart-ratio jobs.
    A dry run prints that plan and launches nothing."""
    sweep = ["sweep=quickstart", "pruner=lottery,lr_rewinding,smart_ratio", "ratio=0.9", "seed=0,1"]
    order = [("lottery", 0), ("lottery", 1), ("smart_ratio", 0), ("smart_ratio", 1), ("lr_rewinding", 0),
             ("lr_rewinding", 1)]
    roles = ["trains", "trains", "-", "-", "reads", "reads"]
    trunk_first = "jackpot: 2 jobs that train shared dense trunks or IMP rounds go first, the 2 that read them last"

    dry = multirun(tmp_path, *sweep, "hydra.sweeper.dry_run=true")
    printed = dry.stdout + dry.stderr
    assert trunk_first in printed and "6 jobs would be launched, in the order above; nothing launched" in printed
    planned = re.findall(r"#(\d+) (trains|reads|-) (new): .*pruner=(\w+).*seed=(\d)", printed)
    assert [(int(i), role, state, (pruner, int(seed))) for i, role, state, pruner, seed in planned] == [
        (i, role, "new", cell) for i, (role, cell) in enumerate(zip(roles, order, strict=True))]
    assert "Launching" not in printed and not (tmp_path / ".cache").exists()
    assert not (tmp_path / "outputs").exists(), "a dry run writes nothing, not even Hydra's multirun.yaml"

    # wait_for_trunks: the readers in a second launch, numbered on from the first
    proc = multirun(tmp_path, *sweep, "hydra.sweeper.wait_for_trunks=true")
    printed = proc.stdout + proc.stderr
    assert trunk_first in printed
    launches = printed.split("Launching ")[1:]
    assert [launch.split(" jobs locally")[0] for launch in launches] == ["4", "2"]
    launched = [re.findall(r"#(\d+) : .*pruner=(\w+).*seed=(\d)", launch) for launch in launches]
    assert [[(int(i), pruner, int(seed)) for i, pruner, seed in jobs] for jobs in launched] == [
        [(i, *cell) for i, cell in enumerate(order[:4])], [(i, *cell) for i, cell in enumerate(order[4:], start=4)]]
    found = results_under(tmp_path / "outputs" / "quickstart")
    assert {key: data["trunk"]["reused"] for key, data in found.items() if data["trunk"]} == {
        ("lottery", 0.9, 0): False, ("lottery", 0.9, 1): False,
        ("lr_rewinding", 0.9, 0): True, ("lr_rewinding", 0.9, 1): True}


def test_a_sweep_prices_its_jobs_at_end_to_end_figures_before_launching(tmp_path):
    """hydra.sweeper.cost_from: 6 one-epoch runs and the 2 dense trunks (one per seed) that lottery and LR
    rewinding share, at 30 minutes an epoch: 4 hours alone, 2 in packs at the figures' 2x."""
    figures = {"device": "cuda: a test GPU",
               "costs": {"resnet8": {"epoch_s": 1800.0, "setup_s": 0.0, "process_start_s": 0.0}},
               "packs": {"resnet8": {"size": 4, "speedup": 2.0, "overhead_per_run_s": 0.0}}}
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    sweep = ["sweep=quickstart", "pruner=lottery,lr_rewinding,smart_ratio", "ratio=0.9", "seed=0,1",
             "hydra.sweeper.dry_run=true"]
    dry = multirun(tmp_path, *sweep, "hydra.sweeper.cost_from=figures.json")
    assert ("jackpot: at the figures in figures.json (cuda: a test GPU), these 6 runs and 2 dense trunks or IMP "
            "rounds take about 4.0 device-hours one run at a time, about 2.0 in packs of 4 (here they launch one run "
            "per process: hydra.sweeper.pack=auto packs on a GPU)") in dry.stdout + dry.stderr
    figures["costs"] = {"vgg19": figures["costs"]["resnet8"]}
    (tmp_path / "figures.json").write_text(json.dumps(figures))
    dry = multirun(tmp_path, *sweep, "hydra.sweeper.cost_from=figures.json")
    assert "figures.json holds no figures for these runs' models (6 resnet8 runs): no cost to say" in (
        dry.stdout + dry.stderr)
    (tmp_path / "figures.json").write_text("{}")
    refused = train_py(["-m", *sweep, *TINY_SWEEP, "hydra.sweeper.cost_from=figures.json"], cwd=tmp_path)
    assert refused.returncode == 2
    assert "jackpot: config error: hydra.sweeper.cost_from=figures.json: figures.json holds no end-to-end figures" in (
        refused.stderr)


def test_the_cost_line_counts_what_resumed_jobs_still_train(tmp_path) -> None:
    """A killed launch's progress file says the stage it stopped in and the epochs its newest checkpoint holds:
    a job resumed in its ticket costs the ticket epochs after that checkpoint (killed after epoch 100,
    checkpointed at 40); one resumed in its dense trunk or in an IMP round costs that work's epochs after its
    checkpoint (trunk at 37, round 1 at 150), then its whole ticket."""
    lottery = compose_cfg(tmp_path, ["model=vgg19", "pruner=lottery", "pruner.rounds=3", "ratio=0.98"])
    trunk, round_1, round_2 = shared_work(lottery)
    plans = []
    for name, stage, done, checkpointed, work in (
            ("new", None, None, None, []), ("in_ticket", "ticket", 100, 40, []),
            ("in_trunk", "dense trunk", 37, None, [trunk, round_1, round_2]),
            ("in_round", "IMP round 1 of 3", 155, 150, [round_1, round_2])):
        (tmp_path / name).mkdir()
        if stage:
            (tmp_path / name / RUN_CONFIG_FILE).write_text("{}")
            write_progress(tmp_path / name / PROGRESS_FILE, stage, done, 160, checkpointed=checkpointed)
        plans.append(JobPlan(tmp_path / name, missing_work=work, config=lottery))
    figures = {"device": "cuda: a test GPU", "costs": {"vgg19": {"epoch_s": 10.0, "setup_s": 0.0,
                                                                 "process_start_s": 0.0}}}
    # tickets: 1,600 s new, 1,200 s left in the ticket, 1,600 s each for the two resumed before theirs; shared:
    # the trunk's 123 epochs left, round 1's 10 (the newest checkpoint of it wins), round 2's 160, once each:
    # 8,930 s (everything whole: 12,800 s, 3.6 h)
    assert cost_line(figures, "f.json", plans, [[plan] for plan in plans]) == (
        "jackpot: at the figures in f.json (cuda: a test GPU), these 4 runs and 3 dense trunks or IMP rounds take "
        "about 2.5 device-hours one run at a time")


def test_shared_work_first_keeps_each_groups_order() -> None:
    # job -> the cache keys it needs that are missing: T* trunks, R* IMP rounds
    missing = {"a": ["T1"], "b": [], "c": ["T1"], "d": ["T2", "R2"], "e": ["T1", "R1"], "f": [], "g": ["T2", "R2"]}
    assert shared_work_first(list(missing), missing.__getitem__) == (["a", "d"], ["b", "f"], ["c", "e", "g"])
    assert shared_work_first(["b", "f"], missing.__getitem__) == ([], ["b", "f"], [])


class _Launcher:
    """A launcher like Ray's or submitit's: `launch` returns when its jobs end and raises a failed job's error."""

    def __init__(self, failing_launch: int | None = None) -> None:
        self.calls: list[tuple[list, int]] = []
        self.failing_launch = failing_launch

    def launch(self, jobs, initial_job_idx: int):
        self.calls.append(([" ".join(job) for job in jobs], initial_job_idx))
        if len(self.calls) == self.failing_launch:
            raise RuntimeError("a job failed")
        return [f"result {i}" for i in range(initial_job_idx, initial_job_idx + len(jobs))]


@pytest.mark.parametrize("failing_launch", [None, 1])
def test_wait_for_trunks_launches_the_readers_after_the_rest_even_when_a_job_failed(tmp_path, failing_launch):
    missing = {"a": ["T1"], "b": [], "c": ["T1"], "d": ["T2"]}
    plans = {(job,): JobPlan(tmp_path / job, missing_work=needs) for job, needs in missing.items()}
    sweeper = SimpleNamespace(dry_run=False, wait_for_trunks=True, plans=plans, figures=None)
    launcher = _Launcher(failing_launch)
    launch = LaunchUnfinished(launcher, sweeper).launch
    jobs = [[job] for job in missing]
    if failing_launch:
        with pytest.raises(RuntimeError, match="a job failed"):
            launch(jobs, initial_job_idx=5)
    else:
        assert launch(jobs, initial_job_idx=5) == [f"result {i}" for i in range(5, 9)]
    assert launcher.calls == [(["a", "d", "b"], 5), (["c"], 8)]


def test_a_dry_run_tells_new_resumed_and_running_cells_apart(tmp_path) -> None:
    cell = tmp_path / "cell"
    assert job_state(cell) == "new"
    cell.mkdir()
    (cell / RUN_CONFIG_FILE).write_text("{}")
    assert job_state(cell) == "resumes"
    (cell / PROGRESS_FILE).write_text(json.dumps({"stage": "dense trunk", "epoch": 37, "epochs": 160}))
    assert job_state(cell) == "resumes (dense trunk epoch 37/160)"
    with lock_held_by_another_process(cell / LOCK_FILE):
        assert job_state(cell) == "running elsewhere (skips)"


@pytest.mark.slow
def test_ray_local_launcher_runs_a_tiny_sweep_on_cpu(tmp_path):
    """hydra/launcher=ray_local with GPU requests of zero: each job is a Ray task in its own process.

    45-90 s on 2 busy cores (Ray's start included): `make test-full`.
    """
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]'")
    # One's own method by import path (pruner=custom): each Ray worker names the job's folder after the function
    # (the method_name resolver, registered when the worker unpickles the task function) and imports it
    examples = str(REPO / "examples")
    proc = multirun(
        tmp_path, "sweep=quickstart", "pruner=custom", "pruner.method=mylab.pruning.gradient_magnitude",
        "ratio=0.9", "seed=0,1",
        "hydra/launcher=ray_local",
        "hydra.launcher.ray.remote.num_gpus=0", "hydra.launcher.ray.remote.num_cpus=1",
        "hydra.launcher.ray.init.num_gpus=0", "hydra.launcher.ray.init.num_cpus=2",
        env={"RAY_AUTH_MODE": "disabled", "RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0",
             "PYTHONPATH": os.pathsep.join([examples, os.environ.get("PYTHONPATH", "")])},
    )
    assert "Ray Launcher is launching 2 jobs" in proc.stdout + proc.stderr
    found = results_under(tmp_path / "outputs" / "quickstart")
    assert sorted(found) == [("gradient_magnitude", 0.9, 0), ("gradient_magnitude", 0.9, 1)]
    assert all(data["status"] == "complete" for data in found.values())
    assert all(data["_path"].parent.name.startswith("gradient_magnitude-none-r0.9") for data in found.values())


def test_packing_jobs_on_a_gpu_without_mps_is_warned_about_before_launching(tmp_path):
    """ray_local_fractional puts 4 jobs on each GPU, which pays only under CUDA MPS (docs/benchmarks.md): the
    sweep says so when no MPS daemon's control pipe is found, and is silent once there is one, or when the
    launcher gives each job a whole GPU."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]'")
    pipe_dir = tmp_path / "mps"
    pipe_dir.mkdir()
    env = {"RAY_AUTH_MODE": "disabled", "CUDA_MPS_PIPE_DIRECTORY": str(pipe_dir)}
    sweep = ["sweep=quickstart", "pruner=smart_ratio", "ratio=0.9", "hydra.sweeper.dry_run=true", "trainer=gpu"]
    warning = "hydra.launcher.ray.remote.num_gpus=0.25 packs 4 jobs per GPU, but no CUDA MPS daemon is running"

    packed = multirun(tmp_path, *sweep, "hydra/launcher=ray_local_fractional", env=env)
    assert warning in packed.stdout + packed.stderr and str(pipe_dir) in packed.stdout + packed.stderr
    halves = multirun(tmp_path, *sweep, "hydra/launcher=ray_local_fractional", "hydra.launcher.ray.remote.num_gpus=0.5",
                      env=env)
    assert "num_gpus=0.5 packs 2 jobs per GPU" in halves.stdout + halves.stderr
    whole = multirun(tmp_path, *sweep, "hydra/launcher=ray_local", env=env)
    assert "MPS" not in whole.stdout + whole.stderr
    (pipe_dir / "control").touch()  # where a running daemon keeps its control pipe
    under_mps = multirun(tmp_path, *sweep, "hydra/launcher=ray_local_fractional", env=env)
    assert "MPS" not in under_mps.stdout + under_mps.stderr
    assert "2 jobs would be launched" in under_mps.stdout + under_mps.stderr


def test_a_shared_run_that_another_sweep_is_training_is_skipped_by_its_job(tmp_path):
    """Two tables launched at once both plan their shared cells (neither is complete yet). Each job claims its
    run by identity in the cache both share, so the job of a sweep that reuses from the one training it skips
    it (that a sweep which does not reuse from it trains its own: tests/test_run_claim.py)."""
    cell = ["sweep=quickstart", "pruner=smart_ratio", "ratio=0.9", "seed=0"]
    cfg = compose_cfg(tmp_path, [*cell, *TINY_SWEEP])  # paths under tmp_path, as the multiruns below
    lock, record = claim_paths(Path(cfg.paths.cache_dir), identity_hash(run_identity(cfg)))
    lock.parent.mkdir(parents=True)
    write_json_atomic(record, {"active": {"name": "quickstart", "output_dir": "/elsewhere/cell"}, "runs": {}})
    with lock_held_by_another_process(lock):
        proc = multirun(tmp_path, *cell, "name=sharing", "hydra.sweeper.reuse_from=[quickstart]")
        assert "the same run is training in sweep quickstart (/elsewhere/cell)" in proc.stdout + proc.stderr
        assert not results_under(tmp_path / "outputs" / "sharing")
