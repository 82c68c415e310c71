"""Where classified log lines go: sinks, and the router that sends each class to its sinks.

A :class:`Sink`'s :meth:`~Sink.write` returns only once the batch is durable or acknowledged
(fsynced, indexed, acked by the broker or the webhook). It raises :class:`ServiceUnavailable` on
a failure worth retrying (the stream keeps the batch, backs off and writes it again, whole) and
:class:`OperationFailed` when retrying cannot help (a mapping conflict, a 4xx answer).

Index sinks are idempotent (documents are keyed by the record's deterministic ``doc_id``);
files, stdout, Kafka topics and webhooks are at-least-once: a batch retried after a failure of
*another* sink is not written to them again (see :meth:`Router.write`), but a redelivery after a
consumer crash is.

:func:`make_sink` turns a URL into a sink::

    sqlite:///.mlctl/logs.db | logs.db            SQLite FTS5 index (the embedded default)
    opensearch+http(s)://host:9200[/prefix]       Elasticsearch/OpenSearch daily indices
    http(s)://host:9200[/prefix]                  the same
    kafka://host:9092/topic                       a Kafka topic (JSON values keyed by doc_id)
    file:///var/log/classified.jsonl | x.jsonl    JSON lines, appended and fsynced per batch
    stdout | -                                    JSON lines on stdout
    webhook+https://host/path                     POST {"records": [...]} (the webhook sink alerts use too)
    memory                                        kept in a list (tests, dry runs)

>>> router = Router({"all": MemorySink(), "alerts": MemorySink()}, [(frozenset({"oom"}), ["alerts"])], ["all"])
>>> from mlctl.logs.record import LogRecord
>>> shares = router.route([LogRecord(1, "a", cls="oom"), LogRecord(2, "b", cls="ok")])
>>> {name: [r.line_id for r in recs] for name, recs in shares.items()}
{'alerts': [1], 'all': [2]}
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from mlctl.connectors.alerts import WebhookSink
from mlctl.core.errors import ConfigError, MlctlError, OperationFailed, ServiceUnavailable
from mlctl.logs.record import LogRecord

__all__ = [
    "IndexSink",
    "JsonlSink",
    "KafkaSink",
    "MemorySink",
    "Router",
    "Sink",
    "StdoutSink",
    "WebhookSink",
    "make_sink",
    "record_doc",
]

Route = tuple[frozenset[str] | None, Sequence[str]]


def record_doc(record: LogRecord) -> dict[str, Any]:
    """``record.to_dict()`` without the deep copy (``cls`` becomes ``class``); nested values are shared."""
    try:
        doc = dict(vars(record))
    except TypeError:  # a record type without __dict__
        return record.to_dict()
    doc["class"] = doc.pop("cls")
    return doc


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, default=str)


class Sink(ABC):
    """A destination for classified records; see the module docstring for the contract."""

    name: str = "sink"

    @abstractmethod
    def write(self, records: Sequence[LogRecord]) -> None:
        """Write ``records``; return once durable, else raise ServiceUnavailable / OperationFailed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and connections."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class IndexSink(Sink):
    """Records into a :class:`~mlctl.connectors.search.SearchIndex` (idempotent by ``doc_id``)."""

    def __init__(self, index: Any, *, name: str | None = None) -> None:
        self.index = index
        self.name: str = name or str(getattr(index, "url", "index"))

    def write(self, records: Sequence[LogRecord]) -> None:
        self.index.index([record_doc(r) for r in records])

    def close(self) -> None:
        self.index.close()


class JsonlSink(Sink):
    """JSON lines appended to ``path`` and fsynced per batch.

    A ``%`` in the path makes it a :func:`time.strftime` pattern of the UTC write time, so
    ``logs-%Y-%m-%d.jsonl`` rotates daily.
    """

    def __init__(self, path: str | Path, *, name: str | None = None, fsync: bool = True) -> None:
        self.pattern = str(Path(path).expanduser())
        self.name = name or self.pattern
        self.fsync = fsync

    def path_now(self) -> Path:
        """The file the next batch goes to."""
        return Path(time.strftime(self.pattern, time.gmtime()) if "%" in self.pattern else self.pattern)

    def write(self, records: Sequence[LogRecord]) -> None:
        if not records:
            return
        data = ("\n".join(_dumps(record_doc(r)) for r in records) + "\n").encode("utf-8", "surrogateescape")
        path = self.path_now()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as fh:
                fh.write(data)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN):
                raise ServiceUnavailable(f"cannot write {path}: {exc.strerror}", hint="retried after a pause") from None
            raise OperationFailed(
                f"cannot write {path}: {exc.strerror or exc}", hint="check the path and its permissions"
            ) from None


class StdoutSink(Sink):
    """JSON lines on stdout (or ``stream``), flushed per batch."""

    def __init__(self, stream: TextIO | None = None, *, name: str = "stdout") -> None:
        self._stream = stream
        self.name = name

    def write(self, records: Sequence[LogRecord]) -> None:
        stream = self._stream or sys.stdout
        for r in records:
            stream.write(_dumps(record_doc(r)) + "\n")
        try:
            stream.flush()
        except BrokenPipeError:
            raise OperationFailed("stdout was closed", hint="the reading end of the pipe went away") from None


class MemorySink(Sink):
    """Records kept in :attr:`records` (for tests and dry runs)."""

    def __init__(self, *, name: str = "memory") -> None:
        self.name = name
        self.records: list[LogRecord] = []
        self._lock = threading.Lock()

    def write(self, records: Sequence[LogRecord]) -> None:
        with self._lock:
            self.records.extend(records)


class KafkaSink(Sink):
    """Records as JSON values to a Kafka topic, keyed by ``doc_id``; :meth:`write` waits for the broker's acks."""

    def __init__(self, url: str, *, name: str | None = None, flush_timeout_s: float = 30.0) -> None:
        from mlctl.connectors.kafka import KafkaProducer, parse_kafka_url

        self.bootstrap, topic = parse_kafka_url(url, require_topic=True)
        self.topic = str(topic)
        self.name = name or url
        self.flush_timeout_s = flush_timeout_s
        self._producer = KafkaProducer(self.bootstrap)

    def write(self, records: Sequence[LogRecord]) -> None:
        if not records:
            return
        self._producer.produce_many(
            self.topic,
            (_dumps(record_doc(r)).encode("utf-8", "surrogateescape") for r in records),
            (r.doc_id.encode() for r in records),
        )
        self._producer.flush(self.flush_timeout_s)

    def close(self) -> None:
        self._producer.close()


#: The one webhook sink (:class:`mlctl.connectors.alerts.WebhookSink`, shared with detect's alerts):
#: its ``write`` POSTs ``{"records": [...], "count": N}`` as JSON, ``max_batch`` records per request.
Sink.register(WebhookSink)


def make_sink(url: str, *, name: str | None = None, **kwargs: Any) -> Sink:
    """A :class:`Sink` for ``url``; see the module docstring for the forms. ``kwargs`` go to the sink."""
    text = str(url).strip()
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if text in ("stdout", "-"):
        return StdoutSink(name=name or "stdout")
    if text == "memory":
        return MemorySink(name=name or "memory")
    if scheme == "kafka":
        return KafkaSink(text, name=name, **kwargs)
    if scheme.startswith("webhook+"):
        return cast(Sink, WebhookSink(text, name=name or text, encode=record_doc, **kwargs))  # registered below Sink
    if scheme == "file":
        path = urllib.parse.unquote(urllib.parse.urlsplit(text).path)
        if not path:
            raise ConfigError(f"no path in {text!r}", hint="use file:///ABSOLUTE/PATH.jsonl")
        return JsonlSink(path, name=name or text, **kwargs)
    from mlctl.connectors.search import make_index

    if scheme in ("sqlite", "http", "https") or scheme.endswith(("+http", "+https")):
        return IndexSink(make_index(text, **kwargs), name=name or text)
    if not scheme or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        if text.endswith((".jsonl", ".ndjson", ".json")) or "%" in text:
            return JsonlSink(text, name=name or text, **kwargs)
        if text.endswith((".db", ".sqlite", ".sqlite3")):
            return IndexSink(make_index(text), name=name or text)
    raise ConfigError(
        f"unknown sink {text!r}",
        hint="use sqlite:///PATH, http(s)://HOST:PORT[/PREFIX], kafka://HOST:PORT/TOPIC, file:///PATH.jsonl, "
        "stdout or webhook+https://HOST/PATH",
    )


class Router:
    """Sends each record to the sinks of every route whose classes include its class.

    ``routes`` are ``(classes, sink names)``; ``classes=None`` matches every record. A record no
    route matched goes to ``default``. Every name must be a key of ``sinks``.
    """

    def __init__(self, sinks: Mapping[str, Sink], routes: Sequence[Route] = (), default: Sequence[str] = ()) -> None:
        self.sinks = dict(sinks)
        self.routes: list[tuple[frozenset[str] | None, tuple[str, ...]]] = [
            (frozenset(classes) if classes is not None else None, tuple(names)) for classes, names in routes
        ]
        self.default = tuple(default)
        used = {n for _, names in self.routes for n in names} | set(self.default)
        unknown = sorted(used - set(self.sinks))
        if unknown:
            raise ConfigError(
                f"routes name unknown sink(s): {', '.join(unknown)}",
                hint=f"defined sinks: {', '.join(sorted(self.sinks)) or 'none'}",
            )
        if not self.routes and not self.default:
            raise ConfigError(
                "no route and no default sink: records would go nowhere",
                hint="add a default sink (e.g. sqlite:///.mlctl/logs.db)",
            )

    @classmethod
    def single(cls, sink: Sink) -> Router:
        """Everything to one sink."""
        return cls({sink.name: sink}, (), [sink.name])

    def targets(self, cls_name: str | None) -> tuple[str, ...]:
        """The sink names a record of class ``cls_name`` goes to, in route order, without repeats."""
        names: list[str] = []
        for classes, sinks in self.routes:
            if classes is None or (cls_name is not None and cls_name in classes):
                names.extend(n for n in sinks if n not in names)
        return tuple(names) if names else self.default

    def route(self, records: Iterable[LogRecord]) -> dict[str, list[LogRecord]]:
        """``sink name -> its share of records`` (sinks with no share are left out)."""
        cache: dict[str | None, tuple[str, ...]] = {}
        out: dict[str, list[LogRecord]] = {}
        for record in records:
            names = cache.get(record.cls)
            if names is None:
                names = cache[record.cls] = self.targets(record.cls)
            for name in names:
                out.setdefault(name, []).append(record)
        return out

    def write(self, records: Sequence[LogRecord], *, done: set[str] | None = None) -> dict[str, int]:
        """Write every sink's share; returns ``sink name -> records written`` once all acknowledged.

        Every sink is tried even when one fails; then the first failure is raised. Sinks named in
        ``done`` are skipped and each sink that acknowledged is added to it, so a caller retrying
        the same batch with the same set writes only to the sinks that failed.
        """
        written: dict[str, int] = {}
        first: MlctlError | None = None
        for name, share in self.route(records).items():
            if done is not None and name in done:
                continue
            try:
                self.sinks[name].write(share)
            except MlctlError as exc:
                if first is None or (isinstance(first, ServiceUnavailable) and not isinstance(exc, ServiceUnavailable)):
                    first = exc  # a permanent failure wins over a transient one
                continue
            written[name] = len(share)
            if done is not None:
                done.add(name)
        if first is not None:
            raise first
        return written

    def close(self) -> None:
        """Close every sink (errors of one do not stop the others)."""
        for sink in self.sinks.values():
            try:
                sink.close()
            except Exception:  # noqa: S112 - closing is best effort
                continue
