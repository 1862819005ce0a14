"""Generate CIFAR-10/100 folders in the real on-disk format, for tests and offline smoke runs.

Files are pickled dicts exactly as ``pickle.load(f, encoding="latin1")`` returns them for the originals (str
keys; ``data`` uint8 [N, 3072] CHW row-major), so torchvision's own classes read them (with
``dataset.verify_md5=false``: their md5s are not the real ones). Each class has its own colour and coarse 4x4
block pattern, plus noise, so a small network beats chance within a few steps. Labels are class-balanced.
"""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import numpy as np

CIFAR10_LABEL_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
_NOISE_STD = 40.0


def _balanced_labels(n: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _templates(num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """One float (32, 32, 3) template per class: a class colour plus a coarse 4x4 block pattern."""
    colour = rng.uniform(40, 215, size=(num_classes, 1, 1, 3))
    blocks = rng.uniform(-50, 50, size=(num_classes, 4, 4, 3)).repeat(8, axis=1).repeat(8, axis=2)
    return colour + blocks


_CHUNK = 2000  # images per draw: full-size CIFAR's float64 temporaries in one go (1.5 GB each) took 56 s, not 4


def _images(labels: np.ndarray, templates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, 3072] rows in CIFAR's CHW order. Drawn a chunk at a time: the generator's stream is the same
    in pieces, so the bytes are those of one draw."""
    out = np.empty((len(labels), 3072), dtype=np.uint8)
    for lo in range(0, len(labels), _CHUNK):
        chunk = labels[lo:lo + _CHUNK]
        hwc = templates[chunk] + rng.normal(0.0, _NOISE_STD, size=(len(chunk), 32, 32, 3))
        chw = np.clip(np.round(hwc), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)
        out[lo:lo + len(chunk)] = chw.reshape(len(chunk), 3072)
    return out


def _dump(path: Path, payload: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(payload, handle, protocol=4)


def _entry(batch_label: str, data: np.ndarray, names: list[str], labels: dict[str, list[int]]) -> dict:
    return {"batch_label": batch_label, **labels, "data": data, "filenames": names}


def write_fake_cifar(
    root: str | os.PathLike, name: str = "cifar10", n_train: int = 500, n_test: int = 100, seed: int = 0
) -> Path:
    """Write ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``; returns that folder."""
    if name not in _NUM_CLASSES:
        raise ValueError(f"name must be one of {sorted(_NUM_CLASSES)}, got {name!r}")
    num_classes = _NUM_CLASSES[name]
    rng = np.random.default_rng([seed, num_classes])
    templates = _templates(num_classes, rng)
    train_y = _balanced_labels(n_train, num_classes, rng)
    test_y = _balanced_labels(n_test, num_classes, rng)
    train_x, test_x = _images(train_y, templates, rng), _images(test_y, templates, rng)

    def files(prefix: str, count: int, start: int = 0) -> list[str]:
        return [f"fake_{prefix}_{start + i:05d}.png" for i in range(count)]

    if name == "cifar10":
        folder = Path(root) / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        bounds = np.linspace(0, n_train, 6).astype(int)
        for b in range(5):
            lo, hi = bounds[b], bounds[b + 1]
            labels = {"labels": train_y[lo:hi].tolist()}
            entry = _entry(
                f"training batch {b + 1} of 5", train_x[lo:hi], files("train", hi - lo, lo), labels
            )
            _dump(folder / f"data_batch_{b + 1}", entry)
        entry = _entry("testing batch 1 of 1", test_x, files("test", n_test), {"labels": test_y.tolist()})
        _dump(folder / "test_batch", entry)
        meta = {"label_names": CIFAR10_LABEL_NAMES, "num_cases_per_batch": int(bounds[1]), "num_vis": 3072}
        _dump(folder / "batches.meta", meta)
        return folder

    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        labels = {"fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()}
        _dump(folder / split, _entry(split, x, files(split, len(y)), labels))
    meta = {
        "fine_label_names": [f"class_{i:03d}" for i in range(100)],
        "coarse_label_names": [f"superclass_{i:02d}" for i in range(20)],
    }
    _dump(folder / "meta", meta)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write generated CIFAR folders in the real on-disk format.")
    parser.add_argument(
        "--root", required=True, help="folder that will hold cifar-10-batches-py / cifar-100-python"
    )
    parser.add_argument("--name", choices=["cifar10", "cifar100", "both"], default="both")
    parser.add_argument("--n-train", type=int, default=500)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = ["cifar10", "cifar100"] if args.name == "both" else [args.name]
    for name in names:
        folder = write_fake_cifar(args.root, name, args.n_train, args.n_test, args.seed)
        print(
            f"wrote {folder} ({args.n_train} train, {args.n_test} test); read with dataset.verify_md5=false"
        )


if __name__ == "__main__":
    main()
