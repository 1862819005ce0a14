#!/usr/bin/env bash
# Installs what `make test-full` needs to run the cluster launchers against real clusters on this machine
# (tests/test_launchers_real.py): SLURM and munge, with slurmdbd + MariaDB for the accounting submitit polls.
# Debian or Ubuntu; as root, or through sudo. Ray comes with the venv's `ray` extra (`make clusters` adds `slurm`).
# Nothing is configured or left running for the tests: each starts its own daemons on loopback, in a temp dir,
# and stops them. (Outside containers Debian may start its own munge/mariadb services on install; the tests
# do not use them.) The SLURM test runs its jobs as root: run `make test-full` as root for it, else it skips.
set -euo pipefail

PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)

if ! command -v apt-get >/dev/null; then
    echo "real_clusters.sh: no apt-get here; install ${PACKAGES[*]} (or your system's SLURM, munge and MariaDB)" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "real_clusters.sh: run as root (no sudo here)" >&2; exit 1; }
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y "${PACKAGES[@]}"
for program in munged slurmctld slurmd slurmdbd mariadbd sbatch sinfo sacct; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null \
        || { echo "real_clusters.sh: $program missing after the install" >&2; exit 1; }
done
echo "real_clusters.sh: SLURM $(PATH="$PATH:/usr/sbin" slurmctld -V | cut -d' ' -f2), munge and MariaDB installed"
