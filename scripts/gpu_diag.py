"""Where a batch-64 step's time goes on the GPU: kernel-launch latency, then one step of each network run eagerly
and as jackpot's recorded CUDA graph (`jackpot.lightning.step_graph.StepProgram`, no Lightning around it).

    python scripts/gpu_diag.py          (CUDA only; ~1 minute)
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from jackpot.lightning.module import EpochTotals
from jackpot.lightning.step_graph import DEVICE_HOOK, StepHook, StepProgram
from jackpot.models import build_model
from jackpot.pruning import Masks, prunable_weights


def per_call_seconds(fn: Callable[[], None], calls: int) -> float:
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - began) / calls


def program_for(name: str, capture: bool, batch: int = 64) -> tuple[StepProgram, torch.Tensor, torch.Tensor]:
    """A channels_last bf16 step of `name` with 90 % random masks, as jackpot trains it."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model(name, 10).to(device, memory_format=torch.channels_last)
    masks = Masks({n: torch.rand(w.shape) < 0.1 for n, w in prunable_weights(model)})
    masks.apply(model)
    weights, floats = masks.as_float(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, fused=True)
    hook = StepHook("masks", lambda: torch._foreach_mul_([w.grad for w in weights], floats), DEVICE_HOOK)
    program = StepProgram(model, optimizer, EpochTotals().add, [hook], device, torch.bfloat16, capture=capture)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    return program, x, y


def main() -> None:
    tiny = torch.zeros(16, device="cuda")
    print(f"launch latency (tiny add): {per_call_seconds(lambda: tiny.add_(1), 2000) * 1e6:.1f} us/kernel")
    for name in ("resnet32", "vgg19"):
        for capture in (False, True):
            program, x, y = program_for(name, capture)
            for _ in range(10):  # warm-up (and, with capture, the recording)
                program.step(x, y)
            seconds = per_call_seconds(lambda program=program, x=x, y=y: program.step(x, y), 200)
            label = "recorded graph" if capture else "eager"
            print(f"{name:9s} bs64 bf16 {label:14s} {seconds * 1e3:7.3f} ms/step {64 / seconds:9.0f} img/s "
                  f"(replays {program.replays}, eager {program.eager_steps})")


if __name__ == "__main__":
    main()
