"""Datasets by config name: which loader, how many classes.

The loaders are imported when a dataset is loaded, not here: config validation reads the names, and a bad
value should be reported before torchvision and scikit-learn are imported (~4 s on 2 cores).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jackpot.data.arrays import ImageArrays

DATASET_NAMES: tuple[str, ...] = ("cifar10", "cifar100", "digits")
NUM_CLASSES: dict[str, int] = {"cifar10": 10, "cifar100": 100, "digits": 10}


def check_name(name: str) -> str:
    """Fail early, naming the config key, instead of deep inside a loader."""
    if name not in DATASET_NAMES:
        raise ValueError(f"dataset.name={name!r} is not one of {list(DATASET_NAMES)}")
    return name


def load_arrays(
    name: str, root: str | os.PathLike = "data", download: bool = True, verify_md5: bool = True
) -> ImageArrays:
    """Load a dataset into uint8 HWC arrays; CIFAR errors are `DatasetError`s naming `dataset.*` keys."""
    if check_name(name) == "digits":
        from jackpot.data.digits import load_digits_arrays

        return load_digits_arrays()
    from jackpot.data.cifar import load_cifar

    return load_cifar(name, root, download=download, verify_md5=verify_md5)
