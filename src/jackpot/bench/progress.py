"""Printing as the run goes: every report row as soon as it is measured and a line saying what is measured next,
each flushed, so output redirected to a file fills while a long CPU run is still working."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial

PREFIX = ">"  # progress lines; report rows never start with it


class Progress:
    """Report rows and progress lines, in order, through one flushed print."""

    def __init__(self, print_fn: Callable[[str], None] | None = None) -> None:
        self.print_fn = print_fn or partial(print, flush=True)
        self.began = time.perf_counter()

    def elapsed(self) -> str:
        seconds = int(time.perf_counter() - self.began)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def rows(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.print_fn(line)

    def next(self, what: str) -> None:
        self.print_fn(f"{PREFIX} {self.elapsed()} measuring {what}")

    def round(self, done: int, total: int, kept: bool, per_step: dict[str, float]) -> None:
        times = "  ".join(f"{name} {1000 * s:.1f}" for name, s in per_step.items())
        self.print_fn(f"{PREFIX} {self.elapsed()}   round {done}/{total}{'' if kept else ' (warm-up, not kept)'}: "
                      f"{times} ms/step")

    def done(self) -> None:
        self.print_fn(f"{PREFIX} {self.elapsed()} done")
