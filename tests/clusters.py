"""Real one-node clusters on loopback, for the tests of the cluster launchers (tests/test_launchers_real.py).

`ray_head()` starts a Ray head, `slurm_cluster()` SLURM (munge, MariaDB + slurmdbd for the accounting submitit
polls, slurmctld, slurmd). Each runs its daemons from a dir of its own, on free ports, every daemon in a session
of its own, and stops exactly those processes (their process groups and whatever they spawned) when the block
ends, failed or not: `ray stop` or `scancel`-ing everything would also stop other people's work.

`make clusters` (scripts/real_clusters.sh) installs SLURM, munge and MariaDB; Ray comes with the `ray` extra.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
SLURM_PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "sacct", "srun", "scontrol")
ACCOUNTING_PROGRAMS = ("slurmdbd", "mariadbd", "mariadb-install-db")
PARTITION = "debug"
NODE = "localhost"


class ClusterError(RuntimeError):
    """A daemon did not come up; the message ends with its log's tail."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (the daemon binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def wait_until(ready: Callable[[], bool], what: str, log: Path, timeout: float = 60.0) -> None:
    """Poll `ready` until it holds; else ClusterError naming `what`, with the tail of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    raise ClusterError(f"{what} not ready after {timeout:.0f} s; {log}:\n{tail}")


def missing_programs(names: Sequence[str], path: str | None = None) -> list[str]:
    """Those of `names` not on PATH (nor in /usr/sbin, where Debian puts the daemons)."""
    search = path or os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [name for name in names if shutil.which(name, path=search) is None]


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every live process (zombies are only waiting for their parent)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, session
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def _environ_holds(pid: int, entry: bytes) -> bool:
    try:
        return entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _ancestors(pid: int, table: dict[int, tuple[int, int]]) -> set[int]:
    found = set()
    while pid in table and pid not in found:
        found.add(pid)
        pid = table[pid][0]
    return found


@dataclass
class Daemons:
    """Processes started in their own sessions, logging to files in `folder`; `stop()` ends them and all they
    spawned: children in their sessions, and those that left them (slurmd's slurmstepd daemonizes), which carry
    the marker variable JACKPOT_TEST_CLUSTER=<folder> every daemon is started with. Nothing else."""

    folder: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def marker(self) -> tuple[str, str]:
        return "JACKPOT_TEST_CLUSTER", str(self.folder)

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        key, value = self.marker
        with self.log(name).open("ab") as out:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**(env or os.environ), key: value},
                                    cwd=self.folder)
        self.procs.append(proc)
        return proc

    def _tree(self) -> set[int]:
        table = _proc_table()
        roots = {proc.pid for proc in self.procs}
        entry = "=".join(self.marker).encode()
        ours = {pid for pid, (_, sid) in table.items() if sid in roots or pid in roots or _environ_holds(pid, entry)}
        ours -= _ancestors(os.getpid(), table)  # never this test (nor what runs it)
        grew = True
        while grew:
            grew = False
            for pid, (ppid, _) in table.items():
                if ppid in ours and pid not in ours:
                    ours.add(pid)
                    grew = True
        return ours

    def stop(self, grace: float = 5.0) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self._tree()
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._tree():
                for proc in self.procs:
                    proc.poll()  # reap ours, so they stop counting as alive
                time.sleep(0.2)
            if not self._tree():
                break
        for proc in self.procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


# ------------------------------------------------------------------------------------------------------------ Ray


# Ray replaces 127.0.0.1 in an address by the machine's outward IP unless told it runs on one machine only (the
# switch Ray itself sets off on macOS and Windows); no auth token, no usage report.
LOOPBACK_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_program() -> Path | None:
    """The venv's `ray` command, or None when Ray is not installed there."""
    found = Path(sys.executable).with_name("ray")
    return found if found.exists() else None


@contextmanager
def ray_head(num_cpus: int = 2, timeout: float = 120.0) -> Iterator[dict[str, str]]:
    """A Ray head on loopback with `num_cpus` CPUs and no GPU; yields the environment a sweep needs to join it
    (RAY_ADDRESS=127.0.0.1:<port>)."""
    ray = ray_program()
    if ray is None:
        raise ClusterError(f"no `ray` next to {sys.executable}: pip install -e '.[ray]'")
    # Ray puts unix sockets under its temp dir, whose paths must stay under 108 characters: a short dir in /tmp
    folder = Path(tempfile.mkdtemp(prefix="jray", dir="/tmp"))
    daemons = Daemons(folder)
    port = free_port()
    env = {**os.environ, **LOOPBACK_RAY}
    ports = {"--ray-client-server-port": free_port(), "--dashboard-agent-listen-port": free_port(),
             "--dashboard-agent-grpc-port": free_port(), "--metrics-export-port": free_port(),
             "--runtime-env-agent-port": free_port(), "--node-manager-port": free_port(),
             "--object-manager-port": free_port()}
    try:
        daemons.start("ray", [str(ray), "start", "--head", "--block", f"--node-ip-address={LOOPBACK}",
                              f"--port={port}", f"--num-cpus={num_cpus}", "--num-gpus=0",
                              "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder}",
                              *(f"{flag}={value}" for flag, value in ports.items())], env=env)
        log = daemons.log("ray")
        wait_until(lambda: "Ray runtime started" in log.read_text(errors="replace"), "ray head", log, timeout)
        yield {**LOOPBACK_RAY, "RAY_ADDRESS": f"{LOOPBACK}:{port}", "RAY_DEDUP_LOGS": "0"}
    finally:
        daemons.stop()
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------- SLURM


@dataclass
class Slurm:
    """A running one-node SLURM cluster: `env` points its clients (sbatch, sinfo, ...) at it."""

    folder: Path
    env: dict[str, str]
    cpus: int
    memory_mb: int
    accounting: bool
    partition: str = PARTITION
    node: str = NODE

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        proc = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _conf(settings: dict[str, object]) -> str:
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _node_memory_mb() -> int:
    """What slurmd may offer: the machine's memory, at most 20 GB (the cluster shares the machine)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return min(int(line.split()[1]) // 1024 - 512, 20000)
    return 4000


def _start_munge(daemons: Daemons, folder: Path) -> Path:
    folder.mkdir(mode=0o700)
    key = folder / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    sock = folder / "munge.socket"
    daemons.start("munged", ["munged", "-F", "-f", f"--key-file={key}", f"--socket={sock}",
                             f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                             f"--seed-file={folder / 'munged.seed'}"])
    wait_until(sock.exists, "munged", daemons.log("munged"))
    return sock


def _start_mariadb(daemons: Daemons, folder: Path) -> int:
    data = folder / "data"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    daemons.start("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={data}", "--user=root",
                               f"--socket={folder / 'mysql.sock'}", f"--port={port}", f"--bind-address={LOOPBACK}",
                               f"--pid-file={folder / 'mariadbd.pid'}", f"--tmpdir={folder}", "--skip-log-bin",
                               "--innodb-buffer-pool-size=32M", "--skip-name-resolve"])
    wait_until(lambda: listening(port), "mariadbd", daemons.log("mariadbd"), timeout=90)
    return port


@contextmanager
def slurm_cluster(accounting: bool | None = None, timeout: float = 90.0) -> Iterator[Slurm]:
    """SLURM on loopback: one node `localhost` with this machine's CPUs in partition `debug`, run as root; with
    accounting (slurmdbd on MariaDB) when installed, unless `accounting=False`. Yields the running cluster."""
    if missing := missing_programs(SLURM_PROGRAMS):
        raise ClusterError(f"SLURM not installed (missing {', '.join(missing)}): make clusters")
    if accounting is None:
        accounting = not missing_programs(ACCOUNTING_PROGRAMS)
    folder = Path(tempfile.mkdtemp(prefix="jslurm", dir="/tmp"))
    daemons = Daemons(folder)
    slurm = None
    try:
        slurm = _start_slurm(daemons, folder, accounting, timeout)
        yield slurm
    finally:
        if slurm is not None:
            _cancel_jobs(slurm)
        daemons.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _cancel_jobs(slurm: Slurm, timeout: float = 30.0) -> None:
    """Cancel what is left in the queue, so that slurmd ends its job steps before it is stopped itself."""
    def queued() -> list[str]:
        return slurm.run("squeue", "--noheader", "--format=%i", check=False).stdout.split()

    if ids := queued():
        slurm.run("scancel", *ids, check=False)
        deadline = time.monotonic() + timeout
        while queued() and time.monotonic() < deadline:
            time.sleep(0.5)


def _start_slurm(daemons: Daemons, folder: Path, accounting: bool, timeout: float) -> Slurm:
    sock = _start_munge(daemons, folder / "munge")
    conf_dir = folder / "etc"
    env = {**os.environ, "SLURM_CONF": str(conf_dir / "slurm.conf")}
    for name in ("state", "spool", "log", "run", "tmp"):
        (folder / name).mkdir()
    cpus = os.cpu_count() or 1
    memory_mb = _node_memory_mb()
    ctld_port, slurmd_port = free_port(), free_port()
    settings: dict[str, object] = {
        "ClusterName": "jackpot", "SlurmctldHost": f"{NODE}({LOOPBACK})", "SlurmUser": "root", "SlurmdUser": "root",
        "SlurmctldPort": ctld_port, "SlurmdPort": slurmd_port, "AuthType": "auth/munge", "CredType": "cred/munge",
        "AuthInfo": f"socket={sock}", "StateSaveLocation": folder / "state", "SlurmdSpoolDir": folder / "spool",
        "SlurmctldPidFile": folder / "run/slurmctld.pid", "SlurmdPidFile": folder / "run/slurmd.pid",
        "SlurmctldLogFile": folder / "log/slurmctld.log", "SlurmdLogFile": folder / "log/slurmd.log",
        "TmpFS": folder / "tmp", "ProctrackType": "proctrack/linuxproc", "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core_Memory", "MpiDefault": "none",
        "SwitchType": "switch/none", "JobAcctGatherType": "jobacct_gather/none", "ReturnToService": 2,
        "SlurmdParameters": "config_overrides", "SchedulerParameters": "sched_interval=2",
        "MinJobAge": 600, "InactiveLimit": 0, "KillWait": 5,
    }
    if accounting:
        db_port = _start_mariadb(daemons, folder / "mysql")
        dbd_port = free_port()
        _write(conf_dir / "slurmdbd.conf", _conf({
            "AuthType": "auth/munge", "AuthInfo": f"socket={sock}", "DbdHost": NODE, "DbdAddr": LOOPBACK,
            "DbdPort": dbd_port, "SlurmUser": "root", "StorageType": "accounting_storage/mysql",
            "StorageHost": LOOPBACK, "StoragePort": db_port, "StorageUser": "root", "StorageLoc": "slurm_acct_db",
            "PidFile": folder / "run/slurmdbd.pid", "LogFile": folder / "log/slurmdbd.log",
        }), mode=0o600)
        settings |= {"AccountingStorageType": "accounting_storage/slurmdbd", "AccountingStorageHost": LOOPBACK,
                     "AccountingStoragePort": dbd_port, "AccountingStoragePass": sock}
    _write(conf_dir / "slurm.conf", _conf(settings) + _conf({
        "NodeName": f"{NODE} NodeAddr={LOOPBACK} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        "PartitionName": f"{PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
    }))
    if accounting:
        daemons.start("slurmdbd", ["slurmdbd", "-D"], env=env)
        wait_until(lambda: listening(dbd_port), "slurmdbd", folder / "log/slurmdbd.log", timeout)
    daemons.start("slurmctld", ["slurmctld", "-D", "-i"], env=env)
    wait_until(lambda: listening(ctld_port), "slurmctld", folder / "log/slurmctld.log", timeout)
    daemons.start("slurmd", ["slurmd", "-D", "-N", NODE], env=env)
    slurm = Slurm(folder=folder, env=env, cpus=cpus, memory_mb=memory_mb, accounting=accounting)

    def node_idle() -> bool:
        state = slurm.run("sinfo", "--noheader", "--Node", "--format=%T", check=False).stdout.strip()
        return state == "idle"

    wait_until(node_idle, "slurmd (node idle)", folder / "log/slurmd.log", timeout)
    return slurm
