"""The alert state machine (fire, dedupe, resolve, cooldown, resend), its durable outbox, and the sinks."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlctl.connectors.alerts import (
    Alert,
    AlertmanagerSink,
    AlertSink,
    LogSink,
    RecordingSink,
    WebhookSink,
    make_sink,
    parse_time,
)
from mlctl.core.errors import ConfigError, OperationFailed, ServiceUnavailable, UsageError
from mlctl.core.proc import free_port
from mlctl.core.state import StateStore
from mlctl.detect.alerting import Alerter

LABELS = {"host": "web-1"}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / ".mlctl" / "state.db")
    yield s
    s.close()


def feed(alerter: Alerter, flags: Sequence[int], *, key: str = "cpu", t0: float = 0.0, dt: float = 10.0) -> list[Alert]:
    """Observe one point per flag (1 = anomalous) at t0, t0 + dt, ...; returns all notifications."""
    out: list[Alert] = []
    for i, flag in enumerate(flags):
        out += alerter.observe(key, LABELS, t0 + i * dt, float(i), 0.9 if flag else 0.1, bool(flag))
    return out


def test_fires_once_and_resolves_after_normal_points(store: StateStore) -> None:
    sink = RecordingSink()
    alerter = Alerter([sink], store, resolve_after=3, cooldown_s=0)
    out = feed(alerter, [0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0])
    assert [a.status for a in out] == ["firing", "resolved"]
    firing, resolved = out
    assert firing.starts_at == 20.0 and resolved.starts_at == 20.0
    assert resolved.ends_at == 90.0  # the third normal point in a row (the one at 60 was interrupted at 60+10)
    assert firing.fingerprint == resolved.fingerprint
    assert firing.labels["host"] == "web-1" and firing.labels["series"] == "cpu"
    assert firing.labels["alertname"] == "AnomalyDetected" and firing.labels["severity"] == "warning"
    assert "cpu" in firing.annotations["summary"] and firing.annotations["score"] == "0.9000"
    assert sink.sent == []  # nothing is sent before a flush: the outbox holds them
    report = alerter.flush()
    assert report.sent == 2 and report.pending == 0 and report.ok
    assert [a.status for a in sink.sent] == ["firing", "resolved"]
    assert sink.sent[1].ends_at == 90.0
    (row,) = store.select("alerts")
    assert row["status"] == "resolved" and row["series"] == "cpu" and row["labels"]["host"] == "web-1"
    assert parse_time(row["resolved_at"]) == 90.0
    assert alerter.active == []


def test_series_are_independent(store: StateStore) -> None:
    alerter = Alerter([RecordingSink()], store, resolve_after=1)
    a = alerter.observe("a", {}, 0, 1, 1, True)
    b = alerter.observe("b", {}, 0, 1, 1, True)
    assert len(a) == len(b) == 1 and a[0].fingerprint != b[0].fingerprint
    assert alerter.observe("a", {}, 1, 1, 0, False)[0].status == "resolved"
    assert [x.key for x in alerter.active] == ["b"]


def test_alert_labels_from_series_labels(store: StateStore) -> None:
    alerter = Alerter([RecordingSink()], store, labels={"team": "ops"}, severity="page")
    (alert,) = alerter.observe("k", {"__name__": "cpu", "host": "", "job": "x"}, 0, 1, 1, True)
    assert alert.labels == {
        "alertname": "AnomalyDetected",
        "severity": "page",
        "source": "detect",
        "series": "k",
        "team": "ops",
        "metric": "cpu",
        "job": "x",
    }
    assert store.select("alerts")[0]["severity"] == "page"


def test_resolve_after_seconds(store: StateStore) -> None:
    alerter = Alerter([RecordingSink()], store, resolve_after=None, resolve_after_s=60)
    out = feed(alerter, [1, 0, 0, 0, 0, 0, 0, 0], dt=10)
    assert [a.status for a in out] == ["firing", "resolved"]
    assert out[1].ends_at == 60.0


def test_cooldown_suppresses_a_flapping_series(store: StateStore) -> None:
    sink = RecordingSink()
    alerter = Alerter([sink], store, resolve_after=1, cooldown_s=100)
    # fire at 0, resolve at 10; anomalies at 20..100 fall in the cooldown; the one at 110 fires again
    out = feed(alerter, [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1])
    assert [(a.status, a.starts_at) for a in out] == [("firing", 0.0), ("resolved", 0.0), ("firing", 110.0)]
    assert alerter.suppressed == 5
    alerter.flush()
    assert len(sink.sent) == 3


def test_replayed_points_do_not_refire(store: StateStore) -> None:
    alerter = Alerter([RecordingSink()], store, resolve_after=1, cooldown_s=0)
    first = feed(alerter, [1, 1, 0])
    assert [a.status for a in first] == ["firing", "resolved"]
    assert feed(alerter, [1, 1, 0]) == []  # the same points again (a restarted reader replays them)
    assert alerter.observe("cpu", LABELS, 25.0, 0, 0.9, True)[0].status == "firing"  # newer: a new anomaly


def test_resends_to_sinks_that_want_them(store: StateStore) -> None:
    clock = Clock()
    am = RecordingSink(name="am", wants_resend=True)
    hook = RecordingSink(name="hook")
    alerter = Alerter([am, hook], store, resend_s=60, clock=clock)
    feed(alerter, [1, 1])
    alerter.flush()
    assert (len(am.sent), len(hook.sent)) == (1, 1)
    clock.now += 30
    alerter.flush()
    assert len(am.sent) == 1
    clock.now += 31
    alerter.flush()
    assert (len(am.sent), len(hook.sent)) == (2, 1)
    assert am.sent[1].status == "firing" and am.sent[1].fingerprint == am.sent[0].fingerprint
    am.down = True  # while a notification waits, resends do not pile up
    for _ in range(5):
        clock.now += 61
        alerter.flush(force=True)
    assert len(alerter.outbox(status="pending")) == 1
    am.down = False
    alerter.flush(force=True)
    assert len(am.sent) == 3


def test_sink_down_queues_and_never_blocks(store: StateStore) -> None:
    sink = RecordingSink(down=True)
    other = RecordingSink(name="other")
    alerter = Alerter([sink, other], store, resolve_after=1, backoff_s=0.05, backoff_max_s=0.2)
    feed(alerter, [1, 0], key="a")
    feed(alerter, [1, 0], key="b", t0=5)
    report = alerter.flush()
    assert report.sent == 4  # the other sink is not held up
    assert report.pending == 4 and "recording" in report.errors and "down" in report.errors["recording"]
    assert sink.attempts == 1
    assert alerter.flush().pending == 4 and sink.attempts == 1  # in backoff: not tried again at once
    assert 0 < (alerter.next_retry_in() or 0) <= 0.05
    rows = alerter.outbox(status="pending")
    assert [r["attempts"] for r in rows] == [1, 1, 1, 1] and "down" in rows[0]["last_error"]
    sink.down = False
    deadline = time.monotonic() + 10
    while alerter.flush().pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(a.labels["series"], a.status) for a in sink.sent] == [
        ("a", "firing"),
        ("a", "resolved"),
        ("b", "firing"),
        ("b", "resolved"),
    ]  # in order, none lost
    assert alerter.outbox() == []


def test_backoff_grows_exponentially(store: StateStore) -> None:
    sink = RecordingSink(down=True)
    alerter = Alerter([sink], store, backoff_s=1, backoff_max_s=4)
    feed(alerter, [1])
    waits = []
    for _ in range(5):
        alerter.flush(force=True)
        waits.append(round(alerter.next_retry_in() or 0))
    assert waits == [1, 2, 4, 4, 4]


def test_refused_notifications_are_kept_and_the_rest_delivered(store: StateStore) -> None:
    class Picky(RecordingSink):
        def send(self, alerts: Sequence[Alert]) -> None:
            if any(a.labels["series"] == "bad" for a in alerts):
                raise OperationFailed("refused: bad label")
            super().send(alerts)

    sink = Picky()
    alerter = Alerter([sink], store)
    for key in ("a", "bad", "c"):
        alerter.observe(key, {}, 0, 1, 1, True)
    report = alerter.flush()
    assert report.sent == 2 and report.failed == 1 and report.pending == 0
    assert [a.labels["series"] for a in sink.sent] == ["a", "c"]
    (failed,) = alerter.outbox(status="failed")
    assert failed["payload"]["labels"]["series"] == "bad" and "refused" in failed["last_error"]
    assert alerter.requeue_failed() == 1
    assert alerter.flush().failed == 1  # refused again, still kept


def test_a_crashing_sink_is_retried_not_fatal(store: StateStore) -> None:
    class Broken(AlertSink):
        name = "broken"

        def __init__(self) -> None:
            self.fail = True

        def send(self, alerts: Sequence[Alert]) -> None:
            if self.fail:
                raise RuntimeError("bug in a plugin")

    sink = Broken()
    alerter = Alerter([sink], store)
    feed(alerter, [1])
    report = alerter.flush()
    assert report.pending == 1 and "RuntimeError" in report.errors["broken"]
    sink.fail = False
    assert alerter.flush(force=True).pending == 0


def test_restart_neither_refires_nor_loses_queued(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    down = RecordingSink(name="am", down=True, wants_resend=True)
    first = Alerter([down], StateStore(path), resolve_after=2)
    assert len(feed(first, [1, 1, 0], key="a")) == 1  # a fires, one normal point so far
    assert len(feed(first, [1], key="b")) == 1
    assert first.flush().pending == 2
    first.store.close()

    up = RecordingSink(name="am", wants_resend=True)
    second = Alerter([up], StateStore(path), resolve_after=2)
    assert sorted(a.key for a in second.active) == ["a", "b"]
    assert feed(second, [1, 1, 1, 1], key="b", t0=100) == []  # still the same anomaly: no new alert
    out = second.observe("a", {}, 30, 0, 0, False)  # the second normal point in a row, counted across the restart
    assert [a.status for a in out] == ["resolved"] and out[0].starts_at == 0.0
    assert second.flush().pending == 0
    assert [(a.labels["series"], a.status) for a in up.sent] == [("a", "firing"), ("b", "firing"), ("a", "resolved")]
    second.store.close()

    third = Alerter([RecordingSink(name="am")], StateStore(path), resolve_after=2, cooldown_s=300)
    assert [a.key for a in third.active] == ["b"]
    assert third.observe("a", LABELS, 60, 1, 1, True) == []  # a's cooldown survived the restart too
    third.store.close()


def test_state_change_and_notification_are_one_transaction(store: StateStore) -> None:
    alerter = Alerter([RecordingSink(name="x"), RecordingSink(name="y")], store)
    feed(alerter, [1])
    rows = alerter.outbox()
    assert [(r["sink"], r["kind"], r["status"]) for r in rows] == [
        ("x", "firing", "pending"),
        ("y", "firing", "pending"),
    ]
    assert Alert.from_dict(rows[0]["payload"]).fingerprint == alerter.active[0].alert.fingerprint
    assert store.counts()["alerts"] == 1


def test_sources_do_not_mix(store: StateStore) -> None:
    one = Alerter([RecordingSink()], store, source="one")
    two = Alerter([RecordingSink()], store, source="two")
    one.observe("k", {}, 0, 1, 1, True)
    assert two.active == [] and two.outbox() == []
    assert len(Alerter([RecordingSink()], store, source="one").active) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"resolve_after": 0},
        {"resolve_after": None, "resolve_after_s": None},
        {"cooldown_s": -1},
        {"resend_s": 0},
        {"batch_size": 0},
    ],
)
def test_invalid_settings(store: StateStore, kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        Alerter([RecordingSink()], store, **kwargs)


def test_duplicate_sinks_refused(store: StateStore) -> None:
    with pytest.raises(UsageError, match="distinct"):
        Alerter([RecordingSink(), RecordingSink()], store)


# --------------------------------------------------------------------------- alerts and sinks


def test_alert_roundtrip_and_fingerprint() -> None:
    a = Alert(labels={"b": "2", "a": "1"}, annotations={"s": "x"}, starts_at=1.5, ends_at=3.25, generator_url="u")
    back = Alert.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back == a and back.status == "resolved"
    assert a.fingerprint == Alert(labels={"a": "1", "b": "2"}, annotations={}, starts_at=0).fingerprint
    assert a.fingerprint != Alert(labels={"a": "1", "b": "3"}, annotations={}, starts_at=0).fingerprint
    assert a.to_dict()["endsAt"] == "1970-01-01T00:00:03.250Z"


def test_alertmanager_payload_keeps_latest_state() -> None:
    firing = Alert(labels={"alertname": "A"}, annotations={"summary": "s"}, starts_at=10)
    resolved = Alert(labels={"alertname": "A"}, annotations={"summary": "s"}, starts_at=10, ends_at=20)
    other = Alert(labels={"alertname": "B"}, annotations={}, starts_at=5, generator_url="http://x")
    body = AlertmanagerSink("http://127.0.0.1:9093").payload([firing, other, resolved])
    assert [b["labels"]["alertname"] for b in body] == ["B", "A"]
    assert "endsAt" not in body[0] and body[0]["generatorURL"] == "http://x"
    assert body[1]["endsAt"] == "1970-01-01T00:00:20.000Z" and body[1]["startsAt"] == "1970-01-01T00:00:10.000Z"


class Receiver:
    """A tiny HTTP receiver on loopback recording JSON bodies; answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.bodies.append((self.path, json.loads(raw)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _alerts() -> list[Alert]:
    return [
        Alert(labels={"alertname": "A", "series": "cpu"}, annotations={"summary": "cpu is odd"}, starts_at=0),
        Alert(labels={"alertname": "B"}, annotations={"description": "d"}, starts_at=0, ends_at=60),
    ]


def test_webhook_json_and_slack_bodies(receiver: Receiver) -> None:
    WebhookSink(receiver.url + "/hook").send(_alerts())
    WebhookSink(receiver.url + "/slack", style="slack").send(_alerts())
    AlertmanagerSink(receiver.url + "/api/v2/alerts").send(_alerts())
    (p1, generic), (p2, slack), (p3, am) = receiver.bodies
    assert p1 == "/hook" and generic["status"] == "firing" and generic["version"] == "1"
    assert [a["status"] for a in generic["alerts"]] == ["firing", "resolved"]
    assert generic["alerts"][1]["endsAt"] == "1970-01-01T00:01:00.000Z"
    assert p2 == "/slack" and slack["text"] == "mlctl alerts: 1 firing, 1 resolved"
    assert [b["type"] for b in slack["blocks"]] == ["section", "section"]
    assert "[FIRING] cpu is odd" in slack["blocks"][0]["text"]["text"]
    assert "`series=cpu`" in slack["blocks"][0]["text"]["text"]
    assert slack["blocks"][1]["text"]["text"].startswith("*[RESOLVED] B*")
    assert p3 == "/api/v2/alerts" and len(am) == 2
    WebhookSink(receiver.url).send(_alerts()[1:])
    assert receiver.bodies[-1][1]["status"] == "resolved"


def test_slack_message_caps_blocks(receiver: Receiver) -> None:
    many = [Alert(labels={"alertname": f"A{i}"}, annotations={}, starts_at=0) for i in range(70)]
    WebhookSink(receiver.url, style="slack").send(many)
    blocks = receiver.bodies[0][1]["blocks"]
    assert len(blocks) == 50 and blocks[-1]["elements"][0]["text"] == "and 21 more"


def test_http_errors_are_typed(receiver: Receiver) -> None:
    receiver.status = 503
    with pytest.raises(ServiceUnavailable, match="HTTP 503"):
        AlertmanagerSink(receiver.url).send(_alerts())
    receiver.status = 400
    with pytest.raises(OperationFailed, match="HTTP 400"):
        WebhookSink(receiver.url).send(_alerts())
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable) as info:
        AlertmanagerSink(url).send(_alerts())
    assert url in info.value.message and "queued" in (info.value.hint or "")


def test_make_sink_specs() -> None:
    assert isinstance(make_sink("alertmanager://127.0.0.1:9093"), AlertmanagerSink)
    assert make_sink("http://am:9093/").name == "alertmanager:http://am:9093"
    assert make_sink("http://am:9093/api/v2/alerts").name == "alertmanager:http://am:9093"
    assert make_sink("alertmanager+https://am:9093").url == "https://am:9093"
    hook = make_sink("https://example.test/hooks/x")
    assert isinstance(hook, WebhookSink) and hook.style == "json"
    slack = make_sink("slack+https://example.test/T/B")
    assert isinstance(slack, WebhookSink) and slack.style == "slack" and slack.url == "https://example.test/T/B"
    assert isinstance(make_sink("memory"), LogSink)
    for bad in ("nonsense", "ftp://x", "webhook+ftp://x"):
        with pytest.raises(ConfigError):
            make_sink(bad)


def test_log_sink_writes_json_lines() -> None:
    stream = io.StringIO()
    sink = LogSink(stream)
    sink.send(_alerts())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [x["status"] for x in lines] == ["firing", "resolved"] and sink.sent == _alerts()


def test_alerter_over_a_real_webhook(store: StateStore, receiver: Receiver) -> None:
    alerter = Alerter([WebhookSink(receiver.url)], store, resolve_after=1)
    feed(alerter, [1, 1, 0])
    receiver.status = 500
    assert alerter.flush().pending == 2 and receiver.bodies[0][1]["status"] == "firing"
    receiver.status = 200
    assert alerter.flush(force=True).pending == 0
    statuses = [a["status"] for a in receiver.bodies[-1][1]["alerts"]]
    assert statuses == ["firing", "resolved"]  # the refused batch again, whole, in order


def test_a_receiver_that_never_answers_costs_one_timeout(store: StateStore) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections (kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        alerter = Alerter([AlertmanagerSink(url, timeout_s=0.3)], store)
        feed(alerter, [1])
        report = alerter.flush()
        assert report.pending == 1 and "no answer within 0.3s" in report.errors[f"alertmanager:{url}"]
        assert alerter.flush().pending == 1  # in backoff now: the next flush does not wait again
