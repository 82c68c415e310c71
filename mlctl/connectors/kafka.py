"""Kafka: one small interface over the confluent-kafka client (librdkafka).

confluent-kafka is the client behind this interface because it is the one fast enough for the
log stream (about ten times kafka-python's producer rate on the same broker, see
docs/benchmarks.md). It is an optional extra: ``pip install 'mlctl[kafka]'``.

* :func:`parse_kafka_url` -- ``kafka://host:port/topic`` -> ``("host:port", "topic")``;
* :class:`KafkaProducer` -- :meth:`~KafkaProducer.produce_many` then :meth:`~KafkaProducer.flush`,
  which returns only once every message was acknowledged by the broker (or raises);
* :class:`KafkaConsumer` -- a member of a consumer group that never commits on its own:
  :meth:`~KafkaConsumer.poll_batch` returns plain :class:`Message` objects,
  :meth:`~KafkaConsumer.commit` commits exactly the offsets it is given, synchronously, for the
  partitions this member still owns; a rebalance drops buffered messages of revoked partitions
  (the new owner reads them again from the last committed offset: at-least-once);
* :func:`create_topic` via the admin API.

A broker that cannot be reached raises :class:`ServiceUnavailable` (exit code 4) naming its URL.

>>> parse_kafka_url("kafka://127.0.0.1:9092/logs")
('127.0.0.1:9092', 'logs')
>>> parse_kafka_url("kafka://a:1,b:2")
('a:1,b:2', None)
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlctl.core.errors import OperationFailed, ServiceUnavailable, UsageError, require

__all__ = [
    "KafkaConsumer",
    "KafkaProducer",
    "Message",
    "committed_offsets",
    "create_topic",
    "kafka_url",
    "parse_kafka_url",
]

#: librdkafka error names that mean "the group moved on": the offsets are not ours to commit any more
_GROUP_ERRORS = frozenset(
    {
        "ILLEGAL_GENERATION",
        "UNKNOWN_MEMBER_ID",
        "REBALANCE_IN_PROGRESS",
        "_ASSIGNMENT_LOST",
        "FENCED_INSTANCE_ID",
        "_NO_OFFSET",
    }
)
#: error names that only mean "the broker is not reachable right now": librdkafka reconnects by itself
_TRANSPORT_ERRORS = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_TIMED_OUT",
        "_MSG_TIMED_OUT",
        "REQUEST_TIMED_OUT",
        "_RESOLVE",
        "NETWORK_EXCEPTION",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "_WAIT_COORD",
        "_DESTROY",
    }
)


@dataclass(frozen=True, slots=True)
class Message:
    """One consumed record: where it came from and its bytes; ``timestamp`` in seconds since the epoch."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None


def parse_kafka_url(url: str, *, require_topic: bool = False) -> tuple[str, str | None]:
    """``kafka://HOST:PORT[,HOST:PORT]/TOPIC`` -> ``(bootstrap servers, topic or None)``."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme != "kafka" or not parts.netloc:
        raise UsageError(f"not a Kafka URL: {url!r}", hint="use kafka://HOST:PORT/TOPIC")
    topic = urllib.parse.unquote(parts.path.strip("/")) or None
    if topic is not None and "/" in topic:
        raise UsageError(f"invalid topic in {url!r}: {topic!r}", hint="use kafka://HOST:PORT/TOPIC")
    if require_topic and topic is None:
        raise UsageError(f"the Kafka URL {url!r} names no topic", hint="use kafka://HOST:PORT/TOPIC")
    return parts.netloc, topic


def kafka_url(bootstrap: str, topic: str | None = None) -> str:
    """The inverse of :func:`parse_kafka_url`.

    >>> kafka_url("h:1", "t")
    'kafka://h:1/t'
    """
    return f"kafka://{bootstrap}" + (f"/{urllib.parse.quote(topic)}" if topic else "")


def _ck() -> Any:
    return require("confluent_kafka", "kafka", feature="Kafka streams")


def _code_name(err: Any) -> str:
    try:
        return str(err.name())
    except Exception:  # not a KafkaError
        return type(err).__name__


def _unavailable(bootstrap: str, detail: object) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"the Kafka broker at {kafka_url(bootstrap)} is unreachable: {detail}",
        hint="check that the broker runs and that services.kafka / the kafka:// URL names it",
    )


def _check_reachable(client: Any, bootstrap: str, timeout_s: float) -> None:
    """A metadata request; raises :class:`ServiceUnavailable` when no broker answers in ``timeout_s``."""
    ck = _ck()
    try:
        client.list_topics(timeout=timeout_s)
    except ck.KafkaException as exc:
        raise _unavailable(bootstrap, exc.args[0].str() if exc.args else exc) from None


def _base_config(bootstrap: str, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": "mlctl",
        "socket.connection.setup.timeout.ms": 5000,
        "reconnect.backoff.max.ms": 2000,
        "log_level": 3,  # errors only: librdkafka's own reconnect chatter stays off stderr
    }
    config.update(extra or {})
    return config


class KafkaProducer:
    """A producer whose :meth:`flush` returns only when the broker acknowledged every message."""

    def __init__(
        self,
        bootstrap: str,
        *,
        linger_ms: int = 10,
        acks: str = "all",
        message_timeout_ms: int = 30_000,
        connect_timeout_s: float = 5.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        ck = _ck()
        self.bootstrap = bootstrap
        settings = _base_config(
            bootstrap,
            {
                "linger.ms": linger_ms,
                "acks": acks,
                "message.timeout.ms": message_timeout_ms,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
                "queue.buffering.max.kbytes": 512 * 1024,
                **dict(config or {}),
            },
        )
        self._producer = ck.Producer(settings)
        _check_reachable(self._producer, bootstrap, connect_timeout_s)
        self._lock = threading.Lock()
        self._errors: list[str] = []
        self._transport_error = False
        #: ``(topic, partition) -> the next offset after the last acknowledged message``
        self.end_offsets: dict[tuple[str, int], int] = {}
        self.acked = 0

    def _on_delivery(self, err: Any, msg: Any) -> None:
        with self._lock:
            if err is not None:
                if len(self._errors) < 20:
                    self._errors.append(f"{_code_name(err)}: {err.str()}")
                self._transport_error = self._transport_error or _code_name(err) in _TRANSPORT_ERRORS
                return
            self.acked += 1
            key = (msg.topic(), msg.partition())
            nxt = msg.offset() + 1
            if nxt > self.end_offsets.get(key, -1):
                self.end_offsets[key] = nxt

    def produce(self, topic: str, value: bytes, *, key: bytes | None = None, partition: int | None = None) -> None:
        """Queue one message (waiting for room when the local queue is full)."""
        kwargs: dict[str, Any] = {"key": key, "on_delivery": self._on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                return
            except BufferError:
                self._producer.poll(0.05)

    def produce_many(
        self,
        topic: str,
        values: Iterable[bytes],
        keys: Iterable[bytes | None] | None = None,
        *,
        partition: int | None = None,
    ) -> int:
        """Queue every value (with its key, when given); returns how many. Call :meth:`flush` to wait for acks."""
        n = 0
        key_iter = iter(keys) if keys is not None else None
        for value in values:
            self.produce(topic, value, key=next(key_iter) if key_iter is not None else None, partition=partition)
            n += 1
            if n % 5000 == 0:
                self._producer.poll(0)
        return n

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait until every queued message is acknowledged; returns how many were acked in all.

        Raises :class:`ServiceUnavailable` when messages are still unacknowledged after ``timeout_s``
        or were lost to a connection problem, :class:`OperationFailed` when the broker refused them.
        """
        left = self._producer.flush(timeout_s)
        with self._lock:
            errors, transport = list(self._errors), self._transport_error
            self._errors.clear()
            self._transport_error = False
        if left:
            raise _unavailable(self.bootstrap, f"{left} message(s) not acknowledged within {timeout_s:g}s")
        if errors:
            if transport:
                raise _unavailable(self.bootstrap, "; ".join(errors[:3]))
            raise OperationFailed(
                f"the Kafka broker refused messages: {'; '.join(errors[:3])}",
                hint="check the topic exists and the message size limits",
            )
        return self.acked

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued (best effort) and drop the client."""
        try:
            self._producer.flush(timeout_s)
        finally:
            self._producer = None

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._producer is not None:
            self.close()


class KafkaConsumer:
    """A consumer-group member that commits only what it is told to, and only for partitions it owns.

    ``on_assign(partitions)`` / ``on_revoke(partitions)`` (lists of ``(topic, partition)``) are called
    from inside :meth:`poll_batch` when the group rebalances.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str | Sequence[str],
        group: str,
        *,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        auto_offset_reset: str = "earliest",
        max_poll_interval_ms: int = 300_000,
        connect_timeout_s: float = 5.0,
        on_assign: Callable[[list[tuple[str, int]]], None] | None = None,
        on_revoke: Callable[[list[tuple[str, int]]], None] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not group:
            raise UsageError("a Kafka consumer needs a consumer group", hint="pass --group NAME")
        ck = _ck()
        self.bootstrap = bootstrap
        self.topics = [topic] if isinstance(topic, str) else list(topic)
        self.group = group
        self._on_assign_cb = on_assign
        self._on_revoke_cb = on_revoke
        self._lock = threading.Lock()
        self._last_error: str | None = None
        self._broker_down = False
        self.owned: set[tuple[str, int]] = set()
        #: increases at every revoke: work polled under an older generation may not be ours any more
        self.generation = 0
        self.rebalances = 0
        settings = _base_config(
            bootstrap,
            {
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": auto_offset_reset,
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": heartbeat_interval_ms,
                "max.poll.interval.ms": max_poll_interval_ms,
                "enable.partition.eof": False,
                "error_cb": self._on_error,
                **dict(config or {}),
            },
        )
        self._consumer = ck.Consumer(settings)
        try:
            _check_reachable(self._consumer, bootstrap, connect_timeout_s)
        except ServiceUnavailable:
            self._consumer.close()
            raise
        self._consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked)

    # -- callbacks (run inside consume/poll/close)
    def _on_error(self, err: Any) -> None:
        with self._lock:
            self._last_error = f"{_code_name(err)}: {err.str()}"
            if _code_name(err) in ("_ALL_BROKERS_DOWN", "_TRANSPORT"):
                self._broker_down = True

    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        got = [(tp.topic, tp.partition) for tp in partitions]
        self.owned.update(got)
        self.rebalances += 1
        if self._on_assign_cb is not None:
            self._on_assign_cb(got)

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        lost = [(tp.topic, tp.partition) for tp in partitions]
        self.owned.difference_update(lost)
        self.generation += 1
        if self._on_revoke_cb is not None:
            self._on_revoke_cb(lost)

    @property
    def last_error(self) -> str | None:
        """The last error the client reported (it keeps reconnecting on its own)."""
        return self._last_error

    def poll_batch(self, max_records: int = 5000, timeout_s: float = 0.5) -> list[Message]:
        """Up to ``max_records`` messages, waiting at most ``timeout_s`` for them to arrive.

        Messages of partitions revoked while the batch was gathered are left out (their new owner
        reads them again). Raises :class:`ServiceUnavailable` only when nothing was received and the
        client reports the broker down; it keeps reconnecting by itself, so polling again is the retry.
        """
        consumer = self._consumer
        deadline = time.monotonic() + max(0.0, timeout_s)
        out: list[Message] = []
        generation = self.generation
        problems: list[str] = []
        while len(out) < max_records:
            remaining = deadline - time.monotonic()
            msgs = consumer.consume(num_messages=min(max_records - len(out), 10_000), timeout=max(0.0, remaining))
            if self.generation != generation:  # a rebalance happened inside consume()
                out = [m for m in out if (m.topic, m.partition) in self.owned]
                generation = self.generation
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if _code_name(err) != "_PARTITION_EOF":
                        problems.append(f"{_code_name(err)}: {err.str()}")
                    continue
                ts_type, ts = msg.timestamp()
                out.append(
                    Message(
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        msg.key(),
                        msg.value(),
                        ts / 1000.0 if ts_type and ts > 0 else None,
                    )
                )
            if out:
                with self._lock:
                    self._broker_down = False
            if remaining <= 0 or not msgs:
                break
        if not out:
            with self._lock:
                down, detail = self._broker_down, self._last_error
            fatal = [p for p in problems if p.split(":", 1)[0] not in _TRANSPORT_ERRORS]
            if fatal:
                raise OperationFailed(
                    f"the Kafka consumer failed: {fatal[0]}",
                    hint=f"topic(s) {', '.join(self.topics)} on {kafka_url(self.bootstrap)}",
                )
            if down or problems:
                raise _unavailable(self.bootstrap, problems[0] if problems else detail)
        return out

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Commit ``(topic, partition) -> next offset`` synchronously; returns what was committed.

        Partitions this member no longer owns are skipped, and so is everything when the group moved
        on during the commit (they will be read again by their owner). A broker that does not answer
        raises :class:`ServiceUnavailable`: nothing was committed, retry later.
        """
        ck = _ck()
        mine = {tp: off for tp, off in offsets.items() if tp in self.owned}
        if not mine:
            return {}
        tps = [ck.TopicPartition(t, p, off) for (t, p), off in mine.items()]
        try:
            result = self._consumer.commit(offsets=tps, asynchronous=False)
        except ck.KafkaException as exc:
            err = exc.args[0] if exc.args else None
            name = _code_name(err)
            if name in _GROUP_ERRORS:
                return {}
            detail = err.str() if err is not None and hasattr(err, "str") else exc
            if name in _TRANSPORT_ERRORS:
                raise _unavailable(self.bootstrap, f"commit failed: {detail}") from None
            raise OperationFailed(
                f"the offset commit failed: {name}: {detail}", hint=f"group {self.group} on {kafka_url(self.bootstrap)}"
            ) from None
        done: dict[tuple[str, int], int] = {}
        for tp in result or []:
            if tp.error is None:
                done[(tp.topic, tp.partition)] = tp.offset
            elif _code_name(tp.error) in _TRANSPORT_ERRORS:
                raise _unavailable(self.bootstrap, f"commit failed: {tp.error.str()}")
        return done

    def committed(
        self, partitions: Iterable[tuple[str, int]] | None = None, *, timeout_s: float = 5.0
    ) -> dict[tuple[str, int], int]:
        """The group's committed next offsets (``-1``: none yet) for ``partitions`` (default: owned)."""
        ck = _ck()
        wanted = sorted(partitions if partitions is not None else self.owned)
        if not wanted:
            return {}
        try:
            got = self._consumer.committed([ck.TopicPartition(t, p) for t, p in wanted], timeout=timeout_s)
        except ck.KafkaException as exc:
            raise _unavailable(self.bootstrap, exc) from None
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else -1) for tp in got}

    def lag(self, *, timeout_s: float = 2.0) -> dict[tuple[str, int], int]:
        """Per owned partition: high watermark minus the committed offset (never below 0)."""
        ck = _ck()
        out: dict[tuple[str, int], int] = {}
        committed = self.committed(timeout_s=timeout_s)
        for (topic, part), off in sorted(committed.items()):
            try:
                low, high = self._consumer.get_watermark_offsets(
                    ck.TopicPartition(topic, part), timeout=timeout_s, cached=False
                )
            except ck.KafkaException as exc:
                raise _unavailable(self.bootstrap, exc) from None
            out[(topic, part)] = max(0, high - (off if off >= 0 else low))
        return out

    def close(self) -> None:
        """Leave the group (its partitions go to the other members at once) and drop the client."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:  # closing a consumer whose broker is gone: nothing left to release
                pass

    def __enter__(self) -> KafkaConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_topic(
    bootstrap: str, topic: str, partitions: int = 1, *, exist_ok: bool = True, timeout_s: float = 10.0
) -> bool:
    """Create ``topic`` with ``partitions`` partitions; returns False when it existed (and ``exist_ok``)."""
    ck = _ck()
    admin_mod = require("confluent_kafka.admin", "kafka", feature="Kafka streams")
    admin = admin_mod.AdminClient(_base_config(bootstrap, None))
    _check_reachable(admin, bootstrap, min(timeout_s, 5.0))
    futures = admin.create_topics(
        [admin_mod.NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    try:
        futures[topic].result(timeout_s)
    except ck.KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if _code_name(err) == "TOPIC_ALREADY_EXISTS" and exist_ok:
            return False
        if _code_name(err) in _TRANSPORT_ERRORS:
            raise _unavailable(bootstrap, err.str() if err is not None else exc) from None
        raise OperationFailed(
            f"could not create the topic {topic!r}: {err.str() if err is not None else exc}",
            hint=f"on {kafka_url(bootstrap)}",
        ) from None
    return True


def committed_offsets(
    bootstrap: str, group: str, partitions: Iterable[tuple[str, int]], *, timeout_s: float = 10.0
) -> dict[tuple[str, int], int]:
    """The committed next offsets of ``group`` (``-1``: none), asked without joining the group."""
    ck = _ck()
    consumer = ck.Consumer(_base_config(bootstrap, {"group.id": group, "enable.auto.commit": False}))
    try:
        _check_reachable(consumer, bootstrap, min(timeout_s, 5.0))
        tps = [ck.TopicPartition(t, p) for t, p in partitions]
        got = consumer.committed(tps, timeout=timeout_s)
    except ck.KafkaException as exc:
        raise _unavailable(bootstrap, exc) from None
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else -1) for tp in got}
