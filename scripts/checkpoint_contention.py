"""How much a checkpoint write in a background thread slows the thread that trains, side by side in one process.

The training thread is stood in for by small torch ops (64x64 matmuls, one torch thread: host-bound, as a
recorded GPU step's host side is); its rate while another thread writes a VGG19-sized checkpoint (160 MB) is
divided by its rate alone just before, round after round. Two writers: jackpot's (`torch_save_atomic`, through a
file handle, with fsync) and `torch.save` to a path (its zip writer holds the GIL while it copies each tensor).

    python scripts/checkpoint_contention.py [--rounds 4] [--megabytes 160]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from jackpot.runs.atomic_io import torch_save_atomic


def ops_per_second(stop: Callable[[], bool]) -> float:
    x = torch.randn(64, 64)
    count, began = 0, time.perf_counter()
    while not stop():
        x @ x
        count += 1
    return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--megabytes", type=int, default=160)
    args = parser.parse_args()
    torch.set_num_threads(1)
    state = {f"w{i}": torch.randn(args.megabytes * 2_500) for i in range(100)}  # 100 tensors, 4 bytes each
    folder = Path(tempfile.mkdtemp())
    writers = {"torch_save_atomic (jackpot)": lambda: torch_save_atomic(state, folder / "atomic.pt"),
               "torch.save to a path": lambda: torch.save(state, folder / "path.pt")}
    ratios: dict[str, list[float]] = {name: [] for name in writers}
    for _ in range(args.rounds):
        for name, write in writers.items():
            until = time.perf_counter() + 0.6
            alone = ops_per_second(lambda until=until: time.perf_counter() > until)
            writer = threading.Thread(target=lambda write=write: [write() for _ in range(3)])
            writer.start()
            ratios[name].append(ops_per_second(lambda writer=writer: not writer.is_alive()) / alone)
    for name, values in ratios.items():
        print(f"{name}: the other thread at {statistics.median(values):.2f}x its speed alone (median of "
              f"{', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
