"""The model lifecycle: train, tune, track, register, deploy, roll back.

The names below are what a user of the library calls (``mlctl models``, ``deploy`` and
``rollback`` are each one of these calls), imported on first use: ``import mlctl.lifecycle``
loads neither scikit-learn, MLflow nor torch. Three calls share their module's name and are
imported from it: :func:`mlctl.lifecycle.train.train`, :func:`mlctl.lifecycle.tune.tune` and
:func:`mlctl.lifecycle.releases.deploy` (``mlctl.lifecycle.deploy`` is the package of deploy
targets). Torch models are in :mod:`mlctl.lifecycle.torch_model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlctl.core.lazy import lazy_exports

if TYPE_CHECKING:
    from mlctl.lifecycle.artifact import ModelArtifact
    from mlctl.lifecycle.registry import (
        compare,
        list_models,
        parse_ref,
        promote,
        register_version,
        resolve_model,
        set_alias,
        show_model,
    )
    from mlctl.lifecycle.releases import (
        DeployResult,
        RollbackResult,
        deployment_statuses,
        get_target,
        list_releases,
        rollback,
        scale,
        stop,
    )
    from mlctl.lifecycle.serialize import ArtifactTampered, load_model, save_model, sha256_file, verify_sha256
    from mlctl.lifecycle.spec import TrainSpec
    from mlctl.lifecycle.tracking import Tracking, connect
    from mlctl.lifecycle.train import TrainOptions, TrainResult, plan_training
    from mlctl.lifecycle.tune import TuningSummary

_MODULES = {
    "mlctl.lifecycle.artifact": ["ModelArtifact"],
    "mlctl.lifecycle.spec": ["TrainSpec"],
    "mlctl.lifecycle.train": ["plan_training", "TrainOptions", "TrainResult"],
    "mlctl.lifecycle.tune": ["TuningSummary"],
    "mlctl.lifecycle.tracking": ["Tracking", "connect"],
    "mlctl.lifecycle.registry": ["parse_ref", "resolve_model", "list_models", "show_model", "compare", "promote",
                                 "set_alias", "register_version"],
    "mlctl.lifecycle.releases": ["rollback", "stop", "scale", "list_releases", "deployment_statuses",
                                 "get_target", "DeployResult", "RollbackResult"],
    "mlctl.lifecycle.serialize": ["save_model", "load_model", "sha256_file", "verify_sha256", "ArtifactTampered"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS,
                                    extras={"sklearn": "ml", "pandas": "ml", "numpy": "ml", "skops": "ml",
                                            "optuna": "ml", "mlflow": "tracking", "torch": "torch"})
__all__ = sorted(_EXPORTS)
