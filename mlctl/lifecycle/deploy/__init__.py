"""Deploy targets: one registered model served locally, in Docker or on Kubernetes.

Every target implements :class:`DeployTarget` (plan, deploy, status, stop, scale, logs);
:func:`mlctl.lifecycle.releases.get_target` picks one from ``deploy.target``. Names are imported
on first use (the Kubernetes client only with the ``k8s`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlctl.core.lazy import lazy_exports

if TYPE_CHECKING:
    from mlctl.lifecycle.deploy.base import DeploymentStatus, DeployPlan, DeploySpec, DeployTarget
    from mlctl.lifecycle.deploy.docker import DockerTarget
    from mlctl.lifecycle.deploy.k8s import K8sTarget
    from mlctl.lifecycle.deploy.local import LocalTarget
    from mlctl.lifecycle.deploy.lock import DeploymentBusy

_MODULES = {
    "mlctl.lifecycle.deploy.base": ["DeployTarget", "DeploySpec", "DeployPlan", "DeploymentStatus"],
    "mlctl.lifecycle.deploy.local": ["LocalTarget"],
    "mlctl.lifecycle.deploy.docker": ["DockerTarget"],
    "mlctl.lifecycle.deploy.k8s": ["K8sTarget"],
    "mlctl.lifecycle.deploy.lock": ["DeploymentBusy"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, extras={"kubernetes": "k8s"})
__all__ = sorted(_EXPORTS)
