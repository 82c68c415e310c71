"""Unit tests of mlctl.logs.sinks (Router, JSONL/stdout/webhook sinks, make_sink) and the SQLite FTS index."""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mlctl.connectors.search import OpenSearchIndex, SqliteFtsIndex, doc_time, make_index
from mlctl.core.errors import ConfigError, OperationFailed, ServiceUnavailable, UsageError
from mlctl.core.proc import free_port
from mlctl.logs.record import LogRecord
from mlctl.logs.sinks import (
    IndexSink,
    JsonlSink,
    MemorySink,
    Router,
    Sink,
    StdoutSink,
    WebhookSink,
    make_sink,
    record_doc,
)


def rec(n: int, cls: str | None, raw: str | None = None, **kw: object) -> LogRecord:
    return LogRecord(
        line_id=n, raw=raw if raw is not None else f"line {n} of class {cls}", source="app.log", cls=cls, **kw
    )  # type: ignore[arg-type]


class FailingSink(Sink):
    """Raises ``error`` on the first ``failures`` writes, then keeps what it is given."""

    def __init__(self, name: str, failures: int, error: Exception | None = None) -> None:
        self.name = name
        self.failures = failures
        self.error = error or ServiceUnavailable(f"{name} is down")
        self.calls = 0
        self.records: list[LogRecord] = []

    def write(self, records: Sequence[LogRecord]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        self.records.extend(records)


# --------------------------------------------------------------------------- Router


def test_router_sends_each_class_to_the_union_of_matching_routes_else_default() -> None:
    sinks = {n: MemorySink(name=n) for n in ("index", "alerts", "archive", "fallback")}
    router = Router(
        sinks,
        [(frozenset({"oom", "disk"}), ["alerts", "index"]), (None, ["archive"]), (frozenset({"disk"}), ["index"])],
        ["fallback"],
    )
    records = [rec(1, "oom"), rec(2, "disk"), rec(3, "net"), rec(4, None)]
    shares = router.route(records)
    assert {k: [r.line_id for r in v] for k, v in shares.items()} == {
        "alerts": [1, 2],
        "index": [1, 2],
        "archive": [1, 2, 3, 4],
    }
    assert router.targets("disk") == ("alerts", "index", "archive")  # no repeats, route order

    only_specific = Router(sinks, [(frozenset({"oom"}), ["alerts"])], ["fallback"])
    shares = only_specific.route(records)
    assert [r.line_id for r in shares["alerts"]] == [1]
    assert [r.line_id for r in shares["fallback"]] == [2, 3, 4]
    written = only_specific.write(records)
    assert written == {"alerts": 1, "fallback": 3}
    assert [r.line_id for r in sinks["fallback"].records] == [2, 3, 4]


def test_router_rejects_unknown_sinks_and_no_destination() -> None:
    with pytest.raises(ConfigError, match="nowhere"):
        Router({"a": MemorySink()}, [], [])
    with pytest.raises(ConfigError, match="ghost") as info:
        Router({"a": MemorySink()}, [(frozenset({"x"}), ["ghost"])], ["a"])
    assert "a" in (info.value.hint or "")


def test_router_write_tries_every_sink_and_retries_only_the_failed_ones() -> None:
    good, flaky = MemorySink(name="good"), FailingSink("flaky", failures=2)
    router = Router({"good": good, "flaky": flaky}, [(None, ["flaky", "good"])])
    batch = [rec(i, "x") for i in range(1, 4)]
    done: set[str] = set()
    for _ in range(2):
        with pytest.raises(ServiceUnavailable, match="flaky is down"):
            router.write(batch, done=done)
        assert done == {"good"}
    assert router.write(batch, done=done) == {"flaky": 3}
    assert len(good.records) == 3 and len(flaky.records) == 3  # the healthy sink was not written again
    assert flaky.calls == 3


def test_router_reports_a_permanent_failure_before_a_transient_one() -> None:
    down = FailingSink("down", failures=5)
    refused = FailingSink("refused", failures=5, error=OperationFailed("mapping conflict on field 'x'"))
    router = Router({"down": down, "refused": refused}, [(None, ["down", "refused"])])
    with pytest.raises(OperationFailed, match="mapping conflict"):
        router.write([rec(1, "a")])
    assert down.calls == 1 and refused.calls == 1


# --------------------------------------------------------------------------- file, stdout, webhook


def test_jsonl_sink_appends_one_json_object_per_record(tmp_path: Path) -> None:
    path = tmp_path / "out" / "classified.jsonl"
    sink = JsonlSink(path)
    sink.write([rec(1, "disk", raw="disk sda1 failed \u00e9"), rec(2, "net")])
    sink.write([rec(3, "disk")])
    sink.write([])
    lines = path.read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["line_id"] for d in docs] == [1, 2, 3]
    assert docs[0]["class"] == "disk" and "cls" not in docs[0]
    assert docs[0]["raw"] == "disk sda1 failed \u00e9"
    assert docs[0]["doc_id"] == rec(1, "disk", raw="disk sda1 failed \u00e9").doc_id


def test_jsonl_sink_with_a_date_pattern_and_an_unwritable_path(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "logs-%Y.jsonl")
    sink.write([rec(1, "a")])
    (written,) = list(tmp_path.glob("logs-*.jsonl"))
    assert written == sink.path_now() and "%" not in written.name
    blocked = tmp_path / "a-directory.jsonl"
    blocked.mkdir()
    with pytest.raises(OperationFailed, match="cannot write"):
        JsonlSink(blocked).write([rec(1, "a")])


def test_record_doc_matches_to_dict() -> None:
    r = rec(7, "disk", headers={"Level": "ERROR"}, params=["sda1"], offset=6)
    assert record_doc(r) == r.to_dict()


def test_stdout_sink_writes_json_lines() -> None:
    buf = io.StringIO()
    StdoutSink(buf).write([rec(1, "a"), rec(2, "b")])
    assert [json.loads(line)["class"] for line in buf.getvalue().splitlines()] == ["a", "b"]


class _Hook(http.server.BaseHTTPRequestHandler):
    status = 200
    bodies: list[dict[str, object]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length", 0))
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"status": 200, "bodies": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"webhook+http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_sink_posts_batches_and_classifies_failures(webhook: tuple[str, type[_Hook]]) -> None:
    url, handler = webhook
    sink = make_sink(url, max_batch=2)
    assert isinstance(sink, WebhookSink)
    sink.write([rec(i, "oom") for i in range(1, 4)])
    assert [b["count"] for b in handler.bodies] == [2, 1]
    assert [r["line_id"] for b in handler.bodies for r in b["records"]] == [1, 2, 3]  # type: ignore[union-attr]
    handler.status = 503
    with pytest.raises(ServiceUnavailable, match="503"):
        sink.write([rec(4, "oom")])
    handler.status = 400
    with pytest.raises(OperationFailed, match="400"):
        sink.write([rec(5, "oom")])
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        WebhookSink(f"http://127.0.0.1:{free_port()}/x", timeout_s=2).write([rec(6, "oom")])


# --------------------------------------------------------------------------- make_sink / make_index


def test_make_sink_parses_every_form(tmp_path: Path) -> None:
    db = make_sink(f"sqlite:///{tmp_path}/logs.db")
    assert isinstance(db, IndexSink) and isinstance(db.index, SqliteFtsIndex)
    assert db.index.path == f"{tmp_path}/logs.db"
    assert isinstance(make_sink(str(tmp_path / "x.jsonl")), JsonlSink)
    jsonl = make_sink(f"file://{tmp_path}/y.jsonl")
    assert isinstance(jsonl, JsonlSink) and jsonl.pattern == f"{tmp_path}/y.jsonl"
    assert isinstance(make_sink(str(tmp_path / "z.db")).index, SqliteFtsIndex)  # type: ignore[attr-defined]
    assert isinstance(make_sink("stdout"), StdoutSink) and isinstance(make_sink("-"), StdoutSink)
    assert isinstance(make_sink("memory"), MemorySink)
    hook = make_sink("webhook+https://alerts.example/hook")
    assert isinstance(hook, WebhookSink) and hook.url == "https://alerts.example/hook"
    os_sink = make_sink("opensearch+http://127.0.0.1:9200/applogs")
    assert isinstance(os_sink, IndexSink) and isinstance(os_sink.index, OpenSearchIndex)
    assert (os_sink.index.base_url, os_sink.index.prefix) == ("http://127.0.0.1:9200", "applogs")
    plain = make_index("https://es.example:9243")
    assert isinstance(plain, OpenSearchIndex) and plain.prefix == "mlctl-logs"
    assert os_sink.name == "opensearch+http://127.0.0.1:9200/applogs"
    with pytest.raises(ConfigError, match="unknown sink"):
        make_sink("ftp://host/x")
    with pytest.raises(ConfigError, match="unknown sink"):
        make_sink("just-a-name")
    with pytest.raises(UsageError, match="names no topic"):
        make_sink("kafka://127.0.0.1:9092")
    with pytest.raises(ConfigError, match="invalid webhook"):
        make_sink("webhook+ftp://x/y")


def test_opensearch_daily_index_names_follow_the_record_time() -> None:
    idx = OpenSearchIndex("http://127.0.0.1:9/logs")
    assert idx.index_name({"timestamp": "2024-03-05T23:59:59"}) == "logs-2024.03.05"
    assert idx.index_name({"timestamp": "2024-03-05T23:30:00-02:00"}) == "logs-2024.03.06"
    assert idx.index_name({"timestamp": None}, now=86400.0 * 3) == "logs-1970.01.04"
    # without a time of its own, a line redelivered a day later still lands in the day it was received
    assert idx.index_name({"timestamp": None, "received_at": 86400.0 * 3 - 1}, now=86400.0 * 4) == "logs-1970.01.03"
    body = [json.loads(line) for line in idx._body([{"doc_id": "d1", "raw": "x", "timestamp": "junk"}]).splitlines()]
    assert body[0]["index"]["_id"] == "d1" and body[0]["index"]["_index"].startswith("logs-")
    assert body[1]["timestamp_text"] == "junk" and "timestamp" not in body[1]


# --------------------------------------------------------------------------- SQLite FTS5 index


def docs_for(records: Sequence[LogRecord]) -> list[dict[str, object]]:
    return [record_doc(r) for r in records]


def test_sqlite_index_searches_text_class_and_time(tmp_path: Path) -> None:
    idx = SqliteFtsIndex(tmp_path / "logs.db")
    records = [
        rec(1, "disk", raw="kernel: disk sda1 failure at sector 12", timestamp="2024-01-01T10:00:00"),
        rec(2, "network", raw="eth0 link down", timestamp="2024-01-01T11:00:00"),
        rec(3, "disk", raw="disk sdb2 failure at sector 99", timestamp="2024-01-01T12:00:00Z"),
        rec(4, "auth", raw="failed password for root", timestamp="2024-01-01T13:00:00+00:00"),
    ]
    idx.index(docs_for(records))
    assert idx.count() == 4 and idx.count("*") == 4
    assert [d["line_id"] for d in idx.search("failure")] == [3, 1]  # newest first
    assert [d["line_id"] for d in idx.search("disk", cls="disk")] == [3, 1]
    assert idx.count("disk", cls="network") == 0
    since = doc_time({"timestamp": "2024-01-01T11:30:00"})
    assert [d["line_id"] for d in idx.search("", since=since)] == [4, 3]
    assert idx.count("failure", since=since, cls="disk") == 1
    assert [d["line_id"] for d in idx.search("", limit=2)] == [4, 3]
    assert idx.search("sda1")[0]["class"] == "disk"
    # characters that are FTS5 syntax fall back to plain words instead of an error
    assert [d["line_id"] for d in idx.search('kernel: "sda1')] == [1]
    assert idx.count("sda1 OR eth0") == 2


def test_sqlite_index_is_idempotent_by_doc_id_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    idx = SqliteFtsIndex(path)
    batch = [rec(i, "disk", raw=f"disk error number {i}") for i in range(1, 51)]
    idx.index(docs_for(batch))
    idx.index(docs_for(batch))  # a redelivery
    assert idx.count() == 50
    changed = rec(1, "hardware", raw="disk error number 1")
    assert changed.doc_id == batch[0].doc_id
    idx.index(docs_for([changed]))  # same line, new class: replaced, and the text index follows
    assert idx.count() == 50
    assert idx.count("number", cls="disk") == 49 and idx.count("number", cls="hardware") == 1
    idx.close()
    again = SqliteFtsIndex(path)
    assert again.count("error") == 50
    assert {d["doc_id"] for d in again.search("error", limit=100)} == {r.doc_id for r in batch}
    with pytest.raises(OperationFailed, match="without doc_id"):
        again.index([{"raw": "x"}])


def test_index_sink_writes_records_to_the_index(tmp_path: Path) -> None:
    sink = make_sink(f"sqlite:///{tmp_path}/idx.db")
    sink.write([rec(1, "a", raw="alpha beta"), rec(2, "b", raw="beta gamma")])
    assert sink.index.count("beta") == 2 and sink.index.count("gamma", cls="b") == 1  # type: ignore[attr-defined]
    sink.close()
