"""From scored points to alert notifications: the alert state machine and its durable outbox.

:class:`Alerter` watches many series, each named by a ``key``. For each series:

* the first anomalous point **fires** an alert (one notification); while the anomaly lasts the alert
  stays active and further anomalous points send nothing (deduplication by fingerprint);
* the alert **resolves** after ``resolve_after`` consecutive normal points (and/or ``resolve_after_s``
  seconds without an anomaly); the resolve notification carries ``endsAt``;
* after resolving, the same alert cannot fire again for ``cooldown_s`` seconds (a flapping series
  does not page every minute);
* active alerts are re-sent every ``resend_s`` seconds to sinks that expect it (Alertmanager drops
  alerts that are not re-sent before its ``resolve_timeout``).

Times of points (``ts``) are the data's own clock, so history replays behave like live data;
resend intervals use the wall clock.

Every notification is written to the ``alert_outbox`` table of the project's state store, in the
same transaction as the state change that caused it, *before* any delivery is tried.
:meth:`Alerter.flush` delivers the outbox sink by sink, in order, in batches, and deletes rows only
once the sink accepted them. A sink that is down is retried with exponential backoff and costs a
flush at most one timeout; nothing is dropped. A notification a receiver refuses outright (HTTP 4xx)
is kept with status ``failed`` and logged, and :meth:`Alerter.requeue_failed` puts it back.

Active alerts, cooldowns and the outbox all live in the store, so an alerter rebuilt on the same
store after a restart neither re-fires an alert that is already active nor loses queued notifications.
An :class:`Alerter` belongs to one thread (SQLite connections do).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlctl.connectors.alerts import Alert, AlertSink, fingerprint_of, format_time
from mlctl.core.errors import MlctlError, OperationFailed, ServiceUnavailable, UsageError
from mlctl.core.state import StateStore

__all__ = ["ActiveAlert", "Alerter", "FlushReport"]

log = logging.getLogger(__name__)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class ActiveAlert:
    """An alert that fires now, with what the state machine needs to resolve and re-send it."""

    row_id: int
    key: str
    alert: Alert
    last_ts: float
    last_anomaly_ts: float
    normal_count: int = 0
    last_sent_ts: float = 0.0


@dataclass
class FlushReport:
    """What one :meth:`Alerter.flush` did: notifications delivered, still queued, refused; errors by sink."""

    sent: int = 0
    pending: int = 0
    failed: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and self.pending == 0


@dataclass
class _Backoff:
    failures: int = 0
    next_try: float = 0.0
    error: str = ""


class Alerter:
    """The alert state machine for one ``source``, over ``sinks``, with its state in ``store``."""

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        store: StateStore,
        *,
        source: str = "detect",
        alertname: str = "AnomalyDetected",
        severity: str = "warning",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        cooldown_s: float = 300.0,
        resolve_after: int | None = 3,
        resolve_after_s: float | None = None,
        resend_s: float = 60.0,
        generator_url: str = "",
        backoff_s: float = 1.0,
        backoff_max_s: float = 300.0,
        flush_budget_s: float = 5.0,
        batch_size: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise UsageError(f"alert sinks must be distinct, got {names}", hint="list each receiver once")
        if resolve_after is None and resolve_after_s is None:
            raise UsageError("an alert needs a way to resolve", hint="set resolve_after (points) or resolve_after_s")
        if resolve_after is not None and resolve_after < 1:
            raise UsageError(f"resolve_after must be at least 1 point, got {resolve_after}")
        for what, value in (("cooldown_s", cooldown_s), ("resolve_after_s", resolve_after_s or 0.0)):
            if value < 0 or not math.isfinite(value):
                raise UsageError(f"{what} must be a finite number >= 0, got {value}")
        for what, value in (("resend_s", resend_s), ("backoff_s", backoff_s), ("flush_budget_s", flush_budget_s)):
            if not value > 0:
                raise UsageError(f"{what} must be > 0, got {value}")
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        self.sinks = list(sinks)
        self.store = store
        self.source = source
        self.alertname = alertname
        self.severity = severity
        self.labels = dict(labels or {})
        self.annotations = dict(annotations or {})
        self.cooldown_s = float(cooldown_s)
        self.resolve_after = resolve_after
        self.resolve_after_s = resolve_after_s
        self.resend_s = float(resend_s)
        self.generator_url = generator_url
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(max(backoff_max_s, backoff_s))
        self.flush_budget_s = float(flush_budget_s)
        self.batch_size = int(batch_size)
        self.clock = clock
        self.suppressed = 0  # anomalies not alerted because of a cooldown
        self._backoff: dict[str, _Backoff] = {}
        self._resolved_at: dict[str, float | None] = {}
        self._active: dict[str, ActiveAlert] = {}
        self._load()

    # -- state ----------------------------------------------------------------------------------
    def _load(self) -> None:
        for row in self.store.select("alerts", {"source": self.source, "status": "firing"}, order_by="id"):
            if row.get("series") is None:  # an alert some other part of mlctl records
                continue
            starts = _epoch(row["started_at"])
            alert = Alert(
                labels=row["labels"], annotations=row["annotations"], starts_at=starts, generator_url=self.generator_url
            )
            last = row["last_anomaly_ts"] if row["last_anomaly_ts"] is not None else starts
            self._active[row["series"]] = ActiveAlert(
                row_id=row["id"],
                key=row["series"],
                alert=alert,
                last_ts=last,
                last_anomaly_ts=last,
                normal_count=row["normal_count"],
                last_sent_ts=row["last_sent_ts"] or 0.0,
            )

    @property
    def active(self) -> list[ActiveAlert]:
        """The alerts firing now, oldest first."""
        return sorted(self._active.values(), key=lambda a: a.row_id)

    def outbox(self, *, status: str | None = None) -> list[dict[str, Any]]:
        """The queued notifications of this source (``status`` ``pending`` or ``failed``), oldest first."""
        where: dict[str, Any] = {"source": self.source} | ({"status": status} if status else {})
        return self.store.select("alert_outbox", where, order_by="id")

    def _count(self, status: str) -> int:
        sql = "SELECT COUNT(*) FROM alert_outbox WHERE source = ? AND status = ?"
        return int(self.store.connect().execute(sql, (self.source, status)).fetchone()[0])

    def _enqueue(self, tx: Any, alert: Alert, kind: str, sinks: Sequence[AlertSink]) -> None:
        payload = StateStore.encode_row({"payload": alert.to_dict()})["payload"]
        now = _iso(self.clock())
        tx.executemany(
            "INSERT INTO alert_outbox (source, sink, fingerprint, kind, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(self.source, s.name, alert.fingerprint, kind, payload, now) for s in sinks],
        )

    # -- the state machine ----------------------------------------------------------------------
    def alert_labels(self, key: str, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels an alert for series ``key`` carries (they make its fingerprint).

        A series' ``__name__`` becomes ``metric``; empty values are dropped (in Prometheus an empty
        label is an absent one).
        """
        base = {"alertname": self.alertname, "severity": self.severity, "source": self.source, "series": key}
        given = {("metric" if k == "__name__" else str(k)): str(v) for k, v in labels.items()}
        return {k: v for k, v in (base | self.labels | given).items() if v != ""}

    def observe(
        self, key: str, labels: Mapping[str, str], ts: float, value: float, score: float, is_anomaly: bool
    ) -> list[Alert]:
        """Feed one scored point of series ``key``; returns the notifications it caused (queued already)."""
        active = self._active.get(key)
        if active is not None:
            return self._observe_active(active, float(ts), bool(is_anomaly))
        if not is_anomaly:
            return []
        alert_labels = self.alert_labels(key, labels)
        fp = fingerprint_of(alert_labels)
        resolved = self._last_resolved(fp)
        if resolved is not None and (ts <= resolved or ts - resolved < self.cooldown_s):
            self.suppressed += 1
            return []
        return [self._fire(key, alert_labels, float(ts), float(value), float(score))]

    def _observe_active(self, active: ActiveAlert, ts: float, is_anomaly: bool) -> list[Alert]:
        if ts <= active.last_ts:  # replayed or out of order: already accounted for
            return []
        active.last_ts = ts
        if is_anomaly:
            active.last_anomaly_ts = ts
            if active.normal_count:
                active.normal_count = 0
                self._save_progress(active)
            return []
        active.normal_count += 1
        enough_points = self.resolve_after is None or active.normal_count >= self.resolve_after
        enough_time = self.resolve_after_s is None or ts - active.last_anomaly_ts >= self.resolve_after_s
        if enough_points and enough_time:
            return [self._resolve(active, ts)]
        self._save_progress(active)
        return []

    def _save_progress(self, active: ActiveAlert) -> None:
        with self.store.transaction() as tx:
            tx.execute(
                "UPDATE alerts SET normal_count = ?, last_anomaly_ts = ? WHERE id = ?",
                (active.normal_count, active.last_anomaly_ts, active.row_id),
            )

    def _last_resolved(self, fingerprint: str) -> float | None:
        if fingerprint not in self._resolved_at:
            row = (
                self.store.connect()
                .execute(
                    "SELECT resolved_at FROM alerts WHERE source = ? AND fingerprint = ? AND status = 'resolved' "
                    "AND resolved_at IS NOT NULL ORDER BY id DESC LIMIT 1",
                    (self.source, fingerprint),
                )
                .fetchone()
            )
            self._resolved_at[fingerprint] = _epoch(row[0]) if row else None
        return self._resolved_at[fingerprint]

    def _fire(self, key: str, labels: dict[str, str], ts: float, value: float, score: float) -> Alert:
        annotations = {
            "summary": f"anomaly on {key}",
            "description": f"value {value:.6g} scored {score:.3f} at {format_time(ts)}",
            "value": f"{value:.6g}",
            "score": f"{score:.4f}",
        } | self.annotations
        alert = Alert(labels=labels, annotations=annotations, starts_at=ts, generator_url=self.generator_url)
        now = self.clock()
        row = StateStore.encode_row({"labels": labels, "annotations": annotations})
        with self.store.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO alerts (fingerprint, source, severity, status, summary, labels, annotations, "
                "started_at, series, last_anomaly_ts, normal_count, last_sent_ts) "
                "VALUES (?, ?, ?, 'firing', ?, ?, ?, ?, ?, ?, 0, ?)",
                (
                    alert.fingerprint,
                    self.source,
                    labels.get("severity", self.severity),
                    annotations["summary"],
                    row["labels"],
                    row["annotations"],
                    _iso(ts),
                    key,
                    ts,
                    now,
                ),
            )
            self._enqueue(tx, alert, "firing", self.sinks)
        self._active[key] = ActiveAlert(
            row_id=int(cur.lastrowid or 0), key=key, alert=alert, last_ts=ts, last_anomaly_ts=ts, last_sent_ts=now
        )
        log.info("alert firing: %s %s", alert.name, key)
        return alert

    def _resolve(self, active: ActiveAlert, ts: float) -> Alert:
        a = active.alert
        alert = Alert(
            labels=a.labels, annotations=a.annotations, starts_at=a.starts_at, ends_at=ts, generator_url=a.generator_url
        )
        with self.store.transaction() as tx:
            tx.execute(
                "UPDATE alerts SET status = 'resolved', resolved_at = ?, normal_count = ?, last_anomaly_ts = ? "
                "WHERE id = ?",
                (_iso(ts), active.normal_count, active.last_anomaly_ts, active.row_id),
            )
            self._enqueue(tx, alert, "resolved", self.sinks)
        del self._active[active.key]
        self._resolved_at[alert.fingerprint] = _epoch(_iso(ts))
        log.info("alert resolved: %s %s", alert.name, active.key)
        return alert

    def resend_due(self, now: float | None = None) -> int:
        """Queue a re-send of every active alert not sent for ``resend_s`` (to sinks that want it)."""
        targets = [s for s in self.sinks if s.wants_resend]
        now = self.clock() if now is None else now
        due = [a for a in self.active if now - a.last_sent_ts >= self.resend_s]
        if not targets or not due:
            return 0
        queued = 0
        with self.store.transaction() as tx:
            for active in due:
                waiting = {
                    r[0]
                    for r in tx.execute(
                        "SELECT sink FROM alert_outbox WHERE source = ? AND fingerprint = ? AND status = 'pending'",
                        (self.source, active.alert.fingerprint),
                    )
                }
                sinks = [s for s in targets if s.name not in waiting]  # a queued notification says it already
                self._enqueue(tx, active.alert, "resend", sinks)
                queued += len(sinks)
                active.last_sent_ts = now
                tx.execute("UPDATE alerts SET last_sent_ts = ? WHERE id = ?", (now, active.row_id))
        return queued

    # -- delivery -------------------------------------------------------------------------------
    def flush(self, *, budget_s: float | None = None, force: bool = False) -> FlushReport:
        """Deliver queued notifications: each sink in turn, oldest first, in batches.

        A sink in backoff is skipped until its next try (``force`` ignores backoff). No new batch is
        started once ``budget_s`` (default ``flush_budget_s``) has passed, so a flush costs at most
        the budget plus one sink timeout.
        """
        started = time.monotonic()
        budget = self.flush_budget_s if budget_s is None else budget_s
        self.resend_due()
        report = FlushReport()
        for sink in self.sinks:
            backoff = self._backoff.get(sink.name)
            if backoff is not None and not force and time.monotonic() < backoff.next_try:
                report.errors[sink.name] = backoff.error
                continue
            while time.monotonic() - started < budget:
                rows = (
                    self.store.connect()
                    .execute(
                        "SELECT id, payload FROM alert_outbox WHERE source = ? AND sink = ? AND status = 'pending' "
                        "ORDER BY id LIMIT ?",
                        (self.source, sink.name, self.batch_size),
                    )
                    .fetchall()
                )
                if not rows:
                    break
                delivered, error = self._deliver(sink, [(int(r[0]), Alert.from_dict(json.loads(r[1]))) for r in rows])
                report.sent += delivered
                if error is not None:
                    report.errors[sink.name] = error
                    break
        report.pending = self._count("pending")
        report.failed = self._count("failed")
        report.elapsed_s = time.monotonic() - started
        return report

    def _deliver(self, sink: AlertSink, batch: list[tuple[int, Alert]]) -> tuple[int, str | None]:
        """Send one batch; returns (rows delivered, error that stops this sink or None)."""
        try:
            sink.send([a for _, a in batch])
        except OperationFailed as exc:
            if len(batch) > 1:  # find the notification the receiver refuses; deliver the others
                total = 0
                for item in batch:
                    n, error = self._deliver(sink, [item])
                    total += n
                    if error is not None:
                        return total, error
                return total, None
            self._mark(batch, status="failed", error=exc.message)
            log.warning("%s refused an alert notification (kept as failed in the outbox): %s", sink.name, exc.message)
            return 0, None
        except Exception as exc:  # noqa: BLE001 - a sink's failure must never stop the loop
            message = exc.message if isinstance(exc, MlctlError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, ServiceUnavailable):
                log.error("alert sink %s failed unexpectedly: %s", sink.name, message)
            self._mark(batch, status="pending", error=message)
            state = self._backoff.setdefault(sink.name, _Backoff())
            state.failures += 1
            delay = min(self.backoff_max_s, self.backoff_s * 2 ** (state.failures - 1))
            state.next_try, state.error = time.monotonic() + delay, message
            log.warning(
                "alert sink %s unavailable, %d notification(s) queued, retry in %.1fs: %s",
                sink.name,
                len(batch),
                delay,
                message,
            )
            return 0, message
        with self.store.transaction() as tx:
            tx.executemany("DELETE FROM alert_outbox WHERE id = ?", [(i,) for i, _ in batch])
        self._backoff.pop(sink.name, None)
        return len(batch), None

    def _mark(self, batch: list[tuple[int, Alert]], *, status: str, error: str) -> None:
        with self.store.transaction() as tx:
            tx.executemany(
                "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?, status = ? WHERE id = ?",
                [(error, status, i) for i, _ in batch],
            )

    def requeue_failed(self) -> int:
        """Put notifications a receiver refused back in the queue; returns how many."""
        with self.store.transaction() as tx:
            return tx.execute(
                "UPDATE alert_outbox SET status = 'pending' WHERE source = ? AND status = 'failed'", (self.source,)
            ).rowcount

    def next_retry_in(self) -> float | None:
        """Seconds until the earliest sink in backoff may be tried again (None when none is)."""
        if not self._backoff:
            return None
        return max(0.0, min(b.next_try for b in self._backoff.values()) - time.monotonic())
