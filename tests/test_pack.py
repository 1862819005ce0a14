"""Packs (jackpot.runs.pack, hydra.sweeper.pack): several runs of a sweep in one process, side by side in threads
(each on its own CUDA stream on a GPU) or one after another. Each member must end bit for bit as the same run
alone, write its own files, fail alone, and resume after a kill.

Side by side is forced on the CPU here (`side_by_side=True`): what makes members interfere (global generators,
per-process records, loggers) is the same on a CPU; only the CUDA streams need a GPU (the CUDA test at the end).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_cfg, lock_held_by_another_process, train_py
from omegaconf import OmegaConf, open_dict

from hydra_plugins.jackpot_sweeper.packing import check_pack, form_packs, pack_size
from jackpot import tables
from jackpot.config import ConfigError
from jackpot.lightning.step_graph import capture_turn
from jackpot.pruning import Masks
from jackpot.runs.atomic_io import torch_load_safe, write_json_atomic
from jackpot.runs.cell_lock import LOCK_FILE
from jackpot.runs.claim import claim_paths
from jackpot.runs.identity import identity_hash, run_identity
from jackpot.runs.pack import MemberOutcome, _cache_emptied_between_recordings, failure_message, run_pack
from jackpot.train import run

# TINY with the default milestones (their resolver gives [1] at 2 epochs): what a pack job resolves itself
TINY_DEFAULT_MILESTONES = [o for o in TINY if not o.startswith("schedule.milestones=")]

# A method scored at init on a data check, and one that trains (and caches) a dense trunk first.
CELLS = {
    "snip-labels": ["pruner=snip", "ratio=0.8", "sanity_check=random_labels", "seed=1"],
    "lr_rewinding": ["pruner=lr_rewinding", "ratio=0.8", "pruner.pretrain_epochs=1", "seed=0"],
    "grasp-shuffle": ["pruner=grasp", "ratio=0.8", "sanity_check=layerwise_shuffle", "seed=2"],
}


def _cfg(root: Path, cifar_root: Path, cell: list[str], extra: tuple[str, ...] = ()):
    cfg = compose_cfg(root, [*TINY, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
                             "dataset.download=false", *cell, *extra])
    with open_dict(cfg):
        cfg.paths.output_dir = str(root / "-".join(cell))
    return cfg


def _final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return torch_load_safe(Path(output_dir) / "checkpoints" / "last.ckpt")["state_dict"]


def assert_same_run(got: dict, expected: dict) -> None:
    """Bit for bit: the same history, accuracies, masks and final weights."""
    assert got["status"] == expected["status"] == "complete"
    assert got["history"] == expected["history"]
    assert (got["final_acc"], got["best_acc"], got["kept"]) == (expected["final_acc"], expected["best_acc"],
                                                                expected["kept"])
    got_dir, expected_dir = Path(got["config"]["paths"]["output_dir"]), Path(expected["config"]["paths"]["output_dir"])
    assert Masks.load(got_dir / "masks.pt").equal(Masks.load(expected_dir / "masks.pt"))
    got_w, expected_w = _final_weights(got_dir), _final_weights(expected_dir)
    assert got_w.keys() == expected_w.keys()
    for key in expected_w:
        assert torch.equal(got_w[key], expected_w[key]), key


@pytest.fixture(scope="module")
def alone(tmp_path_factory, cifar_root, one_thread) -> dict[str, dict]:
    """Each cell run on its own, in this process, one after another."""
    root = tmp_path_factory.mktemp("alone")
    return {name: run(_cfg(root, cifar_root, cell)) for name, cell in CELLS.items()}


def test_runs_side_by_side_end_as_each_run_alone(tmp_path, cifar_root, alone, one_thread, caplog):
    caplog.set_level(logging.INFO)  # as in a Hydra job: the progress lines reach the log files
    members = [MemberOutcome(_cfg(tmp_path, cifar_root, cell)) for cell in CELLS.values()]
    outcomes = run_pack(members, side_by_side=True)
    for name, outcome in zip(CELLS, outcomes, strict=True):
        assert outcome.error is None and outcome.busy is None, (name, outcome.error)
        assert_same_run(outcome.results, alone[name])
        # its own log: its lines, none of another member's
        log = (outcome.output_dir / "train.log").read_text()
        own = outcome.results["cell_name"]
        assert f"{own} ticket epoch 2/2" in log
        assert not [line for line in log.splitlines() if "ticket epoch" in line and own not in line]
    # scoring records are per run: SNIP and GraSP each say where they scored, lr_rewinding scored nothing
    scoring = {name: o.results["runtime"]["scoring"] for name, o in zip(CELLS, outcomes, strict=True)}
    assert scoring["lr_rewinding"] == "none in this process"
    assert scoring["snip-labels"]["path"] == scoring["grasp-shuffle"]["path"] == "memory"


def test_a_member_that_diverges_or_is_refused_fails_alone(tmp_path, cifar_root, alone, one_thread):
    good = _cfg(tmp_path, cifar_root, CELLS["snip-labels"])
    diverging = _cfg(tmp_path, cifar_root, ["pruner=random", "ratio=0.5", "schedule.lr=1e12"])
    missing_data = _cfg(tmp_path, tmp_path / "no-cifar-here", ["pruner=random", "ratio=0.5", "seed=3"])
    outcomes = run_pack([MemberOutcome(diverging), MemberOutcome(missing_data), MemberOutcome(good)],
                        side_by_side=True)
    nan, refused, fine = outcomes
    assert nan.error is None and nan.results["status"] == "failed" and "NaN" in nan.results["reason"]
    assert refused.refused and "no-cifar-here" in str(refused.error)
    assert not refused.output_dir.exists(), "a refused member leaves no folder, as a refused job alone"
    assert_same_run(fine.results, alone["snip-labels"])


def test_members_running_elsewhere_are_skipped_and_the_rest_of_the_pack_runs(tmp_path, cifar_root, alone,
                                                                              one_thread):
    """One member's cell is held by another process (its cell lock), another member's run is being trained by a
    sweep this one reuses from (its claim): both step aside, as jobs alone do, and the third runs."""
    held = _cfg(tmp_path, cifar_root, ["pruner=random", "ratio=0.5", "seed=5"])
    claimed = _cfg(tmp_path, cifar_root, ["pruner=random", "ratio=0.5", "seed=6"])
    lock, record = claim_paths(Path(claimed.paths.cache_dir), identity_hash(run_identity(claimed)))
    lock.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, {"active": {"name": "other", "output_dir": "/elsewhere/cell"}, "runs": {}})
    members = [MemberOutcome(held), MemberOutcome(claimed), MemberOutcome(_cfg(tmp_path, cifar_root,
                                                                                CELLS["snip-labels"]))]
    with lock_held_by_another_process(Path(held.paths.output_dir) / LOCK_FILE), lock_held_by_another_process(lock):
        busy, elsewhere, fine = run_pack(members, reuse_from=["other"], side_by_side=True)
    assert busy.busy and busy.error is None and busy.results is None
    assert "the same run is training in sweep other (/elsewhere/cell)" in elsewhere.busy
    assert not (Path(claimed.paths.output_dir) / "results.json").exists()
    assert_same_run(fine.results, alone["snip-labels"])


def test_members_that_need_the_same_dense_trunk_train_it_once(tmp_path, cifar_root, alone, one_thread):
    """Side by side, one member trains the trunk while the other waits on its lock (a flock per open file, so
    threads of one process exclude each other as processes do), then reads it."""
    lottery = _cfg(tmp_path, cifar_root, ["pruner=lottery", "ratio=0.8", "pruner.pretrain_epochs=1", "seed=0"])
    rewinding = _cfg(tmp_path, cifar_root, CELLS["lr_rewinding"])
    outcomes = run_pack([MemberOutcome(lottery), MemberOutcome(rewinding)], side_by_side=True)
    assert all(outcome.error is None for outcome in outcomes), [outcome.error for outcome in outcomes]
    trunks = [outcome.results["trunk"] for outcome in outcomes]
    assert trunks[0]["hash"] == trunks[1]["hash"]
    assert sorted(trunk["reused"] for trunk in trunks) == [False, True]
    assert_same_run(outcomes[1].results, alone["lr_rewinding"])


def test_a_packed_sweep_writes_each_runs_files_resumes_after_a_kill_and_reruns_nothing(tmp_path, cifar_root,
                                                                                       capsys):
    """A 3-job sweep as a pack of 2 and one job alone. The pack runs its members one after another and is killed
    in its 7th optimizer step (each run has 4: the second member's first step of its second epoch); the rerun
    packs the two unfinished runs side by side, the killed one resumes from its checkpoint, and all three end
    as the sweep run unpacked. A third run launches nothing."""
    sweep = ["-m", *TINY_DEFAULT_MILESTONES, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
             "dataset.download=false", "pruner=smart_ratio", "ratio=0.8", "seed=0,1,2"]
    unpacked = train_py([*sweep, f"paths.root_dir={tmp_path / 'unpacked'}", "hydra.sweeper.pack=1"])
    assert unpacked.returncode == 0, unpacked.stderr[-3000:]

    packed = [*sweep, f"paths.root_dir={tmp_path / 'packed'}", "hydra.sweeper.pack=2"]
    dry = train_py([*packed, "hydra.sweeper.dry_run=true"])
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = re.findall(r"#(\d) - new: .* seed=(\d) .*?(\(pack \d\))?$", dry.stdout + dry.stderr, re.MULTILINE)
    assert planned == [("0", "0", "(pack 1)"), ("1", "1", "(pack 1)"), ("2", "2", "")]
    assert "3 jobs would be launched in 2 processes (hydra.sweeper.pack=2), in the order above" in dry.stdout

    killed = train_py([*packed, "hydra.sweeper.pack_side_by_side=false"], fault="step:7")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert "jackpot: 3 runs launched as 2 jobs, up to 2 runs in one process (hydra.sweeper.pack=2)" in killed.stdout
    resumed = train_py([*packed, "hydra.sweeper.pack_side_by_side=true"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 of 3 jobs already complete, not launched; launching 2" in resumed.stdout
    assert "a pack of 2 runs in this process, side by side" in resumed.stdout

    def results(kind: str) -> dict[int, dict]:
        found = {}
        for path in (tmp_path / kind / "outputs").rglob("results.json"):
            data = json.loads(path.read_text())
            found[data["cell"]["seed"]] = data
        return found

    expected, got = results("unpacked"), results("packed")
    assert sorted(got) == [0, 1, 2]
    assert [got[seed]["resumed"] for seed in (0, 1, 2)] == [False, True, False]
    for seed in (0, 1, 2):
        assert_same_run(got[seed], expected[seed])
        folder = Path(got[seed]["config"]["paths"]["output_dir"])
        assert (folder / ".hydra" / "overrides.yaml").is_file()
        assert f"seed={seed}" in OmegaConf.load(folder / ".hydra" / "overrides.yaml")
        log = (folder / "train.log").read_text()
        assert f"s{seed} ticket epoch 2/2" in log and not re.search(rf"-s(?!{seed})\d ticket epoch", log)

    # runtime.pack: the resumed pair trained side by side in one pack; seed 0 (one after another) counts alone
    packs = {seed: got[seed]["runtime"]["pack"] for seed in (0, 1, 2)}
    assert packs[0]["size"] == 2 and packs[0]["side_by_side"] is False and packs[2] == {
        "id": packs[1]["id"], "size": 2, "side_by_side": True}
    assert all(expected[seed]["runtime"]["pack"] is None for seed in (0, 1, 2))
    code = tables.main([str(tmp_path / "packed" / "outputs"), "--format", "rich"])
    printed = capsys.readouterr().out
    assert code == 0 and "default: 3 runs took" in printed
    assert "2 of them side by side in 1 packs, each pack counted once" in printed

    again = train_py(packed)
    assert again.returncode == 0 and "all 3 jobs already complete, nothing launched" in again.stdout


@pytest.mark.slow
def test_compiled_runs_side_by_side_compile_cold_and_end_as_each_run_alone(tmp_path, cifar_root, one_thread,
                                                                          monkeypatch):
    """torch.compile in two threads at once, from a cold Inductor cache (~30 s here: `make test-full`); then the
    same runs alone, which find the compiled code cached, end bit for bit the same."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    cells = [["pruner=smart_ratio", "ratio=0.8", f"seed={seed}", "trainer.compile=true"] for seed in (0, 1)]
    outcomes = run_pack([MemberOutcome(_cfg(tmp_path / "pack", cifar_root, cell)) for cell in cells],
                        side_by_side=True)
    for cell, outcome in zip(cells, outcomes, strict=True):
        assert outcome.error is None, outcome.error
        assert outcome.results["runtime"]["compiled"] is True
        assert_same_run(outcome.results, run(_cfg(tmp_path / "alone", cifar_root, cell)))


def test_a_pack_whose_member_fails_ends_the_others_then_fails_naming_it(tmp_path, cifar_root):
    """One member's dense trunk diverges (TrainingDiverged, not a user error): the other member completes, then
    the pack's job fails with an error naming the failed run, as that run's job alone would have failed."""
    proc = train_py(["-m", *TINY_DEFAULT_MILESTONES, f"dataset.root={cifar_root}", "dataset.verify_md5=false",
                     "dataset.download=false", "pruner=lottery", "pruner.pretrain_epochs=1", "ratio=0.8",
                     "schedule.lr=1e12,0.05", f"paths.root_dir={tmp_path}", "hydra.sweep.subdir=lr${schedule.lr}",
                     "hydra.sweeper.pack=2", "hydra.sweeper.pack_side_by_side=true"])
    printed = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "1 of 2 runs of this pack failed (the others ran to their end)" in printed
    assert "TrainingDiverged: the dense trunk" in printed
    (finished,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("results.json")]
    assert finished["status"] == "complete" and finished["config"]["schedule"]["lr"] == 0.05


def test_a_pack_that_ran_out_of_device_memory_says_how_to_launch_fewer_runs_per_gpu(tmp_path):
    """The same packs would run out again on a rerun: the job's error says which pack size to launch with."""
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def outcomes(size: int, error: BaseException) -> list[MemberOutcome]:
        cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path / "a")}})
        return [MemberOutcome(cfg, error=error), *(MemberOutcome(cfg, results={}) for _ in range(size - 1))]

    message = failure_message(outcomes(4, oom), side_by_side=True)
    assert message.startswith(f"1 of 4 runs of this pack failed (the others ran to their end): {tmp_path / 'a'}: "
                              "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. ")
    assert message.endswith("The device ran out of memory with 4 runs side by side: launch the sweep again with "
                            "hydra.sweeper.pack=2, or 1 (a run per GPU); complete runs are kept and the others resume")
    assert "hydra.sweeper.pack=1 (a run per GPU);" in failure_message(outcomes(2, oom), side_by_side=True)
    for quiet in (failure_message(outcomes(4, oom), side_by_side=False),
                  failure_message(outcomes(4, RuntimeError("diverged")), side_by_side=True)):
        assert "hydra.sweeper.pack" not in quiet and quiet.startswith("1 of 4 runs of this pack failed")


def test_pack_settings_are_checked_before_anything_runs(tmp_path):
    proc = train_py(["-m", "experiment=quickstart", "seed=0,1", "hydra.sweeper.pack=0"], cwd=tmp_path)
    assert proc.returncode == 2 and "hydra.sweeper.pack=0 is not allowed" in proc.stderr
    proc = train_py(["-m", "experiment=quickstart", "seed=0,1", "hydra.sweeper.pack_side_by_side=maybe"],
                    cwd=tmp_path)
    assert proc.returncode == 2 and "hydra.sweeper.pack_side_by_side='maybe' is not allowed" in proc.stderr
    assert not (tmp_path / "outputs").exists()
    with pytest.raises(ConfigError, match="pack=True"):
        check_pack(True)


def test_emptying_the_cuda_cache_waits_while_another_member_records_its_step(monkeypatch):
    """Lightning empties the cache when a member's fit ends; during another member's recording that would
    synchronise the device under the recording, so in a pack it waits for the recording's turn to end."""
    emptied: list[str] = []
    plain = lambda: emptied.append(threading.current_thread().name)  # noqa: E731
    monkeypatch.setattr(torch.cuda, "empty_cache", plain)
    with _cache_emptied_between_recordings(True):
        with capture_turn():  # a member records its step
            ender = threading.Thread(target=torch.cuda.empty_cache, name="a member's fit ends")
            ender.start()
            ender.join(timeout=0.3)
            assert ender.is_alive() and emptied == []
            torch.cuda.empty_cache()  # the recording empties it itself (torch.cuda.graph does, the turn held)
        ender.join(timeout=10)
        assert emptied == ["MainThread", "a member's fit ends"]
    assert torch.cuda.empty_cache is plain


def test_packs_take_consecutive_alike_jobs_up_to_the_size():
    jobs = ["a1", "a2", "a3", "b1", "a4", "a5", "b2", "b3"]
    assert form_packs(jobs, lambda job: job[0], 2) == [["a1", "a2"], ["a3"], ["b1"], ["a4", "a5"], ["b2", "b3"]]
    assert form_packs(jobs, lambda job: job[0], 1) == [[job] for job in jobs]


@pytest.mark.parametrize(("accelerator", "launcher", "batch", "loader", "compiled", "size"), [
    ("gpu", {}, 64, "auto", False, 4),
    ("gpu", {}, 256, "auto", False, 1),  # a big batch keeps the GPU busy alone
    ("gpu", {}, 64, "torch", False, 1),  # data through host loaders: the host, not the GPU, is the limit
    ("gpu", {}, 64, "auto", True, 4),  # compiled too (compiling in threads: the slow test above)
    ("cpu", {}, 64, "auto", False, 1),
    ("auto", {"gpus_per_node": 1}, 64, "auto", False, 4),  # SLURM: the jobs get a GPU on their node
    ("auto", {"gpus_per_node": None, "gres": None}, 64, "auto", False, 1),
    ("auto", {"ray": {"remote": {"num_gpus": 0}}}, 64, "auto", False, 1),
    ("auto", {"ray": {"remote": {"num_gpus": 1}}}, 64, "auto", False, 4),
    ("gpu", {"ray": {"remote": {"num_gpus": 0.25}}}, 64, "auto", False, 1),  # 4 processes per GPU already
])
def test_auto_packs_four_runs_per_gpu_at_small_batches(accelerator, launcher, batch, loader, compiled, size):
    cfg = OmegaConf.create({"trainer": {"accelerator": accelerator, "compile": compiled},
                            "dataset": {"batch_size": batch, "loader": loader}})
    assert pack_size("auto", cfg, OmegaConf.create(launcher)) == size
    assert pack_size(3, cfg, OmegaConf.create(launcher)) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA streams need a GPU")
def test_runs_side_by_side_on_cuda_streams_end_as_each_run_alone(tmp_path, cifar_root, monkeypatch):
    """On a GPU, each member on its own stream, steps recorded as CUDA graphs (3 warm-up steps of 6 per epoch,
    then replays). cuDNN restricted to deterministic algorithms, as tests/test_step_graph.py's equality test does;
    the runs alone go first, so the pack finds cuDNN's choices for these shapes made (a run alone with autotuning
    is not reproducible across processes either)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    cells = [CELLS["snip-labels"], ["pruner=smart_ratio", "ratio=0.8", "seed=4"]]
    gpu = ("trainer.accelerator=gpu", "trainer.deterministic=false", "dataset.batch_size=32",
           "trainer.limit_train_batches=6")
    reference = [run(_cfg(tmp_path / "alone", cifar_root, cell, gpu)) for cell in cells]
    outcomes = run_pack([MemberOutcome(_cfg(tmp_path / "pack", cifar_root, cell, gpu)) for cell in cells],
                        side_by_side=True)
    for outcome, expected in zip(outcomes, reference, strict=True):
        assert outcome.error is None, outcome.error
        assert outcome.results["runtime"]["step"] == "recorded CUDA graph"
        assert_same_run(outcome.results, expected)
