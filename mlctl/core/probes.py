"""Wire-protocol probes: is an engine there, and is it ready? Standard library only.

Each probe opens one short connection and speaks the engine's own protocol, so no client
library is needed. This is the one place those protocols are spoken for probing: ``mlctl
doctor``, the engine recipes of :mod:`mlctl.engines` and the tests all use it.

Two forms:

* ``*_ready(...) -> bool`` never raises: for waiting on an engine (``wait_until(lambda:
  redis_ready(host, port))``) and for probing a URL before using it;
* ``check_*(...) -> str`` returns a short detail (``"PING -> PONG"``, ``"version 2.11.0"``) and
  raises :class:`OSError` when the engine does not answer as it should (:class:`ValueError` for a
  malformed URL): what ``mlctl doctor`` shows.

By engine:

* TCP: :func:`tcp_ready`;
* HTTP: :func:`http_ready` (an expected status), :func:`check_http` (the status, or a JSON field),
  :func:`http_get` beneath both;
* Redis: :func:`redis_ready` (``PONG``), :func:`check_redis` (``PONG``, or ``NOAUTH``: answering);
* PostgreSQL: :func:`postgres_ready` (accepts a login), :func:`check_postgres` (speaks protocol 3);
* Kafka: :func:`kafka_ready`, :func:`check_kafka`, both over :func:`kafka_api_versions`;
* Docker: :func:`docker_ready` (``/_ping``), :func:`check_docker` (``/version``);
* Elasticsearch/OpenSearch API: :func:`opensearch_ready`; doctor uses
  ``check_http(url, "/", json_field="version.number")``.

PostgreSQL has two checks on purpose: the startup message of :func:`postgres_ready` fails while
the server is still starting (what a recipe waits for), the SSLRequest of :func:`check_postgres`
succeeds on any PostgreSQL server and logs nothing there (what doctor reports).

HTTP goes through :mod:`mlctl.core.http` (one attempt, no retries): probes never use a proxy from
the environment (engines answer on loopback), unless ``env_proxies=True``, and then never for a
loopback host. Docker URLs may be ``unix:///path/docker.sock`` or ``tcp://host:port``.

>>> host_port("redis://10.0.0.5/0", 6379)
('10.0.0.5', 6379)
>>> tcp_ready("127.0.0.1", 1)
False
"""

from __future__ import annotations

import json
import socket
import struct
import urllib.parse
from collections.abc import Mapping

from mlctl.core import http

__all__ = [
    "check_docker",
    "check_http",
    "check_kafka",
    "check_postgres",
    "check_redis",
    "docker_ready",
    "host_port",
    "http_get",
    "http_ready",
    "kafka_api_versions",
    "kafka_ready",
    "opensearch_ready",
    "postgres_ready",
    "redis_ready",
    "tcp_ready",
]

_DOCKER_TCP_PORT = 2375
_KAFKA_CORRELATION = 11


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """``(host, port)`` named by ``url``, ``default_port`` when it names none; :class:`ValueError` without a host."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    return parts.hostname, parts.port or default_port


# --------------------------------------------------------------------------- socket helpers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only when the peer closed the connection first."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _recv_line(sock: socket.socket) -> bytes:
    """One CRLF-terminated line, read byte by byte so that what follows stays in the socket."""
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def tcp_ready(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- HTTP


def http_get(
    url: str,
    path: str = "",
    *,
    timeout: float = 1.0,
    headers: Mapping[str, str] | None = None,
    limit: int = 65536,
    env_proxies: bool = False,
) -> tuple[int, bytes]:
    """``GET`` ``path`` below ``url``: ``(status, at most limit bytes of the body)``.

    An HTTP error status is returned, not raised; an engine that cannot be reached, or that does
    not answer in HTTP, raises :class:`OSError`. ``url`` may be ``http(s)://``, ``tcp://`` (read as ``http://``) or
    ``unix:///path/to.sock``. Proxies from the environment are used only with ``env_proxies``, and
    never for a loopback host. One attempt, through :data:`mlctl.core.http.transport`.
    """
    parts = urllib.parse.urlsplit(url)
    unix_socket = None
    if parts.scheme == "unix":
        unix_socket, url = parts.path, "http://localhost"
    elif parts.scheme == "tcp":
        url = urllib.parse.urlunsplit(parts._replace(scheme="http"))
    full = url.rstrip("/") + path if path else url
    request = http.Request("GET", full, dict(headers or {}), timeout=timeout, limit=limit,
                          proxies="auto" if env_proxies else "never", unix_socket=unix_socket)
    response = http.transport.send(request)
    return response.status, response.body


def http_ready(url: str, expect_status: int = 200, timeout: float = 1.0) -> bool:
    """True when ``GET url`` answers with ``expect_status`` (proxies from the environment ignored)."""
    try:
        status, _ = http_get(url, timeout=timeout, limit=0)
    except (OSError, ValueError):
        return False
    return status == expect_status


def check_http(url: str, path: str, *, json_field: str | None = None, timeout: float = 2.0,
               env_proxies: bool = False) -> str:
    """``GET url+path``: ``"version X"`` from the dotted ``json_field`` of the answer when it has one,
    else ``"HTTP <status> on <path>"``; a 5xx answer raises :class:`OSError`."""
    status, body = http_get(url, path, timeout=timeout, env_proxies=env_proxies,
                            headers={"Accept": "application/json", "User-Agent": "mlctl-doctor"})
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


def opensearch_ready(url: str, timeout: float = 1.0) -> bool:
    """True when ``GET url/`` answers 200 with a JSON body naming a version (an Elasticsearch/OpenSearch API)."""
    try:
        status, body = http_get(url, "/", timeout=timeout, limit=1 << 20)
        info = json.loads(body.decode("utf-8")) if status == 200 else None
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and isinstance(info.get("version"), dict) and "number" in info["version"]


# --------------------------------------------------------------------------- Redis


def _redis_command(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        raw = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def check_redis(host: str, port: int, *, password: str | None = None, timeout: float = 2.0) -> str:
    """``PING`` (after ``AUTH`` when ``password`` is given): ``"PING -> PONG"``, or
    ``"answering (needs auth)"`` from a server that wants a password; anything else raises :class:`OSError`."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if password:
            sock.sendall(_redis_command("AUTH", password))
            reply = _recv_line(sock)
            if not reply.startswith(b"+OK"):
                raise OSError(f"AUTH refused: {reply[:40]!r}")
        sock.sendall(_redis_command("PING"))
        reply = _recv_line(sock)
    if reply.startswith(b"+PONG"):
        return "PING -> PONG"
    if reply.startswith(b"-NOAUTH"):
        return "answering (needs auth)"
    raise OSError(f"unexpected reply {reply[:20]!r}")


def redis_ready(host: str, port: int, password: str | None = None, timeout: float = 0.5) -> bool:
    """True when a Redis server at ``host:port`` answers ``PING`` with ``PONG`` (not ``LOADING``)."""
    try:
        return check_redis(host, port, password=password, timeout=timeout) == "PING -> PONG"
    except OSError:
        return False


# --------------------------------------------------------------------------- PostgreSQL


def check_postgres(host: str, port: int, *, timeout: float = 2.0) -> str:
    """An SSLRequest: a PostgreSQL server (protocol 3) answers ``S`` or ``N``; anything else raises :class:`OSError`."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        reply = _recv_exact(sock, 1)
    if reply in (b"S", b"N"):
        return "protocol 3.0 handshake ok"
    raise OSError(f"unexpected reply {reply!r}")


def postgres_ready(
    host: str, port: int, user: str = "postgres", database: str = "postgres", timeout: float = 1.0
) -> bool:
    """True when a PostgreSQL server at ``host:port`` accepts a connection (protocol 3 handshake).

    A server that asks for a password counts as ready; one that answers with an error (still
    starting up, unknown database...) does not.
    """
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in (("user", user), ("database", database)))
    startup = struct.pack("!ii", 8 + len(params) + 1, 196608) + params + b"\0"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(startup)
            if _recv_exact(sock, 1) != b"R":
                return False
            sock.sendall(b"X" + struct.pack("!i", 4))  # Terminate
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- Kafka


def kafka_api_versions(host: str, port: int, *, timeout: float = 1.0) -> int:
    """Send a Kafka ``ApiVersions`` (v0) request; return the error code of the answer (0: none).

    Raises :class:`OSError` when ``host:port`` cannot be reached or does not answer as a Kafka broker.
    """
    client = b"mlctl"
    body = struct.pack("!hhih", 18, 0, _KAFKA_CORRELATION, len(client)) + client  # api key 18, version 0
    head = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!i", len(body)) + body)
        try:
            while len(head) < 10 and (chunk := sock.recv(10 - len(head))):
                head += chunk
        except TimeoutError:
            if not head:  # silence: unreachable, as far as we can tell
                raise
    if len(head) == 10:
        _size, correlation, error = struct.unpack("!iih", head)
        if correlation == _KAFKA_CORRELATION:
            return int(error)
    raise OSError("not a Kafka-protocol broker")


def check_kafka(host: str, port: int, *, timeout: float = 2.0) -> str:
    """``"ApiVersions ok"``, or ``"ApiVersions error N"`` from a broker that answers with an error code."""
    error = kafka_api_versions(host, port, timeout=timeout)
    return "ApiVersions ok" if error == 0 else f"ApiVersions error {error}"


def kafka_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when ``host:port`` answers a Kafka ``ApiVersions`` (v0) request without an error code."""
    try:
        return kafka_api_versions(host, port, timeout=timeout) == 0
    except OSError:
        return False


# --------------------------------------------------------------------------- Docker


def _docker_http_url(url: str) -> str:
    """``tcp://host[:port]`` -> ``http://host:port`` (Docker's port 2375 by default); other URLs as they are."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "tcp":
        return url
    netloc = parts.netloc if parts.port else f"{parts.netloc}:{_DOCKER_TCP_PORT}"
    return urllib.parse.urlunsplit(parts._replace(scheme="http", netloc=netloc))


def check_docker(url: str, *, timeout: float = 2.0, env_proxies: bool = False) -> str:
    """``GET /version`` on the Docker engine at ``url``: ``"version X"``.

    Over a unix socket any status but 200 raises :class:`OSError`; over TCP the answer is read
    as :func:`check_http` reads it.
    """
    if urllib.parse.urlsplit(url).scheme != "unix":
        return check_http(_docker_http_url(url), "/version", json_field="Version", timeout=timeout,
                          env_proxies=env_proxies)
    status, body = http_get(url, "/version", timeout=timeout)
    if status != 200:
        raise OSError(f"HTTP {status} from /version")
    try:
        return f"version {json.loads(body)['Version']}"
    except (ValueError, KeyError, TypeError):
        return "answering"


def docker_ready(url: str, timeout: float = 1.0) -> bool:
    """True when ``GET /_ping`` on the Docker engine at ``url`` answers ``OK``."""
    try:
        status, body = http_get(_docker_http_url(url), "/_ping", timeout=timeout)
    except (OSError, ValueError):
        return False
    return status == 200 and body.strip() == b"OK"
