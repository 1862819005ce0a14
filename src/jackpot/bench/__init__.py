"""Side-by-side speed benchmark: a bare PyTorch loop against jackpot's Lightning training, in one process.

    python -m jackpot.bench                              # CPU: a few minutes (resnet8, short rounds)
    python -m jackpot.bench --full                       # the paper-size settings (resnet32; > 20 min on 2 cores)
    python -m jackpot.bench --device cuda                # GPU: the paper-size settings
    python -m jackpot.bench --tiny                       # seconds on a CPU (what the test runs)
    python -m jackpot.bench [--model resnet32] [--batch 64] [--steps 50] [--rounds 3] ...   # flags override
    python -m jackpot.bench pack --procs 4 --model resnet32 --device cuda   # packing: N processes vs 1

Why one process and interleaved rounds: this machine's timing noise (CPU_BASELINE §9) is larger than the
effects measured, so every variant runs on the same model, data and batch size, round by round, in alternating
order, and ratios are medians of per-round ratios. Variants:

(a) bare loop + torchvision DataLoader over uint8 arrays (RandomCrop+Flip+ToTensor+Normalize on PIL images),
    fp32, contiguous, default SGD: the original code's way;
(b) the same loop with ``jackpot.data.DeviceLoader`` and jackpot's step settings (precision, channels_last,
    fused/foreach SGD, optional compile), no per-step host work;
(c) jackpot's ClassificationModule + PruningCallback (90 % random masks) + EpochSeed, trained by a Trainer
    built by ``jackpot.train.make_trainer`` with the configured defaults, a CSV logger (per-epoch logging).

Plus mask enforcement ((b) with and without the foreach multiply), evaluation speed, SNIP / GraSP scoring time
and GraSP peak memory (CPU: peak RSS, VmHWM, of a fresh subprocess; CUDA: ``max_memory_allocated``), the per-step
framework overhead on a tiny conv net, and a projection of one 160-epoch run. Data are synthetic uint8
CIFAR-shaped arrays made in memory.

Every row is printed and flushed as soon as it is measured (``progress``), so output sent to a file fills as
the run goes.

Modules: ``config`` (settings), ``workload`` (nets, data, masks, SGD), ``variants`` (the ways of training),
``training_speed`` (throughput, mask enforcement, framework overhead), ``scoring``, ``report``, ``progress``,
``packing``, ``allocator``, ``cli``.
"""

from jackpot.bench.cli import main, run_bench
from jackpot.bench.config import BenchConfig, tiny_config
from jackpot.bench.workload import build_net

__all__ = ["BenchConfig", "build_net", "main", "run_bench", "tiny_config"]
