"""Keep scoring memory flat by parking autograd's saved activations on disk.

Why not chunk the scoring batch: SNIP and GraSP score in **train-mode BatchNorm**, so every sample of a
batch (GraSP: of a half) is normalised with the statistics of all of them and its gradient flows back
through those statistics. Gradients accumulated over chunks are therefore *different* scores, not the
same ones computed with less memory. What does scale with the batch is what autograd saves for the
backward passes (activations, and for GraSP's double backward the first backward's own graph), so those
tensors are written to a temporary file when saved and read back when the backward needs them
(``torch.autograd.graph.saved_tensors_hooks``). The arithmetic is untouched: the scores are the one-pass
scores bit for bit, and the resident memory is a few layers' activations instead of all of them.

``auto`` offloads only where the in-memory scoring would not fit (``choose_offload``): on CUDA the device memory
holds the paper's scoring batches (GraSP on 1,000 images peaks at ~6 GiB), and on a CPU machine with enough
memory the in-memory path keeps the official computation order (float32 results differ in the last bits between
the two orders, enough to decide a few weights at the threshold differently).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from jackpot.machine.malloc import return_freed_cpu_memory
from jackpot.pruning.low_memory.memory_fit import (
    OffloadChoice,
    available_bytes,
    fits_in_memory,
    record,
    scoring_peak_bytes,
)

OFFLOAD_MODES = ("auto", "disk", "none")
MIN_OFFLOAD_BYTES = 256 << 10  # smaller tensors stay in memory: the file round trip would cost more

_files: contextvars.ContextVar[Any] = contextvars.ContextVar("jackpot_offload_files", default=None)


class _OnDisk:
    """One saved tensor's bytes in a file; the file goes when autograd drops this handle."""

    def __init__(self, tensor: Tensor, path: Path) -> None:
        self.size, self.stride, self.dtype = tensor.shape, tensor.stride(), tensor.dtype
        self.path = path
        with open(path, "wb") as file:
            file.write(_flat_bytes(tensor).numpy().data)
        weakref.finalize(self, _unlink, str(path))

    def load(self, owned: bool = False) -> Tensor:
        """A fresh tensor (``owned`` changes nothing: every load is one)."""
        out = torch.empty_strided(self.size, self.stride, dtype=self.dtype)
        with open(self.path, "rb") as file:
            file.readinto(_flat_bytes(out).numpy().data)
        return out


class _InMemory:
    """A tensor kept as it is, with the same ``load`` as ``_OnDisk``."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def load(self, owned: bool = False) -> Tensor:
        """The tensor itself, or with ``owned`` a copy the caller may change in place."""
        return self.tensor.clone() if owned else self.tensor


Parked = _OnDisk | _InMemory


def _worth_a_file(tensor: Tensor) -> bool:
    return (
        tensor.device.type == "cpu"
        and tensor.numel() * tensor.element_size() >= MIN_OFFLOAD_BYTES
        and _is_plain_dense(tensor)
    )


def park(tensor: Tensor) -> Parked:
    """Keep a tensor for later: in a file inside ``saved_tensors_on_disk`` (when large and dense; its own
    bytes, so later in-place changes of ``tensor`` do not reach it), else as it is."""
    next_file = _files.get()
    if next_file is None or not _worth_a_file(tensor):
        return _InMemory(tensor)
    return _OnDisk(tensor.detach(), next_file())


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _flat_bytes(tensor: Tensor) -> Tensor:
    """The memory span of a dense (non-overlapping, gap-free) tensor as a 1-D uint8 view."""
    span = tensor.as_strided((tensor.numel(),), (1,), tensor.storage_offset())
    return span.view(torch.uint8)


def _is_plain_dense(tensor: Tensor) -> bool:
    """True for an ordinary strided tensor covering exactly numel() consecutive elements in some dimension
    order (not a lazily-zero tensor, a wrapper of a transform, sparse or quantized: those stay in memory)."""
    if (
        tensor.numel() == 0
        or tensor.layout != torch.strided
        or tensor.is_quantized
        or tensor._is_zerotensor()
        or torch._C._functorch.is_functorch_wrapped_tensor(tensor)
    ):
        return False
    order = sorted(range(tensor.dim()), key=lambda d: tensor.stride(d))
    expected = 1
    for dim in order:
        if tensor.size(dim) != 1 and tensor.stride(dim) != expected:
            return False
        expected *= tensor.size(dim)
    return True


def check_mode(mode: str, device: torch.device) -> None:
    """A known mode, and ``disk`` only for a model on the CPU (its files hold CPU tensors)."""
    if mode not in OFFLOAD_MODES:
        raise ValueError(f"unknown offload mode {mode!r}; allowed: {', '.join(OFFLOAD_MODES)}")
    if mode == "disk" and device.type != "cpu":
        raise ValueError(f"offload='disk' needs the scoring model on the CPU, got {device.type}")


def choose_offload(mode: str, net: nn.Module, images: int, method: str,
                   image_shape: tuple[int, ...] = (3, 32, 32)) -> OffloadChoice:
    """Resolve ``auto | disk | none`` for one scoring of ``images`` images by ``method`` (snip, grasp) with
    ``net`` on its device. ``auto``: in memory on CUDA, and on CPU whenever the estimated peak fits the memory
    available (``jackpot.pruning.low_memory.memory_fit``); on disk only when it does not. Logged and recorded."""
    device = next(net.parameters()).device
    check_mode(mode, device)
    if mode != "auto" or device.type != "cpu":
        return record(OffloadChoice(mode, mode == "disk"))
    estimate, available = scoring_peak_bytes(net, images, method, image_shape), available_bytes()
    return record(OffloadChoice(mode, not fits_in_memory(estimate, available), estimate, available))


@contextlib.contextmanager
def saved_tensors_on_disk(keep: Sequence[Tensor] = (), directory: str | None = None) -> Iterator[None]:
    """Inside this block, large saved CPU tensors of autograd graphs live in files under a temp folder.

    ``keep``: tensors that stay in memory anyway (the parameters being differentiated: they are alive
    regardless, so writing them would only cost time). ``park`` uses the same folder inside the block.
    The folder is removed on exit, also on errors.
    """
    kept = {t.data_ptr() for t in keep}
    with tempfile.TemporaryDirectory(prefix="jackpot-saved-", dir=directory) as folder:
        counter = iter(range(1 << 62))

        def next_file() -> Path:
            return Path(folder) / f"{next(counter)}.bin"

        def pack(tensor: Tensor) -> Any:
            if tensor.data_ptr() in kept or not _worth_a_file(tensor):
                return tensor
            return _OnDisk(tensor.detach(), next_file())

        def unpack(packed: Any) -> Tensor:
            return packed.load() if isinstance(packed, _OnDisk) else packed

        token = _files.set(next_file)
        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
                yield
        finally:
            _files.reset(token)


@contextlib.contextmanager
def low_memory(enabled: bool, keep: Sequence[Tensor] = ()) -> Iterator[None]:
    """When ``enabled`` (see ``choose_offload``): saved tensors on disk and freed blocks handed back to the OS
    at once (``jackpot.machine.malloc.return_freed_cpu_memory``); else nothing changes."""
    if not enabled:
        yield
        return
    with return_freed_cpu_memory(), saved_tensors_on_disk(keep):
        yield
