"""Atomic file writes: a reader never sees a half-written results file, mask file or checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from jackpot.runs import faults

TEMP_SUFFIX = ".tmp"


def remove_stale_temp_files(*folders: Path) -> None:
    """Delete what killed atomic writes left in `folders` (`.<name>.<random>.tmp`: a VGG19 checkpoint's is 160 MB).
    Call it only under the lock of the work that writes there, before that work writes: no live write's temp
    file may be removed."""
    for folder in folders:
        for leftover in Path(folder).glob(f".*{TEMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)


def _atomic_replace(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        faults.reach("write")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON to a temp file in the same folder, then rename it over `path`."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=str).encode()
    _atomic_replace(Path(path), lambda handle: handle.write(text))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to a temp file in the same folder, then rename it over `path`."""
    _atomic_replace(Path(path), lambda handle: handle.write(data))


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` through a temp file and a rename."""
    _atomic_replace(Path(path), lambda handle: torch.save(obj, handle))


def torch_load_safe(path: str | os.PathLike) -> Any:
    """Load tensors only (`weights_only=True`): a checkpoint or mask file never runs code."""
    return torch.load(path, map_location="cpu", weights_only=True)
