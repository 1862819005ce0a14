"""CIFAR-10/100 through torchvision's own classes, with errors that say which file and which config key.

torchvision checks the md5 of every file even with ``download=False`` (CPU_BASELINE §3), which rejects
generated test folders. ``verify_md5=False`` switches that off explicitly through the ``_Unchecked*``
subclasses below, whose file lists carry ``md5=None`` (torchvision then only checks that each file exists).
"""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import calculate_md5

from jackpot.data.arrays import ImageArrays
from jackpot.data.errors import DatasetError
from jackpot.runs.file_lock import exclusive

CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"

# PAPER_SPEC §2: the official normalisation constants (not the exact dataset statistics).
CIFAR_STATS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}


class _UncheckedCIFAR10(CIFAR10):
    """CIFAR10 that only checks the files exist (``dataset.verify_md5=false``, for generated folders)."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class _UncheckedCIFAR100(CIFAR100):
    """CIFAR100 that only checks the files exist (``dataset.verify_md5=false``, for generated folders)."""

    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}


_CLASSES: dict[tuple[str, bool], type[CIFAR10]] = {
    ("cifar10", True): CIFAR10,
    ("cifar10", False): _UncheckedCIFAR10,
    ("cifar100", True): CIFAR100,
    ("cifar100", False): _UncheckedCIFAR100,
}
_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def cifar_class(name: str, verify_md5: bool = True) -> type[CIFAR10]:
    """torchvision's class for `name`, or its md5-free subclass when `verify_md5` is False."""
    if name not in CIFAR_STATS:
        raise ValueError(f"not a CIFAR dataset: {name!r} (expected one of {sorted(CIFAR_STATS)})")
    return _CLASSES[(name, bool(verify_md5))]


def _expected(name: str) -> list[tuple[str, str]]:
    """(file name, real md5) for every file the dataset needs, from torchvision's checked class."""
    cls = cifar_class(name, verify_md5=True)
    return [(f, md5) for f, md5 in cls.train_list + cls.test_list] + [(cls.meta["filename"], cls.meta["md5"])]


def cifar_folder(name: str, root: str | os.PathLike) -> Path:
    """Where torchvision expects the files: ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``."""
    return Path(root) / cifar_class(name).base_folder


def missing_files(name: str, root: str | os.PathLike) -> list[Path]:
    folder = cifar_folder(name, root)
    return [folder / f for f, _ in _expected(name) if not (folder / f).is_file()]


def _placement_help(name: str, root: str | os.PathLike) -> str:
    folder = cifar_folder(name, root)
    files = ", ".join(f for f, _ in _expected(name))
    return (
        f"dataset.root={str(root)!r} must contain the folder {folder.name!r} ({folder}) with {files}. "
        f"Either download the '{_TITLES[name]} python version' archive from {CIFAR_PAGE} and extract it into "
        f"dataset.root, or run on a machine with network access and dataset.download=true."
    )


def _first_missing_folder(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (None if `path` exists)."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


def ensure_cifar_files(name: str, root: str | os.PathLike, download: bool = True) -> None:
    """Make sure every file exists, downloading with torchvision if allowed; else raise `DatasetError`."""
    if not missing_files(name, root):
        return
    title = _TITLES[name]
    if not download:
        raise DatasetError(
            f"{title} files are missing and dataset.download=false. {_placement_help(name, root)}"
        )
    created = _first_missing_folder(Path(root))
    Path(root).mkdir(parents=True, exist_ok=True)
    lock = Path(root) / f".{cifar_class(name).base_folder}.lock"
    try:
        with exclusive(lock, f"the {title} download"):
            if not missing_files(name, root):  # another process finished the download while we waited
                return
            try:
                # The real class, so the archive's md5 is checked even when the per-file check is off.
                cifar_class(name, verify_md5=True)(root=str(root), train=True, download=True)
            except (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError) as err:
                lock.unlink(missing_ok=True)  # still held: a failed download leaves no lock file behind
                raise DatasetError(
                    f"{title} files are missing and the download failed ({type(err).__name__}: {err}). "
                    f"{_placement_help(name, root)}"
                ) from err
    except DatasetError:
        if created is not None:  # nor the folders it made (a later run with download=false must see none)
            shutil.rmtree(created, ignore_errors=True)
        raise
    if missing := missing_files(name, root):
        raise DatasetError(
            f"{title} download finished but {missing[0]} is missing. {_placement_help(name, root)}"
        )


def _md5_problem(name: str, root: str | os.PathLike) -> DatasetError | None:
    folder = cifar_folder(name, root)
    for filename, md5 in _expected(name):
        path = folder / filename
        actual = calculate_md5(path)
        if actual != md5:
            return DatasetError(
                f"{_TITLES[name]} file {path} is corrupted or truncated (md5 {actual}, expected {md5}). "
                f"Delete {folder} and download it again (dataset.download=true, or from {CIFAR_PAGE}). "
                f"Only a generated test folder should be read with dataset.verify_md5=false."
            )
    return None


def _unreadable_problem(name: str, root: str | os.PathLike) -> DatasetError | None:
    folder = cifar_folder(name, root)
    for filename, _ in _expected(name):
        path = folder / filename
        try:
            with open(path, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")
            if "data" in entry:
                np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        except Exception as err:  # any failure here means this file is the bad one
            return DatasetError(
                f"{_TITLES[name]} file {path} cannot be read ({type(err).__name__}: {err}): it is truncated "
                f"or not a CIFAR pickle. Delete {folder} and place fresh files there "
                f"(dataset.download=true, or from {CIFAR_PAGE})."
            )
    return None


def _open(name: str, root: str | os.PathLike, train: bool, verify_md5: bool) -> CIFAR10:
    cls = cifar_class(name, verify_md5)
    try:
        return cls(root=str(root), train=train, download=False)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted": a file failed its md5
        problem = _md5_problem(name, root) if not missing_files(name, root) else None
        raise (problem or DatasetError(f"{_TITLES[name]}: {err}. {_placement_help(name, root)}")) from err
    except Exception as err:  # unpickling or reshaping failed: find the file to name it
        problem = _unreadable_problem(name, root)
        raise (problem or DatasetError(f"{_TITLES[name]} could not be read: {err!r}")) from err


def load_cifar(
    name: str, root: str | os.PathLike = "data", download: bool = True, verify_md5: bool = True
) -> ImageArrays:
    """Load CIFAR-10/100 train and test sets as uint8 HWC arrays via torchvision's classes."""
    ensure_cifar_files(name, root, download)
    train = _open(name, root, train=True, verify_md5=verify_md5)
    test = _open(name, root, train=False, verify_md5=verify_md5)
    mean, std = CIFAR_STATS[name]
    return ImageArrays(
        train_images=np.ascontiguousarray(train.data, dtype=np.uint8),
        train_targets=np.asarray(train.targets, dtype=np.int64),
        test_images=np.ascontiguousarray(test.data, dtype=np.uint8),
        test_targets=np.asarray(test.targets, dtype=np.int64),
        num_classes=100 if name == "cifar100" else 10,
        mean=mean,
        std=std,
    )
