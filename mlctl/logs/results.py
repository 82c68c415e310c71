"""What the ``classify-logs`` library calls return for the renderer (:class:`~mlctl.core.output.Result`).

Each result knows its JSON/YAML document (the command's contract with scripts: the shapes here are
pinned by the command tests and the schemas under ``docs/schemas/``), its rows for ``csv`` and
``jsonl`` and its table view. Rows are produced lazily, one per line, while the renderer writes
them: a template's text and a line's parameters are only worked out when its row is written.

Mining has to see every line of a batch before any template is final (templates generalise as
lines arrive, see :mod:`mlctl.logs.miner`), so the first row comes once the input has been read
and mined; from then on nothing is converted or held per row beyond what is written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mlctl.core.output import Result, Table
from mlctl.logs.record import UNPARSED, LogRecord

if TYPE_CHECKING:
    from mlctl.logs.miner import TemplateMiner

#: ``parse`` rows end with these columns (after ``LineId`` and the header fields)
PARSE_TAIL = ("EventId", "EventTemplate", "ParameterList")
#: the columns of ``classify -o csv``, written as a header even when there is no line
CLASSIFY_COLUMNS = ("LineId", "class", "confidence", "severity", "rule", "EventId", "EventTemplate", "raw")
_TEMPLATE_COLUMNS = ("EventId", "count", "EventTemplate")
_ALERT_COLUMNS = ("LineId", "class", "severity", "confidence", "rule", "raw")
_CACHE_SIZE = 100_000  # distinct (cluster, message) pairs whose row tail is kept
_CACHE_MAX_CHARS = 4096


class ParsedLines(Result):
    """``classify-logs parse``: one row per input line, and the templates found.

    * document: ``lines``, ``unparsed``, ``templates`` (``EventId``, ``count``, ``EventTemplate``,
      most frequent first), ``rows`` and ``log_format``;
    * rows (csv/jsonl): ``LineId``, the header fields, ``EventId``, ``EventTemplate`` and
      ``ParameterList`` (a Python-list-like string); an unparsed line has empty header fields,
      ``EventId`` ``unparsed``, an empty template and ``[]``;
    * table: the templates, titled with the line and unparsed counts.

    Built by :meth:`mlctl.logs.pipeline.LogPipeline.parse` from the split lines
    (``(line_id, header values or None, content)``) and the miner's final cluster of each parsed
    line, in order.
    """

    def __init__(self, lines: Sequence[tuple[int, tuple[str, ...] | None, str]], clusters: Sequence[int],
                 miner: TemplateMiner, header_fields: Sequence[str], log_format: dict[str, Any]) -> None:  # fmt: skip
        self.lines = lines
        self.clusters = clusters
        self.miner = miner
        self.header_fields = tuple(header_fields)
        self.log_format = log_format
        self.columns = self._columns = ("LineId", *self.header_fields, *PARSE_TAIL)
        self.unparsed = len(lines) - len(clusters)
        self.title = f"{len(lines)} lines, {self.unparsed} unparsed"

    def csv_rows(self) -> Iterator[str]:
        """The CSV lines (the CSV writer's quoting, newline-terminated), one per input line, as asked for.

        Each message's ``EventId,EventTemplate,ParameterList`` is encoded once (kept for repeated
        messages); the line id and header values are joined as they are unless one of them needs
        quoting (a comma, a quote, a line break), which the CSV writer then does.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")

        def encode(cells: tuple[Any, ...]) -> str:
            buf.seek(0)
            buf.truncate()
            writer.writerow(cells)
            return buf.getvalue()

        commas = len(self.header_fields) - 1
        encoded: dict[tuple[str, str, str], str] = {}
        for line_id, values, tail in self._parts():
            end = encoded.get(tail)
            if end is None:
                end = encode(tail)
                if len(encoded) < _CACHE_SIZE:
                    encoded[tail] = end
            if commas < 0:
                yield f"{line_id},{end}"
                continue
            head = ",".join(values)
            if head.count(",") != commas or '"' in head or "\n" in head or "\r" in head:
                yield encode((line_id, *values, *tail))
            else:
                yield f"{line_id},{head},{end}"

    def _parts(self) -> Iterator[tuple[int, tuple[str, ...], tuple[str, str, str]]]:
        """``(LineId, header values, (EventId, EventTemplate, ParameterList))`` per line; the last part
        is worked out as the line is asked for (kept for repeated messages)."""
        miner = self.miner
        template, event_id, params = miner.template, miner.event_id, miner.params
        cache: dict[int, dict[str, tuple[str, str, str]]] = {}  # cluster -> message -> row tail
        cached = 0
        clusters = iter(self.clusters)
        blank = ("",) * len(self.header_fields)
        unparsed = (UNPARSED, "", "[]")
        for line_id, values, content in self.lines:
            if values is None:
                yield line_id, blank, unparsed
                continue
            cid = next(clusters)
            known = cache.get(cid)
            if known is None:
                known = cache[cid] = {}
            tail = known.get(content)
            if tail is None:
                tail = (event_id(cid), template(cid), repr(params(content, cid)))
                if cached < _CACHE_SIZE and len(content) <= _CACHE_MAX_CHARS:
                    known[content] = tail
                    cached += 1
            yield line_id, values, tail

    def rows(self) -> Iterator[dict[str, Any]]:
        columns = self._columns
        for line_id, values, tail in self._parts():
            yield dict(zip(columns, (line_id, *values, *tail), strict=True))

    def templates(self) -> list[dict[str, Any]]:
        """``{"EventId", "count", "EventTemplate"}`` per template found, most frequent first."""
        per_cluster: dict[int, int] = {}
        for cid in self.clusters:
            per_cluster[cid] = per_cluster.get(cid, 0) + 1
        counts: dict[tuple[str, str], int] = {}
        for cid, n in per_cluster.items():  # in order of first line, as the keys below
            key = (self.miner.event_id(cid), self.miner.template(cid))
            counts[key] = counts.get(key, 0) + n
        ordered = sorted(counts.items(), key=lambda kv: -kv[1])
        return [{"EventId": e, "count": n, "EventTemplate": t} for (e, t), n in ordered]

    def document(self) -> dict[str, Any]:
        return {"lines": len(self.lines), "unparsed": self.unparsed, "templates": self.templates(),
                "rows": list(self.rows()), "log_format": self.log_format}  # fmt: skip

    def tables(self) -> list[Table]:
        return [Table(self.templates(), self.title, _TEMPLATE_COLUMNS)]


def classify_row(r: LogRecord) -> dict[str, Any]:
    """The ``classify`` row of a record (keys in :data:`CLASSIFY_COLUMNS` order)."""
    return {
        "LineId": r.line_id,
        "class": r.cls,
        "confidence": r.confidence,
        "severity": r.severity,
        "rule": r.rule,
        "EventId": r.event_id,
        "EventTemplate": r.template,
        "raw": r.raw,
    }


class ClassifiedLines(Result):
    """``classify-logs classify``: class, confidence and severity per line.

    * document: ``lines``, ``classes`` (count per class, most frequent first), ``records`` (the
      rows) and ``log_format``;
    * rows (csv/jsonl): :data:`CLASSIFY_COLUMNS`, only the alerts with ``alerts_only``;
    * table: the class counts, then the first 20 alerts.
    """

    columns = CLASSIFY_COLUMNS

    def __init__(self, records: Sequence[LogRecord], classes: dict[str, int], log_format: dict[str, Any], *,
                 alerts_only: bool = False) -> None:  # fmt: skip
        self.records = records
        self.classes = classes
        self.log_format = log_format
        self.alerts_only = alerts_only

    def rows(self) -> Iterator[dict[str, Any]]:
        from mlctl.logs.classify import is_alert

        alerts_only = self.alerts_only
        for r in self.records:
            if not alerts_only or is_alert(r.cls):
                yield classify_row(r)

    def document(self) -> dict[str, Any]:
        return {"lines": len(self.records), "classes": self.classes, "records": list(self.rows()),
                "log_format": self.log_format}  # fmt: skip

    def tables(self) -> list[Table]:
        from mlctl.logs.classify import is_alert

        blocks = [Table([{"class": k, "lines": v} for k, v in self.classes.items()], f"{len(self.records)} lines")]
        shown = []
        for row in self.rows():
            if is_alert(row["class"]):
                shown.append(row)
                if len(shown) >= 20:
                    break
        if shown:
            blocks.append(Table(shown, "first alerts", _ALERT_COLUMNS))
        return blocks


class Document(Result):
    """A small document rendered as the generic renderer does for a mapping: the document in json,
    yaml and jsonl (one line), ``key,value`` rows in csv, a key/value table (or ``text`` as it is)."""

    columns = ("key", "value")

    def __init__(self, doc: dict[str, Any], *, title: str | None = None, tables: Sequence[Table] | None = None,
                 notes: Iterable[str] = ()) -> None:  # fmt: skip
        self.doc = doc
        self.title = title
        self._tables = list(tables) if tables is not None else None
        self._notes = list(notes)

    def document(self) -> dict[str, Any]:
        return self.doc

    def rows(self) -> list[dict[str, Any]]:
        return [self.doc]

    def csv_rows(self) -> list[dict[str, Any]]:
        return [{"key": k, "value": v} for k, v in self.doc.items()]

    def tables(self) -> list[Table]:
        return self._tables if self._tables is not None else [Table(self.doc, self.title)]

    def notes(self) -> list[str]:
        return self._notes
