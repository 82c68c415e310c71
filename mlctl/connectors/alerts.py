"""Alert notifications and the sinks that deliver them: Alertmanager (API v2), webhooks, a log.

An :class:`Alert` is what Alertmanager calls an alert: labels (its identity), annotations (its
description), when it started and, once resolved, when it ended. A sink's :meth:`AlertSink.send`
either delivers a batch or raises:

* :class:`ServiceUnavailable` when the receiver cannot be reached, times out, or answers 5xx/429;
  the caller keeps the batch and tries again later;
* :class:`OperationFailed` when the receiver refuses the batch itself (4xx): retrying cannot help.

:func:`make_sink` turns a URL or a short spec into a sink::

    alertmanager://host:9093          Alertmanager, API v2 (also http://host:9093 and .../api/v2/alerts)
    webhook+https://host/path         generic JSON webhook (also any other http(s) URL)
    slack+https://hooks.example/T/B   Slack-compatible incoming webhook
    stdout | stderr | memory          a log sink (JSON lines), for a terminal or for tests

>>> a = Alert(labels={"alertname": "X", "series": "cpu"}, annotations={}, starts_at=0.0)
>>> a.fingerprint == Alert(labels={"series": "cpu", "alertname": "X"}, annotations={}, starts_at=5.0).fingerprint
True
>>> a.status, a.to_dict()["startsAt"]
('firing', '1970-01-01T00:00:00.000Z')
"""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from mlctl.core import http
from mlctl.core.errors import ConfigError, OperationFailed, ServiceUnavailable

__all__ = [
    "Alert",
    "AlertSink",
    "AlertmanagerSink",
    "LogSink",
    "RecordingSink",
    "WebhookSink",
    "format_time",
    "make_sink",
    "parse_time",
]

_SLACK_TEXT_LIMIT = 3000
_SLACK_MAX_BLOCKS = 50


def format_time(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, as Alertmanager writes it."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Seconds since the epoch from an RFC 3339 / ISO-8601 time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """A stable hash of a label set (order does not matter): 16 hex digits."""
    text = json.dumps(sorted((str(k), str(v)) for k, v in labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Alert:
    """One alert. ``starts_at``/``ends_at`` are seconds since the epoch; ``ends_at`` set means resolved."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None = None
    generator_url: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.labels)

    @property
    def status(self) -> Literal["firing", "resolved"]:
        return "firing" if self.ends_at is None else "resolved"

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "alert")

    def to_dict(self) -> dict[str, Any]:
        """The alert as JSON data (Alertmanager's field names, plus status and fingerprint)."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": format_time(self.starts_at),
            "endsAt": format_time(self.ends_at) if self.ends_at is not None else None,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        ends = data.get("endsAt")
        return cls(
            labels={str(k): str(v) for k, v in data.get("labels", {}).items()},
            annotations={str(k): str(v) for k, v in data.get("annotations", {}).items()},
            starts_at=parse_time(data["startsAt"]),
            ends_at=parse_time(ends) if ends else None,
            generator_url=str(data.get("generatorURL") or ""),
        )


class AlertSink(ABC):
    """Where alert notifications go. ``name`` identifies the sink across restarts (queued work is kept by it)."""

    #: resend firing alerts periodically (Alertmanager forgets alerts that are not re-sent)
    wants_resend: bool = False
    name: str = "sink"
    timeout_s: float = 5.0

    @abstractmethod
    def send(self, alerts: Sequence[Alert]) -> None:
        """Deliver ``alerts`` or raise :class:`ServiceUnavailable` (retry later) / :class:`OperationFailed`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class _HttpSink(AlertSink):
    """A receiver of JSON POSTs, through :mod:`mlctl.core.http` (sent once: the caller's outbox retries).

    Its one error mapping: no answer, 5xx, 408 or 429 is :class:`ServiceUnavailable` (try again
    later); any other 4xx is :class:`OperationFailed` (the receiver refused the payload itself).
    """

    def __init__(self, url: str, *, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"invalid alert receiver URL {url!r}", hint="use http(s)://host:port/path")
        self.url = url
        self.timeout_s = float(timeout_s)
        self.headers = dict(headers or {})

    def _post(self, url: str, body: Any, what: str, *, payload: str = "the alerts", hint: str | None = None,
              refused_hint: str = "the receiver rejected the payload itself; check its URL and labels") -> bytes:
        """POST ``body`` as JSON; ``what`` and ``payload`` name the receiver and the body in messages."""
        headers = {"Content-Type": "application/json", **self.headers}
        hint = hint or f"check that {what} runs and answers at {url}; the alerts stay queued and are retried"
        try:
            resp = http.request("POST", url, body=http.json_body(body), headers=headers, timeout=self.timeout_s)
        except ServiceUnavailable as exc:  # refused, reset, timed out, cut short
            raise ServiceUnavailable(f"{what} at {url} is unreachable: {exc.details.get('reason')}",
                                     hint=hint) from exc
        if resp.status < 400:
            return resp.body
        detail = resp.text().strip()[:300]
        if http.transient_status(resp.status):
            raise ServiceUnavailable(f"{what} at {url} answered HTTP {resp.status}: {detail}", hint=hint)
        raise OperationFailed(f"{what} at {url} refused {payload} (HTTP {resp.status}): {detail}", hint=refused_hint)


class AlertmanagerSink(_HttpSink):
    """Alertmanager's API v2: ``POST /api/v2/alerts``; a resolved alert carries ``endsAt``.

    Alertmanager keeps alert *state*: when one batch holds several notifications for the same
    alert, only the latest is sent (it supersedes the others).
    """

    wants_resend = True

    def __init__(self, url: str, *, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None) -> None:
        base = url.rstrip("/")
        for suffix in ("/api/v2/alerts", "/api/v2"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        super().__init__(base, timeout_s=timeout_s, headers=headers)
        self.name = f"alertmanager:{base}"

    @staticmethod
    def payload(alerts: Sequence[Alert]) -> list[dict[str, Any]]:
        latest: dict[str, Alert] = {}
        for alert in alerts:
            latest.pop(alert.fingerprint, None)
            latest[alert.fingerprint] = alert
        out = []
        for alert in latest.values():
            item: dict[str, Any] = {
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": format_time(alert.starts_at),
            }
            if alert.ends_at is not None:
                item["endsAt"] = format_time(max(alert.ends_at, alert.starts_at))
            if alert.generator_url:
                item["generatorURL"] = alert.generator_url
            out.append(item)
        return out

    def send(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            self._post(self.url + "/api/v2/alerts", self.payload(alerts), "Alertmanager")


class WebhookSink(_HttpSink):
    """A JSON webhook: the one sink for detect's alerts and for log routing's classified records.

    * alerts (:meth:`send`, an :class:`AlertSink`): generic JSON (``style="json"``), the body
      ``{"version": "1", "status": "firing"|"resolved", "alerts": [Alert.to_dict()...]}`` (``status`` is
      ``firing`` while any alert in the batch fires), close to Alertmanager's own webhooks; or a
      Slack-compatible message (``style="slack"``);
    * log records (:meth:`write`, a sink of :mod:`mlctl.logs.sinks`): ``{"records": [...], "count": N}``,
      ``max_batch`` records per request, each record turned into JSON data by ``encode`` (default:
      its ``to_dict()``).

    ``url`` may carry the ``webhook+`` prefix of a sink spec. Failures: see :class:`_HttpSink`.
    """

    def __init__(
        self,
        url: str,
        *,
        style: Literal["json", "slack"] = "json",
        name: str | None = None,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        max_batch: int = 500,
        encode: Callable[[Any], Mapping[str, Any]] | None = None,
    ) -> None:
        if style not in ("json", "slack"):
            raise ConfigError(f"unknown webhook style {style!r}", hint="use json or slack")
        target = url.removeprefix("webhook+")
        parts = urllib.parse.urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"invalid webhook URL {url!r}", hint="use webhook+https://HOST/PATH")
        super().__init__(target, timeout_s=timeout_s, headers=headers)
        self.style = style
        self.name = name or f"{'slack' if style == 'slack' else 'webhook'}:{target}"
        self.max_batch = max(1, int(max_batch))
        self.encode = encode

    def body(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        return slack_message(alerts) if self.style == "slack" else json_message(alerts)

    def send(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            self._post(self.url, self.body(alerts), "the webhook")

    def write(self, records: Sequence[Any]) -> None:
        """POST ``records`` (log records), ``max_batch`` a request; returns once every request was accepted."""
        encode = self.encode or (lambda record: record.to_dict())
        for start in range(0, len(records), self.max_batch):
            chunk = [encode(r) for r in records[start : start + self.max_batch]]
            self._post(self.url, {"records": chunk, "count": len(chunk)}, "the webhook", payload="the records",
                       hint="retried after a pause", refused_hint="check its URL and what payload it expects")

    def close(self) -> None:
        """Nothing to release (each request has its own connection)."""


def json_message(alerts: Sequence[Alert]) -> dict[str, Any]:
    """The generic webhook body."""
    firing = any(a.status == "firing" for a in alerts)
    return {"version": "1", "status": "firing" if firing else "resolved", "alerts": [a.to_dict() for a in alerts]}


def _describe(alert: Alert) -> str:
    summary = alert.annotations.get("summary") or alert.name
    lines = [f"*[{alert.status.upper()}] {summary}*"]
    if alert.annotations.get("description"):
        lines.append(alert.annotations["description"])
    shown = {k: v for k, v in sorted(alert.labels.items()) if k != "alertname"}
    if shown:
        lines.append(" ".join(f"`{k}={v}`" for k, v in shown.items()))
    when = f"started {format_time(alert.starts_at)}"
    if alert.ends_at is not None:
        when += f", resolved {format_time(alert.ends_at)}"
    lines.append(when)
    return "\n".join(lines)[:_SLACK_TEXT_LIMIT]


def slack_message(alerts: Sequence[Alert]) -> dict[str, Any]:
    """A Slack incoming-webhook message: a plain ``text`` fallback and one section block per alert."""
    firing = sum(a.status == "firing" for a in alerts)
    resolved = len(alerts) - firing
    parts = [f"{firing} firing" if firing else "", f"{resolved} resolved" if resolved else ""]
    text = "mlctl alerts: " + ", ".join(p for p in parts if p)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _describe(a)}} for a in alerts[: _SLACK_MAX_BLOCKS - 1]
    ]
    if len(alerts) > _SLACK_MAX_BLOCKS - 1:
        more = len(alerts) - (_SLACK_MAX_BLOCKS - 1)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {more} more"}]})
    return {"text": text, "blocks": blocks}


class LogSink(AlertSink):
    """Keeps every alert in :attr:`sent` and, given a stream, writes each as one JSON line."""

    def __init__(self, stream: TextIO | None = None, *, name: str = "log") -> None:
        self.stream = stream
        self.name = name
        self.sent: list[Alert] = []

    def send(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            self.sent.append(alert)
            if self.stream is not None:
                self.stream.write(json.dumps(alert.to_dict(), sort_keys=True) + "\n")
        if self.stream is not None:
            self.stream.flush()


_SPEC_HELP = (
    "use alertmanager://host:9093, http(s)://host:9093 (Alertmanager), webhook+https://..., "
    "slack+https://..., stdout, stderr or memory"
)


def make_sink(spec: str, *, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None) -> AlertSink:
    """A sink from a URL or a short spec (see the module docstring).

    >>> make_sink("alertmanager://127.0.0.1:9093").name
    'alertmanager:http://127.0.0.1:9093'
    >>> make_sink("slack+https://hooks.example/T/B").style
    'slack'
    """
    text = spec.strip()
    if text in ("stdout", "stderr", "memory"):
        stream = {"stdout": sys.stdout, "stderr": sys.stderr, "memory": None}[text]
        return LogSink(stream, name=text)
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ConfigError(f"unknown alert receiver {spec!r}", hint=_SPEC_HELP)
    kind, _, transport = scheme.partition("+")
    if kind in ("alertmanager", "am"):
        return AlertmanagerSink(f"{transport or 'http'}://{rest}", timeout_s=timeout_s, headers=headers)
    if kind in ("webhook", "slack") and transport in ("http", "https"):
        return WebhookSink(
            f"{transport}://{rest}", style="slack" if kind == "slack" else "json", timeout_s=timeout_s, headers=headers
        )
    if kind in ("http", "https") and not transport:
        path = urllib.parse.urlsplit(text).path.rstrip("/")
        if path in ("", "/api/v2/alerts", "/api/v2"):
            return AlertmanagerSink(text, timeout_s=timeout_s, headers=headers)
        return WebhookSink(text, timeout_s=timeout_s, headers=headers)
    raise ConfigError(f"unknown alert receiver {spec!r}", hint=_SPEC_HELP)


@dataclass
class RecordingSink(AlertSink):
    """An in-memory sink that can be switched off: while ``down`` it raises :class:`ServiceUnavailable`.

    For tests and dry runs; ``batches`` holds what was accepted, batch by batch.
    """

    name: str = "recording"
    wants_resend: bool = False
    down: bool = False
    batches: list[list[Alert]] = field(default_factory=list)
    attempts: int = 0

    def send(self, alerts: Sequence[Alert]) -> None:
        self.attempts += 1
        if self.down:
            raise ServiceUnavailable(f"{self.name} is down", hint="switch it back on")
        self.batches.append(list(alerts))

    @property
    def sent(self) -> list[Alert]:
        return [a for batch in self.batches for a in batch]
