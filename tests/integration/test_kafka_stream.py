"""Streaming from a real Kafka-protocol broker (tansu) into real indices, with crashes and outages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from mlctl.connectors.kafka import (
    KafkaConsumer,
    KafkaProducer,
    committed_offsets,
    create_topic,
    parse_kafka_url,
)
from mlctl.connectors.search import OpenSearchIndex, SqliteFtsIndex
from mlctl.core.errors import ServiceUnavailable, exit_code_for
from mlctl.engines import Service, free_port
from mlctl.logs.record import LogRecord, make_doc_id
from mlctl.logs.sinks import IndexSink, Router, Sink
from mlctl.logs.stream import run_stream

ROOT = Path(__file__).resolve().parents[2]
SYSTEMS = ("kernel", "sshd", "nginx", "postgres")


def line(i: int) -> str:
    system = SYSTEMS[i % len(SYSTEMS)]
    level = "ERROR" if i % 5 == 0 else "INFO"
    return (
        f"2024-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d} {level} {system}[{100 + i % 7}]: event {i} on host-{i % 11}"
    )


def expected_class(raw: str) -> str:
    return raw.split()[2].split("[")[0] + ("-error" if " ERROR " in raw else "")


def classify(records: list[LogRecord]) -> list[LogRecord]:
    for r in records:
        r.cls = expected_class(r.raw)
    return records


def produce(bootstrap: str, topic: str, n: int, partitions: int) -> dict[str, tuple[int, int, str]]:
    """Message i goes to partition i % partitions, so its offset is i // partitions; returns doc_id -> (p, off, raw)."""
    with KafkaProducer(bootstrap) as producer:
        for p in range(partitions):
            producer.produce_many(topic, (line(i).encode() for i in range(p, n, partitions)), partition=p)
        producer.flush(60)
        assert sum(producer.end_offsets.values()) == n
    expected = {}
    for i in range(n):
        p, off = i % partitions, i // partitions
        expected[make_doc_id(f"{topic}/{p}", off, line(i))] = (p, off, line(i))
    return expected


def end_offsets(n: int, partitions: int, topic: str) -> dict[tuple[str, int], int]:
    return {(topic, p): len(range(p, n, partitions)) for p in range(partitions)}


WORKER = """
import sys, time
from mlctl.connectors.search import OpenSearchIndex
from mlctl.logs.sinks import IndexSink, JsonlSink, Router
from mlctl.logs.stream import run_stream

url, group, index_url, jsonl, delay = sys.argv[1:6]

def slow_classify(records):
    time.sleep(float(delay))
    for r in records:
        r.cls = r.raw.split()[2].split("[")[0] + ("-error" if " ERROR " in r.raw else "")
    return records

index = IndexSink(OpenSearchIndex(index_url, refresh=True), name="index")
router = Router({"index": index, "file": JsonlSink(jsonl, name="file")}, [(None, ["index", "file"])])
report = run_stream(url, group=group, processor=slow_classify, router=router, batch_size=500,
                    max_wait_s=0.2, idle_timeout_s=60, handle_signals=True)
print("REPORT", report.lines, report.commits, report.stopped_by, report.rebalances, flush=True)
"""


def start_worker(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, *args], stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env
        )


def test_two_consumers_one_killed_every_line_indexed_once(
    kafka_broker: Service, opensearch: Service, tmp_path: Path
) -> None:
    bootstrap, _ = parse_kafka_url(kafka_broker.url)
    topic, group, partitions, n = f"logs-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}", 4, 8_000
    assert create_topic(bootstrap, topic, partitions) is True
    assert create_topic(bootstrap, topic, partitions) is False  # exists already
    expected = produce(bootstrap, topic, n, partitions)
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    index = OpenSearchIndex(opensearch.url, prefix)
    url = f"kafka://{bootstrap}/{topic}"
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    victim = start_worker([url, group, f"{opensearch.url}/{prefix}", str(files[0]), "0.3"], logs[0])
    survivor = None
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (not files[0].exists() or len(files[0].read_bytes().splitlines()) < 1000):
            time.sleep(0.1)
        survivor = start_worker([url, group, f"{opensearch.url}/{prefix}", str(files[1]), "0.05"], logs[1])
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (not files[1].exists() or not files[1].stat().st_size):
            time.sleep(0.1)
        assert files[1].exists(), "the second consumer never got a partition: " + logs[1].read_text()
        victim.send_signal(signal.SIGKILL)  # mid-batch, no clean leave: its partitions move after the session timeout
        victim.wait(timeout=10)
        ends = end_offsets(n, partitions, topic)
        # what was left when the victim died; only the survivor can finish it (which partitions those are
        # depends on scheduling: under load the victim may already have finished some of its own)
        at_kill = committed_offsets(bootstrap, group, ends)
        deadline = time.monotonic() + 45  # its partitions move after the 6 s session timeout
        while time.monotonic() < deadline and committed_offsets(bootstrap, group, ends) != ends:
            time.sleep(0.5)
        survivor.send_signal(signal.SIGTERM)  # a clean stop: the batch in flight is finished first
        assert survivor.wait(timeout=30) == 0, logs[1].read_text()
    finally:
        for proc in (victim, survivor):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert "SIGTERM" in logs[1].read_text().split("REPORT", 1)[1]
    index.refresh_now()
    state = f"committed {committed_offsets(bootstrap, group, ends)} of {ends}; survivor: {logs[1].read_text()[-2000:]}"
    assert index.count() == n, state
    found = {}
    for p in range(partitions):
        for offset_start in range(0, n // partitions + 1, 1000):
            body = {
                "query": {
                    "bool": {
                        "filter": [
                            {"term": {"source": f"{topic}/{p}"}},
                            {"range": {"offset": {"gte": offset_start, "lt": offset_start + 1000}}},
                        ]
                    }
                },
                "size": 1000,
            }
            hits = index._client.search(index=f"{prefix}-*", body=body)["hits"]["hits"]
            found.update({h["_id"]: h["_source"] for h in hits})
    assert set(found) == set(expected)  # every line, exactly once (one document per doc_id)
    for doc_id, doc in found.items():
        p, off, raw = expected[doc_id]
        assert (doc["raw"], doc["offset"], doc["class"]) == (raw, off, expected_class(raw))
    # the JSONL sink is at-least-once: the killed consumer's uncommitted batch was read again by the survivor
    written = [json.loads(x)["doc_id"] for f in files for x in f.read_bytes().splitlines() if x.endswith(b"}")]
    assert set(written) == set(expected) and len(written) >= n
    read_by_survivor = {json.loads(x)["source"] for x in files[1].read_bytes().splitlines() if x.endswith(b"}")}
    unfinished = {f"{t}/{p}" for (t, p), end in ends.items() if at_kill.get((t, p), -1) < end}
    assert unfinished <= read_by_survivor, (unfinished, read_by_survivor)  # the survivor finished what was left
    assert committed_offsets(bootstrap, group, end_offsets(n, partitions, topic)) == end_offsets(n, partitions, topic)


class FlakyIndexSink(Sink):
    """An index sink that is down for its first ``down`` writes; records the group's commits meanwhile."""

    def __init__(self, index: SqliteFtsIndex, down: int, check: Callable[[], dict[tuple[str, int], int]]) -> None:
        self.name = "index"
        self.inner = IndexSink(index)
        self.down = down
        self.calls = 0
        self.check = check
        self.seen_while_down: list[dict[tuple[str, int], int]] = []

    def write(self, records: Sequence[LogRecord]) -> None:
        self.calls += 1
        if self.calls <= self.down:
            self.seen_while_down.append(self.check())
            raise ServiceUnavailable("index down for maintenance")
        self.inner.write(records)


def test_sink_outage_blocks_commits_until_it_recovers(kafka_broker: Service, tmp_path: Path) -> None:
    bootstrap, _ = parse_kafka_url(kafka_broker.url)
    topic, group, partitions, n = f"outage-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}", 2, 3000
    create_topic(bootstrap, topic, partitions)
    expected = produce(bootstrap, topic, n, partitions)
    ends = end_offsets(n, partitions, topic)
    index = SqliteFtsIndex(tmp_path / "logs.db")
    sink = FlakyIndexSink(index, down=4, check=lambda: committed_offsets(bootstrap, group, ends))
    report = run_stream(
        f"kafka://{bootstrap}/{topic}",
        group=group,
        processor=classify,
        router=Router.single(sink),
        batch_size=n,
        max_wait_s=1.0,
        idle_timeout_s=3,
        backoff_s=0.05,
        backoff_max_s=0.2,
    )
    assert sink.seen_while_down and all(set(c.values()) == {-1} for c in sink.seen_while_down)
    assert report.retries >= 4 and report.lines == n and report.stopped_by == "idle"
    assert index.count() == n
    docs = index.search("", limit=n + 10)
    assert {d["doc_id"] for d in docs} == set(expected)
    assert all(d["class"] == expected_class(d["raw"]) for d in docs)
    assert committed_offsets(bootstrap, group, ends) == ends
    assert report.lag == {f"{t}/{p}": 0 for (t, p) in ends}

    # a second member of the same group finds nothing left to do
    again = run_stream(
        f"kafka://{bootstrap}/{topic}",
        group=group,
        processor=classify,
        router=Router.single(IndexSink(index)),
        idle_timeout_s=2,
    )
    assert again.lines == 0 and index.count() == n


def test_consumer_commits_exact_offsets_and_reports_lag(kafka_broker: Service) -> None:
    bootstrap, _ = parse_kafka_url(kafka_broker.url)
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, 1)
    with KafkaProducer(bootstrap) as producer:
        for start in (0, 100, 200):  # three flushes: three record batches on the broker
            producer.produce_many(topic, (line(i).encode() for i in range(start, start + 100)))
            producer.flush(30)
    with KafkaConsumer(bootstrap, topic, group) as consumer:
        got: list[int] = []
        deadline = time.monotonic() + 30
        while len(got) < 100 and time.monotonic() < deadline:
            got += [m.offset for m in consumer.poll_batch(100 - len(got), 1.0)]
        assert got == list(range(100))
        assert consumer.owned == {(topic, 0)}
        assert consumer.commit({(topic, 0): 100}) == {(topic, 0): 100}
        assert consumer.committed() == {(topic, 0): 100}
        assert consumer.commit({(topic, 7): 5}) == {}  # not owned: never committed
        lag = consumer.lag()[(topic, 0)]
        # 200 on Kafka; tansu answers ListOffsets(latest) with the last record batch's base offset + 1 (201)
        assert 100 <= lag <= 200
    assert committed_offsets(bootstrap, group, [(topic, 0)]) == {(topic, 0): 100}


def test_unreachable_broker_is_service_unavailable_exit_4() -> None:
    url = f"kafka://127.0.0.1:{free_port()}/logs"
    with pytest.raises(ServiceUnavailable) as info:
        run_stream(url, group="g", processor=classify, router=Router.single(IndexSink(SqliteFtsIndex(":memory:"))))
    assert exit_code_for(info.value) == 4
    assert f"kafka://127.0.0.1:{url.split(':')[2].split('/')[0]}" in info.value.message
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        KafkaProducer(url.split("//")[1].split("/")[0], connect_timeout_s=1)


def test_broker_that_stops_answering_mid_stream_loses_nothing(kafka_broker: Service, tmp_path: Path) -> None:
    """The broker freezes (SIGSTOP: no answer at all, as in a network partition) after the first batch
    and comes back 8 s later: the stream backs off, commits nothing meanwhile, and ends with every line
    indexed once and every offset committed. (tansu keeps topics in memory, so a restart cannot stand
    in for an outage: it would lose the topic.)"""
    pid = getattr(kafka_broker, "pid", None)
    if pid is None:
        pytest.skip("needs a broker started by this test session (it is paused and resumed)")
    bootstrap, _ = parse_kafka_url(kafka_broker.url)
    topic, group, partitions, n = f"freeze-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}", 2, 4000
    create_topic(bootstrap, topic, partitions)
    expected = produce(bootstrap, topic, n, partitions)
    ends = end_offsets(n, partitions, topic)
    index = SqliteFtsIndex(tmp_path / "logs.db")
    frozen: list[float] = []

    class FreezingSink(IndexSink):
        def write(self, records: Sequence[LogRecord]) -> None:
            super().write(records)
            if not frozen:  # the first batch is durable; now the broker stops answering
                os.kill(pid, signal.SIGSTOP)
                frozen.append(time.monotonic())

    def thaw_later() -> None:
        while not frozen:
            time.sleep(0.05)
        time.sleep(max(0.0, 8.0 - (time.monotonic() - frozen[0])))
        os.kill(pid, signal.SIGCONT)

    import threading

    thaw = threading.Thread(target=thaw_later, daemon=True)
    thaw.start()
    try:
        report = run_stream(
            f"kafka://{bootstrap}/{topic}",
            group=group,
            processor=classify,
            router=Router.single(FreezingSink(index)),
            batch_size=1000,
            max_wait_s=0.5,
            idle_timeout_s=45,
            backoff_s=0.2,
            backoff_max_s=2.0,
        )
    finally:
        thaw.join(timeout=30)
        os.kill(pid, signal.SIGCONT)
    assert frozen, "the stream never wrote a batch"
    assert index.count() == n, report
    assert {d["doc_id"] for d in index.search("", limit=n + 10)} == set(expected)
    assert committed_offsets(bootstrap, group, ends) == ends
    assert report.lines >= n  # at least once: the batch whose commit the frozen broker never answered came again
