"""Masks: parameter name -> bool tensor, the artifact every pruning method produces.

Prunable weights are the weights of every ``nn.Conv2d`` and ``nn.Linear`` (biases and BatchNorm never), in module
order, named as in ``model.named_parameters()``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from jackpot.runs.atomic_io import torch_load_safe, torch_save_atomic

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, weight) of every conv and linear layer, in module order."""
    found = []
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            found.append((f"{module_name}.weight" if module_name else "weight", module.weight))
    return found


def prunable_count(model: nn.Module) -> int:
    """Number of prunable weights (the paper's N)."""
    return sum(weight.numel() for _, weight in prunable_weights(model))


class Masks(Mapping[str, torch.Tensor]):
    """An ordered mapping from parameter name to a bool keep-mask of the weight's shape."""

    def __init__(self, masks: Mapping[str, torch.Tensor]):
        self._masks: dict[str, torch.Tensor] = {}
        for name, mask in masks.items():
            self._masks[name] = mask.detach().to(dtype=torch.bool, device="cpu").clone()

    # Mapping protocol -------------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __repr__(self) -> str:
        return f"Masks({len(self)} layers, kept {self.kept()}/{self.total()} = {self.density():.4f})"

    # Construction -----------------------------------------------------------------------------------------------
    @classmethod
    def dense(cls, model: nn.Module) -> Masks:
        """All-ones masks over the prunable weights (the dense network)."""
        return cls({name: torch.ones_like(w, dtype=torch.bool) for name, w in prunable_weights(model)})

    # Counts -----------------------------------------------------------------------------------------------------
    def kept(self, name: str | None = None) -> int:
        """Kept weights in one layer, or in all layers."""
        if name is not None:
            return int(self._masks[name].sum())
        return sum(int(mask.sum()) for mask in self._masks.values())

    def total(self, name: str | None = None) -> int:
        if name is not None:
            return self._masks[name].numel()
        return sum(mask.numel() for mask in self._masks.values())

    def density(self, name: str | None = None) -> float:
        total = self.total(name)
        return self.kept(name) / total if total else 1.0

    def layer_table(self) -> list[dict]:
        """Per layer, in module order: name, shape, kept, total (the results file's schema)."""
        return [
            {"name": n, "shape": list(m.shape), "kept": int(m.sum()), "total": m.numel()}
            for n, m in self._masks.items()
        ]

    # Use on a model ---------------------------------------------------------------------------------------------
    def check_matches(self, model: nn.Module) -> None:
        """Raise if the masks do not cover exactly the model's prunable weights with the same shapes."""
        weights = dict(prunable_weights(model))
        if list(weights) != list(self._masks):
            raise ValueError(
                f"masks cover {list(self._masks)[:3]}... but the model's prunable weights are {list(weights)[:3]}..."
            )
        for name, weight in weights.items():
            if weight.shape != self._masks[name].shape:
                shapes = f"{tuple(self._masks[name].shape)}, weight {tuple(weight.shape)}"
                raise ValueError(f"mask {name} has shape {shapes}")

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights of `model` in place."""
        self.check_matches(model)
        params = dict(model.named_parameters())
        for name, mask in self._masks.items():
            weight = params[name]
            weight.mul_(mask.to(device=weight.device, dtype=weight.dtype))

    def as_float(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(weights, float masks on the weights' device and dtype), aligned, for one fused `_foreach_mul_`."""
        params = dict(model.named_parameters())
        weights = [params[name] for name in self._masks]
        floats = [m.to(device=w.device, dtype=w.dtype) for m, w in zip(self._masks.values(), weights, strict=True)]
        return weights, floats

    # Persistence ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self._masks)

    def save(self, path: str | Path) -> None:
        torch_save_atomic(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> Masks:
        return cls(torch_load_safe(path))

    def equal(self, other: Mapping[str, torch.Tensor]) -> bool:
        return list(self) == list(other) and all(torch.equal(self[n], other[n].bool().cpu()) for n in self)
