"""Docker: the engine API over its unix socket or TCP, with the standard library only.

:func:`docker_api` sends one request to a Docker engine (``unix:///PATH`` or ``tcp://HOST:PORT``)
and returns ``(status, body)``: what mlctl needs where the ``docker`` package (the optional extra
``mlctl[docker]``, used by the Docker deploy target) is not wanted, such as importing a base image
(:mod:`mlctl.lifecycle.deploy.docker_base_image`). Probing an engine is :func:`mlctl.core.probes.docker_ready`;
starting a private one, the ``docker`` recipe of :mod:`mlctl.engines`.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping

__all__ = ["docker_api"]

_DEFAULT_TCP_PORT = 2375


def _unix_socket_path(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    return parts.path if parts.scheme == "unix" else None


def docker_api(url: str, method: str, path: str, *, body: object = None, headers: Mapping[str, str] | None = None,
               timeout: float = 5.0) -> tuple[int, bytes]:
    """One request to the Docker engine API at ``url`` (``unix:///PATH`` or ``tcp://HOST:PORT``).

    ``body`` may be bytes or a binary file object (streamed with its size as Content-Length).
    Returns ``(status, body)``; raises :class:`OSError` when the engine cannot be reached.
    """
    import http.client
    import socket

    socket_path = _unix_socket_path(url)
    if socket_path is not None:

        class _UnixConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(socket_path)
                self.sock = sock

        conn: http.client.HTTPConnection = _UnixConnection("localhost", timeout=timeout)
    else:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or _DEFAULT_TCP_PORT,
                                          timeout=timeout)
    all_headers = dict(headers or {})
    if body is not None and hasattr(body, "read"):
        all_headers.setdefault("Content-Length", str(os.fstat(body.fileno()).st_size))  # type: ignore[attr-defined]
    try:
        conn.request(method, path, body=body, headers=all_headers)  # type: ignore[arg-type]
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()

