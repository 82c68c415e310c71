"""The watch loop: warm-up, checkpoints and restarts, exported metrics, failed polls, alert hand-off."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlctl.connectors.alerts import RecordingSink
from mlctl.connectors.prometheus import Series
from mlctl.core.errors import ServiceUnavailable
from mlctl.core.state import STATE_FILE, StateStore
from mlctl.detect.alerting import Alerter
from mlctl.detect.spec import DetectSpec
from mlctl.detect.watch import Watcher, build_alerter, report_dict
from tests.support import detect as _  # noqa: F401  (registers test-jump)

T0 = 1_700_000_000.0
LABELS = {"__name__": "cpu", "host": "web-1"}


class FakePrometheus:
    """query_range over one in-memory series (one point per 60 s); can be switched off."""

    def __init__(self, values: list[float]) -> None:
        self.times = T0 + 60.0 * np.arange(len(values))
        self.values = np.asarray(values, dtype=float)
        self.down = False
        self.calls = 0

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        self.calls += 1
        if self.down:
            raise ServiceUnavailable("Prometheus is down")
        keep = (self.times >= start) & (self.times <= end)
        if not keep.any():
            return []
        return [Series(labels=dict(LABELS), timestamps=self.times[keep], values=self.values[keep])]


def _watcher(tmp_path: Path, prom: FakePrometheus, now: float | Any, sink: RecordingSink | None = None,
             **spec: Any) -> Watcher:  # fmt: skip
    spec = DetectSpec(**{"query": "cpu", "detector": "test-jump", "interval": "60s", "history": "1d", "name": "web",
                         **spec})  # fmt: skip
    alerter = None
    if sink is not None:
        alerter = Alerter([sink], StateStore(tmp_path / STATE_FILE), source="detect:web", resolve_after=2,
                          cooldown_s=0)  # fmt: skip
    clock = now if callable(now) else (lambda: now)
    w = Watcher(spec, prometheus_url="http://127.0.0.1:1", state_dir=tmp_path, alerter=alerter, clock=clock)
    w.client = prom  # type: ignore[assignment]
    return w


def _firing(sink: RecordingSink) -> list[str]:
    return [a.status for batch in sink.batches for a in batch]


def test_first_start_only_learns_from_history(tmp_path: Path) -> None:
    prom = FakePrometheus([1, 1, 30, 1, 1])  # a spike already in the history
    sink = RecordingSink()
    w = _watcher(tmp_path, prom, now=prom.times[-1], sink=sink)
    w.warm_up()
    w._flush()
    assert w.report.warmup_points == 5 and w.report.points == 0 and sink.batches == []
    assert w.series['cpu{host="web-1"}'].last_ts == prom.times[-1]


def test_restart_neither_re_alerts_nor_misses_points(tmp_path: Path) -> None:
    values = [1.0] * 10 + [30.0, 30.0] + [30.0] * 4
    prom = FakePrometheus(values)
    sink = RecordingSink()
    first = _watcher(tmp_path, prom, now=prom.times[9], sink=sink)
    first.warm_up()
    # the spike arrives on the next polls
    prom_points = [Series(labels=dict(LABELS), timestamps=prom.times[10:12], values=prom.values[10:12])]
    assert first.ingest(prom_points) == 2
    first._flush()
    first.save_checkpoint()
    assert _firing(sink) == ["firing"] and first.report.anomalies == 1  # 1 -> 30 jumps; 30 -> 30 does not

    # restart later: the spike (already alerted) is in the history, four new normal points came meanwhile
    second = _watcher(tmp_path, prom, now=prom.times[-1], sink=sink)
    second.alerter = Alerter([sink], StateStore(tmp_path / STATE_FILE), source="detect:web", resolve_after=2,
                             cooldown_s=0)  # fmt: skip
    second.warm_up()
    second._flush()
    assert second.report.points == 4 and second.report.warmup_points == 12  # 12 already seen, 4 fresh
    assert _firing(sink) == ["firing", "resolved"]  # no second firing; the fresh points resolved it


def test_changed_query_starts_afresh(tmp_path: Path) -> None:
    prom = FakePrometheus([1.0] * 5)
    w = _watcher(tmp_path, prom, now=prom.times[-1])
    w.warm_up()
    w.save_checkpoint()
    assert _watcher(tmp_path, prom, now=prom.times[-1])._checkpoint
    other = _watcher(tmp_path, prom, now=prom.times[-1], threshold=0.9)  # same query and detector: kept
    assert other._checkpoint
    changed = _watcher(tmp_path, prom, now=prom.times[-1], params={"scale": 5.0})
    assert changed._checkpoint == {}
    (tmp_path / "detect" / "watch-web.json").write_text("{not json")
    assert _watcher(tmp_path, prom, now=prom.times[-1])._checkpoint == {}


def test_run_survives_failed_polls_and_exports_metrics(tmp_path: Path) -> None:
    prom = FakePrometheus([1.0, 2.0, 3.0])
    ticks = iter(prom.times[-1] + 60.0 * np.arange(100))  # each reading of the clock is a minute later
    w = _watcher(tmp_path, prom, now=lambda: float(next(ticks)), interval="60s", metrics_port=0)
    w.spec = w.spec.model_copy(update={"interval": "10ms"})  # poll fast; the fake clock moves a minute a poll
    url = w.start_exporter()
    try:
        w.warm_up()
        prom.down = True
        report = w.run(iterations=3)
        assert report.poll_errors == 3 and report.iterations == 3 and report.stopped_by == "iterations"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        w.stop_exporter()
    assert 'mlctl_detect_anomaly_score{detector="test-jump",host="web-1",metric="cpu",watch="web"}' in text
    assert 'mlctl_detect_value{detector="test-jump",host="web-1",metric="cpu",watch="web"} 3.0' in text
    assert 'mlctl_detect_threshold{detector="test-jump",watch="web"} 0.5' in text
    assert 'mlctl_detect_poll_errors_total{detector="test-jump",watch="web"} 3.0' in text
    assert "mlctl_detect_last_poll_timestamp_seconds" in text
    assert report_dict(report)["watch"] == "web" and "events" not in report_dict(report)


def test_run_stops_on_duration_and_signal(tmp_path: Path) -> None:
    prom = FakePrometheus([1.0, 2.0])
    w = _watcher(tmp_path, prom, now=prom.times[-1], interval="10ms")
    assert w.run(duration_s=0.05).stopped_by == "duration"
    w.stop_event.set()
    assert w.run().stopped_by == "stopped"


def test_sigint_stops_the_loop_through_the_graceful_stop_and_maps_to_130(tmp_path: Path) -> None:
    import os
    import signal
    import threading

    from mlctl.core.graceful import exit_code_for_stop
    from mlctl.detect.watch import install_signal_handlers

    prom = FakePrometheus([1.0, 2.0])
    w = _watcher(tmp_path, prom, now=prom.times[-1], interval="10s")
    before = signal.getsignal(signal.SIGINT)
    stop = install_signal_handlers(w)
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        report = w.run(duration_s=60)  # the 10 s wait ends at the signal
    finally:
        stop.restore()
    assert report.stopped_by == "SIGINT" and exit_code_for_stop(report.stopped_by) == 130
    assert signal.getsignal(signal.SIGINT) == before


def test_exporter_port_in_use(tmp_path: Path) -> None:
    from mlctl.core.errors import OperationFailed

    prom = FakePrometheus([1.0])
    a = _watcher(tmp_path, prom, now=prom.times[-1], metrics_port=0)
    a.start_exporter()
    try:
        port = a._server.server_address[1]
        b = _watcher(tmp_path, prom, now=prom.times[-1], metrics_port=port)
        with pytest.raises(OperationFailed, match="cannot serve /metrics"):
            b.start_exporter()
    finally:
        a.stop_exporter()


def test_build_alerter_from_spec(tmp_path: Path) -> None:
    assert build_alerter(DetectSpec(query="up"), tmp_path) is None
    spec = DetectSpec(query="up", alertmanager="http://127.0.0.1:9093",
                      webhooks=["https://hooks.example/a", "slack+https://hooks.example/b"])  # fmt: skip
    alerter = build_alerter(spec, tmp_path)
    kinds = [(type(s).__name__, getattr(s, "style", None)) for s in alerter.sinks]
    assert kinds == [("AlertmanagerSink", None), ("WebhookSink", "json"), ("WebhookSink", "slack")]
    assert alerter.alertname == "MetricAnomaly" and alerter.source == "detect:default"


def test_any_metric_source_plugs_in(tmp_path: Path) -> None:
    """The seam for other transports: an object with history() and poll() replaces Prometheus."""

    class QueueSource:
        def __init__(self) -> None:
            self.pending = [[1.0, 1.0], [1.0, 40.0, 1.0]]

        def history(self, start: float, end: float) -> list[Series]:
            return []

        def poll(self, now: float) -> list[Series]:
            values = self.pending.pop(0) if self.pending else []
            t0 = 60.0 * (10 - len(self.pending) * 5)
            return [Series(labels={"host": "a"}, timestamps=t0 + 10.0 * np.arange(len(values)),
                           values=np.asarray(values))] if values else []  # fmt: skip

    spec = DetectSpec(query="from-a-queue", detector="test-jump", interval="10ms", name="q")
    w = Watcher(spec, prometheus_url="http://127.0.0.1:1", state_dir=tmp_path, source=QueueSource())
    report = w.run(iterations=3)
    assert report.points == 5 and report.anomalies == 2 and report.poll_errors == 0
