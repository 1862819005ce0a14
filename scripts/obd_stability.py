"""How stable OBD's mask is under each Hessian-diagonal estimator, on a trained network (offline, ~1.5 min on
2 CPU cores): ResNet-8 trained 6 epochs on the embedded digits, then masks at 90 % and 98 % from

- Hutchinson's estimator (16 probes) with two probe seeds, on the same 100 scoring images;
- the per-sample empirical Fisher (the default) on two disjoint draws of 100 scoring images;

printed as the share of kept weights two masks have in common (random masks: 1 - ratio).

    .venv/bin/python scripts/obd_stability.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jackpot.data import ImageDataModule
from jackpot.models import build_model
from jackpot.pruning import Masks, make_masks
from jackpot.pruning import scores as S


def overlap(a: Masks, b: Masks) -> float:
    return sum(int((a[n] & b[n]).sum()) for n in a) / a.kept()


def main() -> None:
    torch.manual_seed(0)
    data = ImageDataModule("digits", loader="torch", device="cpu", seed=0)
    data.setup("fit")
    net = build_model("resnet8", data.num_classes)
    optimizer = torch.optim.SGD(net.parameters(), 0.05, momentum=0.9, weight_decay=1e-4)
    for _ in range(6):
        for x, y in data.train_dataloader():
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
    net.eval()
    batch_a, batch_b = data.scoring_batch(10, seed=0), data.scoring_batch(10, seed=1)
    for seed in (0, 1):
        flat = torch.cat([v.flatten() for v in S.obd_scores(net, batch_a, "hutchinson", 16, seed).values()])
        print(f"hutchinson (16 probes, seed {seed}): {(flat < 0).float().mean():.1%} negative saliencies")
    for ratio in (0.9, 0.98):
        h0 = make_masks(net, "obd", ratio, batch_a, estimator="hutchinson", probes=16, seed=0)
        h1 = make_masks(net, "obd", ratio, batch_a, estimator="hutchinson", probes=16, seed=1)
        fa = make_masks(net, "obd", ratio, batch_a, estimator="fisher")
        fb = make_masks(net, "obd", ratio, batch_b, estimator="fisher")
        print(f"ratio {ratio}: kept weights in common: hutchinson seed 0 vs 1 {overlap(h0, h1):.2f}, "
              f"fisher images A vs B {overlap(fa, fb):.2f}, random masks ~{1 - ratio:.2f}")


if __name__ == "__main__":
    main()
