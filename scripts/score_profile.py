"""Where a scoring pass spends its time: cProfile of GraSP on random CIFAR-shaped images, one offload mode.

Usage: python scripts/score_profile.py MODEL N none|disk   (e.g. resnet32 300 disk; 10 classes, 2 threads)
Prints the wall time and the 18 most expensive functions by their own time.
"""

import cProfile
import pstats
import sys
import time

import torch

from jackpot.bench.workload import build_net
from jackpot.pruning.scores import grasp_scores

torch.set_num_threads(2)
model, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
net = build_net(model, 10, 0)
generator = torch.Generator().manual_seed(0)
x = torch.randn(n, 3, 32, 32, generator=generator)
y = torch.arange(n).remainder(10).sort().values
began = time.perf_counter()
profile = cProfile.Profile()
profile.enable()
grasp_scores(net, (x, y), reinit_classifier=False, offload=mode)
profile.disable()
print(f"{model} GraSP N={n} offload={mode}: {time.perf_counter() - began:.1f} s")
pstats.Stats(profile).sort_stats("tottime").print_stats(18)
