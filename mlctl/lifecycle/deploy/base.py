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
from typing import Any


@dataclass(frozen=True)
class ModelArtifact:
    """A registered model version, resolved to a verified local file."""

    name: str
    version: str
    alias: str | None
    path: Path  # the serialized model (skops for scikit-learn, state_dict/TorchScript for torch)
    sha256: str  # recorded at registration; verified at every load
    flavor: str = "sklearn"  # "sklearn" or "torch"
    signature: dict[str, Any] = field(default_factory=dict)  # {"inputs": [{"name", "type"}], "outputs": [...]}
    run_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_json(self, path: Path) -> None:
        """Write this artifact's metadata next to (or pointing at) the model file.

        ``path`` in the JSON is relative to the JSON file's folder when the model lies inside it,
        so a folder holding ``artifact.json`` and the model can be copied (into an image, say).
        """
        data = asdict(self)
        try:
            data["path"] = str(Path(self.path).resolve().relative_to(path.parent.resolve()))
        except ValueError:
            data["path"] = str(Path(self.path).resolve())
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: Path) -> ModelArtifact:
        """Read metadata written by :meth:`to_json`; the model path is resolved against its folder."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["path"] = (Path(path).parent / data["path"]).resolve()
        return cls(**data)


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
