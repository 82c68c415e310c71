"""Each engine fixture yields a working engine (checked with raw protocols, psql and urllib)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from typing import Any

import pytest

from mlctl.engines import Service, find_binary, wait_until

pytestmark = pytest.mark.integration

# Loopback only: never send these requests through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(method: str, url: str, body: bytes | None = None, content_type: str = "text/plain") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    with _OPENER.open(req, timeout=5) as resp:
        return int(resp.status), resp.read()


def _get_json(url: str) -> Any:
    status, body = _http("GET", url)
    assert status == 200
    return json.loads(body)


def _assert_owned(svc: Service) -> None:
    """A started engine has a live PID and a port; an external one has no PID."""
    if svc.pid is not None:
        os.kill(svc.pid, 0)  # raises if the process is gone
    assert svc.port is not None and svc.port > 0


def _redis_command(sock: socket.socket, *args: str) -> bytes:
    payload = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    sock.sendall(payload.encode())
    return sock.recv(4096)


def test_redis_answers_ping_and_stores_values(redis: Service) -> None:
    _assert_owned(redis)
    assert redis.url.startswith("redis://")
    with socket.create_connection((redis.host, redis.port), timeout=5) as sock:
        assert _redis_command(sock, "PING") == b"+PONG\r\n"
        assert _redis_command(sock, "SET", "mlctl:test", "42") == b"+OK\r\n"
        assert _redis_command(sock, "GET", "mlctl:test") == b"$2\r\n42\r\n"
        assert _redis_command(sock, "DEL", "mlctl:test") == b":1\r\n"


def test_postgres_accepts_a_psql_connection(postgres: Service) -> None:
    _assert_owned(postgres)
    psql = shutil.which("psql") or find_binary("psql")
    assert psql, "psql not found: apt-get install postgresql-client"
    env = {**os.environ, "PGCONNECT_TIMEOUT": "5"}
    result = subprocess.run(
        [psql, postgres.url, "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c",
         "CREATE TABLE IF NOT EXISTS mlctl_probe (v int); INSERT INTO mlctl_probe VALUES (7);"
         " SELECT sum(v) >= 7 FROM mlctl_probe; DROP TABLE mlctl_probe;"],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "t" in result.stdout.split()


def test_prometheus_is_ready_and_answers_queries(prometheus: Service) -> None:
    _assert_owned(prometheus)
    status, body = _http("GET", prometheus.url + "/-/ready")
    assert status == 200
    answer = _get_json(prometheus.url + "/api/v1/query?query=" + urllib.parse.quote("vector(1)"))
    assert answer["status"] == "success"
    assert answer["data"]["result"][0]["value"][1] == "1"
    buildinfo = _get_json(prometheus.url + "/api/v1/status/buildinfo")
    assert buildinfo["data"]["version"]


@pytest.mark.slow  # Prometheus hands new targets to its scrapers every 5 s: the first scrape comes ~5 s in
@pytest.mark.skipif(
    bool(os.environ.get("MLCTL_TEST_PROMETHEUS_URL")), reason="self-scrape config only on our own Prometheus"
)
def test_prometheus_scrapes_itself(prometheus: Service) -> None:
    url = prometheus.url + "/api/v1/query?query=" + urllib.parse.quote('up{job="prometheus"}')

    def scraped() -> bool:
        result = _get_json(url)["data"]["result"]
        return bool(result) and result[0]["value"][1] == "1"

    wait_until(scraped, timeout=20, interval=0.25, what="Prometheus to scrape itself")


def test_alertmanager_reports_status_and_takes_alerts(alertmanager: Service) -> None:
    _assert_owned(alertmanager)
    status = _get_json(alertmanager.url + "/api/v2/status")
    assert "versionInfo" in status and "config" in status
    alert = [{"labels": {"alertname": "MlctlHarnessProbe", "severity": "none"}}]
    code, _ = _http("POST", alertmanager.url + "/api/v2/alerts", json.dumps(alert).encode(), "application/json")
    assert code == 200

    def listed() -> bool:
        alerts = _get_json(alertmanager.url + "/api/v2/alerts?filter=alertname%3D%22MlctlHarnessProbe%22")
        return any(a["labels"]["alertname"] == "MlctlHarnessProbe" for a in alerts)

    wait_until(listed, timeout=10, interval=0.1, what="the alert to be listed")


def test_pushgateway_push_and_read_back(pushgateway: Service) -> None:
    _assert_owned(pushgateway)
    target = pushgateway.url + "/metrics/job/mlctl_harness/instance/probe"
    body = b"# TYPE mlctl_harness_value gauge\nmlctl_harness_value 42\n"
    code, _ = _http("PUT", target, body)
    assert code == 200
    _, metrics = _http("GET", pushgateway.url + "/metrics")
    lines = metrics.decode().splitlines()
    assert any(
        line.startswith("mlctl_harness_value{") and 'job="mlctl_harness"' in line and line.endswith(" 42")
        for line in lines
    ), "pushed metric not found"
    code, _ = _http("DELETE", target)
    assert code == 202
