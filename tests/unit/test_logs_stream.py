"""Unit tests of mlctl.logs.stream with file and stdin sources and in-memory sinks."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from mlctl.core.errors import OperationFailed, ServiceUnavailable, UsageError
from mlctl.logs.record import LogRecord
from mlctl.logs.sinks import MemorySink, Router, Sink
from mlctl.logs.stream import FileSource, StreamReport, run_stream


def classify(records: list[LogRecord]) -> list[LogRecord]:
    for r in records:
        r.cls = "error" if "ERROR" in r.raw else "info"
    return records


class FlakySink(Sink):
    """Fails with ServiceUnavailable on the writes numbered in ``fail_on`` (1-based), keeps the rest."""

    def __init__(self, name: str, fail_on: set[int], error: Exception | None = None) -> None:
        self.name = name
        self.fail_on = fail_on
        self.error = error
        self.calls = 0
        self.records: list[LogRecord] = []

    def write(self, records: Sequence[LogRecord]) -> None:
        self.calls += 1
        if self.calls in self.fail_on:
            raise self.error or ServiceUnavailable(f"{self.name} unavailable (write {self.calls})")
        self.records.extend(records)


def write_log(path: Path, n: int, start: int = 0) -> list[str]:
    lines = [
        f"2024-01-01 00:00:{i % 60:02d} {'ERROR' if i % 3 == 0 else 'INFO'} worker-{i}" for i in range(start, start + n)
    ]
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))
    return lines


def test_file_source_streams_every_line_once_through_the_processor(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    lines = write_log(log, 1234)
    sink = MemorySink()
    report = run_stream(str(log), processor=classify, router=Router.single(sink), batch_size=100)
    assert report.stopped_by == "eof"
    assert report.lines == 1234 and report.batches == 13 and report.commits == 13 and report.retries == 0
    assert [r.raw for r in sink.records] == lines
    assert [r.line_id for r in sink.records] == list(range(1, 1235))
    assert Counter(r.cls for r in sink.records) == Counter("error" if "ERROR" in x else "info" for x in lines)
    assert len({r.doc_id for r in sink.records}) == 1234
    assert all(r.source == str(log) for r in sink.records)


def test_a_failing_sink_is_retried_with_the_same_batch_without_loss_or_duplicates(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    lines = write_log(log, 500)
    flaky = FlakySink("index", fail_on={2, 3, 4, 7})
    steady = FlakySink("archive", fail_on=set())
    router = Router({"index": flaky, "archive": steady}, [(None, ["index", "archive"])])
    report = run_stream(
        str(log), processor=classify, router=router, batch_size=100, backoff_s=0.001, backoff_max_s=0.004
    )
    assert report.lines == 500 and report.batches == 5 and report.commits == 5
    assert report.retries == 4 and report.errors and "unavailable" in report.errors[0]
    assert [r.raw for r in flaky.records] == lines  # nothing lost, nothing twice, in order
    assert [r.raw for r in steady.records] == lines  # the healthy sink was not written again on retries
    assert steady.calls == 5 and flaky.calls == 9


def test_a_permanent_sink_failure_stops_the_stream_with_its_report(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write_log(log, 300)
    sink = FlakySink("index", fail_on={2}, error=OperationFailed("mapping conflict on field 'class'"))
    with pytest.raises(OperationFailed, match="mapping conflict") as info:
        run_stream(str(log), processor=classify, router=Router.single(sink), batch_size=100)
    report = info.value.details["report"]
    assert report["lines"] == 100 and report["commits"] == 1 and report["stopped_by"] == "error"
    assert len(sink.records) == 100


def test_stdin_source_reads_until_eof_and_decodes_bad_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"first line\nsecond \xff\xfe line\r\nthird without newline"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    sink = MemorySink()
    report = run_stream("-", processor=classify, router=Router.single(sink), batch_size=2, max_wait_s=0.5)
    assert report.stopped_by == "eof" and report.lines == 3
    assert [r.raw for r in sink.records] == ["first line", "second \ufffd\ufffd line", "third without newline"]
    assert [(r.source, r.line_id) for r in sink.records] == [("stdin", 1), ("stdin", 2), ("stdin", 3)]


def test_max_lines_and_stop_event_finish_the_batch_in_flight(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write_log(log, 1000)
    sink = MemorySink()
    report = run_stream(str(log), processor=classify, router=Router.single(sink), batch_size=64, max_lines=150)
    assert report.stopped_by == "max_lines" and report.lines == 150 and len(sink.records) == 150

    stop = threading.Event()
    seen: list[int] = []

    def progress(rep: StreamReport) -> None:
        seen.append(rep.lines)
        if rep.batches == 2:
            stop.set()

    sink2 = MemorySink()
    report = run_stream(
        str(log), processor=classify, router=Router.single(sink2), batch_size=64, stop=stop, on_progress=progress
    )
    assert report.stopped_by == "stop" and report.lines == 128 and len(sink2.records) == 128
    assert seen == [64, 128]


def test_sigterm_stops_after_the_batch_in_flight(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write_log(log, 400)
    sink = MemorySink()
    before = signal.getsignal(signal.SIGTERM)

    def progress(rep: StreamReport) -> None:
        if rep.batches == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    report = run_stream(
        str(log),
        processor=classify,
        router=Router.single(sink),
        batch_size=100,
        on_progress=progress,
        handle_signals=True,
    )
    assert report.stopped_by == "SIGTERM" and report.lines == 100 and len(sink.records) == 100
    assert signal.getsignal(signal.SIGTERM) == before


def test_stop_while_the_sink_is_down_leaves_the_batch_uncommitted(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write_log(log, 100)
    stop = threading.Event()

    class Down(Sink):
        name = "down"

        def write(self, records: Sequence[LogRecord]) -> None:
            stop.set()
            raise ServiceUnavailable("down for good")

    report = run_stream(str(log), processor=classify, router=Router.single(Down()), stop=stop, backoff_s=0.01)
    assert report.stopped_by == "stop" and report.lines == 0 and report.commits == 0 and report.uncommitted == 100


def test_follow_mode_tails_appends_truncation_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    first = write_log(log, 10)
    sink = MemorySink()
    expected: list[str] = list(first)

    def writer() -> None:
        time.sleep(0.3)
        with open(log, "a", encoding="utf-8") as fh:  # a line written in two parts
            fh.write("partial ")
            fh.flush()
            time.sleep(0.3)
            fh.write("line done\n")
        time.sleep(0.3)
        log.rename(tmp_path / "app.log.1")  # rotation: a new file at the same path
        write_log(log, 5, start=100)
        time.sleep(0.5)
        log.write_text("")  # truncation
        time.sleep(0.3)
        write_log(log, 3, start=200)

    expected += ["partial line done"] + write_log(tmp_path / "scratch", 5, start=100)
    expected += write_log(tmp_path / "scratch2", 3, start=200)
    thread = threading.Thread(target=writer)
    thread.start()
    report = run_stream(
        str(log),
        processor=classify,
        router=Router.single(sink),
        follow=True,
        batch_size=50,
        max_wait_s=0.1,
        max_lines=len(expected),
        idle_timeout_s=10,
    )
    thread.join(timeout=10)
    assert report.stopped_by == "max_lines"
    assert [r.raw for r in sink.records] == expected
    assert [r.line_id for r in sink.records][-3:] == [1, 2, 3]  # numbering restarts with the new file


def test_follow_mode_stops_when_idle(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    write_log(log, 3)
    sink = MemorySink()
    report = run_stream(
        str(log), processor=classify, router=Router.single(sink), follow=True, max_wait_s=0.05, idle_timeout_s=0.3
    )
    assert report.stopped_by == "idle" and report.lines == 3


def test_bad_arguments() -> None:
    with pytest.raises(UsageError, match="consumer group"):
        run_stream("kafka://127.0.0.1:9/logs", processor=classify, router=Router.single(MemorySink()))
    with pytest.raises(UsageError, match="cannot read"):
        FileSource("/nonexistent/path.log")
    with pytest.raises(UsageError, match="batch_size"):
        run_stream("-", processor=classify, router=Router.single(MemorySink()), batch_size=0)


def test_the_idle_clock_waits_for_the_first_partition_assignment() -> None:
    """Under load a group join can take longer than a short --idle-timeout: a consumer that has not
    been given partitions yet is joining, not idle (for at most JOIN_GRACE_S)."""
    from types import SimpleNamespace

    from mlctl.logs import stream as stream_mod

    src = object.__new__(stream_mod.KafkaSource)
    src.consumer = SimpleNamespace(rebalances=0)
    assert stream_mod._joining(src, 5.0, 3.0)
    assert not stream_mod._joining(src, stream_mod.JOIN_GRACE_S + 1, 3.0)
    assert stream_mod._joining(src, 50.0, 60.0)  # a longer idle timeout is a longer grace
    assert not stream_mod._joining(src, 5.0, None)
    src.consumer.rebalances = 1  # assigned (even an empty assignment counts): the idle clock runs
    assert not stream_mod._joining(src, 5.0, 3.0)
    assert not stream_mod._joining(object(), 5.0, 3.0)  # files and stdin have no group to join
