"""Lightning checkpoints written through a temp file and a rename, and read back with weights_only=True."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from jackpot.io import torch_load_safe, torch_save_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """A kill at any moment leaves either the previous checkpoint or the new one, never half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        torch_save_atomic(checkpoint, Path(path))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return torch_load_safe(path)
