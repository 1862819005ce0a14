"""What limits a recorded batch-64 step on the GPU, and what packing could gain: kernels per step and their summed
GPU time (eager step, torch.profiler), the recorded step's throughput against batch size, and several runs'
recorded steps replayed side by side from one process, each on its own CUDA stream.

    python scripts/gpu_profile.py       (CUDA only; ~1 minute)

Each section catches its own failure, so one broken section still leaves the others' figures.
"""

from __future__ import annotations

import traceback
from collections import defaultdict
from collections.abc import Callable

import torch
from gpu_diag import per_call_seconds, program_for
from torch.profiler import ProfilerActivity, profile


def kernels_per_step(name: str, steps: int = 5) -> None:
    """Kernel count and summed kernel time of one eager step: with the graph's replay time, how much is gaps."""
    program, x, y = program_for(name, capture=False)
    for _ in range(5):
        program.step(x, y)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            program.step(x, y)
        torch.cuda.synchronize()
    by_name: dict[str, float] = defaultdict(float)
    count = 0
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            count += 1
            by_name[event.name] += event.time_range.elapsed_us()
    total_us = sum(by_name.values()) / steps
    print(f"{name:9s} eager step: {count / steps:.0f} GPU kernels/copies per step, {total_us / 1e3:.3f} ms of summed "
          f"GPU time per step ({total_us / max(count / steps, 1):.1f} us each on average)")
    for kernel, us in sorted(by_name.items(), key=lambda kv: -kv[1])[:6]:
        print(f"    {us / steps / 1e3:7.3f} ms  {kernel[:110]}")


def batch_scaling(name: str, batches: tuple[int, ...] = (64, 128, 256, 512)) -> None:
    """Images/s of the recorded step as the batch grows: flat means compute-bound, rising means per-kernel bound."""
    cells = []
    for batch in batches:
        program, x, y = program_for(name, capture=True, batch=batch)
        for _ in range(10):
            program.step(x, y)
        seconds = per_call_seconds(lambda p=program, x=x, y=y: p.step(x, y), 100)
        cells.append(f"bs{batch} {batch / seconds:8.0f} img/s ({seconds * 1e3:.2f} ms)")
        del program, x, y
        torch.cuda.empty_cache()
    print(f"{name:9s} recorded step: " + ", ".join(cells))


def streams_side_by_side(name: str, runs: int = 4) -> None:
    """`runs` independent recorded steps (own model, masks, optimizer, batch), replayed round-robin from one thread,
    each on its own CUDA stream, against one run alone: the in-process form of packing."""
    programs = [program_for(name, capture=True) for _ in range(runs)]
    for program, x, y in programs:
        for _ in range(10):
            program.step(x, y)
    streams = [torch.cuda.Stream() for _ in programs]
    single_program, sx, sy = programs[0]
    alone = per_call_seconds(lambda: single_program.step(sx, sy), 200)

    def round_robin() -> None:
        for stream, (program, x, y) in zip(streams, programs, strict=True):
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                program.step(x, y)
        for stream in streams:
            torch.cuda.current_stream().wait_stream(stream)

    together = per_call_seconds(round_robin, 200)
    print(f"{name:9s} {runs} recorded runs on {runs} streams, one process: {64 * runs / together:.0f} img/s in all "
          f"against {64 / alone:.0f} img/s for one alone: {alone * runs / together:.2f}x")


def guarded(section: Callable[[], None]) -> None:
    try:
        section()
    except Exception:  # noqa: BLE001 - a diagnostic: report and go on to the next section
        traceback.print_exc()


def main() -> None:
    for name in ("resnet32", "vgg19"):
        guarded(lambda name=name: kernels_per_step(name))
    for name in ("resnet32", "vgg19"):
        guarded(lambda name=name: batch_scaling(name))
    guarded(lambda: streams_side_by_side("resnet32"))
    guarded(lambda: streams_side_by_side("vgg19"))


if __name__ == "__main__":
    main()
