"""What each launcher asks a cluster for: GPUs only when the trainer uses them, and a SLURM sweep whose jobs no
node of the partition can hold refused before submitting (faked `sinfo`; the real clusters:
tests/test_launchers_real.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import CONF, train_py
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from hydra_plugins.jackpot_sweeper import gpu_request
from hydra_plugins.jackpot_sweeper.slurm_fit import Node, Request, check_fits, gres_gpus, parse_sinfo, request_of
from jackpot.config import ConfigError

SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
SINFO = """\
cpu01|cpu*|32|128000|(null)
cpu02|cpu*|64|256000|(null)
gpu01|gpu|16|64000|gpu:a100:4(S:0-1)
gpu02|gpu|8|32000+|gpu:2,shard:8
gpu02|all|8|32000|gpu:2,shard:8
"""
TINY_SWEEP = ["sweep=quickstart", "pruner=smart_ratio", "ratio=0.9", "seed=0,1", "schedule.epochs=1",
              "schedule.milestones=[]", "trainer.limit_train_batches=2", "dataset.samples_per_class=2"]


def launcher_of(name: str, *overrides: str):
    """hydra.launcher of `train.py -m hydra/launcher=<name> <overrides>`, unresolved."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={name}", *overrides], return_hydra_config=True)
    return cfg.hydra.launcher


def gpus_asked(launcher):
    return OmegaConf.select(launcher, "ray.remote.num_gpus" if "ray" in launcher else "gpus_per_node")


# ------------------------------------------------------------------------------------------------- GPU requests


@pytest.mark.parametrize("name, cpu, gpu", [("ray_local", 0, 1), ("ray_local_fractional", 0, 0.25),
                                            ("ray_cluster", 0, 1), ("slurm", None, 1)])
def test_launchers_ask_for_gpus_only_when_the_trainer_uses_them(name, cpu, gpu):
    plugin = "hydra_submitit_launcher" if name == "slurm" else "hydra_ray_launcher"
    pytest.importorskip(f"hydra_plugins.{plugin}", reason=f"pip install -e '.[{name.split('_')[0]}]'")
    assert gpus_asked(launcher_of(name, "trainer=cpu")) == cpu
    assert gpus_asked(launcher_of(name, "trainer=gpu")) == gpu
    assert gpus_asked(launcher_of(name, "experiment=quickstart")) == cpu  # its trainer is cpu
    # an explicit request still wins
    key = "hydra.launcher.ray.remote.num_gpus" if name != "slurm" else "hydra.launcher.gpus_per_node"
    assert gpus_asked(launcher_of(name, "trainer=cpu", f"{key}=2")) == 2


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_asks_for_a_gpu_on_a_cluster_and_on_this_machine_only_with_cuda(monkeypatch, cuda):
    """trainer.accelerator=auto (the default trainer): a cluster's jobs run on its nodes, not on the (login) node
    that launches them, so a cluster launcher asks for a GPU; ray_local's run here, where auto uses CUDA if any."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert gpu_request.cluster_gpus("auto", 1) == 1 and gpu_request.cluster_gpus("auto", 1, None) == 1
    assert gpu_request.local_gpus("auto", 0.25) == (0.25 if cuda else 0)
    assert gpu_request.cluster_gpus("cpu", 1, None) is None and gpu_request.local_gpus("cpu", 1) == 0
    assert gpu_request.cluster_gpus("gpu", 1) == 1 and gpu_request.local_gpus("gpu", 1) == 1


def test_the_cluster_working_dir_resolves_before_hydra_config_is_set(tmp_path, monkeypatch):
    """Hydra instantiates (and so resolves) the launcher before it sets HydraConfig: `${hydra:runtime.cwd}`
    failed there; the launching folder is what Ray ships."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]'")
    monkeypatch.chdir(tmp_path)
    runtime_env = launcher_of("ray_cluster").ray.init.runtime_env
    HydraConfig.instance().cfg = None  # as when Hydra instantiates the launcher
    assert OmegaConf.to_container(runtime_env, resolve=True)["working_dir"] == str(tmp_path)


# --------------------------------------------------------------------------------------------------- SLURM fit


def test_sinfo_lines_become_nodes_by_partition_with_their_gpus():
    partitions, default = parse_sinfo(SINFO)
    assert default == "cpu"
    assert partitions["cpu"] == [Node("cpu01", 32, 128000, 0), Node("cpu02", 64, 256000, 0)]
    assert partitions["gpu"] == [Node("gpu01", 16, 64000, 4), Node("gpu02", 8, 32000, 2)]
    assert [node.name for node in partitions["all"]] == ["gpu02"]
    assert [gres_gpus(g) for g in ("(null)", "", None, "gpu:1", "gpu:a100:4(S:0,1)", "shard:8", "gpu:2,gpu:v100:1")] \
        == [0, 0, 0, 1, 4, 0, 3]


def test_the_request_is_per_node_as_sbatch_reads_it():
    assert request_of({"cpus_per_task": 4, "tasks_per_node": 2, "mem_gb": 32, "gpus_per_node": None}) == \
        Request(cpus=8, memory_mb=32768, gpus=0)
    assert request_of({"gpus_per_task": 1, "tasks_per_node": 2}) == Request(cpus=2, memory_mb=None, gpus=2)
    assert request_of({"gres": "gpu:a100:2"}).gpus == 2
    assert request_of({"additional_parameters": {"gres": "gpu:3"}}).gpus == 3


def slurm_launcher(**keys) -> dict:
    return {"_target_": SLURM, "cpus_per_task": 4, "mem_gb": 32, "gpus_per_node": None, "tasks_per_node": 1,
            "nodes": 1, "partition": None, **keys}


def refusal(launcher: dict, sinfo: str = SINFO) -> str:
    with pytest.raises(ConfigError) as err:
        check_fits(launcher, sinfo=lambda: sinfo)
    return str(err.value)


def test_a_request_no_node_of_the_partition_can_hold_is_refused_naming_it_and_the_largest_node():
    check_fits(slurm_launcher(), sinfo=lambda: SINFO)  # the default partition (cpu) holds 4 CPUs, 32 GB
    check_fits(slurm_launcher(partition="gpu", gpus_per_node=4), sinfo=lambda: SINFO)
    message = refusal(slurm_launcher(gpus_per_node=1))
    assert message.startswith("hydra/launcher=slurm asks each job for 4 CPUs, 32768 MB, 1 GPUs, which no node of "
                              "partition cpu can hold, so the array would pend forever; the largest node is cpu02 "
                              "with 64 CPUs, 256000 MB, 0 GPUs")
    assert "GPUs follow trainer=cpu|gpu" in message
    message = refusal(slurm_launcher(partition="gpu", cpus_per_task=16, mem_gb=100))
    assert "16 CPUs, 102400 MB, 0 GPUs" in message and "largest node is gpu01 with 16 CPUs, 64000 MB, 4 GPUs" in message
    # several partitions: any node of any of them
    check_fits(slurm_launcher(partition="gpu,cpu", cpus_per_task=64), sinfo=lambda: SINFO)
    # a job over several nodes needs that many that each hold it
    check_fits(slurm_launcher(partition="gpu", nodes=2, cpus_per_task=8, mem_gb=16), sinfo=lambda: SINFO)
    assert "on each of 2 nodes, but 1 nodes of partition gpu can hold that" in refusal(
        slurm_launcher(partition="gpu", nodes=2, cpus_per_task=16))
    check_fits(slurm_launcher(mem_gb=None, cpus_per_task=None), sinfo=lambda: SINFO)


def test_an_unknown_or_missing_partition_is_named_with_the_ones_there_are():
    assert refusal(slurm_launcher(partition="gpus")) == (
        "hydra.launcher.partition=gpus: gpus is not a partition of this cluster; choose one of: all, cpu, gpu")
    no_default = SINFO.replace("cpu*", "cpu")
    assert refusal(slurm_launcher(), no_default).startswith("hydra.launcher.partition=null but this cluster has no "
                                                            "default partition; choose one of: all, cpu, gpu")


def test_other_launchers_and_machines_without_sinfo_are_not_checked():
    def no_call():
        raise AssertionError("sinfo called")

    check_fits({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"}, sinfo=no_call)
    check_fits({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, sinfo=no_call)
    check_fits(slurm_launcher(cpus_per_task=10_000), sinfo=lambda: None)


def fake_sinfo(folder: Path, output: str) -> dict[str, str]:
    """An `sinfo` on PATH that prints `output`, as the one of a cluster whose nodes are those."""
    folder.mkdir()
    program = folder / "sinfo"
    program.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_a_sweep_that_no_node_can_hold_is_refused_before_anything_is_written_or_submitted(tmp_path):
    """Through train.py, as a user on a 2-CPU partition without GPUs types it: the slurm launcher's 4 CPUs and
    32 GB are refused, a trainer on the GPU is refused for its GPU, and a request that fits passes (dry run)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    env = fake_sinfo(tmp_path / "bin", "localhost|debug*|2|20000|(null)\n")
    proc = train_py(["-m", *TINY_SWEEP, "hydra/launcher=slurm"], cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert ("jackpot: config error: hydra/launcher=slurm asks each job for 4 CPUs, 32768 MB, 0 GPUs, which no node "
            "of partition debug can hold, so the array would pend forever; the largest node is localhost with 2 "
            "CPUs, 20000 MB, 0 GPUs") in proc.stderr
    assert not (tmp_path / "outputs").exists()
    small = ["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
    proc = train_py(["-m", *TINY_SWEEP, "hydra/launcher=slurm", *small, "trainer=gpu"], cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "asks each job for 1 CPUs, 1024 MB, 1 GPUs" in proc.stderr
    proc = train_py(["-m", *TINY_SWEEP, "hydra/launcher=slurm", *small, "hydra.sweeper.dry_run=true"], cwd=tmp_path,
                    env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 jobs would be launched" in proc.stdout + proc.stderr


def test_a_ray_cluster_dry_run_composes_its_launcher(tmp_path):
    """`working_dir: ${hydra:runtime.cwd}` made every ray_cluster sweep fail at once, dry runs included."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="pip install -e '.[ray]'")
    proc = train_py(["-m", *TINY_SWEEP, "hydra/launcher=ray_cluster", "hydra.sweeper.dry_run=true"], cwd=tmp_path,
                    env={"RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 jobs would be launched" in proc.stdout + proc.stderr


def test_a_launchers_worker_has_the_configs_resolvers_before_hydra_names_the_jobs_folder(tmp_path):
    """Ray and submitit pickle train.py's task function and unpickle it in a fresh worker, where Hydra resolves
    the job's folder (`${pruner.name}`, for `pruner=custom` the `method_name` resolver) before the function runs:
    unpickling it must register jackpot's resolvers (jackpot.resolvers, through jackpot.config)."""
    import runpy
    import subprocess
    import sys

    import cloudpickle

    task = runpy.run_path(str(CONF.parent / "train.py"), run_name="train_as_shipped")["main"]
    (tmp_path / "task.pkl").write_bytes(cloudpickle.dumps(getattr(task, "__wrapped__", task)))
    check = ("import pickle, sys; from omegaconf import OmegaConf; pickle.loads(open(sys.argv[1], 'rb').read()); "
             "print(all(OmegaConf.has_resolver(r) for r in ('method_name', 'milestones_at')))")
    worker = subprocess.run([sys.executable, "-c", check, str(tmp_path / "task.pkl")], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)
    assert worker.stdout.strip() == "True", worker.stderr[-2000:]
