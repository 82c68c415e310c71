"""OpenSearchIndex against a real OpenSearch-API engine (osmem-server)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from mlctl.connectors.search import OpenSearchIndex, doc_time
from mlctl.core.errors import OperationFailed, ServiceUnavailable
from mlctl.engines import Service, free_port, start_engine
from mlctl.logs.record import LogRecord
from mlctl.logs.sinks import IndexSink, Router, record_doc
from mlctl.logs.stream import run_stream


def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def docs(n: int, day: str = "2024-01-01", cls: str = "disk", start: int = 0) -> list[dict[str, object]]:
    out = []
    for i in range(start, start + n):
        r = LogRecord(
            line_id=i + 1,
            raw=f"kernel: disk sda{i % 4} failure at sector {i}",
            source="app.log",
            cls=cls if i % 2 == 0 else "network",
            severity="error",
            event_id=f"E{i % 3}",
            timestamp=f"{day}T{i % 24:02d}:00:00",
            headers={"Level": "ERROR", "Pid": str(100 + i)},
        )
        out.append(record_doc(r))
    return out


def test_template_mappings_and_daily_indices(opensearch: Service) -> None:
    idx = OpenSearchIndex(opensearch.url, prefix(), refresh=True)
    idx.index(docs(10, "2024-01-01") + docs(10, "2024-01-02", start=10))
    client = idx._client
    template = client.indices.get_index_template(name=idx.prefix)["index_templates"][0]["index_template"]
    assert template["index_patterns"] == [f"{idx.prefix}-*"]
    props = template["template"]["mappings"]["properties"]
    assert {k: props[k]["type"] for k in ("class", "severity", "event_id", "source")} == dict.fromkeys(
        ("class", "severity", "event_id", "source"), "keyword"
    )
    assert {k: props[k]["type"] for k in ("raw", "content", "template")} == dict.fromkeys(
        ("raw", "content", "template"), "text"
    )
    assert props["timestamp"]["type"] == props["ingested_at"]["type"] == "date"
    names = sorted(client.indices.get(index=f"{idx.prefix}-*"))
    assert names == [f"{idx.prefix}-2024.01.01", f"{idx.prefix}-2024.01.02"]
    mapping = client.indices.get_mapping(index=names[0])[names[0]]["mappings"]["properties"]
    assert mapping["class"]["type"] == "keyword" and mapping["raw"]["type"] == "text"
    assert mapping["headers"]["properties"]["Pid"]["type"] == "keyword"  # header values never guessed as numbers
    assert idx.count() == 20


def test_bulk_is_idempotent_by_doc_id(opensearch: Service) -> None:
    idx = OpenSearchIndex(opensearch.url, prefix(), refresh=True)
    batch = docs(500)
    idx.index(batch)
    idx.index(batch)  # a redelivery
    assert idx.count() == 500
    changed = dict(batch[0], **{"class": "hardware"})
    idx.index([changed])
    assert idx.count() == 500 and idx.count(cls="hardware") == 1
    assert {d["doc_id"] for d in idx.search(limit=600)} == {d["doc_id"] for d in batch}


def test_search_with_text_class_and_time_filters(opensearch: Service) -> None:
    idx = OpenSearchIndex(opensearch.url, prefix(), refresh=True)
    idx.index(docs(24, "2024-01-01"))
    assert idx.count("sda1") == 6
    assert idx.count("sda1", cls="network") == 6 and idx.count("sda1", cls="disk") == 0
    assert idx.count("sda2", cls="disk") == 6
    since = doc_time({"timestamp": "2024-01-01T20:00:00"})
    found = idx.search("failure", since=since)
    assert [d["line_id"] for d in found] == [24, 23, 22, 21]  # newest first
    assert idx.count("failure AND sda0", since=since) == 1
    assert idx.count('sector: "12') >= 1  # a query_string syntax error falls back to plain words
    assert len(idx.search("", limit=5)) == 5
    assert OpenSearchIndex(opensearch.url, prefix()).count("anything") == 0  # no index yet: no error


def test_mapping_conflict_names_the_field_and_index(opensearch: Service) -> None:
    idx = OpenSearchIndex(opensearch.url, prefix(), refresh=True)
    idx.ensure_schema()
    name = f"{idx.prefix}-2024.03.01"
    # an index made by someone else with a different type for "class"
    idx._client.indices.create(index=name, body={"mappings": {"properties": {"class": {"type": "long"}}}})
    good = docs(3, "2024-03-02")
    with pytest.raises(OperationFailed) as info:
        idx.index(docs(4, "2024-03-01") + good)
    assert "'class'" in info.value.message and name in info.value.message
    assert info.value.details["field"] == "class" and info.value.details["index"] == name
    assert info.value.details["refused"] == 4  # neither 'disk' nor 'network' is a number
    assert idx.count() == 3  # the other day's documents were stored; the whole batch is retried after the fix


@pytest.fixture
def private_engine(tmp_path: Path) -> tuple[Path, int]:
    return tmp_path, free_port()


def test_engine_down_mid_stream_is_retried_until_it_returns(private_engine: tuple[Path, int], tmp_path: Path) -> None:
    workdir, port = private_engine
    engines = [start_engine("opensearch", workdir / "a", port)]
    log = tmp_path / "app.log"
    lines = [f"2024-01-01T00:00:{i % 60:02d} ERROR disk sda{i % 3} failed {i}" for i in range(600)]
    log.write_text("".join(x + "\n" for x in lines))
    idx = OpenSearchIndex(engines[0].url, "stream", refresh=True, timeout_s=5)

    class Watched(IndexSink):
        """Stops the engine after the first batch; starts a fresh one (same port) after two failed writes."""

        writes, failures = 0, 0

        def write(self, records: Sequence[LogRecord]) -> None:
            self.writes += 1
            if self.writes == 2:
                engines[0].stop()
            try:
                super().write(records)
            except ServiceUnavailable:
                self.failures += 1
                if self.failures == 2:  # from this thread: the engine lives as long as the thread that started it
                    engines.append(start_engine("opensearch", workdir / "b", port))
                raise

    sink = Watched(idx, name="index")

    def classify(records: list[LogRecord]) -> list[LogRecord]:
        for r in records:
            r.cls = "disk"
        return records

    try:
        with pytest.raises(ServiceUnavailable, match="unreachable"):
            OpenSearchIndex(f"http://127.0.0.1:{free_port()}", "x", timeout_s=2).index(docs(1))
        report = run_stream(
            str(log), processor=classify, router=Router.single(sink), batch_size=200, backoff_s=0.05, backoff_max_s=0.2
        )
        assert len(engines) == 2 and sink.failures == 2
        assert report.lines == 600 and report.batches == 3 and report.retries == 2
        assert any("unreachable" in e for e in report.errors)
        # the fresh engine holds the batches written after it came back, each once, with the template applied again
        assert idx.count() == 400
        assert {d["line_id"] for d in idx.search(limit=500)} == set(range(201, 601))
        mapping = idx._client.indices.get_mapping(index="stream-*")
        assert mapping and all(m["mappings"]["properties"]["class"]["type"] == "keyword" for m in mapping.values())
    finally:
        for svc in engines:
            svc.stop()
