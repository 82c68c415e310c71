"""What every deploy target implements, and the plain data it exchanges.

A target turns a :class:`DeploySpec` (which model artifact, how many replicas, which port) into
running model servers and reports a :class:`DeploymentStatus`. Targets are small classes behind
one ABC; ``mlctl deploy`` picks one from ``deploy.target`` (``local``, ``docker``,
``k8s://CONTEXT/NAMESPACE``), records a release in the state store and prints the result.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl.core.errors import UsageError

if TYPE_CHECKING:
    from mlctl.lifecycle.artifact import ModelArtifact

#: The most replicas ``scale`` accepts: beyond it a typo (``--replicas 1000``) is likelier than a plan.
MAX_REPLICAS = 64


def validate_replicas(replicas: object) -> int:
    """``replicas`` as an int in ``0..MAX_REPLICAS``, else :class:`UsageError` (exit 2).

    >>> validate_replicas(3)
    3
    >>> validate_replicas(-1)
    Traceback (most recent call last):
    ...
    mlctl.core.errors.UsageError: replicas must be a whole number from 0 to 64, not -1
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS:
        raise UsageError(f"replicas must be a whole number from 0 to {MAX_REPLICAS}, not {replicas!r}",
                         hint="0 stops every server but keeps the deployment; scale it up again later")
    return replicas


@dataclass(frozen=True)
class DeploySpec:
    """Everything a target needs to run one deployment."""

    name: str  # deployment name (DNS-1123 label), e.g. "fraud-model"
    model: ModelArtifact
    replicas: int = 1
    port: int = 8000
    project_root: Path = Path(".")
    cpu: str = "500m"
    memory: str = "512Mi"
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0

    def config_hash(self) -> str:
        """A short hash of everything that defines this deployment (recorded with each release)."""
        data = asdict(self)
        data["model"]["path"] = str(self.model.path)
        data["project_root"] = str(self.project_root)
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class DeploymentStatus:
    """Stable keys of ``mlctl deploy -o json`` and of the deployments rows of ``mlctl status``."""

    name: str
    target: str  # "local", "docker", "k8s://ctx/ns"
    model: str  # model name
    version: str
    alias: str | None
    replicas_desired: int
    replicas_ready: int
    endpoint: str | None  # e.g. http://127.0.0.1:8000
    health: str  # "healthy", "degraded", "down", "unknown"
    digest: str | None = None  # image digest (docker/k8s) or artifact sha256 (local)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeployPlan:
    """What ``--dry-run`` prints: the actions and, for docker/k8s, the rendered files/manifests."""

    target: str
    actions: list[str]
    manifests: list[dict[str, Any]] = field(default_factory=list)


class DeployTarget(ABC):
    """One place model servers run. Implementations: local, docker, k8s."""

    #: "local", "docker" or "k8s"
    kind: str = ""

    @abstractmethod
    def plan(self, spec: DeploySpec) -> DeployPlan:
        """The actions :meth:`apply` would take; changes nothing."""

    @abstractmethod
    def apply(self, spec: DeploySpec) -> DeploymentStatus:
        """Create or update the deployment and wait until it is ready (or raise)."""

    @abstractmethod
    def status(self, name: str) -> DeploymentStatus | None:
        """The current state, or None when there is no such deployment."""

    @abstractmethod
    def stop(self, name: str) -> bool:
        """Remove the deployment; False when there was none. Idempotent."""

    @abstractmethod
    def logs(self, name: str, tail: int = 100) -> str:
        """The last lines the deployment's servers wrote."""

    @abstractmethod
    def scale(self, name: str, replicas: int) -> DeploymentStatus:
        """Run ``replicas`` servers of what serves now (0..:data:`MAX_REPLICAS`), without dropping
        requests, and wait until they are ready. :class:`UsageError` for a count out of range (or one
        the target cannot run), :class:`NotFound` for an unknown deployment. A later deploy sets its
        own replica count."""
