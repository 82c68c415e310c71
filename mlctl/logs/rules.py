"""Classification rules in YAML: a regular expression, a template or header values -> a class.

Rules are checked in order; the first that matches sets the class (and optionally the
severity), overriding the model. A malformed file is a usage error that names the rule.

.. code-block:: yaml

    rules:
      - name: ssh-brute-force
        regex: 'Failed password for (invalid user )?\\S+ from'
        class: security
        severity: warning
      - name: kernel-panic
        template: 'Kernel panic - not syncing: <*>'
        class: critical
        severity: critical
      - name: noisy-heartbeat
        headers: {Component: heartbeat}
        class: normal
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.errors import NotFound, UsageError
from mlctl.logs.record import LogRecord

SEVERITIES = ("debug", "info", "notice", "warning", "error", "critical")
_KEYS = {"name", "regex", "template", "headers", "class", "severity", "field", "ignore_case"}
_FIELDS = ("raw", "content")


@dataclass(frozen=True)
class Rule:
    """One rule: every condition given must hold."""

    name: str
    cls: str
    severity: str | None = None
    regex: re.Pattern[str] | None = None
    target: str = "content"  # the text a regex reads: content (the message) or raw (the whole line)
    template: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def matches(self, record: LogRecord) -> bool:
        if self.template is not None and record.template != self.template:
            return False
        for key, value in self.headers.items():
            if record.headers.get(key) != value:
                return False
        if self.regex is not None:
            text = record.raw if self.target == "raw" or not record.parsed else record.content
            if not self.regex.search(text):
                return False
        return True


def _bad(where: str, why: str) -> UsageError:
    return UsageError(
        f"rules: {where}: {why}",
        hint="each rule needs a class and at least one of regex, "
        "template or headers (see `mlctl classify-logs --help`)",
    )


def parse_rules(doc: Any, *, source: str = "rules") -> list[Rule]:
    """Validate a loaded YAML document (``{"rules": [...]}`` or a bare list) into rules."""
    items = doc.get("rules") if isinstance(doc, Mapping) else doc
    if doc is None or items is None:
        return []
    if not isinstance(items, list):
        raise UsageError(f"{source}: 'rules' must be a list of rules")
    out: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(items, start=1):
        where = f"{source}: rule {i}"
        if not isinstance(item, Mapping):
            raise _bad(where, "is not a mapping")
        name = str(item.get("name") or f"rule-{i}")
        where = f"{source}: rule {i} ({name!r})"
        unknown = sorted(set(item) - _KEYS)
        if unknown:
            raise _bad(where, f"unknown key {unknown[0]!r}")
        if name in seen:
            raise _bad(where, "duplicate name")
        seen.add(name)
        cls = item.get("class")
        if not isinstance(cls, str) or not cls.strip():
            raise _bad(where, "missing 'class'")
        severity = item.get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise _bad(where, f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        regex = None
        if item.get("regex") is not None:
            flags = re.IGNORECASE if item.get("ignore_case") else 0
            try:
                regex = re.compile(str(item["regex"]), flags)
            except re.error as exc:
                raise _bad(where, f"bad regex: {exc}") from None
        headers = item.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise _bad(where, "'headers' must map field names to values")
        target = item.get("field", "content")
        if target not in _FIELDS:
            raise _bad(where, f"'field' must be one of {', '.join(_FIELDS)}")
        template = item.get("template")
        if regex is None and template is None and not headers:
            raise _bad(where, "no condition (regex, template or headers)")
        out.append(Rule(name=name, cls=cls.strip(), severity=severity, regex=regex, target=target,
                        template=None if template is None else str(template),
                        headers={str(k): str(v) for k, v in headers.items()}))  # fmt: skip
    return out


def load_rules(path: str | Path) -> list[Rule]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise NotFound(f"no rules file at {path}")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}: not valid YAML{where}") from None
    return parse_rules(doc, source=str(path))


def apply_rules(rules: Sequence[Rule], records: Iterable[LogRecord]) -> int:
    """Set class (and severity) from the first matching rule; returns how many records a rule set."""
    n = 0
    for record in records:
        for rule in rules:
            if rule.matches(record):
                record.cls, record.rule, record.confidence = rule.cls, rule.name, 1.0
                if rule.severity:
                    record.severity = rule.severity
                n += 1
                break
    return n
