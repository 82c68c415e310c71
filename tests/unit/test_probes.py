"""Unit tests of mlctl.core.probes against protocol fakes on loopback (real engines: tests/integration)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlctl.core.probes import (
    check_docker,
    check_kafka,
    check_redis,
    docker_ready,
    host_port,
    http_get,
    http_ready,
    kafka_api_versions,
    kafka_ready,
    opensearch_ready,
    postgres_ready,
    redis_ready,
    tcp_ready,
)
from mlctl.core.proc import free_port
from tests.support.local_servers import FakeServers, http_server


@pytest.fixture
def fake_server() -> Iterator[FakeServers]:
    """TCP servers on loopback answering fixed bytes: ``fake_server(reply) -> port``."""
    servers = FakeServers()
    yield servers
    servers.close()


def test_tcp_ready(fake_server: FakeServers) -> None:
    assert tcp_ready("127.0.0.1", fake_server(b""))
    assert not tcp_ready("127.0.0.1", free_port())


def test_http_ready_against_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    with http_server(tmp_path, port) as svc:
        assert http_ready(svc.url + "/")
        assert http_ready(svc.url + "/missing", expect_status=404)
        assert not http_ready(svc.url + "/missing")
    assert not http_ready(f"http://127.0.0.1:{port}/")
    assert not http_ready("not a url")


def test_redis_ready(fake_server: FakeServers) -> None:
    assert redis_ready("127.0.0.1", fake_server(b"+PONG\r\n"))
    assert not redis_ready("127.0.0.1", fake_server(b"-LOADING Redis is loading\r\n"))
    assert not redis_ready("127.0.0.1", fake_server(b""))
    assert not redis_ready("127.0.0.1", free_port())
    # AUTH first: the fake answers +PONG to AUTH, which is not +OK
    assert not redis_ready("127.0.0.1", fake_server(b"+PONG\r\n"), password="secret")
    assert redis_ready("127.0.0.1", fake_server(b"+OK\r\n+PONG\r\n"), password="secret")


def test_postgres_ready(fake_server: FakeServers) -> None:
    auth_ok = b"R" + (8).to_bytes(4, "big") + (0).to_bytes(4, "big")
    assert postgres_ready("127.0.0.1", fake_server(auth_ok))
    assert not postgres_ready("127.0.0.1", fake_server(b"E\x00\x00\x00\x20SFATAL starting up"))
    assert not postgres_ready("127.0.0.1", free_port())


def _http_answer(status: str, body: bytes) -> bytes:
    return f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def test_host_port() -> None:
    assert host_port("postgresql://u@db.example:6543/x", 5432) == ("db.example", 6543)
    assert host_port("kafka://127.0.0.1/topic", 9092) == ("127.0.0.1", 9092)
    with pytest.raises(ValueError, match="no host"):
        host_port("redis:///0", 6379)


def test_check_redis(fake_server: FakeServers) -> None:
    assert check_redis("127.0.0.1", fake_server(b"+PONG\r\n")) == "PING -> PONG"
    assert check_redis("127.0.0.1", fake_server(b"-NOAUTH Authentication required.\r\n")) == "answering (needs auth)"
    assert check_redis("127.0.0.1", fake_server(b"+OK\r\n+PONG\r\n"), password="pw") == "PING -> PONG"
    with pytest.raises(OSError, match="AUTH refused"):
        check_redis("127.0.0.1", fake_server(b"-WRONGPASS\r\n"), password="pw")
    with pytest.raises(OSError, match="unexpected reply"):
        check_redis("127.0.0.1", fake_server(b"-LOADING Redis is loading\r\n"))
    # a server that wants a password is answering, but not ready for us
    assert not redis_ready("127.0.0.1", fake_server(b"-NOAUTH Authentication required.\r\n"))


def test_kafka_probes(fake_server: FakeServers) -> None:
    def answer(correlation: int, error: int) -> bytes:
        body = struct.pack("!ih", correlation, error) + struct.pack("!i", 0)
        return struct.pack("!i", len(body)) + body

    ok = fake_server(answer(11, 0))
    assert kafka_ready("127.0.0.1", ok) and check_kafka("127.0.0.1", ok) == "ApiVersions ok"
    failing = fake_server(answer(11, 35))
    assert kafka_api_versions("127.0.0.1", failing) == 35
    assert not kafka_ready("127.0.0.1", failing) and check_kafka("127.0.0.1", failing) == "ApiVersions error 35"
    for port in (fake_server(answer(99, 0)), fake_server(b"nope")):
        assert not kafka_ready("127.0.0.1", port)
        with pytest.raises(OSError, match="not a Kafka-protocol broker"):
            kafka_api_versions("127.0.0.1", port)
    assert not kafka_ready("127.0.0.1", fake_server(b""))  # closes at once
    assert not kafka_ready("127.0.0.1", free_port())


def test_opensearch_ready(fake_server: FakeServers) -> None:
    info = json.dumps({"version": {"number": "2.11.0"}}).encode()
    assert opensearch_ready(f"http://127.0.0.1:{fake_server(_http_answer('200 OK', info))}")
    assert not opensearch_ready(f"http://127.0.0.1:{fake_server(_http_answer('200 OK', b'{}'))}")
    assert not opensearch_ready(f"http://127.0.0.1:{fake_server(_http_answer('503 Unavailable', info))}")
    assert not opensearch_ready(f"http://127.0.0.1:{fake_server(_http_answer('200 OK', b'not json'))}")
    assert not opensearch_ready(f"http://127.0.0.1:{free_port()}")


@pytest.fixture
def docker_socket(tmp_path: Path) -> Iterator[str]:
    """A unix-socket HTTP server answering ``/_ping`` and ``/version`` like a Docker engine."""
    path = str(tmp_path / "docker.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()
    answers = {b"/_ping": _http_answer("200 OK", b"OK"),
               b"/version": _http_answer("200 OK", json.dumps({"Version": "28.2.2"}).encode())}

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(4096)
                target = request.split(b" ")[1] if b" " in request else b""
                conn.sendall(answers.get(target, _http_answer("404 Not Found", b"{}")))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"unix://{path}"
    srv.close()


def test_docker_probes_over_a_unix_socket(docker_socket: str, tmp_path: Path) -> None:
    assert docker_ready(docker_socket)
    assert check_docker(docker_socket) == "version 28.2.2"
    assert http_get(docker_socket, "/missing") == (404, b"{}")
    assert not docker_ready(f"unix://{tmp_path}/missing.sock")
    with pytest.raises(OSError):
        check_docker(f"unix://{tmp_path}/missing.sock")


def test_docker_probes_over_tcp(fake_server: FakeServers) -> None:
    assert docker_ready(f"tcp://127.0.0.1:{fake_server(_http_answer('200 OK', b'OK'))}")
    assert not docker_ready(f"tcp://127.0.0.1:{fake_server(_http_answer('500 Error', b'OK'))}")
    assert not docker_ready(f"tcp://127.0.0.1:{fake_server(b'not http at all')}")
    version = fake_server(_http_answer("200 OK", json.dumps({"Version": "28.2.2"}).encode()))
    assert check_docker(f"tcp://127.0.0.1:{version}") == "version 28.2.2"
