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


def save_as_torchscript(model: Any, path: Any) -> str:
    """Write a fitted mlctl torch model as mlctl wrote torch models before the state_dict format (a
    traced TorchScript archive, metadata as the extra file ``mlctl.json``); returns its SHA-256."""
    import hashlib
    import io
    import json
    import warnings
    from pathlib import Path

    meta = {
        "format": "torchscript",
        "format_version": 1,
        "task": model.task,
        "classes": None if model.classes_ is None else model.classes_.tolist(),
        "feature_names": None if model.feature_names_in_ is None else [str(n) for n in model.feature_names_in_],
        "n_features": int(model.n_features_in_),
        "torch_version": torch.__version__.split("+")[0],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.module, torch.zeros(4, model.n_features_in_), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={"mlctl.json": json.dumps(meta, sort_keys=True)})
    Path(path).write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()
