"""One LightningDataModule for every dataset: uint8 arrays, an optional data check, one pipeline."""

from __future__ import annotations

import os

import lightning.pytorch as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from jackpot.data.arrays import ImageArrays
from jackpot.data.catalog import NUM_CLASSES, check_name, load_arrays
from jackpot.data.cifar import CIFAR_STATS
from jackpot.data.corruption import OFFICIAL_SEED, apply_corruption, check_corruption
from jackpot.data.device_loader import DeviceLoader, augment_batch, normalize, to_nchw_uint8
from jackpot.data.sampling import class_balanced_indices, epoch_seed
from jackpot.data.torch_loader import torch_loader

LOADERS = ("torch", "device", "auto")


class ImageDataModule(L.LightningDataModule):
    """CIFAR-10/100 or digits with the paper's transforms; `corruption` applies a data sanity check to train.

    `loader="torch"` is the reference torchvision pipeline, `"device"` keeps the data on `device` and augments
    there, `"auto"` picks the device loader when CUDA is available. `device="auto"` means CUDA if available.
    The test set is also the validation set (the paper has no validation split). File problems raise
    `DatasetError` from `check_available()` / `prepare_data()`, before any training.
    """

    def __init__(
        self,
        name: str = "cifar10",
        root: str | os.PathLike = "data",
        batch_size: int = 64,
        eval_batch_size: int = 500,
        num_workers: int = 0,
        loader: str = "torch",
        device: str = "auto",
        augment: bool = True,
        hflip: bool = True,
        corruption: str | None = None,
        corruption_seed: int = OFFICIAL_SEED,
        seed: int = 0,
        pixel_seed: int | None = None,
        download: bool = True,
        verify_md5: bool = True,
        train_subset: int | None = None,
        test_subset: int | None = None,
        samples_per_class: int = 10,
    ) -> None:
        super().__init__()
        if loader not in LOADERS:
            raise ValueError(f"dataset.loader={loader!r} is not one of {list(LOADERS)}")
        self.name = check_name(name)
        self.root = str(root)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.num_workers = int(num_workers)
        cuda = torch.cuda.is_available()
        self.loader = ("device" if cuda else "torch") if loader == "auto" else loader
        self.device = torch.device(("cuda" if cuda else "cpu") if device == "auto" else device)
        self.augment = bool(augment)
        self.hflip = bool(hflip)
        self.corruption = check_corruption(corruption)
        self.corruption_seed = int(corruption_seed)
        self.seed = int(seed)
        self.pixel_seed = self.seed if pixel_seed is None else int(pixel_seed)  # random pixels' scramble
        self.download = bool(download)
        self.verify_md5 = bool(verify_md5)
        self.train_subset = train_subset
        self.test_subset = test_subset
        self.samples_per_class = int(samples_per_class)
        self._arrays: ImageArrays | None = None
        self._train: tuple[np.ndarray, np.ndarray] | None = None
        self._test: tuple[np.ndarray, np.ndarray] | None = None
        self._train_shuffle = True
        self._device_loaders: dict[str, DeviceLoader] = {}

    # -- loading -------------------------------------------------------------------------------------------
    def check_available(self) -> None:
        """Load (downloading if allowed) and verify the files now; a `DatasetError` names the config key."""
        self._base()

    def prepare_data(self) -> None:
        self.check_available()

    def _base(self) -> ImageArrays:
        if self._arrays is None:
            self._arrays = load_arrays(
                self.name, self.root, download=self.download, verify_md5=self.verify_md5
            )
        return self._arrays

    def setup(self, stage: str | None = None) -> None:
        """Idempotent: the arrays are loaded, subset and corrupted once per module."""
        if self._train is not None:
            return
        base = self._base()
        train_x, train_y = base.train_images[: self.train_subset], base.train_targets[: self.train_subset]
        test_x, test_y = base.test_images[: self.test_subset], base.test_targets[: self.test_subset]
        train_x, train_y, self._train_shuffle = apply_corruption(
            train_x, train_y, self.corruption, self.num_classes, self.corruption_seed, self.batch_size,
            pixel_seed=self.pixel_seed,
        )
        self._train, self._test = (train_x, train_y), (test_x, test_y)

    # -- facts -----------------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.name]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One example as the network sees it, (C, H, W): every dataset here is 32x32 RGB (digits upsampled)."""
        return (3, 32, 32)

    @property
    def mean(self) -> tuple[float, float, float]:
        return CIFAR_STATS[self.name][0] if self.name in CIFAR_STATS else self._base().mean

    @property
    def std(self) -> tuple[float, float, float]:
        return CIFAR_STATS[self.name][1] if self.name in CIFAR_STATS else self._base().std

    @property
    def train_size(self) -> int:
        """Training images after subset and corruption (half_dataset halves it)."""
        return len(self.train_data[1])

    @property
    def train_shuffle(self) -> bool:
        """False only for half_dataset, whose official run keeps the fixed order."""
        self.setup()
        return self._train_shuffle

    @property
    def train_data(self) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 HWC images, int64 targets) of the training set as served (corrupted if set)."""
        self.setup()
        assert self._train is not None
        return self._train

    @property
    def test_data(self) -> tuple[np.ndarray, np.ndarray]:
        self.setup()
        assert self._test is not None
        return self._test

    # -- loaders ---------------------------------------------------------------------------------------------
    def _device_loader(self, train: bool) -> DeviceLoader:
        key = "train" if train else "test"
        if key not in self._device_loaders:
            images, targets = self.train_data if train else self.test_data
            self._device_loaders[key] = DeviceLoader(
                images,
                targets,
                self.batch_size if train else self.eval_batch_size,
                self.mean,
                self.std,
                train=train,
                hflip=self.hflip,
                seed=self.seed,
                device=self.device,
                shuffle=train and self._train_shuffle,
                augment=train and self.augment,
            )
        return self._device_loaders[key]

    def train_dataloader(self) -> DataLoader | DeviceLoader:
        if self.loader == "device":
            return self._device_loader(train=True)
        images, targets = self.train_data
        return torch_loader(
            images,
            targets,
            self.batch_size,
            self.mean,
            self.std,
            train=True,
            augment=self.augment,
            hflip=self.hflip,
            shuffle=self._train_shuffle,
            seed=self.seed,
            num_workers=self.num_workers,
        )

    def test_dataloader(self) -> DataLoader | DeviceLoader:
        if self.loader == "device":
            return self._device_loader(train=False)
        images, targets = self.test_data
        return torch_loader(
            images,
            targets,
            self.eval_batch_size,
            self.mean,
            self.std,
            train=False,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader | DeviceLoader:
        return self.test_dataloader()

    # -- scoring data for pruning at init ------------------------------------------------------------------
    def scoring_batch(
        self, samples_per_class: int | None = None, seed: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`samples_per_class` augmented train images per class, sorted by class (official SNIP_fetch_data).

        Equivalent to walking a shuffled, augmented train loader and keeping each class's first images (the
        loader's batch size does not change which images that keeps); uses the corrupted data when a
        corruption is set. Deterministic given `seed`, drawn from a private generator (the global RNG is
        untouched). Returns CPU tensors: float32 (C*k, 3, 32, 32) normalised, int64 (C*k,).
        """
        per_class = self.samples_per_class if samples_per_class is None else int(samples_per_class)
        images, targets = self.train_data
        generator = torch.Generator().manual_seed(epoch_seed(seed, 0))
        order = torch.randperm(len(targets), generator=generator).numpy()
        picked = class_balanced_indices(targets, order, self.num_classes, per_class)
        batch = to_nchw_uint8(images[picked])
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        if self.augment:
            x = augment_batch(batch, mean, std, generator, hflip=self.hflip)
        else:
            x = normalize(batch, mean, std)
        return x, torch.from_numpy(targets[picked].copy())
