"""mlctl.core.http, the one HTTP transport: proxies, timeouts, retries, error mapping, JSON, the fake."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mlctl.core import http
from mlctl.core.errors import (
    ConfigError,
    MlctlError,
    NotFound,
    OperationFailed,
    ServiceUnavailable,
    exit_code_for,
)
from mlctl.core.proc import free_port


@dataclass
class Server:
    """A tiny HTTP server on 127.0.0.1 (port 0): answers every request with ``status`` and ``body``,
    and keeps ``(method, path, Host header)`` of each request it got."""

    status: int = 200
    body: bytes = b'{"ok": true}'
    content_type: str = "application/json"
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.seen.append((self.command, self.path, self.headers.get("Host", "")))
                self.send_response(server.status)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(server.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _serving(state: Server) -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    yield from _serving(Server())


@pytest.fixture
def proxy() -> Iterator[Server]:
    """Another local server, standing in for a proxy named by ``http_proxy``."""
    yield from _serving(Server(body=b'{"via": "proxy"}'))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff pauses, recorded instead of slept."""
    pauses: list[float] = []
    monkeypatch.setattr(http, "_sleep", pauses.append)
    return pauses


# --------------------------------------------------------------------------- proxies


def test_loopback_is_never_proxied_and_other_hosts_use_the_environment(
        server: Server, proxy: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert http.request("GET", server.url + "/direct").json() == {"ok": True}
    assert [path for _, path, _ in server.seen] == ["/direct"] and proxy.seen == []
    # another host goes through the proxy, as urllib would send it (the absolute URL as the target)
    answer = http.request("GET", "http://engine.mlctl-test.invalid:9090/q", retries=0)
    assert answer.json() == {"via": "proxy"}
    assert proxy.seen == [("GET", "http://engine.mlctl-test.invalid:9090/q", "engine.mlctl-test.invalid:9090")]
    # no_proxy is honoured as urllib honours it; proxies="never" turns the environment off
    monkeypatch.setenv("no_proxy", "mlctl-test.invalid")
    with pytest.raises(ServiceUnavailable):
        http.request("GET", "http://engine.mlctl-test.invalid:9090/q", retries=0, timeout=2)
    monkeypatch.delenv("no_proxy")
    with pytest.raises(ServiceUnavailable):
        http.request("GET", "http://engine.mlctl-test.invalid:9090/q", retries=0, timeout=2, proxies="never")
    assert len(proxy.seen) == 1


def test_is_loopback() -> None:
    assert http.is_loopback("http://127.0.0.1:1") and http.is_loopback("http://127.3.4.5/")
    assert http.is_loopback("http://[::1]:8080/x") and http.is_loopback("http://localhost:5000")
    assert not http.is_loopback("http://10.0.0.1:80") and not http.is_loopback("https://example.test")


# --------------------------------------------------------------------------- timeouts


def test_timeout_is_service_unavailable_after_one_wait(sleeps: list[float]) -> None:
    with socket.socket() as silent:  # accepts connections (kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/slow"
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match=r"no answer within 0\.3s") as info:
            http.request("GET", url, timeout=0.3)
        elapsed = time.monotonic() - started
    assert exit_code_for(info.value) == 4 and info.value.details["url"] == url
    assert sleeps == [] and elapsed < 3  # a timeout is not retried: the caller's timeout is its budget


# --------------------------------------------------------------------------- retries


def test_idempotent_requests_are_retried_with_backoff(server: Server, sleeps: list[float]) -> None:
    server.status = 503
    answer = http.request("GET", server.url + "/busy", retries=3, backoff_s=0.05)
    assert answer.status == 503 and len(server.seen) == 4
    assert sleeps == pytest.approx([0.05, 0.1, 0.2])  # doubling
    for method in ("PUT", "DELETE", "HEAD"):
        server.seen.clear()
        http.request(method, server.url + "/busy", retries=2, backoff_s=0.01)
        assert [m for m, _, _ in server.seen] == [method] * 3


def test_posts_are_sent_once_unless_the_caller_says_idempotent(server: Server, sleeps: list[float]) -> None:
    server.status = 503
    http.request("POST", server.url + "/hook", json={"a": 1}, retries=3)
    assert len(server.seen) == 1 and sleeps == []
    server.seen.clear()
    http.request("POST", server.url + "/query", json={"a": 1}, retries=2, idempotent=True)
    assert len(server.seen) == 3 and len(sleeps) == 2


def test_success_stops_retrying_and_4xx_is_not_retried(server: Server, sleeps: list[float]) -> None:
    server.status = 404
    assert http.request("GET", server.url + "/gone").status == 404
    assert len(server.seen) == 1 and sleeps == []
    server.status, server.seen[:] = 200, []
    assert http.request("GET", server.url).ok and len(server.seen) == 1


def test_refused_connections_are_retried_then_unreachable(sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    with pytest.raises(ServiceUnavailable, match="refused") as info:
        http.request("GET", url, backoff_s=0.01)
    assert len(sleeps) == http.DEFAULT_RETRIES and exit_code_for(info.value) == 4
    assert url in info.value.message and url in (info.value.hint or "")


# --------------------------------------------------------------------------- error mapping


def test_refused_port_is_exit_code_4(sleeps: list[float]) -> None:
    with pytest.raises(ServiceUnavailable) as info:
        http.get_json(f"http://127.0.0.1:{free_port()}/api", what="the test service")
    assert info.value.exit_code == 4 and info.value.message.startswith("the test service is unreachable")


@pytest.mark.parametrize(("status", "error", "code"), [
    (404, NotFound, 2),
    (410, NotFound, 2),
    (401, ConfigError, 2),
    (403, ConfigError, 2),
    (400, OperationFailed, 1),
    (409, OperationFailed, 1),
    (500, ServiceUnavailable, 4),
    (503, ServiceUnavailable, 4),
    (429, ServiceUnavailable, 4),
])
def test_error_statuses_map_to_typed_errors(server: Server, sleeps: list[float], status: int, error: type,
                                            code: int) -> None:
    server.status, server.body = status, b"it went wrong"
    with pytest.raises(error) as info:
        http.request("GET", server.url + "/thing", check=True, retries=0)
    err = info.value
    assert type(err) is error and isinstance(err, MlctlError) and exit_code_for(err) == code
    assert f"HTTP {status}" in err.message and "it went wrong" in err.message
    assert err.details == {"url": server.url + "/thing", "status": status}


def test_error_statuses_are_returned_without_check(server: Server) -> None:
    server.status = 500
    answer = http.request("POST", server.url, body=b"x")
    assert (answer.status, answer.ok, answer.json()) == (500, False, {"ok": True})


# --------------------------------------------------------------------------- JSON


def test_json_helpers_round_trip(server: Server) -> None:
    assert http.get_json(server.url + "/a", params={"q": "x y"}) == {"ok": True}
    assert server.seen[-1][1] == "/a?q=x+y"
    assert http.post_json(server.url + "/b", {"when": object, "text": "é"}) == {"ok": True}
    body = json.loads(http.json_body({"text": "é\udcff", "n": 1}))
    assert body == {"text": "é\udcff", "n": 1}


def test_a_body_that_is_not_json_is_a_typed_error(server: Server) -> None:
    server.body, server.content_type = b"<html>a login page</html>", "text/html"
    with pytest.raises(OperationFailed, match="not JSON") as info:
        http.get_json(server.url + "/api")
    assert "login page" in info.value.message and info.value.details["status"] == 200
    with pytest.raises(OperationFailed, match="the API answered HTTP 200 with a body that is not JSON"):
        http.Response(200, b"{truncated", url="u").json(what="the API")


# --------------------------------------------------------------------------- the fake


def test_the_fake_transport_is_the_one_place_to_fake(monkeypatch: pytest.MonkeyPatch, sleeps: list[float]) -> None:
    answers: Iterator[http.Response | BaseException] = iter(
        [ConnectionResetError(104, "Connection reset by peer"), http.Response(503), http.Response(200, b'{"n": 3}')])
    fake = http.FakeTransport(lambda request: next(answers))
    monkeypatch.setattr(http, "transport", fake)
    assert http.get_json("http://mlflow.example:5000/api", headers={"Authorization": "Bearer t"}) == {"n": 3}
    assert [r.url for r in fake.requests] == ["http://mlflow.example:5000/api"] * 3
    assert fake.requests[0].headers == {"Accept": "application/json", "Authorization": "Bearer t"}
    assert len(sleeps) == 2
    # callers in the library send through it too: a connector, a probe
    from mlctl.connectors.alerts import WebhookSink
    from mlctl.core.probes import http_get

    fake.handler = lambda request: http.Response(202, b"")
    WebhookSink("http://hooks.example/x").send([])  # nothing to send, nothing sent
    from mlctl.connectors.alerts import Alert

    WebhookSink("http://hooks.example/x").send([Alert({"alertname": "A"}, {}, 0.0)])
    assert fake.requests[-1].method == "POST" and json.loads(fake.requests[-1].body)["status"] == "firing"  # type: ignore[arg-type]
    assert http_get("http://127.0.0.1:9/health") == (202, b"")
    assert fake.requests[-1].proxies == "never" and fake.requests[-1].timeout == 1.0


def test_the_fake_raises_what_the_handler_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "transport", http.FakeTransport(lambda request: TimeoutError()))
    with pytest.raises(ServiceUnavailable, match=r"no answer within 2s"):
        http.request("GET", "http://127.0.0.1:1/", timeout=2)


# --------------------------------------------------------------------------- the one webhook sink


def test_one_webhook_sink_for_alerts_and_log_records(server: Server) -> None:
    from mlctl.connectors import alerts
    from mlctl.logs import sinks
    from mlctl.logs.record import LogRecord

    assert sinks.WebhookSink is alerts.WebhookSink
    hook = sinks.make_sink(f"webhook+{server.url}/records", max_batch=2)
    assert isinstance(hook, sinks.Sink) and isinstance(hook, alerts.AlertSink)
    hook.write([LogRecord(i, "a", cls="oom") for i in range(3)])
    assert [path for _, path, _ in server.seen] == ["/records", "/records"]
    server.status = 400
    with pytest.raises(OperationFailed, match="refused the records"):
        hook.write([LogRecord(4, "b", cls="oom")])
    with pytest.raises(OperationFailed, match="refused the alerts"):
        alerts.WebhookSink(server.url).send([alerts.Alert({"alertname": "A"}, {}, 0.0)])
