"""What a bench run depends on: its settings (printed with the report, stored with --json) and the
paper-scale constants the projection uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
EPOCHS = 160
TRAIN_IMAGES = 50_000
TEST_IMAGES = 10_000
KEEP = 0.1  # 90 % random masks
GIB = 1024**3
SECTIONS = ("throughput", "scoring", "overhead")
SCORE_DTYPES = ("float32", "float64")


@dataclass
class BenchConfig:
    """Everything a bench run depends on (printed with the report, stored with --json)."""

    model: str = "resnet32"
    batch: int = 64
    steps: int = 50
    rounds: int = 3
    warmup: int = 3
    device: str = "cpu"
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    compile_mode: str | None = None
    sync_check: bool = False
    workers: int | None = None
    classes: int = 10
    eval_batch: int = 500
    eval_batches: int = 3
    score_per_class: int = 10
    score_classes: tuple[int, ...] = (10, 100)
    # the lean disk path against the official in-memory one (offload=auto takes one of the two: memory when the
    # estimate fits, jackpot.pruning.low_memory.memory_fit); --score-offload auto,none compares auto's choice
    score_offload: tuple[str, ...] = ("disk", "none")
    overhead_model: str = "tinyconv"
    overhead_steps: int = 200
    overhead_rounds: int = 5
    overhead_device: str = "cpu"
    progress_bar: bool = False
    steps_per_call: int = 8  # (c): jackpot's default, conf/trainer/default.yaml
    cuda_graph: str = "auto"  # (c): auto (jackpot's default: recorded on CUDA) | on | off
    overhead_steps_per_call: int = 1  # the overhead section also measures this K
    skip: tuple[str, ...] = ()
    seed: int = 0
    threads: int | None = None
    tiny: bool = False
    score_dtype: str = "float32"  # float64: the offload modes must agree exactly (what the test checks)
    preset: str = "full"  # which defaults the run started from: full | quick (CPU default) | tiny

    def resolved_precision(self) -> str:
        if self.precision != "auto":
            return self.precision
        return "bf16-mixed" if self.device == "cuda" else "32-true"

    def resolved_workers(self) -> int:
        """0 on CPU (workers only slow a 2-core VM down, CPU_BASELINE §4); 4 on GPU, as the original code."""
        if self.workers is not None:
            return self.workers
        return 4 if self.device == "cuda" else 0


def untimed_steps(warmup: int, steps_per_call: int) -> int:
    """Steps before (c)'s clock starts: the warm-up, rounded up to whole K-step chunks (the timer reads the
    clock at chunk ends)."""
    return -(-warmup // steps_per_call) * steps_per_call


def check_config(cfg: BenchConfig, sections: tuple[str, ...] = SECTIONS) -> None:
    """Refuse, before any work, settings under which a section would time no step; names the flag."""
    unknown = [s for s in cfg.skip if s not in SECTIONS]
    if unknown:
        raise ValueError(f"--skip: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(SECTIONS)}")
    from jackpot.pruning.low_memory.offload import OFFLOAD_MODES

    bad_modes = [m for m in cfg.score_offload if m not in OFFLOAD_MODES]
    if bad_modes:
        raise ValueError(f"--score-offload: unknown mode(s) {', '.join(bad_modes)}; "
                         f"allowed: {', '.join(OFFLOAD_MODES)}")
    if "disk" in cfg.score_offload and cfg.device == "cuda" and "scoring" in sections and "scoring" not in cfg.skip:
        raise ValueError("--score-offload disk scores on the CPU only; with --device cuda use auto or none")
    if cfg.score_dtype not in SCORE_DTYPES:
        raise ValueError(f"--score-dtype: {cfg.score_dtype}; allowed: {', '.join(SCORE_DTYPES)}")
    if cfg.warmup < 1 or cfg.steps_per_call < 1:
        raise ValueError(f"--warmup {cfg.warmup} and --steps-per-call {cfg.steps_per_call} must be at least 1")
    runs = []
    if "throughput" in sections and "throughput" not in cfg.skip:
        runs.append(("--steps", cfg.steps, cfg.steps_per_call))
    if "overhead" in sections and "overhead" not in cfg.skip:
        runs += [("--overhead-steps", cfg.overhead_steps, k)
                 for k in dict.fromkeys((cfg.steps_per_call, cfg.overhead_steps_per_call)) if k >= 1]
    for flag, steps, k in runs:
        least = untimed_steps(cfg.warmup, k) + 1
        if steps < least:
            raise ValueError(f"{flag} {steps} times no step: with --warmup {cfg.warmup} and {k} optimizer steps per "
                             f"Lightning step it needs at least {least}")


def tiny_config(**overrides: Any) -> BenchConfig:
    """A CPU run of a few seconds: resnet8, a handful of steps, small scoring batches."""
    base = {
        "model": "resnet8", "batch": 16, "steps": 4, "rounds": 2, "warmup": 1, "device": "cpu",
        "eval_batch": 32, "eval_batches": 1, "score_per_class": 2, "score_classes": (10,),
        "overhead_steps": 10, "overhead_rounds": 2, "steps_per_call": 2, "overhead_steps_per_call": 1, "threads": 1,
        "tiny": True, "preset": "tiny",
    }
    base.update(overrides)
    return BenchConfig(**base)


# CPU runs without --full: a few minutes on a shared 2-core VM (the full settings took over 20 min there, a
# ResNet32-2x step alone 1.3-3 s). resnet8 at the paper's batch, two timed Lightning chunks of 8 steps per
# round, CIFAR-10's scoring set only; the section layout and jackpot's step settings (K=8) stay as shipped.
# One torch thread: with other jobs on the 2 cores (load 5-6) a resnet8 step at batch 64 took 105 ms on one
# thread and 430-620 ms on two (OpenMP threads waiting for each other); --threads 2 on an idle machine.
QUICK_CPU = {
    "model": "resnet8", "steps": 24, "rounds": 3, "score_classes": (10,), "overhead_steps": 48,
    "overhead_rounds": 3, "threads": 1, "preset": "quick",
}


def quick_config(**overrides: Any) -> BenchConfig:
    """The CPU default: every section and row of the full run, sized to finish in a few minutes."""
    return BenchConfig(**{**QUICK_CPU, **overrides})
