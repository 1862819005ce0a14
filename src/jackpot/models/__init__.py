"""Networks: the paper's VGG19-BN and 2x-wide ResNet32, plus small variants of the same classes for CPU runs.

Every model has ``family`` ("vgg" or "resnet"; the smart-ratio pruner keys its VGG-only 1/l^2 factor on
it) and takes ``num_classes`` and ``in_channels``. Prunable weights are those of every Conv2d and Linear, in
module order, with the classifier last (see ``jackpot.pruning.masks.prunable_weights``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from jackpot.models.resnet import BasicBlock, ResNet, resnet8, resnet32, resnet32_thin
from jackpot.models.vgg import VGG, VGG19_CFG, VGG_TINY_CFG, vgg19_bn, vgg_tiny

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "vgg19": vgg19_bn,
    "resnet32": resnet32,
    "vgg_tiny": vgg_tiny,
    "resnet8": resnet8,
    "resnet32_thin": resnet32_thin,
}
_VGG_NAMES = frozenset({"vgg19", "vgg_tiny"})

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, num_classes: int, in_channels: int = 3, *, input_size: int = 32) -> nn.Module:
    """Build a freshly initialised network by name.

    ``input_size`` (square side in pixels) only matters for VGG, whose final AvgPool kernel depends on it
    (32 for CIFAR -> AvgPool2d(2) on VGG19; 64 for Tiny-ImageNet -> AvgPool2d(4)); ResNets pool globally.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model name {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if name in _VGG_NAMES:
        return _BUILDERS[name](num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    return _BUILDERS[name](num_classes=num_classes, in_channels=in_channels)


__all__ = [
    "MODEL_NAMES",
    "VGG",
    "VGG19_CFG",
    "VGG_TINY_CFG",
    "BasicBlock",
    "ResNet",
    "build_model",
    "resnet8",
    "resnet32",
    "resnet32_thin",
    "vgg19_bn",
    "vgg_tiny",
]
