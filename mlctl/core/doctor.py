"""``mlctl doctor``: which optional engines are installed or reachable, and what each enables.

Each check speaks the engine's own protocol through :mod:`mlctl.core.probes`, with the
standard library only and short timeouts, so doctor stays fast and needs no client library:
HTTP health endpoints for the HTTP engines, ``PING`` for Redis, the SSLRequest handshake for
PostgreSQL, ``ApiVersions`` for Kafka, ``/version`` over the socket for Docker and ``/version``
for Kubernetes. This module maps each configured URL to its check.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl.core import probes
from mlctl.core.config import CoreConfig
from mlctl.core.output import Result, to_data

TIMEOUT_S = 2.0


@dataclass
class EngineCheck:
    """One row of ``mlctl doctor``."""

    engine: str
    url: str
    reachable: bool
    detail: str
    installed: bool
    enables: str


def probe_http(path: str, *, json_field: str | None = None) -> Callable[[str], str]:
    """A check of ``GET url+path`` (see :func:`mlctl.core.probes.check_http`); proxies from the environment apply."""
    return lambda url: probes.check_http(url, path, json_field=json_field, timeout=TIMEOUT_S, env_proxies=True)


def probe_redis(url: str) -> str:
    return probes.check_redis(*probes.host_port(url, 6379), timeout=TIMEOUT_S)


def probe_postgres(url: str) -> str:
    return probes.check_postgres(*probes.host_port(url, 5432), timeout=TIMEOUT_S)


def probe_kafka(url: str) -> str:
    return probes.check_kafka(*probes.host_port(url, 9092), timeout=TIMEOUT_S)


def probe_docker(url: str) -> str:
    return probes.check_docker(url, timeout=TIMEOUT_S, env_proxies=True)


def kubernetes_url(config: CoreConfig) -> str | None:
    """The API server URL: config, else the current context of KUBECONFIG / ~/.kube/config."""
    if config.services.kubernetes:
        return config.services.kubernetes
    path = Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]).expanduser()
    if not path.is_file():
        return None
    import yaml

    try:
        kube = yaml.safe_load(path.read_text()) or {}
        ctx_name = kube.get("current-context")
        ctx = next(c["context"] for c in kube.get("contexts", []) if c["name"] == ctx_name)
        return next(c["cluster"]["server"] for c in kube.get("clusters", []) if c["name"] == ctx["cluster"])
    except (StopIteration, KeyError, TypeError, AttributeError, yaml.YAMLError):
        return None


@dataclass(frozen=True)
class Engine:
    name: str
    config_key: str
    probe: Callable[[str], str]
    client_module: str | None
    binaries: tuple[str, ...]
    enables: str


ENGINES: tuple[Engine, ...] = (
    Engine("MLflow server", "mlflow", probe_http("/health"), "mlflow", ("mlflow",),
           "shared tracking and model registry (tracking.uri: http://...)"),
    Engine("Prometheus", "prometheus", probe_http("/-/ready"), None, ("prometheus",),
           "metrics in for detect/autoscale, scraping of mlctl's /metrics"),
    Engine("Alertmanager", "alertmanager", probe_http("/api/v2/status", json_field="versionInfo.version"), None,
           ("prometheus-alertmanager", "alertmanager"), "alert routing from detect and platform"),
    Engine("Pushgateway", "pushgateway", probe_http("/-/ready"), None,
           ("prometheus-pushgateway", "pushgateway"), "metrics from batch jobs (train, pipelines)"),
    Engine("Kafka", "kafka", probe_kafka, "kafka", (), "streaming logs and metrics (kafka://host:port/topic)"),
    Engine("Elasticsearch/OpenSearch", "search", probe_http("/", json_field="version.number"), "elasticsearch",
           (), "log index and search beyond one machine"),
    Engine("Redis", "redis", probe_redis, "redis", ("redis-server",), "shared cache and A/B state for serving"),
    Engine("PostgreSQL", "postgres", probe_postgres, "psycopg", ("psql", "postgres"),
           "MLflow backend store, shared Optuna studies"),
    Engine("Docker engine", "docker", probe_docker, "docker", ("docker", "dockerd"),
           "deploy --target docker, image builds"),
    Engine("Kubernetes API", "kubernetes", probe_http("/version", json_field="gitVersion"), "kubernetes",
           ("kubectl",), "deploy --target k8s://..., autoscaling"),
)


def _installed(engine: Engine) -> bool:
    if engine.client_module and importlib.util.find_spec(engine.client_module) is not None:
        return True
    return any(shutil.which(b) for b in engine.binaries)


def _check(engine: Engine, url: str | None) -> EngineCheck:
    installed = _installed(engine)
    if not url:
        return EngineCheck(engine.name, "-", False, "not configured (no KUBECONFIG)", installed, engine.enables)
    try:
        detail = engine.probe(url)
        ok = True
    except (OSError, ValueError) as exc:
        ok = False
        reason = getattr(exc, "reason", None) or exc
        detail = f"unreachable: {reason}"
    return EngineCheck(engine.name, url, ok, detail, installed, engine.enables)


def run_doctor(config: CoreConfig) -> list[EngineCheck]:
    """Check every optional engine concurrently; never raises for a missing engine."""
    urls = {e.name: (kubernetes_url(config) if e.config_key == "kubernetes"
                     else getattr(config.services, e.config_key)) for e in ENGINES}
    with ThreadPoolExecutor(max_workers=len(ENGINES)) as pool:
        return list(pool.map(lambda e: _check(e, urls[e.name]), ENGINES))


@dataclass
class DoctorReport(Result):
    """``mlctl doctor``: one check per engine; the table shows engine, status, client, URL (``--wide``: more)."""

    engines: list[EngineCheck]

    title = "optional engines"
    columns = ("engine", "status", "installed", "url")
    wide_columns = ("detail", "enables")
    fit = True

    def document(self) -> dict[str, Any]:
        return {"engines": [to_data(c) for c in self.engines]}

    def rows(self) -> Iterator[dict[str, Any]]:
        for c in self.engines:
            yield to_data(c)

    def table(self) -> list[dict[str, Any]]:
        return [{"engine": c.engine, "status": "up" if c.reachable else "down", "url": c.url, "detail": c.detail,
                 "installed": c.installed, "enables": c.enables} for c in self.engines]


def doctor_report(config: CoreConfig) -> DoctorReport:
    """:func:`run_doctor` as a result to render."""
    return DoctorReport(run_doctor(config))
