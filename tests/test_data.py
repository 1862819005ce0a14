"""Loading (torchvision code path on generated folders, digits offline), errors, loaders, scoring data."""

from __future__ import annotations

import math
import pickle
import shutil
import urllib.error
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from jackpot.data import DatasetError, ImageDataModule, load_arrays, write_fake_cifar
from jackpot.data.cifar import CIFAR_STATS
from jackpot.data.digits import load_digits_arrays
from jackpot.data.fake_cifar import main as fake_cifar_main
from jackpot.data.sampling import EpochSampler

N_TRAIN, N_TEST = 500, 100


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fake_cifar")
    write_fake_cifar(root, "cifar10", N_TRAIN, N_TEST)
    write_fake_cifar(root, "cifar100", N_TRAIN, N_TEST)
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """torchvision's download step raises as it does offline; the list records the attempted URLs."""
    calls: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    return calls


def _read_pickles(folder: Path, files: list[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    data, labels = [], []
    for name in files:
        with open(folder / name, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        data.append(entry["data"])
        labels += entry[label_key]
    images = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(labels)


@pytest.mark.parametrize(
    ("name", "folder", "train_files", "test_files", "label_key", "classes"),
    [
        (
            "cifar10",
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
            "labels",
            10,
        ),
        ("cifar100", "cifar-100-python", ["train"], ["test"], "fine_labels", 100),
    ],
)
def test_generated_cifar_loads_through_torchvision(
    fake_root: Path,
    name: str,
    folder: str,
    train_files: list[str],
    test_files: list[str],
    label_key: str,
    classes: int,
) -> None:
    arrays = load_arrays(name, fake_root, download=False, verify_md5=False)
    train_x, train_y = _read_pickles(fake_root / folder, train_files, label_key)
    test_x, test_y = _read_pickles(fake_root / folder, test_files, label_key)
    assert arrays.train_images.shape == (N_TRAIN, 32, 32, 3) and arrays.train_images.dtype == np.uint8
    assert arrays.train_targets.dtype == np.int64
    np.testing.assert_array_equal(arrays.train_images, train_x)
    np.testing.assert_array_equal(arrays.train_targets, train_y)
    np.testing.assert_array_equal(arrays.test_images, test_x)
    np.testing.assert_array_equal(arrays.test_targets, test_y)
    counts = np.bincount(arrays.train_targets, minlength=classes)
    assert counts.max() - counts.min() <= 1  # class-balanced
    assert arrays.num_classes == classes
    assert (arrays.mean, arrays.std) == CIFAR_STATS[name]


def test_generated_images_carry_a_learnable_class_signal(fake_root: Path) -> None:
    for name, classes in (("cifar10", 10), ("cifar100", 100)):
        arrays = load_arrays(name, fake_root, download=False, verify_md5=False)
        train = arrays.train_images.reshape(N_TRAIN, -1).astype(np.float32)
        means = np.stack([train[arrays.train_targets == c].mean(0) for c in range(classes)])
        test = arrays.test_images.reshape(N_TEST, -1).astype(np.float32)
        nearest = ((test[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
        assert (nearest == arrays.test_targets).mean() > 0.8  # chance is 1/classes


def test_fake_cifar_cli_writes_both_folders(tmp_path: Path) -> None:
    fake_cifar_main(["--root", str(tmp_path), "--n-train", "50", "--n-test", "20"])
    assert len(load_arrays("cifar10", tmp_path, verify_md5=False).train_targets) == 50
    assert len(load_arrays("cifar100", tmp_path, verify_md5=False).test_targets) == 20


def test_generated_images_are_the_same_whatever_the_chunk_they_are_drawn_in(tmp_path: Path, monkeypatch) -> None:
    """Full-size folders are drawn a chunk at a time (56 s -> 5 s); the bytes must be those of one draw, so a
    folder generated before the change, or by a test with another size, stays the same data."""
    from jackpot.data import fake_cifar

    def files(chunk: int) -> dict[str, bytes]:
        monkeypatch.setattr(fake_cifar, "_CHUNK", chunk)
        folder = write_fake_cifar(tmp_path / str(chunk), "cifar10", 53, 17)
        return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}

    assert files(7) == files(10_000)


@pytest.mark.parametrize(("name", "first_file"), [("cifar10", "data_batch_1"), ("cifar100", "train")])
def test_md5_check_rejects_generated_folder(
    fake_root: Path, no_network: list[str], name: str, first_file: str
) -> None:
    with pytest.raises(DatasetError, match="corrupted or truncated") as info:
        ImageDataModule(name, root=str(fake_root), verify_md5=True).check_available()
    assert first_file in str(info.value) and "verify_md5" in str(info.value)
    assert no_network == []  # files present: never tries to download


def test_missing_files_offline_names_dataset_root(tmp_path: Path, no_network: list[str]) -> None:
    root = tmp_path / "nothing_here"
    with pytest.raises(DatasetError) as info:
        ImageDataModule("cifar10", root=str(root), download=True).check_available()
    message = str(info.value)
    for part in (
        "dataset.root",
        "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        "URLError",
    ):
        assert part in message
    assert no_network and "cifar-10-python.tar.gz" in no_network[0]

    with pytest.raises(DatasetError) as info:
        ImageDataModule("cifar100", root=str(root), download=False).prepare_data()
    assert "dataset.root" in str(info.value) and "cifar-100-python" in str(info.value)
    assert "dataset.download=true" in str(info.value)
    assert len(no_network) == 1  # download=False never tries


def test_truncated_file_is_named(fake_root: Path, tmp_path: Path) -> None:
    shutil.copytree(fake_root / "cifar-10-batches-py", tmp_path / "cifar-10-batches-py")
    victim = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(DatasetError, match="truncated") as info:
        load_arrays("cifar10", tmp_path, download=False, verify_md5=False)
    assert "data_batch_3" in str(info.value)


def test_torch_loader_batches_and_normalisation(fake_root: Path) -> None:
    dm = ImageDataModule("cifar10", root=str(fake_root), verify_md5=False, eval_batch_size=40, loader="torch")
    dm.setup()
    dm.setup()  # idempotent
    assert dm.num_classes == 10 and dm.train_size == N_TRAIN
    assert dm.mean == (0.4914, 0.4822, 0.4465) and dm.std == (0.2023, 0.1994, 0.2010)

    train = dm.train_dataloader()
    assert len(train) == math.ceil(N_TRAIN / 64)
    sizes = [len(y) for _, y in train]
    assert sizes[0] == 64 and sizes[-1] == N_TRAIN - 64 * (len(sizes) - 1)  # last partial batch kept
    x, y = next(iter(train))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64

    x, y = next(iter(dm.test_dataloader()))
    images, targets = dm.test_data
    raw = torch.from_numpy(images[:40]).permute(0, 3, 1, 2).float() / 255
    expected = (raw - torch.tensor(dm.mean).view(1, 3, 1, 1)) / torch.tensor(dm.std).view(1, 3, 1, 1)
    # two implementations of (x/255 - mean)/std: values up to 2.8 in magnitude, where a float32 ulp is 2.4e-7;
    # 1e-6 allows the few ulps a fused multiply-add gives (measured on an H200: last-bit differences only)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    assert torch.equal(y, torch.from_numpy(targets[:40]))
    assert len(dm.val_dataloader()) == len(dm.test_dataloader()) == math.ceil(N_TEST / 40)


def test_device_loader_through_the_datamodule(fake_root: Path) -> None:
    dm = ImageDataModule("cifar100", root=str(fake_root), verify_md5=False, loader="device", device="cpu")
    x, y = next(iter(dm.test_dataloader()))
    images, _ = dm.test_data
    raw = torch.from_numpy(images[:N_TEST]).permute(0, 3, 1, 2).float() / 255
    expected = (raw - torch.tensor(dm.mean).view(1, 3, 1, 1)) / torch.tensor(dm.std).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)  # a few float32 ulps, as above
    assert len(dm.train_dataloader()) == math.ceil(N_TRAIN / 64)


def test_digits_load_offline_with_a_fixed_stratified_split() -> None:
    arrays = load_digits_arrays()
    assert arrays.train_images.shape == (1437, 32, 32, 3) and arrays.test_images.shape == (360, 32, 32, 3)
    assert arrays.train_images.dtype == np.uint8 and arrays.train_images.max() == 255
    np.testing.assert_array_equal(arrays.train_images[..., 0], arrays.train_images[..., 2])
    # nearest upsampling: 4x4 blocks
    np.testing.assert_array_equal(
        arrays.train_images[:, ::4, ::4].repeat(4, 1).repeat(4, 2), arrays.train_images
    )
    train_counts = np.bincount(arrays.train_targets, minlength=10)
    test_counts = np.bincount(arrays.test_targets, minlength=10)
    np.testing.assert_allclose(test_counts / (train_counts + test_counts), 0.2, atol=0.01)
    again = load_digits_arrays()
    np.testing.assert_array_equal(again.test_targets, arrays.test_targets)
    scaled = arrays.train_images / 255.0
    assert arrays.mean == pytest.approx((scaled.mean(),) * 3) and arrays.std == pytest.approx(
        (scaled.std(),) * 3
    )

    dm = ImageDataModule("digits", root="unused", download=False)
    assert dm.train_size == 1437 and dm.num_classes == 10 and dm.mean == arrays.mean


def test_sampler_order_depends_only_on_seed_and_epoch() -> None:
    direct = EpochSampler(100, seed=3)
    direct.set_epoch(2)
    walked = EpochSampler(100, seed=3)
    for epoch in range(3):
        walked.set_epoch(epoch)
        order = list(walked)
    assert order == list(direct) and sorted(order) == list(range(100))
    direct.set_epoch(1)
    assert list(direct) != order
    other = EpochSampler(100, seed=4)
    other.set_epoch(2)
    assert list(other) != order
    assert list(EpochSampler(10, seed=3, shuffle=False)) == list(range(10))


def test_scoring_batch_is_class_balanced_sorted_and_deterministic(fake_root: Path) -> None:
    dm = ImageDataModule("cifar10", root=str(fake_root), verify_md5=False)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    x, y = dm.scoring_batch(samples_per_class=10, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.float32
    assert torch.bincount(y, minlength=10).tolist() == [10] * 10
    assert torch.equal(y, torch.sort(y).values)
    x2, y2 = dm.scoring_batch(samples_per_class=10, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = dm.scoring_batch(samples_per_class=10, seed=1)
    assert not torch.equal(x, x3)

    small = ImageDataModule("cifar100", root=str(fake_root), verify_md5=False)
    _, y = small.scoring_batch(samples_per_class=3)
    assert torch.bincount(y, minlength=100).tolist() == [3] * 100
    with pytest.raises(ValueError, match="samples_per_class"):
        small.scoring_batch(samples_per_class=6)  # only 5 images per class were written


def test_corruptions_in_the_datamodule(fake_root: Path) -> None:
    clean = ImageDataModule("cifar10", root=str(fake_root), verify_md5=False)
    images, targets = clean.train_data

    half = ImageDataModule("cifar10", root=str(fake_root), verify_md5=False, corruption="half_dataset")
    assert half.train_size == (N_TRAIN // 2) // 64 * 64 and not half.train_shuffle
    np.testing.assert_array_equal(half.train_data[0], images[: half.train_size])
    assert [index for index, _ in half.train_dataloader().sampler] == list(range(half.train_size))

    labels = ImageDataModule("cifar10", root=str(fake_root), verify_md5=False, corruption="random_labels")
    _, random_targets = labels.train_data
    assert (random_targets == targets).mean() < 0.3
    _, y = labels.scoring_batch()
    assert torch.bincount(y, minlength=10).tolist() == [10] * 10

    with pytest.raises(ValueError, match="random_pixels_labels"):
        ImageDataModule("cifar10", root=str(fake_root), corruption="noise")
    with pytest.raises(ValueError, match="dataset.name"):
        ImageDataModule("mnist", root=str(fake_root))


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3 * 32 * 32, 10)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        pass

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("loader", ["torch", "device"])
def test_lightning_sets_the_epoch_on_both_loaders(fake_root: Path, loader: str) -> None:
    dm = ImageDataModule("cifar10", root=str(fake_root), verify_md5=False, loader=loader, device="cpu")
    trainer = L.Trainer(
        max_epochs=3,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Tiny(), datamodule=dm)
    epoch = trainer.train_dataloader.sampler.epoch if loader == "torch" else trainer.train_dataloader.epoch
    assert epoch == 2


def test_torch_loader_augmentation_depends_only_on_seed_and_epoch() -> None:
    """Lightning may fetch a batch before any epoch hook runs (it does when resuming): the global RNG must not
    decide the augmentation."""
    from jackpot.data.torch_loader import CropFlip, torch_loader

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    targets = np.arange(40) % 10
    loader = torch_loader(images, targets, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), train=True, seed=3)
    loader.sampler.set_epoch(2)
    torch.manual_seed(1)
    first = [x for x, _ in loader]
    torch.manual_seed(99)
    torch.rand(1000)
    second = [x for x, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    loader.sampler.set_epoch(3)
    assert not torch.equal(next(iter(loader))[0], first[0])

    # CropFlip draws offsets over the 9 x 9 shifts and flips half the time, like RandomCrop + RandomHorizontalFlip
    from PIL import Image

    marker = np.zeros((32, 32, 3), dtype=np.uint8)
    marker[0, 0] = 255  # the top-left pixel: where it lands gives the offset and the flip
    crop = CropFlip()
    seen, flips = set(), 0
    generator = torch.Generator().manual_seed(0)
    for _ in range(2000):
        out = np.asarray(crop(Image.fromarray(marker), generator))
        ys, xs = np.nonzero(out[..., 0])
        if len(xs):
            flipped = xs[0] >= 16
            flips += int(flipped)
            seen.add((int(ys[0]), int(31 - xs[0] if flipped else xs[0])))
    assert len(seen) == 25  # the marker stays in view for the 5 x 5 shifts that do not crop it away
    assert 0.4 < flips / 2000 * 81 / 25 < 0.6
