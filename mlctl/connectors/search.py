"""Search indices for classified log lines: SQLite FTS5 (embedded default) and Elasticsearch/OpenSearch.

A :class:`SearchIndex` stores documents (``LogRecord.to_dict()``: a dict with a ``doc_id``) and
finds them again by full text, class and time:

* :meth:`~SearchIndex.index` is idempotent by ``doc_id``: writing the same document twice (a
  redelivery) keeps one copy. It returns only once the documents are stored, raises
  :class:`ServiceUnavailable` when the engine is down (retry the same batch later) and
  :class:`OperationFailed` when the engine refuses a document (a mapping conflict names the field);
  nothing is dropped silently.
* :meth:`~SearchIndex.search` and :meth:`~SearchIndex.count` take a full-text ``query`` ("" or
  ``*``: everything), ``since`` (seconds since the epoch) and ``cls`` (one class).

Each document's time is its own ``timestamp`` when it has one (ISO 8601; naive times are UTC),
else the time it was indexed. :func:`make_index` turns a URL into an index::

    sqlite:///.mlctl/logs.db, or a plain path     SqliteFtsIndex
    http(s)://host:9200[/prefix]                  OpenSearchIndex (Elasticsearch/OpenSearch API)
    opensearch+http(s)://host:9200[/prefix]       the same, explicitly

>>> idx = make_index("sqlite:///:memory:")
>>> idx.index([{"doc_id": "a", "raw": "disk sda1 failed", "class": "disk"}])
>>> [d["doc_id"] for d in idx.search("disk", cls="disk")], idx.count("failed"), idx.count("net")
(['a'], 1, 0)
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlctl.core.errors import ConfigError, OperationFailed, ServiceUnavailable, require

__all__ = [
    "OpenSearchIndex",
    "SearchIndex",
    "SqliteFtsIndex",
    "doc_time",
    "make_index",
]

Doc = Mapping[str, Any]


def _ingest_time(doc: Doc, now: float) -> float:
    """``ingested_at`` if given, else ``received_at`` (stable when a line is delivered again), else ``now``."""
    for key in ("ingested_at", "received_at"):
        given = doc.get(key)
        if isinstance(given, int | float) and not isinstance(given, bool):
            return float(given)
    return now


def doc_time(doc: Doc, default: float | None = None) -> float | None:
    """The document's own time (``timestamp``, ISO 8601 or epoch seconds) in epoch seconds, else ``default``.

    >>> doc_time({"timestamp": "2024-01-02T00:00:00Z"})
    1704153600.0
    >>> doc_time({"timestamp": "not a time"}, 5.0)
    5.0
    """
    value = doc.get("timestamp")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            return default
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return default


class SearchIndex(ABC):
    """Where classified log lines are stored and searched; see the module docstring."""

    url: str = ""

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create the tables / index template if missing (idempotent)."""

    @abstractmethod
    def index(self, records: Sequence[Doc]) -> None:
        """Store every document, replacing any with the same ``doc_id``; returns once they are durable."""

    @abstractmethod
    def search(
        self, query: str = "", *, since: float | None = None, cls: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Documents matching ``query``, newest first, at most ``limit``."""

    @abstractmethod
    def count(self, query: str = "", *, since: float | None = None, cls: str | None = None) -> int:
        """How many documents match."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


# --------------------------------------------------------------------------- SQLite FTS5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    doc_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    ingested_at REAL NOT NULL,
    class TEXT,
    severity TEXT,
    event_id TEXT,
    source TEXT,
    raw TEXT NOT NULL DEFAULT '',
    template TEXT NOT NULL DEFAULT '',
    content TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_class_ts ON logs (class, ts);
CREATE INDEX IF NOT EXISTS logs_ts ON logs (ts);
CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(
    raw, template, content, content='logs', content_rowid='id', tokenize='unicode61'
);
CREATE TRIGGER IF NOT EXISTS logs_ai AFTER INSERT ON logs BEGIN
    INSERT INTO logs_fts(rowid, raw, template, content) VALUES (new.id, new.raw, new.template, new.content);
END;
CREATE TRIGGER IF NOT EXISTS logs_ad AFTER DELETE ON logs BEGIN
    INSERT INTO logs_fts(logs_fts, rowid, raw, template, content)
    VALUES ('delete', old.id, old.raw, old.template, old.content);
END;
CREATE TRIGGER IF NOT EXISTS logs_au AFTER UPDATE ON logs BEGIN
    INSERT INTO logs_fts(logs_fts, rowid, raw, template, content)
    VALUES ('delete', old.id, old.raw, old.template, old.content);
    INSERT INTO logs_fts(rowid, raw, template, content) VALUES (new.id, new.raw, new.template, new.content);
END;
"""

_UPSERT = """
INSERT INTO logs (doc_id, ts, ingested_at, class, severity, event_id, source, raw, template, content, doc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(doc_id) DO UPDATE SET
    ts = excluded.ts, class = excluded.class, severity = excluded.severity, event_id = excluded.event_id,
    source = excluded.source, raw = excluded.raw, template = excluded.template, content = excluded.content,
    doc = excluded.doc
"""

_TERM = re.compile(r"\w+", re.UNICODE)


def _is_match_all(query: str) -> bool:
    return not query.strip() or query.strip() == "*"


def _quoted_terms(query: str) -> str:
    """A query that cannot be a syntax error: every word quoted, all required."""
    return " ".join(f'"{term}"' for term in _TERM.findall(query)) or '""'


class SqliteFtsIndex(SearchIndex):
    """The embedded default: one SQLite file (WAL), FTS5 over raw text, template and content.

    ``path`` may be ``:memory:``. The connection is shared by the threads of one process (a lock
    serialises it); separate processes may use the same file (SQLite's own locking, 30 s timeout).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.url = "sqlite:///" + self.path
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(Path(self.path).expanduser()) if self.path != ":memory:" else self.path,
                timeout=30.0,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise OperationFailed(
                f"cannot open the log index {self.path}: {exc}", hint="check the path is writable"
            ) from None
        self._lock = threading.Lock()
        self._ready = False

    def ensure_schema(self) -> None:
        if self._ready:
            return
        with self._lock:
            try:
                if self.path != ":memory:":
                    self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                fresh = not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'logs_fts'").fetchone()
                self._db.executescript(_SCHEMA)
                if fresh:  # merge segments less eagerly: about twice the insert rate, a few more segments to read
                    with self._db:
                        self._db.execute("INSERT INTO logs_fts(logs_fts, rank) VALUES ('automerge', 16)")
            except sqlite3.OperationalError as exc:
                if "fts5" in str(exc).lower():
                    raise OperationFailed(
                        "this Python's SQLite has no FTS5 module",
                        hint="use a search engine URL (http://...) for the log index",
                    ) from None
                raise OperationFailed(f"cannot create the log index in {self.path}: {exc}") from None
            self._ready = True

    def index(self, records: Sequence[Doc]) -> None:
        if not records:
            return
        self.ensure_schema()
        now = time.time()
        rows = []
        for doc in records:
            doc_id = doc.get("doc_id")
            if not doc_id:
                raise OperationFailed("a document without doc_id cannot be indexed", hint=f"got keys {sorted(doc)}")
            ingested = _ingest_time(doc, now)
            body = dict(doc)
            body.setdefault("ingested_at", ingested)
            rows.append(
                (
                    str(doc_id),
                    doc_time(doc, ingested),
                    ingested,
                    doc.get("class"),
                    doc.get("severity"),
                    doc.get("event_id"),
                    doc.get("source"),
                    doc.get("raw") or "",
                    doc.get("template") or "",
                    doc.get("content") or "",
                    json.dumps(body, default=str, ensure_ascii=False),
                )
            )
        with self._lock:
            try:
                with self._db:
                    self._db.executemany(_UPSERT, rows)
            except sqlite3.OperationalError as exc:  # locked for longer than the timeout, disk full...
                raise ServiceUnavailable(
                    f"the log index {self.path} is not writable now: {exc}",
                    hint="another process holds it, or the disk is full; retried",
                ) from None

    def _where(self, query: str, since: float | None, cls: str | None, fts: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if fts is not None:
            clauses.append("logs.id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)")
            args.append(fts)
        if since is not None:
            clauses.append("logs.ts >= ?")
            args.append(float(since))
        if cls is not None:
            clauses.append("logs.class = ?")
            args.append(cls)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def _run(
        self, sql: str, query: str, since: float | None, cls: str | None, tail: str = "", extra: Sequence[Any] = ()
    ) -> list[Any]:
        self.ensure_schema()
        attempts = [None] if _is_match_all(query) else [query, _quoted_terms(query)]
        for n, fts in enumerate(attempts):
            where, args = self._where(query, since, cls, fts)
            try:
                with self._lock:
                    return self._db.execute(sql + where + tail, [*args, *extra]).fetchall()
            except sqlite3.OperationalError as exc:
                syntax = "fts5" in str(exc) or "syntax" in str(exc) or "no such column" in str(exc)
                if not (syntax and n + 1 < len(attempts)):
                    raise OperationFailed(f"search in {self.path} failed: {exc}") from None
        return []  # pragma: no cover

    def search(
        self, query: str = "", *, since: float | None = None, cls: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        rows = self._run(
            "SELECT doc FROM logs", query, since, cls, " ORDER BY logs.ts DESC, logs.id DESC LIMIT ?", [int(limit)]
        )
        return [json.loads(row[0]) for row in rows]

    def count(self, query: str = "", *, since: float | None = None, cls: str | None = None) -> int:
        return int(self._run("SELECT count(*) FROM logs", query, since, cls)[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------- Elasticsearch / OpenSearch

_KEYWORD = {"type": "keyword", "ignore_above": 1024}
MAPPINGS: dict[str, Any] = {
    "dynamic": True,
    "date_detection": False,
    "numeric_detection": False,
    # header values and other extra strings: exact values, never guessed dates or numbers
    "dynamic_templates": [{"strings_as_keywords": {"match_mapping_type": "string", "mapping": _KEYWORD}}],
    "properties": {
        "doc_id": {"type": "keyword"},
        "class": {"type": "keyword"},
        "severity": {"type": "keyword"},
        "event_id": {"type": "keyword"},
        "source": {"type": "keyword"},
        "rule": {"type": "keyword"},
        "raw": {"type": "text"},
        "content": {"type": "text"},
        "template": {"type": "text"},
        "params": _KEYWORD,
        "line_id": {"type": "long"},
        "offset": {"type": "long"},
        "parsed": {"type": "boolean"},
        "confidence": {"type": "float"},
        "timestamp": {"type": "date"},
        "ingested_at": {"type": "date"},
        "@timestamp": {"type": "date"},
        "headers": {"type": "object", "dynamic": True},
    },
}

_FIELD = re.compile(r"field \[([^\]]+)\]")
_CONFLICTS = (
    "mapper_parsing_exception",
    "illegal_argument_exception",
    "strict_dynamic_mapping_exception",
    "document_parsing_exception",
)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_search_url(url: str, prefix: str | None) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.split("+", 1)[1] if "+" in parts.scheme else parts.scheme
    if scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"not a search engine URL: {url!r}", hint="use http(s)://HOST:PORT[/INDEX_PREFIX]")
    path_prefix = parts.path.strip("/")
    return urllib.parse.urlunsplit((scheme, parts.netloc, "", "", "")), prefix or path_prefix or "mlctl-logs"


class OpenSearchIndex(SearchIndex):
    """Daily indices ``PREFIX-YYYY.MM.DD`` behind one index template with explicit mappings.

    A document goes to the index of its own day (its ``timestamp``, UTC), else of the day it is
    indexed; its ``_id`` is its ``doc_id`` and the bulk ``index`` operation replaces an existing
    copy, so a redelivered batch leaves one copy. (A document without a timestamp that is
    redelivered after midnight UTC lands in the next day's index: give records a timestamp.)
    ``refresh=True`` makes each batch searchable before :meth:`index` returns (tests); otherwise the
    engine's refresh interval applies.
    """

    def __init__(
        self,
        url: str,
        prefix: str | None = None,
        *,
        timeout_s: float = 30.0,
        refresh: bool = False,
        shards: int = 1,
        replicas: int = 0,
    ) -> None:
        osp = require("opensearchpy", "search", feature="the OpenSearch/Elasticsearch log index")
        self.base_url, self.prefix = _parse_search_url(url, prefix)
        self.url = f"{self.base_url}/{self.prefix}"
        self.refresh = refresh
        self.shards, self.replicas = shards, replicas
        self._osp = osp
        self._client = osp.OpenSearch(
            hosts=[self.base_url], timeout=timeout_s, max_retries=0, retry_on_timeout=False, http_compress=False
        )
        self._ready = False

    # -- errors
    def _unavailable(self, exc: BaseException) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the search engine at {self.base_url} is unreachable: {type(exc).__name__}: "
            f"{getattr(exc, 'info', None) or exc}"[:500],
            hint="check that it runs; the batch is kept and retried",
        )

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        osp = self._osp
        try:
            return fn(*args, **kwargs)
        except (osp.ConnectionError, osp.ConnectionTimeout) as exc:
            self._ready = False  # an engine that comes back may have lost its template: put it again
            raise self._unavailable(exc) from None
        except osp.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else 0
            if status >= 500 or status in (0, 408, 429):
                self._ready = False
                raise self._unavailable(exc) from None
            raise OperationFailed(
                f"the search engine at {self.base_url} refused the request (HTTP {status}): "
                f"{exc.error}: {str(exc.info)[:300]}"
            ) from None

    @property
    def template_name(self) -> str:
        return self.prefix

    def index_name(self, doc: Doc, now: float | None = None) -> str:
        """``PREFIX-YYYY.MM.DD`` of the document's day (its timestamp, else when it was received, else ``now``)."""
        when = doc_time(doc, _ingest_time(doc, now if now is not None else time.time()))
        return f"{self.prefix}-{datetime.fromtimestamp(when or 0.0, UTC).strftime('%Y.%m.%d')}"

    def ensure_schema(self) -> None:
        if self._ready:
            return
        body = {
            "index_patterns": [f"{self.prefix}-*"],
            "priority": 200,
            "template": {
                "settings": {"number_of_shards": self.shards, "number_of_replicas": self.replicas},
                "mappings": MAPPINGS,
            },
            "_meta": {"managed_by": "mlctl"},
        }
        self._call(self._client.indices.put_index_template, name=self.template_name, body=body)
        self._ready = True

    def _body(self, records: Sequence[Doc]) -> str:
        now = time.time()
        lines: list[str] = []
        for doc in records:
            doc_id = doc.get("doc_id")
            if not doc_id:
                raise OperationFailed("a document without doc_id cannot be indexed", hint=f"got keys {sorted(doc)}")
            ingested = _ingest_time(doc, now)
            own = doc_time(doc)
            source = dict(doc)
            if doc.get("timestamp") is not None and own is None:  # not a time: keep the text, index no date
                source["timestamp_text"] = str(source.pop("timestamp"))
            elif own is not None:
                source["timestamp"] = _iso(own)
            source["ingested_at"] = _iso(ingested)
            source["@timestamp"] = _iso(own if own is not None else ingested)
            name = f"{self.prefix}-{datetime.fromtimestamp(own if own is not None else ingested, UTC):%Y.%m.%d}"
            lines.append(json.dumps({"index": {"_index": name, "_id": str(doc_id)}}))
            lines.append(json.dumps(source, default=str, ensure_ascii=False))
        return "\n".join(lines) + "\n"

    def index(self, records: Sequence[Doc]) -> None:
        if not records:
            return
        self.ensure_schema()
        body = self._body(records)
        extra = {"refresh": "true"} if self.refresh else {}
        answer = self._call(self._client.bulk, body=body, **extra)
        if not answer.get("errors"):
            return
        retry: list[Any] = []
        refused: list[Any] = []
        for item in answer.get("items", []):
            result = next(iter(item.values()))
            error = result.get("error")
            if not error:
                continue
            status = int(result.get("status") or 0)
            (retry if status >= 500 or status == 429 else refused).append((result, error))
        if refused:
            result, error = refused[0]
            reason = str(error.get("reason", error)) if isinstance(error, dict) else str(error)
            kind = error.get("type", "error") if isinstance(error, dict) else "error"
            match = _FIELD.search(reason)
            where = f"index {result.get('_index')}"
            if kind in _CONFLICTS and match:
                raise OperationFailed(
                    f"mapping conflict on field '{match.group(1)}' in {where} (document {result.get('_id')}): {reason}",
                    hint="the index's mapping disagrees with the document; fix the mapping (or the index prefix) and "
                    "rerun: offsets are not committed",
                    details={"field": match.group(1), "index": result.get("_index"), "refused": len(refused)},
                )
            raise OperationFailed(
                f"the search engine refused {len(refused)} document(s) in {where}: {kind}: {reason}",
                details={"index": result.get("_index"), "refused": len(refused)},
            )
        if retry:
            result, error = retry[0]
            raise ServiceUnavailable(
                f"the search engine at {self.base_url} rejected {len(retry)} document(s) for now: {error}"[:500],
                hint="it is overloaded or recovering; the batch is retried",
            )

    def refresh_now(self) -> None:
        """Make everything indexed so far searchable."""
        self._call(
            self._client.indices.refresh, index=f"{self.prefix}-*", allow_no_indices=True, ignore_unavailable=True
        )

    def _query(self, query: str, since: float | None, cls: str | None, strict: bool) -> dict[str, Any]:
        filters: list[dict[str, Any]] = []
        if since is not None:
            filters.append({"range": {"@timestamp": {"gte": int(float(since) * 1000), "format": "epoch_millis"}}})
        if cls is not None:
            filters.append({"term": {"class": cls}})
        must: list[dict[str, Any]] = []
        if not _is_match_all(query):
            fields = ["raw", "content", "template"]
            if strict:
                must.append(
                    {"query_string": {"query": query, "fields": fields, "default_operator": "AND", "lenient": True}}
                )
            else:
                must.append(
                    {
                        "simple_query_string": {
                            "query": query,
                            "fields": fields,
                            "default_operator": "and",
                            "lenient": True,
                        }
                    }
                )
        return {"bool": {"must": must or [{"match_all": {}}], "filter": filters}}

    def _search_call(self, fn: Any, query: str, since: float | None, cls: str | None, **kwargs: Any) -> Any:
        pattern = f"{self.prefix}-*"
        try:
            return self._call(
                fn,
                index=pattern,
                body={"query": self._query(query, since, cls, True), **kwargs},
                ignore_unavailable=True,
                allow_no_indices=True,
            )
        except OperationFailed:  # a query_string syntax error: the same words as a simple query
            if _is_match_all(query):
                raise
            return self._call(
                fn,
                index=pattern,
                body={"query": self._query(query, since, cls, False), **kwargs},
                ignore_unavailable=True,
                allow_no_indices=True,
            )

    def search(
        self, query: str = "", *, since: float | None = None, cls: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        answer = self._search_call(
            self._client.search,
            query,
            since,
            cls,
            size=int(limit),
            sort=[{"@timestamp": {"order": "desc"}}, {"doc_id": {"order": "desc"}}],
        )
        return [hit["_source"] for hit in answer["hits"]["hits"]]

    def count(self, query: str = "", *, since: float | None = None, cls: str | None = None) -> int:
        return int(self._search_call(self._client.count, query, since, cls)["count"])

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing idle pooled connections
            pass


def make_index(url: str | Path, **kwargs: Any) -> SearchIndex:
    """A :class:`SearchIndex` for ``url`` (see the module docstring for the forms)."""
    text = str(url).strip()
    scheme = urllib.parse.urlsplit(text).scheme.lower()
    if scheme == "sqlite":
        path = text.split(":///", 1)[1] if ":///" in text else text.split("://", 1)[1]
        if not path:
            raise ConfigError(f"no path in {text!r}", hint="use sqlite:///.mlctl/logs.db")
        return SqliteFtsIndex(path)
    if scheme in ("http", "https") or scheme.endswith(("+http", "+https")):
        return OpenSearchIndex(text, **kwargs)
    if scheme and len(scheme) > 1:  # a one-letter scheme is a Windows drive
        raise ConfigError(
            f"unknown search index URL {text!r}", hint="use sqlite:///PATH, a path, or http(s)://HOST:PORT[/PREFIX]"
        )
    return SqliteFtsIndex(text)
