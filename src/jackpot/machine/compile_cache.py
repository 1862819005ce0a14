"""One persistent torch.compile cache for every run of a sweep.

A cold Inductor compile of VGG19 took ~53 s on an H200 and a warm one ~6 s (issue #19's measurements). By
default each process compiles into a per-user temp folder, which a fresh Ray or SLURM worker may not share. So
runs that compile point Inductor, and Triton under it, at `<paths.cache_dir>/compile/<torch and Python
versions>`. The folder name carries the versions, so a torch upgrade never reads another version's artifacts.
Concurrent jobs can share the folder because Inductor writes its entries atomically (temp file, then rename).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

USER_SETTING = "TORCHINDUCTOR_CACHE_DIR"


def compile_cache_dir(cache_dir: str | Path) -> Path:
    cuda = f"-cuda{torch.version.cuda}" if torch.version.cuda else ""
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(cache_dir) / "compile" / f"torch-{torch.__version__}{cuda}-{python}".replace("+", "_")


def use_shared_compile_cache(cache_dir: str | Path, environ: dict[str, str] | None = None) -> Path:
    """Point this process's compile caches at the sweep's shared folder; returns it. A TORCHINDUCTOR_CACHE_DIR
    the user set wins. Called before the first compile (Inductor reads these variables when it compiles)."""
    environ = os.environ if environ is None else environ
    if environ.get(USER_SETTING):
        return Path(environ[USER_SETTING])
    folder = compile_cache_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    environ[USER_SETTING] = str(folder)
    environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")  # compiled graphs, not only kernels, across processes
    environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")  # and the backward's (AOTAutograd) graphs
    return folder
