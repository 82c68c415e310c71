"""The streaming loop: read log lines in batches, classify them, write them to the sinks, then commit.

Sources: ``kafka://HOST:PORT/TOPIC`` (a consumer group member, ``group`` required), a file path
(``follow=True``: ``tail -f``, reopening the file when it is rotated or truncated) or ``-`` (stdin).

For every batch: poll -> ``processor`` (raw records in, classified records out) -> ``router.write``
-> only then commit the batch's offsets (Kafka). So the delivery is at-least-once, and because
every record's ``doc_id`` is deterministic, a redelivered line replaces its earlier copy in an index:

* a sink that fails with :class:`ServiceUnavailable` is retried with the *same* batch, backing off
  exponentially (``backoff_s`` doubling up to ``backoff_max_s``); nothing is committed meanwhile,
  nothing is skipped, and sinks that already acknowledged the batch are not written again;
* a broker that goes away: polling backs off until it answers again (the client reconnects);
* a rebalance: messages of revoked partitions that were not committed yet are dropped (their new
  owner reads them again from the last committed offset); commits go only to partitions still owned;
* ``stop`` (or SIGTERM/SIGINT with ``handle_signals=True``): the batch in flight is finished and
  committed, then the source is closed cleanly;
* :class:`OperationFailed` (a mapping conflict, a refused request) stops the stream without
  committing the batch; it is raised with the report so far in ``details["report"]``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from mlctl.core.errors import MlctlError, ServiceUnavailable, UsageError
from mlctl.core.graceful import GracefulStop, StopFlag
from mlctl.logs.record import LogRecord
from mlctl.logs.sinks import Router

__all__ = ["FileSource", "KafkaSource", "Processor", "StdinSource", "StreamReport", "open_source", "run_stream"]

Processor = Callable[[list[LogRecord]], list[LogRecord]]


@dataclass
class StreamReport:
    """What a stream run did. ``lines_per_s`` is over the active time (first line read to last commit)."""

    source: str
    lines: int = 0
    batches: int = 0
    commits: int = 0
    retries: int = 0
    seconds: float = 0.0
    active_seconds: float = 0.0
    lines_per_s: float = 0.0
    lag: dict[str, int] = field(default_factory=dict)
    rebalances: int = 0
    dropped_on_rebalance: int = 0
    uncommitted: int = 0
    errors: list[str] = field(default_factory=list)
    stopped_by: str = ""

    def note(self, message: str) -> None:
        """Keep the last 50 distinct error messages."""
        if not self.errors or self.errors[-1] != message:
            self.errors.append(message)
            del self.errors[:-50]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Source(Protocol):
    """What the loop reads from."""

    name: str
    exhausted: bool

    def poll(self, max_records: int, timeout_s: float) -> list[LogRecord]: ...

    def commit(self, batch: list[LogRecord]) -> int: ...

    def close(self) -> None: ...


def _decode(line: bytes) -> str:
    return line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")


class FileSource:
    """Lines of a file; with ``follow`` it waits for more and reopens the file after rotation or truncation."""

    def __init__(self, path: str | Path, *, follow: bool = False, poll_interval_s: float = 0.2) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.follow = follow
        self.poll_interval_s = poll_interval_s
        self.exhausted = False
        self.line_no = 0
        self._partial = b""
        try:
            self._fh: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - held across polls
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}", hint="check the path") from None
        self._ino = os.fstat(self._fh.fileno()).st_ino

    def _rotated(self) -> bool:
        """True (and the file reopened from its start) when ``path`` is a new file or was truncated."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # moved away, the new one not created yet: keep the old handle
        if st.st_ino != self._ino or st.st_size < self._fh.tell():
            self._fh.close()
            self._fh = open(self.path, "rb")  # noqa: SIM115
            self._ino = os.fstat(self._fh.fileno()).st_ino
            self._partial = b""
            self.line_no = 0
            return True
        return False

    def _read(self, max_records: int) -> list[bytes]:
        lines: list[bytes] = []
        while len(lines) < max_records:
            chunk = self._fh.readline()
            if not chunk:
                break
            if not chunk.endswith(b"\n"):
                self._partial += chunk  # a line still being written
                break
            lines.append(self._partial + chunk)
            self._partial = b""
        return lines

    def poll(self, max_records: int, timeout_s: float) -> list[LogRecord]:
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self._read(max_records)
            if lines:
                break
            if not self.follow:
                if self._partial:  # the last line has no newline
                    lines, self._partial = [self._partial], b""
                    break
                self.exhausted = True
                return []
            if self._rotated():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(self.poll_interval_s, remaining))
        out = []
        for line in lines:
            self.line_no += 1
            out.append(LogRecord(line_id=self.line_no, raw=_decode(line), source=self.name))
        return out

    def commit(self, batch: list[LogRecord]) -> int:
        return len(batch)

    def close(self) -> None:
        self._fh.close()


class StdinSource:
    """Lines of stdin (or ``stream``), read by a background thread so a poll can time out."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.name = "stdin"
        self.exhausted = False
        self.line_no = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=100_000)
        self._eof = False
        stream = stream if stream is not None else sys.stdin.buffer
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="mlctl-stdin", daemon=True)
        self._thread.start()

    def _pump(self, stream: BinaryIO) -> None:
        try:
            for line in stream:
                self._queue.put(line)
        finally:
            self._queue.put(None)

    def poll(self, max_records: int, timeout_s: float) -> list[LogRecord]:
        lines: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(lines) < max_records and not self._eof:
            try:
                item = (
                    self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    if not lines
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                self._eof = True
                break
            lines.append(item)
        if not lines and self._eof:
            self.exhausted = True
        out = []
        for line in lines:
            self.line_no += 1
            out.append(LogRecord(line_id=self.line_no, raw=_decode(line), source=self.name))
        return out

    def commit(self, batch: list[LogRecord]) -> int:
        return len(batch)

    def close(self) -> None:
        """Nothing to release: the reader thread ends with its stream."""


class KafkaSource:
    """A consumer-group member; a record's ``source`` is ``topic/partition`` and its ``offset`` the Kafka offset."""

    def __init__(self, url: str, group: str | None, *, consumer_options: dict[str, Any] | None = None) -> None:
        from mlctl.connectors.kafka import KafkaConsumer, parse_kafka_url

        if not group:
            raise UsageError("reading from Kafka needs a consumer group", hint="pass --group NAME")
        bootstrap, topic = parse_kafka_url(url, require_topic=True)
        self.name = url
        self.exhausted = False
        self.dropped = 0
        self.consumer = KafkaConsumer(bootstrap, str(topic), group, **(consumer_options or {}))

    def poll(self, max_records: int, timeout_s: float) -> list[LogRecord]:
        out = []
        for m in self.consumer.poll_batch(max_records, timeout_s):
            raw = m.value.decode("utf-8", "replace") if m.value is not None else ""
            out.append(
                LogRecord(
                    line_id=m.offset + 1,
                    raw=raw.rstrip("\n"),
                    source=f"{m.topic}/{m.partition}",
                    offset=m.offset,
                    received_at=m.timestamp,
                )
            )
        return out

    def commit(self, batch: list[LogRecord]) -> int:
        """Commit the next offset of every partition in ``batch``; returns how many of its records that covers."""
        nxt: dict[tuple[str, int], int] = {}
        counts: dict[tuple[str, int], int] = {}
        for r in batch:
            topic, _, part = r.source.rpartition("/")
            key = (topic, int(part))
            off = int(r.offset if r.offset is not None else r.line_id - 1) + 1
            if off > nxt.get(key, -1):
                nxt[key] = off
            counts[key] = counts.get(key, 0) + 1
        done = self.consumer.commit(nxt)
        lost = sum(n for key, n in counts.items() if key not in done)
        self.dropped += lost
        return len(batch) - lost

    def lag(self) -> dict[str, int]:
        return {f"{t}/{p}": n for (t, p), n in self.consumer.lag().items()}

    def close(self) -> None:
        self.consumer.close()


def open_source(
    source: str, *, group: str | None = None, follow: bool = False, consumer_options: dict[str, Any] | None = None
) -> FileSource | StdinSource | KafkaSource:
    """The :class:`Source` for ``source``: ``kafka://...``, ``-`` (stdin) or a file path (``file://`` allowed)."""
    if source.startswith("kafka://"):
        return KafkaSource(source, group, consumer_options=consumer_options)
    if source in ("-", "stdin"):
        return StdinSource()
    path = source[len("file://") :] if source.startswith("file://") else source
    return FileSource(path, follow=follow)


@contextlib.contextmanager
def _signals_set(stop: threading.Event, enabled: bool) -> Iterator[tuple[StopFlag, list[str]]]:
    """While active, SIGTERM/SIGINT stop the loop (a second one gives up at once: KeyboardInterrupt).

    Yields what the loop checks (``stop``, or a :class:`GracefulStop` that also sets it) and the
    names of the signals received.
    """
    if not enabled:
        yield stop, []
        return
    with GracefulStop(event=stop, escalate=True) as graceful:
        yield graceful, graceful.received


#: the longest a Kafka consumer may wait for its first partition assignment before the idle clock runs
JOIN_GRACE_S = 30.0


def _joining(src: Any, elapsed_s: float, idle_timeout_s: float | None) -> bool:
    """True while a Kafka consumer has not yet been given partitions by its group (a rebalance on a
    busy broker can take longer than a short idle timeout), for at most :data:`JOIN_GRACE_S`."""
    if idle_timeout_s is None or not isinstance(src, KafkaSource):
        return False
    return src.consumer.rebalances == 0 and elapsed_s < max(JOIN_GRACE_S, idle_timeout_s)


def run_stream(
    source: str,
    *,
    processor: Processor,
    router: Router,
    group: str | None = None,
    follow: bool = False,
    batch_size: int = 5000,
    max_wait_s: float = 0.5,
    stop: threading.Event | None = None,
    max_lines: int | None = None,
    idle_timeout_s: float | None = None,
    backoff_s: float = 0.5,
    backoff_max_s: float = 30.0,
    on_progress: Callable[[StreamReport], None] | None = None,
    handle_signals: bool = False,
    lag_every_s: float = 5.0,
    consumer_options: dict[str, Any] | None = None,
) -> StreamReport:
    """Stream ``source`` through ``processor`` into ``router``'s sinks until it ends or is stopped.

    Ends at the end of a file or stdin (not following), after ``max_lines`` lines (the batch that
    crosses it is finished), after ``idle_timeout_s`` seconds without a line, or when ``stop`` is
    set. See the module docstring for the delivery guarantees.
    """
    if batch_size < 1:
        raise UsageError("batch_size must be at least 1")
    stop = stop or threading.Event()
    src = open_source(source, group=group, follow=follow, consumer_options=consumer_options)
    report = StreamReport(source=source)
    started = time.monotonic()
    first_data: float | None = None
    last_data = started
    last_lag = started
    last_done = started
    poll_delay = backoff_s

    try:
        with _signals_set(stop, handle_signals) as (stopping, received):
            while True:
                if stopping.is_set():
                    report.stopped_by = received[0] if received else "stop"
                    break
                if max_lines is not None and report.lines >= max_lines:
                    report.stopped_by = "max_lines"
                    break
                want = batch_size if max_lines is None else max(1, min(batch_size, max_lines - report.lines))
                try:
                    batch = src.poll(want, max_wait_s)
                except ServiceUnavailable as exc:  # the broker is away: the client reconnects, we wait
                    report.retries += 1
                    report.note(exc.message)
                    stopping.wait(poll_delay)
                    poll_delay = min(poll_delay * 2, backoff_max_s)
                    if idle_timeout_s is not None and time.monotonic() - last_data >= idle_timeout_s:
                        report.stopped_by = "idle"
                        break
                    continue
                poll_delay = backoff_s
                now = time.monotonic()
                if not batch:
                    if src.exhausted:
                        report.stopped_by = "eof"
                        break
                    if _joining(src, now - started, idle_timeout_s):
                        last_data = now  # the idle clock starts once the group gave this member its partitions
                        continue
                    if idle_timeout_s is not None and now - last_data >= idle_timeout_s:
                        report.stopped_by = "idle"
                        break
                    continue
                if first_data is None:
                    first_data = now
                last_data = now
                if not _deliver(batch, processor, router, src, report, stopping, backoff_s, backoff_max_s):
                    report.stopped_by = received[0] if received else "stop"
                    break
                last_done = time.monotonic()
                if isinstance(src, KafkaSource) and last_done - last_lag >= lag_every_s:
                    last_lag = last_done
                    with contextlib.suppress(MlctlError):
                        report.lag = src.lag()
                if on_progress is not None:
                    report.active_seconds = last_done - (first_data or last_done)
                    on_progress(report)
            if isinstance(src, KafkaSource):
                with contextlib.suppress(MlctlError):
                    report.lag = src.lag()
    except MlctlError as exc:
        report.stopped_by = "error"
        report.note(exc.message)
        exc.details.setdefault("report", _finish(report, src, started, first_data, last_done).to_dict())
        raise
    finally:
        src.close()
    return _finish(report, src, started, first_data, last_done)


def _finish(report: StreamReport, src: Any, started: float, first_data: float | None, last_done: float) -> StreamReport:
    report.seconds = time.monotonic() - started
    report.active_seconds = max(0.0, last_done - first_data) if first_data is not None else 0.0
    report.lines_per_s = report.lines / report.active_seconds if report.active_seconds > 0 else 0.0
    if isinstance(src, KafkaSource):
        report.dropped_on_rebalance = src.dropped
        report.rebalances = src.consumer.rebalances
    return report


def _deliver(
    batch: list[LogRecord],
    processor: Processor,
    router: Router,
    src: Any,
    report: StreamReport,
    stop: StopFlag,
    backoff_s: float,
    backoff_max_s: float,
) -> bool:
    """Process, write (retrying the same batch) and commit one batch; False when stopped before it was done."""
    records = processor(batch)
    done: set[str] = set()
    delay = backoff_s
    while True:
        try:
            router.write(records, done=done)
            break
        except ServiceUnavailable as exc:
            report.retries += 1
            report.note(exc.message)
            if stop.is_set():  # stopping while a sink is down: leave the batch uncommitted (redelivered later)
                report.uncommitted += len(batch)
                return False
            stop.wait(delay)
            delay = min(delay * 2, backoff_max_s)
    delay = backoff_s
    while True:
        try:
            committed = src.commit(batch)
            break
        except ServiceUnavailable as exc:
            report.retries += 1
            report.note(exc.message)
            if stop.is_set():  # written but not committed: a redelivery overwrites the same doc ids
                report.uncommitted += len(batch)
                return False
            stop.wait(delay)
            delay = min(delay * 2, backoff_max_s)
    report.lines += len(batch)
    report.batches += 1
    report.commits += 1
    report.uncommitted += len(batch) - committed
    return True
