"""``mlctl detect watch``: the long-lived online loop.

Start: read ``history`` of the query from Prometheus (``query_range``) and feed it to one
detector per series, without alerting on what was already processed before a restart. Then,
every ``interval``: poll the new points, score each one, update the exported metrics, hand
the verdicts to the :class:`~mlctl.detect.alerting.Alerter` and flush its outbox. A failed
poll is counted and retried on the next tick (Prometheus is only required to answer at start);
an unreachable Alertmanager leaves alerts queued in the outbox, never dropped.

The per-series checkpoint (last processed timestamp) is written to
``.mlctl/detect/watch-NAME.json`` after every tick, so a restart neither re-alerts on old
points nor misses the ones that arrived while it was down (back to ``history``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlctl.core.errors import UsageError
from mlctl.core.graceful import GracefulStop, StopFlag
from mlctl.core.output import log
from mlctl.detect import export as m
from mlctl.detect.spec import DetectSpec


class MetricSource(Protocol):
    """Where a watch reads its series: Prometheus by default; the seam for other transports (Kafka...).

    Both methods return objects with ``labels``, ``key``, ``timestamps`` and ``values`` (see
    :class:`mlctl.connectors.prometheus.Series`); ``poll`` returns only points not returned before.
    """

    def history(self, start: float, end: float) -> list[Any]: ...

    def poll(self, now: float) -> list[Any]: ...


class PrometheusSource:
    """``query_range`` for the history, then gap-free incremental polls."""

    def __init__(self, client: Any, query: str, *, step_s: float, lookback_s: float) -> None:
        self.client, self.query, self.step_s, self.lookback_s = client, query, step_s, lookback_s
        self._poller: Any = None

    def history(self, start: float, end: float) -> list[Any]:
        from mlctl.connectors.prometheus import Poller

        series = self.client.query_range(self.query, start, end, self.step_s)
        self._poller = Poller(self.client, self.query, step=self.step_s, since=end, max_lookback_s=self.lookback_s)
        return series

    def poll(self, now: float) -> list[Any]:
        if self._poller is None:
            from mlctl.connectors.prometheus import Poller

            self._poller = Poller(self.client, self.query, step=self.step_s, since=now,
                                  max_lookback_s=self.lookback_s)  # fmt: skip
        return self._poller.poll_once(now)


@dataclass
class SeriesState:
    labels: dict[str, str]
    detector: Any
    last_ts: float = -math.inf
    value: float = math.nan
    score: float = 0.0
    anomalous: bool = False
    points: int = 0


@dataclass
class WatchReport:
    """What one run of the loop did."""

    watch: str
    query: str
    detector: str
    threshold: float
    metrics_url: str | None
    iterations: int = 0
    series: int = 0
    points: int = 0
    warmup_points: int = 0
    anomalies: int = 0
    alerts_fired: int = 0
    alerts_resolved: int = 0
    outbox_pending: int = 0
    poll_errors: int = 0
    stopped_by: str = "limit"
    events: list[dict[str, Any]] = field(default_factory=list)


class _Collector:
    """Serves the loop's state as Prometheus metrics, one sample per watched series."""

    def __init__(self, watcher: Watcher) -> None:
        self.w = watcher

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

        w = self.w
        base = {"watch": w.spec.name, "detector": w.detector_name}
        fams = {
            m.SCORE: Metric(m.SCORE, "Latest anomaly score of the series, 0 to 1", "gauge"),
            m.VALUE: Metric(m.VALUE, "Latest value of the series", "gauge"),
            m.IS_ANOMALY: Metric(m.IS_ANOMALY, "1 while the latest point is over the threshold", "gauge"),
        }
        with w.lock:
            states = list(w.series.values())
            for st in states:
                labels = {k: v for k, v in st.labels.items() if k != "__name__"}
                if "__name__" in st.labels:
                    labels["metric"] = st.labels["__name__"]
                labels.update(base)
                fams[m.SCORE].add_sample(m.SCORE, labels, st.score)
                fams[m.VALUE].add_sample(m.VALUE, labels, st.value)
                fams[m.IS_ANOMALY].add_sample(m.IS_ANOMALY, labels, 1.0 if st.anomalous else 0.0)
            yield from fams.values()
            names, values = list(base), list(base.values())
            g = GaugeMetricFamily(m.THRESHOLD, "Score at which a point counts as anomalous", labels=names)
            g.add_metric(values, w.threshold)
            yield g
            c = CounterMetricFamily(m.POINTS.removesuffix("_total"), "Points scored", labels=names)
            c.add_metric(values, float(w.report.points))
            yield c
            c = CounterMetricFamily(m.POLL_ERRORS.removesuffix("_total"), "Failed polls", labels=names)
            c.add_metric(values, float(w.report.poll_errors))
            yield c
            c = CounterMetricFamily(m.ALERTS.removesuffix("_total"), "Alert notifications", labels=[*names, "status"])
            c.add_metric([*values, "firing"], float(w.report.alerts_fired))
            c.add_metric([*values, "resolved"], float(w.report.alerts_resolved))
            yield c
            g = GaugeMetricFamily(m.OUTBOX, "Alert notifications waiting for delivery", labels=names)
            g.add_metric(values, float(w.report.outbox_pending))
            yield g
            if w.last_poll is not None:
                g = GaugeMetricFamily(m.LAST_POLL, "Time of the last successful poll", labels=names)
                g.add_metric(values, w.last_poll)
                yield g


class Watcher:
    """One watch: a query, one detector per series, an exporter and an alerter."""

    def __init__(
        self,
        spec: DetectSpec,
        *,
        prometheus_url: str,
        state_dir: Path,
        alerter: Any = None,
        clock: Callable[[], float] = time.time,
        source: MetricSource | None = None,
    ) -> None:
        from mlctl.connectors.prometheus import PrometheusClient
        from mlctl.detect.base import DEFAULT_DETECTOR, make_detector

        if not spec.query:
            raise UsageError("no query to watch", hint="pass --query PROMQL or set detect.query in mlctl.yaml")
        self.spec = spec
        self.query = spec.query
        self.detector_name = spec.detector or DEFAULT_DETECTOR
        self._prototype = make_detector(self.detector_name, **spec.params)
        self.threshold = spec.threshold if spec.threshold is not None else self._prototype.default_threshold
        self.client = PrometheusClient(prometheus_url)
        self._source = source
        self.alerter = alerter
        self.clock = clock
        self.lock = threading.Lock()
        self.series: dict[str, SeriesState] = {}
        self.last_poll: float | None = None
        self.stop_event: StopFlag = threading.Event()
        self.checkpoint_file = state_dir / "detect" / f"watch-{spec.name}.json"
        self.report = WatchReport(watch=spec.name, query=self.query, detector=self.detector_name,
                                  threshold=self.threshold, metrics_url=None)  # fmt: skip
        self._server: Any = None
        self._checkpoint = self._load_checkpoint()

    # -- checkpoint ---------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {"query": self.query, "detector": self.detector_name, "params": self._prototype.get_params()}

    def _load_checkpoint(self) -> dict[str, float]:
        try:
            doc = json.loads(self.checkpoint_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log(f"watch {self.spec.name}: ignoring unreadable checkpoint {self.checkpoint_file}: {exc}")
            return {}
        if doc.get("identity") != self._identity():
            log(f"watch {self.spec.name}: query or detector changed since the last run; starting afresh")
            return {}
        return {k: float(v) for k, v in (doc.get("series") or {}).items()}

    def save_checkpoint(self) -> None:
        self.checkpoint_file.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            doc = {"identity": self._identity(), "series": {k: s.last_ts for k, s in self.series.items()
                                                            if math.isfinite(s.last_ts)}}  # fmt: skip
        tmp = self.checkpoint_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        tmp.replace(self.checkpoint_file)

    # -- exporter -----------------------------------------------------------------------------
    def start_exporter(self) -> str:
        from mlctl.core.errors import OperationFailed, require

        require("prometheus_client", "serve", feature="the watch loop's /metrics")
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        try:
            self._server, _ = start_http_server(self.spec.metrics_port, addr=self.spec.metrics_host, registry=registry)
        except OSError as exc:
            raise OperationFailed(
                f"cannot serve /metrics on {self.spec.metrics_host}:{self.spec.metrics_port}: {exc.strerror or exc}",
                hint="pick another --metrics-port (0 picks a free one)",
            ) from None
        port = self._server.server_address[1]
        self.report.metrics_url = f"http://{self.spec.metrics_host}:{port}/metrics"
        return self.report.metrics_url

    def stop_exporter(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- scoring ------------------------------------------------------------------------------
    def _state(self, key: str, labels: dict[str, str]) -> SeriesState:
        st = self.series.get(key)
        if st is None:
            st = SeriesState(labels=dict(labels), detector=self._prototype.clone())
            self.series[key] = st
            self.report.series = len(self.series)
        return st

    def ingest(self, batch: list[Any], *, warmup: bool = False) -> int:
        """Score the new points of each series in ``batch``.

        In the warm-up, points only teach the detector unless they come after the series' checkpoint
        (they arrived while the loop was down); a series without a checkpoint is new, and its history
        only teaches.
        """
        import numpy as np

        new_points = 0
        for s in batch:
            key = s.key
            with self.lock:
                st = self._state(key, s.labels)
            keep = s.timestamps > st.last_ts
            ts, vals = s.timestamps[keep], s.values[keep]
            if not len(ts):
                continue
            seen = self._checkpoint.get(key, math.inf) if warmup else -math.inf
            scores = np.asarray(st.detector.score(vals), dtype=float)
            for t, v, score in zip(ts.tolist(), vals.tolist(), scores.tolist(), strict=True):
                flagged = score >= self.threshold
                fresh = t > seen
                with self.lock:
                    st.last_ts, st.value, st.score, st.anomalous = t, v, score, flagged
                    st.points += 1
                if not fresh:
                    self.report.warmup_points += 1
                    continue
                new_points += 1
                self.report.points += 1
                if flagged:
                    self.report.anomalies += 1
                    self.report.events.append({"event": "anomaly", "series": key, "ts": t, "value": v,
                                               "score": round(score, 6)})  # fmt: skip
                if self.alerter is not None:
                    self._observe(key, st, t, v, score, flagged)
        return new_points

    def _observe(self, key: str, st: SeriesState, t: float, v: float, score: float, flagged: bool) -> None:
        labels = {k: v for k, v in st.labels.items() if k != "__name__"}
        if "__name__" in st.labels:
            labels["metric"] = st.labels["__name__"]
        labels.update({"watch": self.spec.name, "detector": self.detector_name})
        for note in self.alerter.observe(key, labels, t, v, score, flagged) or []:
            status = "resolved" if getattr(note, "ends_at", None) else "firing"
            if status == "firing":
                self.report.alerts_fired += 1
            else:
                self.report.alerts_resolved += 1
            self.report.events.append({"event": f"alert {status}", "series": key, "ts": t, "score": round(score, 6)})
            log(f"alert {status}: {key} (score {score:.2f})")

    def _flush(self) -> None:
        if self.alerter is None:
            return
        flushed = self.alerter.flush()
        self.report.outbox_pending = int(flushed.pending + flushed.failed)
        for sink, error in flushed.errors.items():
            log(f"alerts: {sink}: {error}; {flushed.pending} notification(s) kept in the outbox for retry")

    # -- the loop -----------------------------------------------------------------------------
    @property
    def source(self) -> MetricSource:
        if self._source is None:
            self._source = PrometheusSource(self.client, self.query, step_s=self.spec.step_s,
                                            lookback_s=self.spec.history_s)  # fmt: skip
        return self._source

    def warm_up(self) -> None:
        """Read the history window and feed it: silent up to the checkpoint, alerting after it."""
        now = self.clock()
        history = self.source.history(now - self.spec.history_s, now)
        if not history:
            log(f"watch {self.spec.name}: no series yet for {self.query!r}; polling until some appear")
        self.ingest(history, warmup=True)
        self.last_poll = now

    def run(self, *, duration_s: float | None = None, iterations: int | None = None) -> WatchReport:
        """Warm up, then poll until the duration or iteration limit, or a stop signal."""
        from mlctl.core.errors import MlctlError

        deadline = None if duration_s is None else time.monotonic() + duration_s
        self.report.stopped_by = "limit"
        if self.last_poll is None:  # not warmed up yet: Prometheus must answer now (exit 4 when it does not)
            self.warm_up()
            self._flush()
            self.save_checkpoint()
        interval = self.spec.interval_s
        while not self.stop_event.is_set():
            if iterations is not None and self.report.iterations >= iterations:
                self.report.stopped_by = "iterations"
                break
            if deadline is not None and time.monotonic() >= deadline:
                self.report.stopped_by = "duration"
                break
            began = time.monotonic()
            try:
                batch = self.source.poll(self.clock())
            except MlctlError as exc:
                self.report.poll_errors += 1
                log(f"watch {self.spec.name}: poll failed ({exc.message}); retrying next tick")
            else:
                self.last_poll = self.clock()
                self.ingest(batch)
                self.save_checkpoint()
            self._flush()
            self.report.iterations += 1
            wait = interval - (time.monotonic() - began)
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if wait > 0:
                self.stop_event.wait(wait)
        else:
            if self.report.stopped_by == "limit":
                self.report.stopped_by = "stopped"
        self._flush()
        self.save_checkpoint()
        return self.report


def install_signal_handlers(watcher: Watcher) -> GracefulStop:
    """SIGTERM and SIGINT stop the loop after the tick in flight (``report.stopped_by`` names the
    last one); returns the installed :class:`~mlctl.core.graceful.GracefulStop` (``restore()`` it)."""

    def record(signum: int, _frame: Any) -> None:
        watcher.report.stopped_by = signal.Signals(signum).name

    graceful = GracefulStop(event=watcher.stop_event, on_signal=record)
    watcher.stop_event = graceful  # the loop sees a signal at once, not when the event is set
    return graceful.install()


def report_dict(report: WatchReport, *, events: bool = False) -> dict[str, Any]:
    doc = asdict(report)
    if not events:
        doc.pop("events")
    return doc


def build_alerter(spec: DetectSpec, state_dir: Path) -> Any:
    """The alerter for a watch (None when no receiver is configured): Alertmanager and webhooks."""
    from mlctl.connectors.alerts import AlertmanagerSink, WebhookSink
    from mlctl.core.state import STATE_FILE, StateStore
    from mlctl.detect.alerting import Alerter

    sinks: list[Any] = []
    if spec.alertmanager:
        sinks.append(AlertmanagerSink(spec.alertmanager))
    for url in spec.webhooks:
        slack = url.startswith("slack+")
        sinks.append(WebhookSink(url.removeprefix("slack+"), style="slack" if slack else "json"))
    if not sinks:
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    store = StateStore(state_dir / STATE_FILE)
    return Alerter(
        sinks,
        store,
        source=f"detect:{spec.name}",
        alertname=m.ALERT_NAME,
        severity=spec.severity,
        labels=spec.labels,
        annotations={"summary": "anomalous metric, watched by mlctl detect watch " + spec.name},
        cooldown_s=spec.cooldown_s,
        resolve_after=spec.resolve_after,
        generator_url=f"{spec.prometheus}/graph" if spec.prometheus else "",
    )
