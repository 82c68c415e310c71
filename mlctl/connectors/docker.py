"""Docker: the engine API over its unix socket or TCP, with the standard library only.

:func:`docker_api` sends one request to a Docker engine (``unix:///PATH`` or ``tcp://HOST:PORT``)
through mlctl's HTTP transport (:data:`mlctl.core.http.transport`, over the socket with
:class:`mlctl.core.http.UnixHTTPConnection`) and returns ``(status, body)``: what mlctl needs where
the ``docker`` package (the optional extra ``mlctl[docker]``, used by the Docker deploy target) is
not wanted, such as importing a base image (:mod:`mlctl.lifecycle.deploy.docker_base_image`).
Probing an engine is :func:`mlctl.core.probes.docker_ready`; starting a private one, the ``docker``
recipe of :mod:`mlctl.engines`.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping

from mlctl.core import http

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
    all_headers = dict(headers or {})
    if body is not None and hasattr(body, "read"):
        all_headers.setdefault("Content-Length", str(os.fstat(body.fileno()).st_size))  # type: ignore[attr-defined]
    socket_path = _unix_socket_path(url)
    if socket_path is not None:
        target = "http://localhost" + path
    else:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        target = f"http://{f'[{host}]' if ':' in host else host}:{parts.port or _DEFAULT_TCP_PORT}{path}"
    request = http.Request(method, target, all_headers, body, timeout=timeout, proxies="never",  # type: ignore[arg-type]
                           unix_socket=socket_path)
    response = http.transport.send(request)  # one attempt: the caller maps OSError to its own message
    return response.status, response.body
