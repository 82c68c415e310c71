"""Classify parsed log lines: category, severity, alert or normal.

Three layers, last word first:

1. **rules** (YAML, :mod:`mlctl.logs.rules`) set a class outright;
2. a trained **model**: TF-IDF over the line's template tokens and its header fields
   (level, component), then a linear classifier; predictions are cached per distinct
   feature text, so a stream of repetitive lines costs one prediction per template;
3. **weak labels** from the level and keywords when no model exists yet (and to bootstrap
   one: ``mlctl classify-logs train`` without labels trains on them).

Classes are free-form; the weak labeller uses ``security``, ``hardware``, ``network``,
``resource``, ``error`` and ``normal``, and ``unparsed`` marks lines that did not match
the log format. Every class but ``normal`` counts as an alert.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.errors import NotFound, UsageError
from mlctl.logs.record import UNPARSED, LogRecord
from mlctl.logs.rules import Rule, apply_rules

NORMAL = "normal"
MODEL_FILE = "classifier.skops"
META_FILE = "classifier.json"
META_VERSION = 1
LEVEL_FIELDS = ("Level", "level", "Severity", "severity", "Type", "State")
COMPONENT_FIELDS = ("Component", "component", "Process", "Node", "logger", "source")

#: level spellings -> severity
_LEVELS = {
    "trace": "debug", "debug": "debug", "dbg": "debug", "d": "debug", "verbose": "debug",
    "info": "info", "information": "info", "i": "info", "notice": "notice",
    "warn": "warning", "warning": "warning", "w": "warning",
    "error": "error", "err": "error", "e": "error", "severe": "error", "failure": "error",
    "fatal": "critical", "crit": "critical", "critical": "critical", "emerg": "critical", "alert": "critical",
    "panic": "critical", "f": "critical",
}  # fmt: skip
#: weak-label keyword patterns, checked in this order (first match wins)
_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("security", r"authentication fail|failed password|invalid user|permission denied|unauthori[sz]ed|forbidden|"
                 r"access denied|brute.?force|not allowed|illegal user|break-?in|possible attack|bad login"),
    ("hardware", r"parity|\becc\b|machine check|temperature|overheat|\bfan\b|disk fail|i/o error|hardware|"
                 r"uncorrectable|corrected error|power supply|voltage"),
    ("resource", r"out of memory|\boom\b|no space left|disk full|quota|too many open files|memory allocation|"
                 r"cannot allocate|resource (temporarily )?unavailable|heap space"),
    ("network", r"connection (refused|reset|closed|timed out)|timed? ?out|unreachable|no route to host|"
                r"broken pipe|network is down|socket|dns|host not found"),
    ("error", r"exception|\berror\b|\bfail(ed|ure|s)?\b|fatal|panic|abort|crash|segfault|traceback|"
              r"cannot|can't|unable to|denied|killed|corrupt"),
)  # fmt: skip
_KEYWORD_RES = tuple((cls, re.compile(pattern, re.IGNORECASE)) for cls, pattern in _KEYWORDS)
_CLASS_SEVERITY = {"security": "warning", "hardware": "error", "resource": "error", "network": "warning",
                   "error": "error", NORMAL: "info", UNPARSED: "warning"}  # fmt: skip


def _first(headers: dict[str, str], names: Sequence[str]) -> str:
    for name in names:
        value = headers.get(name)
        if value:
            return value.strip()
    return ""


def level_severity(headers: dict[str, str]) -> str | None:
    """The severity a header level spells (``WARN`` -> warning), or None."""
    level = _first(headers, LEVEL_FIELDS).strip("[]<>:").lower()
    return _LEVELS.get(level)


def _key(record: LogRecord) -> tuple[str, str, str]:
    body = record.template if record.template is not None else (record.content or record.raw)
    return body, _first(record.headers, LEVEL_FIELDS), _first(record.headers, COMPONENT_FIELDS)


def _text(key: tuple[str, str, str]) -> str:
    body, level, component = key
    extra = f" level={level.lower()}" if level else ""
    if component:
        extra += " component=" + re.sub(r"[\d_\-.:/\[\]]+", "#", component.lower())[:40]
    return (body[:2000] + extra).strip()


def features(record: LogRecord) -> str:
    """The text the model reads: template tokens (variables masked) plus level and component."""
    return _text(_key(record))


def weak_label(record: LogRecord) -> tuple[str, str]:
    """``(class, severity)`` from the level and keywords alone."""
    if not record.parsed:
        return UNPARSED, "warning"
    text = record.content or record.raw
    severity = level_severity(record.headers)
    cls = next((c for c, rx in _KEYWORD_RES if rx.search(text)), NORMAL)
    if cls == NORMAL and severity in ("error", "critical"):
        cls = "error"
    if cls == "error" and severity in ("debug", "info", "notice"):
        cls = NORMAL  # "0 errors", "error count" at INFO: trust the level
    return cls, severity or _CLASS_SEVERITY.get(cls, "info")


def is_alert(cls: str | None) -> bool:
    return cls is not None and cls != NORMAL


@dataclass
class LogClassifier:
    """A fitted text classifier over :func:`features`, with a prediction cache."""

    pipeline: Any
    classes: list[str]
    cache_size: int = 100_000
    _cache: OrderedDict[tuple[str, str, str], tuple[str, float]] = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def fit(cls, records: Sequence[LogRecord], labels: Sequence[str], *, seed: int = 42) -> LogClassifier:
        from mlctl.core.errors import require

        require("sklearn", "ml", feature="the log classifier", package="scikit-learn")
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        if len(records) != len(labels):
            raise UsageError(f"{len(records)} lines but {len(labels)} labels")
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise UsageError(f"training needs at least two classes, found {classes or 'none'}",
                             hint="label more lines, or add rules for the rare classes")  # fmt: skip
        pipeline = Pipeline([
            ("tfidf", TfidfVectorizer(token_pattern=r"[^\s]+", lowercase=True, sublinear_tf=True,
                                      ngram_range=(1, 2), min_df=1, max_features=50_000)),
            ("model", LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)),
        ])  # fmt: skip
        pipeline.fit([features(r) for r in records], list(labels))
        return cls(pipeline=pipeline, classes=[str(c) for c in pipeline.classes_])

    def predict(self, records: Sequence[LogRecord]) -> list[tuple[str, float]]:
        """``(class, probability)`` per record; one model call for all distinct unseen feature texts."""
        keys = [_key(r) for r in records]
        cache = self._cache
        missing = list(dict.fromkeys(k for k in keys if k not in cache))
        if missing:
            proba = self.pipeline.predict_proba([_text(k) for k in missing])
            for key, row in zip(missing, proba, strict=True):
                j = int(row.argmax())
                cache[key] = (self.classes[j], float(row[j]))
            while len(cache) > max(self.cache_size, len(missing)):
                cache.popitem(last=False)
        return [cache[k] for k in keys]

    # -- persistence: skops with explicit trusted types, SHA-256 verified at load ------------------
    def save(self, folder: Path, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        from mlctl.lifecycle.serialize import save_model, trusted_types

        folder.mkdir(parents=True, exist_ok=True)
        sha = save_model(self.pipeline, folder / MODEL_FILE)
        meta = {"format": META_VERSION, "classes": self.classes, "sha256": sha,
                "trusted_types": trusted_types(self.pipeline), **(extra or {})}  # fmt: skip
        tmp = folder / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(folder / META_FILE)
        return meta

    @classmethod
    def load(cls, folder: Path) -> LogClassifier:
        from mlctl.core.errors import require
        from mlctl.lifecycle.serialize import verify_sha256

        meta_file = folder / META_FILE
        if not meta_file.is_file():
            raise NotFound(f"no log classifier in {folder}", hint="train one with `mlctl classify-logs train`")
        try:
            meta = json.loads(meta_file.read_text())
        except ValueError:
            raise UsageError(f"{meta_file} is not valid JSON") from None
        if meta.get("format") != META_VERSION:
            raise UsageError(f"{meta_file}: classifier format {meta.get('format')!r} is not supported by this mlctl",
                             hint="retrain it with `mlctl classify-logs train`")  # fmt: skip
        verify_sha256(folder / MODEL_FILE, meta["sha256"])
        sio = require("skops.io", "ml", feature="loading the log classifier", package="skops")
        pipeline = sio.load(folder / MODEL_FILE, trusted=list(meta.get("trusted_types") or []))
        return cls(pipeline=pipeline, classes=list(meta["classes"]))


def classify(records: Sequence[LogRecord], *, model: LogClassifier | None = None,
             rules: Sequence[Rule] = ()) -> list[LogRecord]:  # fmt: skip
    """Fill in class, confidence and severity of each record (in place; returns them)."""
    parsed = [r for r in records if r.parsed]
    if model is not None:
        for record, (cls, confidence) in zip(parsed, model.predict(parsed), strict=True):
            record.cls, record.confidence, record.rule = cls, round(confidence, 4), None
            record.severity = level_severity(record.headers) or _CLASS_SEVERITY.get(
                cls, "error" if is_alert(cls) else "info")
    else:
        memo: dict[tuple[str, str, str], tuple[str, str]] = {}
        for record in parsed:
            key = _key(record) if record.template is not None else (record.content, "", "")
            key = (key[0], _first(record.headers, LEVEL_FIELDS), "")
            hit = memo.get(key)
            if hit is None:
                hit = memo[key] = weak_label(record)
            record.cls, record.severity = hit
            record.confidence, record.rule = None, None
    for record in records:
        if not record.parsed:
            record.cls, record.severity, record.confidence, record.rule = UNPARSED, "warning", None, None
    if rules:
        apply_rules(rules, records)
    return list(records)


def class_counts(records: Iterable[LogRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r.cls or "?"] = out.get(r.cls or "?", 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))
