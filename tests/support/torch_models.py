"""Small torch model functions for the torch lifecycle tests (``torch:tests.support.torch_models:NAME``)."""

from __future__ import annotations

import math
from typing import Any

import torch


def mlp(n_features: int, n_outputs: int, hidden: int = 8) -> torch.nn.Module:
    """One hidden layer: logits or values."""
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n_outputs))


def linear(n_features: int, n_outputs: int) -> torch.nn.Module:
    return torch.nn.Linear(n_features, n_outputs)


class _PythonOnly(torch.nn.Module):
    """A forward TorchScript cannot compile (a Python module call inside): mlctl traces it."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(n_features, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) * math.prod([1.0, 1.0])


def python_only(n_features: int, n_outputs: int) -> torch.nn.Module:
    return _PythonOnly(n_features, n_outputs)


def not_a_module(n_features: int, n_outputs: int) -> Any:
    return {"layers": [n_features, n_outputs]}


def wrong_width(n_features: int, n_outputs: int) -> torch.nn.Module:
    return torch.nn.Linear(n_features, n_outputs + 3)


def sized_by_kwargs(**kwargs: Any) -> torch.nn.Module:
    """Takes everything as keyword arguments (any module__ parameter is accepted)."""
    width = int(kwargs.get("width", 4))
    return torch.nn.Sequential(
        torch.nn.Linear(kwargs["n_features"], width), torch.nn.ReLU(), torch.nn.Linear(width, kwargs["n_outputs"])
    )
