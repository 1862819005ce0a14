"""One process per cell (jackpot.runs.cell_lock) and the tables' list of started runs without results."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time

import pytest
from conftest import lock_held_by_another_process
from test_tables import write_run

from jackpot import tables
from jackpot.runs import cell_lock as lock_module
from jackpot.runs.cell_lock import LOCK_FILE, CellBusy, cell_lock, is_running
from jackpot.tables.unfinished import describe_unfinished, find_unfinished


def test_a_second_holder_is_refused_and_the_lock_goes_with_its_process(tmp_path):
    assert not is_running(tmp_path / "cell")
    with lock_held_by_another_process(tmp_path / "cell" / LOCK_FILE):
        assert is_running(tmp_path / "cell")
        with pytest.raises(CellBusy, match="another process is running this cell"), \
                cell_lock(tmp_path / "cell", patience_s=0.2):
            pass
    assert not is_running(tmp_path / "cell")  # SIGKILLed holder: nothing left locked
    with cell_lock(tmp_path / "cell"):
        assert is_running(tmp_path / "cell")  # seen from any descriptor, this process's own included
    assert not is_running(tmp_path / "cell")


def test_a_readers_probe_never_makes_a_starting_job_skip(tmp_path):
    (tmp_path / "cell").mkdir()
    (tmp_path / "cell" / LOCK_FILE).touch()
    probe = os.open(tmp_path / "cell" / LOCK_FILE, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)  # a slow probe, held across the job's first attempts
    threading.Timer(0.5, os.close, args=(probe,)).start()
    started = time.monotonic()
    with cell_lock(tmp_path / "cell"):
        assert time.monotonic() - started >= 0.4


def test_a_requeued_slurm_job_waits_out_a_dead_nodes_nfs_lease(monkeypatch):
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert lock_module.acquire_patience_s() == lock_module.ACQUIRE_PATIENCE_S
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert lock_module.acquire_patience_s() == lock_module.ACQUIRE_PATIENCE_S
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    assert lock_module.acquire_patience_s() == lock_module.REQUEUED_PATIENCE_S > 90


def test_a_file_system_without_flock_runs_unguarded_with_a_warning(tmp_path, monkeypatch):
    def no_flock(fd, mode):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock_module.fcntl, "flock", no_flock)
    with pytest.warns(RuntimeWarning, match="no flock"), cell_lock(tmp_path / "cell"):
        pass


def _started(root, name: str, cell: str, checkpoint_age_s: float | None = None):
    run_dir = root / name / "resnet8-digits" / cell
    run_dir.mkdir(parents=True)
    (run_dir / "run_config.json").write_text(json.dumps({"config_hash": "x", "config": {"name": name}}))
    if checkpoint_age_s is not None:
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir()
        ckpt.write_bytes(b"x")
        stamp = time.time() - checkpoint_age_s
        os.utime(ckpt, (stamp, stamp))
    return run_dir


def test_tables_list_running_and_interrupted_runs_of_the_shown_tables(tmp_path, capsys):
    root = tmp_path / "outputs"
    write_run(root, "toy", "snip", 0.5, 0, 90.0)
    (root / "toy" / "resnet8-digits" / "snip-none-r0.5-s0" / "run_config.json").write_text(
        json.dumps({"config": {"name": "toy"}}))  # finished: not listed
    interrupted = _started(root, "toy", "snip-none-r0.5-s1", checkpoint_age_s=3 * 3600)
    running = _started(root, "toy", "snip-none-r0.5-s2")
    other = _started(root, "other", "snip-none-r0.5-s0")
    with lock_held_by_another_process(running / LOCK_FILE):
        found = find_unfinished([root], names=["toy"])
        code = tables.main([str(root), "--sweep", "toy", "--format", "rich"])
    out = capsys.readouterr().out
    assert [(u.path, u.running) for u in found] == [(interrupted, False), (running, True)]
    assert other not in [u.path for u in found]
    assert code == 0
    assert "unfinished runs: 1 running, 1 interrupted (run the same sweep command again" in out
    assert f"  interrupted {interrupted}  (last written 3.0 h ago)\n" in out  # whole lines, paths unbroken
    assert f"  running     {running}  (last written " in out
    assert describe_unfinished([]) == []
