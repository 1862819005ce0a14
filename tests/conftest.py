"""Shared fixtures: generated CIFAR-format folders and Hydra composition of the real configs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny networks: intra-op threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_py_env(fault: str | None, env: dict[str, str] | None) -> dict[str, str]:
    full_env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env.pop("JACKPOT_FAULT", None)
    full_env.pop("HYDRA_FULL_ERROR", None)
    if fault:
        full_env["JACKPOT_FAULT"] = fault
    return full_env


def train_py(args: list[str], cwd: Path | None = None, fault: str | None = None,
             env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`python train.py <args>` in a subprocess, wandb disabled unless `env` says otherwise; `fault` sets
    JACKPOT_FAULT (see jackpot.runs.faults)."""
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=_train_py_env(fault, env),
                          capture_output=True, text=True, timeout=timeout)


def start_train_py(args: list[str], cwd: Path | None = None) -> subprocess.Popen:
    """`train_py` started and not waited for; stdout and stderr together in its `stdout`."""
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=_train_py_env(None, None),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """Small CIFAR-10 and CIFAR-100 folders in the real on-disk format (torchvision reads them)."""
    from jackpot.data import write_fake_cifar

    root = tmp_path_factory.mktemp("cifar")
    write_fake_cifar(root, name="cifar10", n_train=200, n_test=50, seed=0)
    write_fake_cifar(root, name="cifar100", n_train=1000, n_test=100, seed=0)
    return root


def compose_cfg(tmp_path: Path, overrides: list[str]) -> DictConfig:
    """The real config, as `python train.py <overrides>` would compose it, with paths under tmp_path."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


TINY = [
    "model=resnet8",
    "trainer=cpu",
    "schedule=quick",
    "schedule.epochs=2",
    "schedule.milestones=[1]",
    "trainer.limit_train_batches=2",
    "dataset.samples_per_class=2",
    "trainer.checkpoint_interval_s=0",  # every epoch: the resume tests kill runs between epochs of a few steps
]


@contextmanager
def lock_held_by_another_process(lock_path: Path) -> Iterator[None]:
    """`lock_path` flock-ed by a live process for the block, which is then SIGKILLed (no clean-up runs in it)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, sys, time; held = open(sys.argv[1], 'a'); fcntl.flock(held, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(300)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()
