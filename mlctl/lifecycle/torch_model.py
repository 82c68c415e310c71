"""Torch models behind the scikit-learn estimator interface, saved as a state_dict plus the
reference of the function that builds the network.

A ``train.model`` of the form ``torch:package.module:function`` names a function that builds a
``torch.nn.Module``; mlctl trains it on the CPU, saves it as one deterministic file and loads it
back only after its SHA-256 matches the one recorded at registration. This module is the public
face of three private ones, one concern each:

* :mod:`mlctl.lifecycle._torch_estimator`: :class:`TorchEstimator` (training, parameters) and
  :func:`build_torch_estimator`;
* :mod:`mlctl.lifecycle._torch_artifact`: :class:`TorchModel` (the fitted network with its input
  scaling, predicting like an estimator), the file format and :func:`load_torch_model`;
* :mod:`mlctl.lifecycle._torch_optim`: :class:`AdamW`, the optimiser of the training loop.
"""

from __future__ import annotations

from mlctl.lifecycle._torch_artifact import FLAVOR, FORMAT, FORMAT_VERSION, MODEL_FILE, TorchModel, load_torch_model
from mlctl.lifecycle._torch_estimator import (
    MODULE_PREFIX,
    PARAMS,
    TorchEstimator,
    TrainingDiverged,
    accepted_module_params,
    build_torch_estimator,
)
from mlctl.lifecycle._torch_optim import AdamW

__all__ = [
    "FLAVOR",
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILE",
    "MODULE_PREFIX",
    "PARAMS",
    "AdamW",
    "TorchEstimator",
    "TorchModel",
    "TrainingDiverged",
    "accepted_module_params",
    "build_torch_estimator",
    "load_torch_model",
]
