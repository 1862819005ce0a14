"""CIFAR ResNets (depth 6n+2, BasicBlock), incl. the 2x-wide ResNet32 of GraSP and the paper (spec §1.2).

Every conv has no bias; stride-2 stage transitions use a 1x1 projection shortcut (conv + BN). The shortcut
is registered after ``conv2``/``bn2`` so the prunable layers come out in the official order: conv1, conv2,
shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 conv, padding 1, no bias (BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus identity or projection shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        # Registered last on purpose: module order (hence mask/layer order) is conv1, conv2, downsample conv.
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """CIFAR ResNet: stem conv3x3 -> BN -> ReLU, 3 stages of ``blocks_per_stage`` BasicBlocks, GAP, Linear.

    ``widths`` are the stage widths (the stem uses ``widths[0]``); stages 2 and 3 start with stride 2.
    """

    family = "resnet"

    def __init__(
        self,
        blocks_per_stage: int = 5,
        widths: Sequence[int] = (32, 64, 128),
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if blocks_per_stage < 1 or len(widths) != 3:
            raise ValueError(
                f"need blocks_per_stage >= 1 and 3 stage widths, got {blocks_per_stage} and {list(widths)}"
            )
        self.num_classes = num_classes
        self.depth = 6 * blocks_per_stage + 2
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_stage(widths[0], widths[0], blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(widths[0], widths[1], blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(widths[1], widths[2], blocks_per_stage, stride=2)
        self.fc = nn.Linear(widths[2], num_classes)
        self._initialize_weights()

    @staticmethod
    def _make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride)]
        layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def _initialize_weights(self) -> None:
        """Kaiming-normal (fan_out, ReLU) convs, BN 1/0, N(0, 0.01) classifier: the official ResNet init."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = x.mean(dim=(2, 3))  # global average pool (the official F.avg_pool2d(x, x.size(3)) on square maps)
        return self.fc(x)


def resnet32(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """The paper's 2x-wide ResNet32 (32/64/128 filters): 34 prunable layers; 1,855,584 weights at C10."""
    return ResNet(5, (32, 64, 128), num_classes=num_classes, in_channels=in_channels)


def resnet32_thin(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """The standard (1x) ResNet32 with 16/32/64 filters."""
    return ResNet(5, (16, 32, 64), num_classes=num_classes, in_channels=in_channels)


def resnet8(num_classes: int = 10, in_channels: int = 3) -> ResNet:
    """One block per stage, 16/32/64 filters: the same topology (incl. projection shortcuts) for CPU runs."""
    return ResNet(1, (16, 32, 64), num_classes=num_classes, in_channels=in_channels)
