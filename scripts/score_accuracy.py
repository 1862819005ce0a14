"""How far each float32 scoring path is from a float64 one-pass reference (relative to the largest score).

Usage: python scripts/score_accuracy.py MODEL snip|grasp N   (e.g. resnet32_thin grasp 1000; N/10 classes)
Prints the float32 in-memory (offload=none) and float32 low-memory (offload=disk) errors side by side: the
disk path is "the same scores to float tolerance" when its error is of the in-memory path's size.
"""

import sys

import torch

from jackpot.bench.workload import build_net
from jackpot.pruning.scores import grasp_scores, snip_scores

torch.set_num_threads(2)
model, method, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
classes = n // 10
net = build_net(model, classes, 0)
g = torch.Generator().manual_seed(0)
x = torch.randn(n, 3, 32, 32, generator=g)
y = torch.arange(n).remainder(classes).sort().values


def score(net, x, mode):
    if method == "snip":
        return snip_scores(net, (x, y), offload=mode)
    return grasp_scores(net, (x, y), reinit_classifier=False, offload=mode)  # re-init draws differ by dtype


truth = score(net.double(), x.double(), "none")
net = net.float()
a = score(net, x, "none")
b = score(net, x, "disk")
scale = max(v.abs().max().item() for v in truth.values())


def err(s):
    return max((s[k].double() - truth[k]).abs().max().item() for k in truth) / scale


print(model, method, n, f"float32 none vs float64: {err(a):.2e}  float32 disk vs float64: {err(b):.2e}")
