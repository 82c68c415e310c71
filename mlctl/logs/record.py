"""One log line as it moves through mlctl: raw -> parsed -> classified -> routed.

Every stage fills in more fields and never drops a line: a line that does not match the log
format keeps ``parsed=False`` and goes to the ``unparsed`` class. ``doc_id`` is deterministic
(the same line from the same place always gets the same id), so a sink that writes it twice,
after a redelivery, keeps one copy. It is a hash of the line: a record made with
``defer_id=True`` (a command that only prints lines) leaves it empty until
:meth:`LogRecord.ensure_doc_id` is called before the record goes to a sink.
"""

from __future__ import annotations

import hashlib
from dataclasses import InitVar, asdict, dataclass, field
from typing import Any

UNPARSED = "unparsed"


def make_doc_id(source: str, position: int | str, raw: str = "") -> str:
    """A stable id for a line: its source (file path, or ``topic/partition``), its position there, and its text.

    >>> make_doc_id("app.log", 3, "boot") == make_doc_id("app.log", 3, "boot")
    True
    >>> len(make_doc_id("t/0", 17))
    32
    """
    h = hashlib.blake2b(digest_size=16)
    for part in (source, str(position), raw):
        h.update(part.encode("utf-8", "surrogateescape"))
        h.update(b"\x00")
    return h.hexdigest()


@dataclass
class LogRecord:
    """A log line and everything learned about it."""

    line_id: int  # 1-based line number in its source (for streams: the offset + 1)
    raw: str  # the line as received (invalid UTF-8 decoded with replacement characters)
    source: str = "-"  # file path, "stdin", or "topic/partition"
    offset: int | None = None  # Kafka offset, when streamed
    headers: dict[str, str] = field(default_factory=dict)  # fields of the log format, e.g. Date, Level
    content: str = ""  # the message part the template is mined from
    parsed: bool = True  # False when the line did not match the log format
    event_id: str | None = None  # template id, e.g. "E12" or a stable hash
    template: str | None = None  # variables shown as <*>
    params: list[str] = field(default_factory=list)  # the variable values, in order
    cls: str | None = None  # class assigned by the classifier or a rule
    confidence: float | None = None
    severity: str | None = None  # e.g. info, warning, error, critical
    rule: str | None = None  # the rule that set the class, if any
    timestamp: str | None = None  # ISO 8601, from the headers when they hold a time
    received_at: float | None = None  # when the line was received (Kafka: the message time, same on redelivery)
    doc_id: str = ""
    defer_id: InitVar[bool] = False  # leave doc_id empty until ensure_doc_id() (no sink will see it)

    def __post_init__(self, defer_id: bool) -> None:
        if not self.doc_id and not defer_id:
            self.ensure_doc_id()

    def ensure_doc_id(self) -> str:
        """The record's ``doc_id``, computed now if it was deferred."""
        if not self.doc_id:
            position = self.offset if self.offset is not None else self.line_id
            self.doc_id = make_doc_id(self.source, position, self.raw)
        return self.doc_id

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["class"] = doc.pop("cls")
        return doc
