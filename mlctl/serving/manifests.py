"""``mlctl serve manifests``: Kubernetes manifests for the gateway (Deployment, Service, and an
HPA when asked), for ``kubectl apply -f``.

The pods run ``mlctl serve start`` and read their models from the tracking server named by
``tracking.uri`` (a server, not the embedded SQLite) and keep experiment state in Redis
(``serve.state``), so replicas agree. URLs with a password go in Secrets
(``--state-secret NAME:KEY``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl.core.errors import UsageError
from mlctl.core.output import Result, Table

if TYPE_CHECKING:
    from mlctl.core.config import LoadedConfig


@dataclass
class GatewayManifests(Result):
    """``{"manifests": [...], "file": PATH | null}``; the table view prints them as YAML documents."""

    manifests: list[dict[str, Any]]
    file: Path | None = None

    def document(self) -> dict[str, Any]:
        return {"manifests": self.manifests, "file": None if self.file is None else str(self.file)}

    def tables(self) -> list[Table]:
        if self.file is not None:
            kinds = ", ".join(m["kind"] for m in self.manifests)
            return [Table({"file": str(self.file), "manifests": kinds}, title="wrote Kubernetes manifests")]
        return [Table(_yaml(self.manifests), fmt="text")]


def _yaml(manifests: list[dict[str, Any]]) -> str:
    """YAML documents without anchors (the manifests share their label dicts; kubectl needs none)."""
    import yaml

    class _Plain(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return "---\n".join(yaml.dump(m, Dumper=_Plain, sort_keys=False) for m in manifests)


def _secret(value: str | None, flag: str) -> tuple[str, str] | None:
    if value is None:
        return None
    name, sep, key = value.partition(":")
    if not sep or not name or not key:
        raise UsageError(f"{flag} takes SECRET:KEY (the key holds the whole URL), got {value!r}")
    return name, key


def gateway_manifests(loaded: LoadedConfig, models: list[str], *, image: str, name: str = "gateway",
                      namespace: str = "default", replicas: int = 2, port: int = 8000, state: str | None = None,
                      tracking_uri: str | None = None, state_secret: str | None = None,
                      tracking_secret: str | None = None, cpu: str | None = None, memory: str | None = None,
                      hpa_max: int | None = None, hpa_min: int | None = None, hpa_cpu: int | None = None,
                      out: Path | None = None) -> GatewayManifests:
    """Render (and with ``out`` write) the gateway's manifests; defaults from ``serve.state`` and ``tracking.uri``."""
    from mlctl.lifecycle.deploy.k8s_manifests import render_gateway_manifests

    state_ref, tracking_ref = _secret(state_secret, "--state-secret"), _secret(tracking_secret, "--tracking-secret")
    if state_ref is None and state is None:
        state = str(loaded.config.serve.state)
    if tracking_ref is None and tracking_uri is None:
        tracking_uri = str(loaded.config.tracking.uri)
    hpa = None
    if hpa_max is not None:
        hpa = {"max": hpa_max, **({"min": hpa_min} if hpa_min is not None else {}),
               **({"cpu": hpa_cpu} if hpa_cpu is not None else {})}
    elif hpa_min is not None or hpa_cpu is not None:
        raise UsageError("--hpa-min and --hpa-cpu need --hpa-max (the autoscaler's upper bound)")
    manifests = render_gateway_manifests(
        name, models, image=image, namespace=namespace, replicas=replicas, port=port,
        state_url=None if state_ref else state, tracking_uri=None if tracking_ref else tracking_uri,
        state_secret=state_ref, tracking_secret=tracking_ref, cpu=cpu, memory=memory, hpa=hpa)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_yaml(manifests))
    return GatewayManifests(manifests, out)
