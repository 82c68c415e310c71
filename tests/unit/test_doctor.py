"""Doctor probes against small protocol fakes on loopback (real engines: tests/integration)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from mlctl.core import doctor
from mlctl.sections import MlctlConfig


def tcp_server(reply: Callable[[bytes], bytes]) -> Iterator[int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(5)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = conn.recv(1024)
                conn.sendall(reply(data))

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield port
    stop.set()
    srv.close()


@pytest.fixture
def http_url() -> Iterator[str]:
    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            bodies = {
                "/-/ready": (200, b"ready"),
                "/api/v2/status": (200, json.dumps({"versionInfo": {"version": "0.25.0"}}).encode()),
                "/": (200, json.dumps({"version": {"number": "2.11.0"}}).encode()),
                "/version": (200, json.dumps({"gitVersion": "v1.32.0", "Version": "28.2.2"}).encode()),
                "/health": (503, b"down"),
            }
            status, body = bodies.get(self.path, (404, b"no"))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def test_http_probes(http_url: str) -> None:
    assert doctor.probe_http("/-/ready")(http_url) == "HTTP 200 on /-/ready"
    assert doctor.probe_http("/api/v2/status", json_field="versionInfo.version")(http_url) == "version 0.25.0"
    assert doctor.probe_http("/", json_field="version.number")(http_url) == "version 2.11.0"
    assert doctor.probe_http("/-/ready", json_field="x.y")(http_url) == "HTTP 200 on /-/ready"
    assert doctor.probe_http("/missing")(http_url) == "HTTP 404 on /missing"
    with pytest.raises(OSError, match="HTTP 503"):
        doctor.probe_http("/health")(http_url)
    assert doctor.probe_docker(http_url.replace("http://", "tcp://")) == "version 28.2.2"


def test_redis_probe() -> None:
    gen = tcp_server(lambda d: b"+PONG\r\n" if b"PING" in d else b"-ERR\r\n")
    port = next(gen)
    assert doctor.probe_redis(f"redis://127.0.0.1:{port}/0") == "PING -> PONG"
    gen.close()
    gen = tcp_server(lambda d: b"-NOAUTH Authentication required.\r\n")
    port = next(gen)
    assert doctor.probe_redis(f"redis://127.0.0.1:{port}") == "answering (needs auth)"
    gen.close()
    gen = tcp_server(lambda d: b"HTTP/1.1 400\r\n")
    port = next(gen)
    with pytest.raises(OSError, match="unexpected reply"):
        doctor.probe_redis(f"redis://127.0.0.1:{port}")
    gen.close()


def test_postgres_probe() -> None:
    gen = tcp_server(lambda d: b"N" if d == struct.pack("!ii", 8, 80877103) else b"E")
    port = next(gen)
    assert doctor.probe_postgres(f"postgresql://u@127.0.0.1:{port}/db") == "protocol 3.0 handshake ok"
    gen.close()
    gen = tcp_server(lambda d: b"X")
    port = next(gen)
    with pytest.raises(OSError):
        doctor.probe_postgres(f"postgresql://127.0.0.1:{port}/db")
    gen.close()


def test_kafka_probe() -> None:
    def api_versions(data: bytes) -> bytes:
        size, key, version, corr = struct.unpack("!ihhi", data[:12])
        assert key == 18 and version == 0 and size == len(data) - 4
        body = struct.pack("!ih", corr, 0) + struct.pack("!i", 0)
        return struct.pack("!i", len(body)) + body

    gen = tcp_server(api_versions)
    port = next(gen)
    assert doctor.probe_kafka(f"kafka://127.0.0.1:{port}/topic") == "ApiVersions ok"
    gen.close()
    gen = tcp_server(lambda d: b"nope")
    port = next(gen)
    with pytest.raises(OSError, match="not a Kafka-protocol broker"):
        doctor.probe_kafka(f"kafka://127.0.0.1:{port}")
    gen.close()


def test_docker_probe_over_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "d.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()

    def serve(body: bytes, status: bytes) -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.0 " + status + b"\r\nContent-Type: application/json\r\n\r\n" + body)

    t = threading.Thread(target=serve, args=(json.dumps({"Version": "28.2.2"}).encode(), b"200 OK"))
    t.start()
    assert doctor.probe_docker(f"unix://{path}") == "version 28.2.2"
    t.join()
    t = threading.Thread(target=serve, args=(b"{}", b"500 Internal Server Error"))
    t.start()
    with pytest.raises(OSError, match="500"):
        doctor.probe_docker(f"unix://{path}")
    t.join()
    srv.close()


def test_host_port_requires_a_host() -> None:
    with pytest.raises(ValueError):
        doctor.probe_redis("redis:///0")


def test_kubernetes_url_from_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kube = tmp_path / "kubeconfig"
    kube.write_text(
        "current-context: dev\n"
        "contexts: [{name: dev, context: {cluster: c1}}]\n"
        "clusters: [{name: c1, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kube))
    assert doctor.kubernetes_url(MlctlConfig()) == "https://127.0.0.1:6443"
    kube.write_text("current-context: missing\ncontexts: []\n")
    assert doctor.kubernetes_url(MlctlConfig()) is None
    cfg = MlctlConfig.model_validate({"services": {"kubernetes": "http://127.0.0.1:1"}})
    assert doctor.kubernetes_url(cfg) == "http://127.0.0.1:1"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert doctor.kubernetes_url(MlctlConfig()) is None


def test_run_doctor_mixes_up_and_down(http_url: str) -> None:
    gen = tcp_server(lambda d: b"+PONG\r\n")
    port = next(gen)
    cfg = MlctlConfig.model_validate({"services": {"prometheus": http_url, "redis": f"redis://127.0.0.1:{port}",
                                                   "mlflow": http_url, "kubernetes": http_url}})
    rows = {c.engine: c for c in doctor.run_doctor(cfg)}
    gen.close()
    assert rows["Prometheus"].reachable and rows["Prometheus"].detail == "HTTP 200 on /-/ready"
    assert rows["Redis"].reachable
    assert rows["Kubernetes API"].reachable and rows["Kubernetes API"].detail == "version v1.32.0"
    assert not rows["MLflow server"].reachable and "HTTP 503" in rows["MLflow server"].detail
    assert [c.engine for c in doctor.run_doctor(cfg)] == [e.name for e in doctor.ENGINES]
