"""Datasets as uint8 arrays, the paper's data sanity checks, and their loaders (torchvision, on-device).

Exports resolve lazily (PEP 562) so ``python -m jackpot.data.fake_cifar`` neither imports Lightning nor trips
runpy's "found in sys.modules" warning.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jackpot.data.catalog import DATASET_NAMES, NUM_CLASSES, load_arrays
    from jackpot.data.corruption import CORRUPTIONS, apply_corruption
    from jackpot.data.device_loader import DeviceLoader
    from jackpot.data.errors import DatasetError
    from jackpot.data.fake_cifar import write_fake_cifar
    from jackpot.data.module import ImageDataModule

_EXPORTS = {
    "DATASET_NAMES": "catalog",
    "NUM_CLASSES": "catalog",
    "load_arrays": "catalog",
    "CORRUPTIONS": "corruption",
    "apply_corruption": "corruption",
    "DeviceLoader": "device_loader",
    "DatasetError": "errors",
    "write_fake_cifar": "fake_cifar",
    "ImageDataModule": "module",
}
__all__ = [
    "CORRUPTIONS",
    "DATASET_NAMES",
    "NUM_CLASSES",
    "DatasetError",
    "DeviceLoader",
    "ImageDataModule",
    "apply_corruption",
    "load_arrays",
    "write_fake_cifar",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jackpot.data' has no attribute {name!r}")
    value = getattr(import_module(f"jackpot.data.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
