"""``mlctl serve status``: what a running gateway serves, its experiments and the memory of each loaded version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlctl.core.output import Result, Table


@dataclass
class GatewayStatus(Result):
    """``{"endpoint", "ready", "models": [{"name", "versions", "aliases", "default", "experiment",
    "memory_bytes"}]}``; the table shows one row per loaded version."""

    endpoint: str
    ready: bool
    models: list[dict[str, Any]]

    def document(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "ready": self.ready, "models": self.models}

    def tables(self) -> list[Table]:
        rows = []
        for m in self.models:
            by_version = {v: a for a, v in m["aliases"].items()}
            for v in m["versions"]:
                memory = m["memory_bytes"].get(v)
                rows.append({"model": m["name"], "version": v, "alias": by_version.get(v, "-"),
                             "default": "yes" if v == m["default"] else "",
                             "experiment": m["experiment"] or "-",
                             "memory MB": "-" if memory is None else f"{memory / 2**20:.1f}"})
        state = "ready" if self.ready else "not ready"
        return [Table(rows, title=f"gateway at {self.endpoint} ({state})")]


def gateway_status(endpoint: str, *, timeout: float = 10.0) -> GatewayStatus:
    """Ask a gateway what it serves (``GET /v1/models`` and ``/ready``); unreachable: exit 4."""
    from mlctl.core.http import get_json, request

    base = endpoint.rstrip("/")
    what = f"the gateway at {base}"
    listing = get_json(base + "/v1/models", timeout=timeout, what=what)
    ready = request("GET", base + "/ready", timeout=timeout, what=what).status == 200
    keys = ("name", "versions", "aliases", "default", "experiment", "memory_bytes")
    models = [{k: m.get(k) for k in keys} for m in listing.get("models", [])]
    for m in models:
        m["memory_bytes"] = m["memory_bytes"] or {}
    return GatewayStatus(base, ready, models)
