"""mlctl's one HTTP transport: every HTTP request the library sends goes through this module.

* **Proxies.** A loopback host (``127.0.0.0/8``, ``::1``, ``localhost``) is always reached
  directly, never through a proxy from the environment; other hosts honour ``http_proxy`` /
  ``https_proxy`` / ``no_proxy`` as :mod:`urllib` does (``proxies="never"`` turns that off).
* **Timeouts.** Every request has one (seconds, for the connection and for each read).
* **Retries.** Idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS, or ``idempotent=True``)
  are retried :data:`DEFAULT_RETRIES` times, after ``backoff_s``, then twice that, ..., when the
  connection was refused or cut, or the answer was 502/503/504. A timeout is not retried: the
  caller's timeout is its budget. A POST is sent once unless the caller says it is idempotent.
* **One error mapping** to :mod:`mlctl.core.errors`: no answer (refused, reset, timed out, not
  HTTP) is :class:`ServiceUnavailable` (exit 4), as are 5xx, 408 and 429;
  :func:`error_for_status` maps 404/410 to :class:`NotFound`, 401/403 to :class:`ConfigError` and
  any other 4xx to :class:`OperationFailed`. Errors carry ``details`` (``url``, and ``reason``
  or ``status``), so a caller can re-word them and keep its own messages.
* **JSON helpers**: :func:`json_body`, :meth:`Response.json`, :func:`get_json`, :func:`post_json`.
* **One place to fake.** :func:`request` sends through the module attribute :data:`transport`
  (one attempt: a :class:`Response` for any HTTP status, :class:`OSError` when none came back).
  Unit tests replace it: ``monkeypatch.setattr(mlctl.core.http, "transport", FakeTransport(handler))``.

A unix socket (the Docker engine's) is reached with :class:`Request`'s ``unix_socket``.

>>> is_loopback("http://127.0.0.1:9090"), is_loopback("http://[::1]:80/"), is_loopback("https://example.test")
(True, True, False)
>>> fake = FakeTransport(lambda req: Response(200, b'{"ok": true}'))
>>> request("GET", "http://127.0.0.1:1/x", via=fake).json()
{'ok': True}
>>> error_for_status(503, "http://h/x").exit_code, error_for_status(404, "http://h/x").exit_code
(4, 2)
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal, Protocol

from mlctl.core.errors import ConfigError, MlctlError, NotFound, OperationFailed, ServiceUnavailable

__all__ = [
    "DEFAULT_RETRIES",
    "IDEMPOTENT_METHODS",
    "FakeTransport",
    "ProxyMode",
    "Request",
    "Response",
    "Transport",
    "UnixHTTPConnection",
    "UrllibTransport",
    "error_for_status",
    "failure_reason",
    "get_json",
    "is_loopback",
    "json_body",
    "post_json",
    "request",
    "transient_status",
    "transport",
    "unreachable",
]

ProxyMode = Literal["auto", "never"]
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: answers worth another try of an idempotent request (the server or a gateway is restarting)
RETRY_STATUSES = frozenset({502, 503, 504})
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0
#: how much of an error answer's body goes into a message
DETAIL_CHARS = 300


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is a loopback address or ``localhost``."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- request and response


@dataclass(frozen=True)
class Request:
    """One HTTP request, as the transport sends it.

    ``limit`` caps the bytes of the body read (None: all). With ``unix_socket`` the request goes
    over that socket and only the path and query of ``url`` are used.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | BinaryIO | None = None
    timeout: float = 10.0
    proxies: ProxyMode = "auto"
    limit: int | None = None
    unix_socket: str | None = None


@dataclass
class Response:
    """An HTTP answer, whatever its status. ``headers`` has lower-case names."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    url: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def detail(self) -> str:
        """The start of the body, one line, for an error message."""
        return " ".join(self.text().split())[:DETAIL_CHARS]

    def json(self, *, what: str | None = None) -> Any:
        """The body decoded as JSON; :class:`OperationFailed` when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise OperationFailed(
                f"{what or self.url or 'the server'} answered HTTP {self.status} with a body that is not JSON: "
                f"{self.detail()[:80]!r}",
                hint="check that the URL points at the service's API itself",
                details={"url": self.url, "status": self.status},
            ) from None


def json_body(value: Any) -> bytes:
    """``value`` as a JSON request body (ASCII, so any text survives; values JSON lacks as ``str``)."""
    return json.dumps(value, default=str).encode("ascii")


# --------------------------------------------------------------------------- transports


class Transport(Protocol):
    """Sends one request: a :class:`Response` for any HTTP status; :class:`OSError` when no HTTP answer came."""

    def send(self, request: Request) -> Response: ...


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the Docker engine's ``/var/run/docker.sock``)."""

    def __init__(self, socket_path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _read(stream: Any, limit: int | None) -> bytes:
    if limit is None:
        return bytes(stream.read())
    return bytes(stream.read(limit)) if limit else b""


class UrllibTransport:
    """The real transport: :mod:`urllib` for ``http(s)://``, :mod:`http.client` over a unix socket."""

    def __init__(self) -> None:
        self._direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def opener_for(self, url: str, proxies: ProxyMode = "auto") -> urllib.request.OpenerDirector:
        """No proxy for loopback hosts (or with ``proxies="never"``); else the environment's, read now."""
        if proxies == "never" or is_loopback(url):
            return self._direct
        return urllib.request.build_opener()  # ProxyHandler() reads http_proxy/no_proxy as urllib does

    def send(self, request: Request) -> Response:
        if request.unix_socket is not None:
            return self._send_unix(request)
        req = urllib.request.Request(request.url, data=request.body, headers=dict(request.headers),
                                     method=request.method)
        try:
            with self.opener_for(request.url, request.proxies).open(req, timeout=request.timeout) as resp:
                return Response(int(resp.status), _read(resp, request.limit),
                                {k.lower(): v for k, v in resp.headers.items()}, request.url)
        except urllib.error.HTTPError as exc:
            body = _read(exc, request.limit) if exc.fp is not None else b""
            headers = {k.lower(): v for k, v in exc.headers.items()} if exc.headers else {}
            return Response(int(exc.code), body, headers, request.url)
        except http.client.HTTPException as exc:  # bad status line, cut short: not an HTTP answer
            if isinstance(exc, OSError):  # RemoteDisconnected is a ConnectionResetError too
                raise
            raise OSError(f"not an HTTP answer from {request.url}: {exc!r}") from exc

    def _send_unix(self, request: Request) -> Response:
        parts = urllib.parse.urlsplit(request.url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = dict(request.headers)
        body = request.body
        if body is not None and hasattr(body, "fileno") and "Content-Length" not in headers:
            import os

            headers["Content-Length"] = str(os.fstat(body.fileno()).st_size)
        conn = UnixHTTPConnection(str(request.unix_socket), timeout=request.timeout)
        try:
            conn.request(request.method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return Response(int(resp.status), _read(resp, request.limit),
                            {k.lower(): v for k, v in resp.getheaders()}, request.url)
        except http.client.HTTPException as exc:
            if isinstance(exc, OSError):
                raise
            raise OSError(f"not an HTTP answer from {request.unix_socket}: {exc!r}") from exc
        finally:
            conn.close()


Handler = Callable[[Request], "Response | BaseException"]


class FakeTransport:
    """A transport for unit tests: ``handler(request)`` returns the :class:`Response` (or an
    exception to raise, e.g. ``ConnectionRefusedError()``); every request is kept in :attr:`requests`.

    >>> fake = FakeTransport(lambda req: ConnectionRefusedError(111, "Connection refused"))
    >>> try:
    ...     request("GET", "http://127.0.0.1:1/", via=fake, retries=0)
    ... except ServiceUnavailable as exc:
    ...     print(exc.exit_code, exc.details["reason"])
    4 [Errno 111] Connection refused
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []

    def send(self, request: Request) -> Response:
        self.requests.append(request)
        out = self.handler(request)
        if isinstance(out, BaseException):
            raise out
        if not out.url:
            out.url = request.url
        return out


#: The transport :func:`request` sends through: replace it in unit tests (see :class:`FakeTransport`).
transport: Transport = UrllibTransport()


# --------------------------------------------------------------------------- error mapping


def failure_reason(exc: BaseException, timeout: float) -> str:
    """Why no answer came, in a few words: ``"no answer within 2s"``, ``"[Errno 111] Connection refused"``."""
    reason: Any = exc
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException | str):
        reason = exc.reason
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g}s"
    return str(reason) or type(reason).__name__


def _retryable(exc: BaseException) -> bool:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, ConnectionError)  # refused, reset, aborted; a timeout is not one


def unreachable(url: str, exc: BaseException, timeout: float, *, what: str | None = None,
                hint: str | None = None) -> ServiceUnavailable:
    """The error for a request that got no HTTP answer (exit 4)."""
    reason = failure_reason(exc, timeout)
    return ServiceUnavailable(
        f"{what or url} is unreachable: {reason}",
        hint=hint or f"check that the service runs and answers at {url}",
        details={"url": url, "reason": reason},
    )


def transient_status(status: int) -> bool:
    """True for answers that say "not now" (5xx, 408, 429): worth retrying later."""
    return status >= 500 or status in (408, 429)


def error_for_status(status: int, url: str, *, what: str | None = None, detail: str = "",
                     hint: str | None = None) -> MlctlError:
    """The typed error for an HTTP error ``status``: 5xx/408/429 :class:`ServiceUnavailable`,
    404/410 :class:`NotFound`, 401/403 :class:`ConfigError`, other 4xx :class:`OperationFailed`."""
    message = f"{what or url} answered HTTP {status}" + (f": {detail}" if detail else "")
    details = {"url": url, "status": status}
    if transient_status(status):
        return ServiceUnavailable(message, hint=hint or f"check that the service runs and answers at {url}",
                                  details=details)
    if status in (404, 410):
        return NotFound(message, hint=hint or "check the URL and the name asked for", details=details)
    if status in (401, 403):
        return ConfigError(message, hint=hint or "check the credentials configured for this service",
                           details=details)
    return OperationFailed(message, hint=hint, details=details)


# --------------------------------------------------------------------------- requests

_sleep = time.sleep  # replaced in tests that count the backoff


def request(
    method: str,
    url: str,
    *,
    body: bytes | BinaryIO | None = None,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    proxies: ProxyMode = "auto",
    limit: int | None = None,
    unix_socket: str | None = None,
    idempotent: bool | None = None,
    retries: int | None = None,
    backoff_s: float = DEFAULT_BACKOFF_S,
    check: bool = False,
    what: str | None = None,
    hint: str | None = None,
    via: Transport | None = None,
) -> Response:
    """Send one request through :data:`transport` and return its :class:`Response` (any status).

    ``json`` sends that value as a JSON body; ``params`` are added to the query string. Retries
    (``retries``, default :data:`DEFAULT_RETRIES`) happen only for idempotent requests (see the module
    docstring). No answer raises :class:`ServiceUnavailable` with ``what`` (default: the URL) in its
    message; with ``check``, an error status raises :func:`error_for_status`'s error. ``via``
    sends through another transport.
    """
    method = method.upper()
    if params:
        url += ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode(params)
    all_headers = dict(headers or {})
    if json is not None:
        body = json_body(json)
        all_headers.setdefault("Content-Type", "application/json")
    if idempotent is None:
        idempotent = method in IDEMPOTENT_METHODS
    attempts = 1 + (max(0, DEFAULT_RETRIES if retries is None else retries) if idempotent else 0)
    if body is not None and not isinstance(body, bytes):
        attempts = 1  # a stream cannot be sent twice
    req = Request(method, url, all_headers, body, float(timeout), proxies, limit, unix_socket)
    sender = via if via is not None else transport
    resp: Response | None = None
    for attempt in range(attempts):
        if attempt:
            _sleep(min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
        try:
            resp = sender.send(req)
        except OSError as exc:
            if attempt + 1 < attempts and _retryable(exc):
                continue
            raise unreachable(url, exc, timeout, what=what, hint=hint) from exc
        if resp.status in RETRY_STATUSES and attempt + 1 < attempts:
            continue
        break
    assert resp is not None
    if check and resp.status >= 400:
        raise error_for_status(resp.status, url, what=what, detail=resp.detail(), hint=hint)
    return resp


def get_json(url: str, **kwargs: Any) -> Any:
    """``GET url`` and its JSON answer; an error status raises (see :func:`error_for_status`)."""
    headers = {"Accept": "application/json", **dict(kwargs.pop("headers", None) or {})}
    return request("GET", url, headers=headers, check=True, **kwargs).json(what=kwargs.get("what"))


def post_json(url: str, value: Any, **kwargs: Any) -> Any:
    """``POST`` ``value`` as JSON to ``url`` and return the JSON answer (None for an empty body)."""
    headers = {"Accept": "application/json", **dict(kwargs.pop("headers", None) or {})}
    resp = request("POST", url, json=value, headers=headers, check=True, **kwargs)
    return resp.json(what=kwargs.get("what")) if resp.body.strip() else None
