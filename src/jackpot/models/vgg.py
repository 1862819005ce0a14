"""CIFAR VGG with BatchNorm, as used by the sanity-checking code (spec §1.1).

The conv layers keep their biases (PyTorch default) and the head is a single linear layer after an average
pool, so the prunable set is 16 convs + 1 classifier for VGG19. Biases and BatchNorm are never pruned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

# "M" marks a 2x2 / stride-2 max-pool; integers are 3x3 conv widths.
CfgEntry = int | str
VGG19_CFG: tuple[CfgEntry, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512,
)  # fmt: skip
# A small VGG for quick CPU runs: same layer recipe and head, pooled to 1x1 on 32x32 inputs.
VGG_TINY_CFG: tuple[CfgEntry, ...] = (16, "M", 32, "M", 64, 64, "M", 128)


class VGG(nn.Module):
    """VGG-BN: ``[conv3x3(bias) -> BN -> ReLU | maxpool]*`` -> AvgPool -> flatten -> Linear.

    There is no max-pool after the last conv block; the final ``AvgPool2d`` kernel is the remaining spatial
    size (2 for VGG19 on 32x32, 4 on 64x64 Tiny-ImageNet), so the classifier always sees a ``cfg[-1]``-vector.
    """

    family = "vgg"

    def __init__(
        self,
        cfg: Sequence[CfgEntry] = VGG19_CFG,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
    ) -> None:
        super().__init__()
        if not cfg or not isinstance(cfg[-1], int):
            raise ValueError(f"VGG cfg must be non-empty and end with a conv width, got {list(cfg)}")
        num_pools = sum(1 for v in cfg if v == "M")
        pooled = input_size // 2**num_pools
        if pooled < 1 or pooled * 2**num_pools != input_size:
            raise ValueError(
                f"input_size={input_size} is not divisible by 2**{num_pools} (the cfg's max-pools)"
            )
        self.num_classes = num_classes
        self.features = self._make_features(cfg, in_channels)
        self.pool = nn.AvgPool2d(pooled)
        self.classifier = nn.Linear(int(cfg[-1]), num_classes)
        self._initialize_weights()

    @staticmethod
    def _make_features(cfg: Sequence[CfgEntry], in_channels: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        channels = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            elif isinstance(v, int):
                conv = nn.Conv2d(channels, v, kernel_size=3, padding=1)  # bias=True, as in the official code
                layers += [conv, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                channels = v
            else:
                raise ValueError(f"bad VGG cfg entry {v!r}: expected an int width or 'M'")
        return nn.Sequential(*layers)

    def _initialize_weights(self) -> None:
        """He init, fan_in = 3*3*in_channels (official VGG code), N(0, 0.01) classifier, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.kernel_size[0] * m.kernel_size[1] * m.in_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg19_bn(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> VGG:
    """The paper's VGG19 (cfg E with BatchNorm): 17 prunable layers, 20,024,000 weights for 10 classes."""
    return VGG(VGG19_CFG, num_classes=num_classes, in_channels=in_channels, input_size=input_size)


def vgg_tiny(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> VGG:
    """A 5-layer VGG-BN for smoke tests: same code path and init as VGG19, ~0.1M weights."""
    return VGG(VGG_TINY_CFG, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
