"""Parse log lines into :class:`~mlctl.logs.record.LogRecord` s: header split, then template mining.

Every input line gives exactly one record, in order; none is dropped:

* a line that matches the log format gets its headers, content and template (``parsed=True``);
* a line that does not match, and an empty (or blank) line, keeps ``parsed=False``,
  ``event_id`` :data:`~mlctl.logs.record.UNPARSED`, no template, and later the ``unparsed`` class.

:func:`parse_lines` mines the whole batch first and then yields every record with its *final*
template (the contract the evaluation relies on); :func:`stream_lines` yields each record as soon
as it is mined, with the template known at that moment (for tailing a stream).

:func:`rows_for_csv` gives the ``classify-logs parse -o csv`` rows: ``LineId``, the header fields,
``EventId``, ``EventTemplate``, ``ParameterList`` (a Python-list-like string, ``['a', 'b']``).

>>> records = list(parse_lines(["a 1 INFO started job 7", "garbage"], "<Date> <Time> <Level> <Content>"))
>>> [(r.line_id, r.parsed, r.template) for r in records]
[(1, True, 'started job <*>'), (2, False, None)]
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from mlctl.core.output import log
from mlctl.logs.formats import AUTO, LogFormat, read_lines
from mlctl.logs.miner import TemplateMiner
from mlctl.logs.record import UNPARSED, LogRecord

CSV_TAIL = ("EventId", "EventTemplate", "ParameterList")
_TIME_FIELDS = ("Timestamp", "timestamp", "Time", "time", "ts", "@timestamp", "Date")


def _numbered(lines: Iterable[str] | Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    for i, item in enumerate(lines, 1):
        if isinstance(item, str):
            yield i, item
        else:  # (line number, line) pairs as given
            yield item[0], item[1]  # type: ignore[misc]


def _split(lines: Iterable[str] | Iterable[tuple[int, str]], fmt: LogFormat, source: str) -> Iterator[LogRecord]:
    for line_id, text in _numbered(lines):
        parts = fmt.split(text)
        if parts is None:
            yield LogRecord(line_id=line_id, raw=text, source=source, parsed=False, event_id=UNPARSED)
            continue
        headers, content = parts
        timestamp = next((headers[k] for k in _TIME_FIELDS if headers.get(k)), None)
        yield LogRecord(line_id=line_id, raw=text, source=source, headers=headers, content=content, timestamp=timestamp)


def parse_lines(
    lines: Iterable[str] | Iterable[tuple[int, str]],
    log_format: str | LogFormat | None,
    *,
    miner: TemplateMiner | None = None,
    source: str = "-",
) -> Iterator[LogRecord]:
    """Parse a batch: split headers, mine every content, then yield records with their final templates.

    ``lines`` are strings (numbered from 1) or ``(line_no, text)`` pairs as :func:`read_lines`
    gives. ``log_format`` is a preset name, a format string, ``"auto"`` (detected from the first
    lines, :mod:`mlctl.logs.autoformat`) or a :class:`LogFormat` (``None``: the whole line is the
    content). Pass a ``miner`` to continue from a loaded model; it learns the batch (save it
    afterwards to keep what it learned).
    """
    fmt = LogFormat.resolve(log_format)
    numbered: Iterable[tuple[int, str]] = _numbered(lines)
    if fmt.kind == AUTO:
        numbered = list(numbered)
        fmt = _detect(numbered)
    miner = miner if miner is not None else TemplateMiner()
    records = list(_split(numbered, fmt, source))
    parsed = [r for r in records if r.parsed]
    for record, match in zip(parsed, miner.parse([r.content for r in parsed]), strict=True):
        record.event_id, record.template, record.params = match.event_id, match.template, match.params
    yield from records


def stream_lines(
    lines: Iterable[str] | Iterable[tuple[int, str]],
    log_format: str | LogFormat | None,
    *,
    miner: TemplateMiner | None = None,
    source: str = "-",
) -> Iterator[LogRecord]:
    """Parse line by line, yielding each record at once with the template known at that moment.

    With ``"auto"``, the first lines (up to :data:`~mlctl.logs.autoformat.SAMPLE_LINES` non-blank
    ones) are read before the first record comes, to detect the format from.
    """
    from mlctl.logs.autoformat import split_head

    fmt = LogFormat.resolve(log_format)
    numbered: Iterable[tuple[int, str]] = _numbered(lines)
    if fmt.kind == AUTO:
        head, numbered = split_head(numbered)
        fmt = _detect(head)
    miner = miner if miner is not None else TemplateMiner()
    for record in _split(numbered, fmt, source):
        if record.parsed:
            match = miner.add(record.content)
            record.event_id, record.template, record.params = match.event_id, match.template, match.params
        yield record


def _detect(numbered: list[tuple[int, str]]) -> LogFormat:
    from mlctl.logs.autoformat import detect_format

    detection = detect_format(text for _, text in numbered)
    log(detection.describe())
    return detection.format


def parse_file(
    path: str | Path | IO[bytes],
    log_format: str | LogFormat | None,
    *,
    miner: TemplateMiner | None = None,
    source: str | None = None,
) -> Iterator[LogRecord]:
    """:func:`parse_lines` over a file (or a binary stream such as stdin); invalid UTF-8 is replaced."""
    name = source if source is not None else (str(path) if isinstance(path, (str, Path)) else "stdin")
    return parse_lines(read_lines(path), log_format, miner=miner, source=name)


def format_params(params: list[str]) -> str:
    """The Loghub spelling of a parameter list: a Python list literal.

    >>> format_params(["10.0.0.1", "it's"])
    '[\\'10.0.0.1\\', "it\\'s"]'
    """
    return repr(list(params))


def csv_header(header_fields: Iterable[str]) -> list[str]:
    """``LineId``, the header fields, ``EventId``, ``EventTemplate``, ``ParameterList``."""
    return ["LineId", *header_fields, *CSV_TAIL]


def rows_for_csv(records: Iterable[LogRecord], header_fields: Iterable[str]) -> Iterator[dict[str, Any]]:
    """One row per record for the parse CSV/JSONL output (keys in :func:`csv_header` order).

    An unparsed line has empty header fields, ``EventId`` ``unparsed`` and an empty template.
    """
    fields = tuple(header_fields)
    for r in records:
        row: dict[str, Any] = {"LineId": r.line_id}
        for f in fields:
            row[f] = r.headers.get(f, "")
        row["EventId"] = r.event_id if r.event_id is not None else UNPARSED
        row["EventTemplate"] = r.template or ""
        row["ParameterList"] = format_params(r.params)
        yield row


def write_csv(records: Iterable[LogRecord], header_fields: Iterable[str], out: IO[str]) -> int:
    """Write :func:`rows_for_csv` as CSV with its header; returns the number of rows."""
    fields = tuple(header_fields)
    writer = csv.DictWriter(out, fieldnames=csv_header(fields), lineterminator="\n")
    writer.writeheader()
    n = 0
    for row in rows_for_csv(records, fields):
        writer.writerow(row)
        n += 1
    return n


def csv_text(records: Iterable[LogRecord], header_fields: Iterable[str]) -> str:
    """:func:`write_csv` into a string."""
    buf = io.StringIO()
    write_csv(records, header_fields, buf)
    return buf.getvalue()
