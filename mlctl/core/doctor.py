"""``mlctl doctor``: which optional engines are installed or reachable, and what each enables.

Each check speaks the engine's own protocol, with the standard library only and short
timeouts, so doctor stays fast and needs no client library: HTTP health endpoints for the
HTTP engines, ``PING`` for Redis, the SSLRequest handshake for PostgreSQL, ``ApiVersions``
for Kafka, ``/_ping`` over the socket for Docker and ``/version`` for Kubernetes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mlctl.core.config import MlctlConfig

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


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    return parts.hostname, parts.port or default_port


def _http_get(url: str, path: str) -> tuple[int, bytes]:
    full = url.rstrip("/") + path
    req = urllib.request.Request(full, headers={"Accept": "application/json", "User-Agent": "mlctl-doctor"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310 - URL from config
            return resp.status, resp.read(65536)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096)


def probe_http(path: str, *, json_field: str | None = None) -> Callable[[str], str]:
    def run(url: str) -> str:
        status, body = _http_get(url, path)
        if status >= 500:
            raise OSError(f"HTTP {status} from {path}")
        if json_field:
            try:
                value = json.loads(body)
                for part in json_field.split("."):
                    value = value[part]
                return f"version {value}"
            except (ValueError, KeyError, TypeError):
                pass
        return f"HTTP {status} on {path}"

    return run


def probe_redis(url: str) -> str:
    host, port = _host_port(url, 6379)
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        reply = s.recv(64)
    if reply.startswith(b"+PONG"):
        return "PING -> PONG"
    if reply.startswith(b"-NOAUTH"):
        return "answering (needs auth)"
    raise OSError(f"unexpected reply {reply[:20]!r}")


def probe_postgres(url: str) -> str:
    host, port = _host_port(url, 5432)
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as s:
        s.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        reply = s.recv(1)
    if reply in (b"S", b"N"):
        return "protocol 3.0 handshake ok"
    raise OSError(f"unexpected reply {reply!r}")


def probe_kafka(url: str) -> str:
    host, port = _host_port(url, 9092)
    client = b"mlctl"
    body = struct.pack("!hhih", 18, 0, 7, len(client)) + client  # ApiVersions v0, correlation 7
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as s:
        s.sendall(struct.pack("!i", len(body)) + body)
        head = s.recv(10)
    if len(head) >= 10:
        _, correlation, error = struct.unpack("!iih", head[:10])
        if correlation == 7:
            return "ApiVersions ok" if error == 0 else f"ApiVersions error {error}"
    raise OSError("not a Kafka-protocol broker")


def probe_docker(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT_S)
        with sock:
            sock.connect(parts.path)
            sock.sendall(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0] + b" ":
            raise OSError(head.split(b"\r\n")[0].decode(errors="replace"))
        try:
            return f"version {json.loads(body)['Version']}"
        except (ValueError, KeyError):
            return "answering"
    url = url.replace("tcp://", "http://", 1)
    return probe_http("/version", json_field="Version")(url)


def kubernetes_url(config: MlctlConfig) -> str | None:
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


def run_doctor(config: MlctlConfig) -> list[EngineCheck]:
    """Check every optional engine concurrently; never raises for a missing engine."""
    urls = {e.name: (kubernetes_url(config) if e.config_key == "kubernetes"
                     else getattr(config.services, e.config_key)) for e in ENGINES}
    with ThreadPoolExecutor(max_workers=len(ENGINES)) as pool:
        return list(pool.map(lambda e: _check(e, urls[e.name]), ENGINES))
