"""The Alerter delivering to a real Alertmanager: fire, resolve, Alertmanager down and back, restarts."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlctl.connectors.alerts import AlertmanagerSink, RecordingSink
from mlctl.core.errors import ServiceUnavailable
from mlctl.core.state import StateStore
from mlctl.detect.alerting import Alerter
from mlctl.engines import LocalService, Service, free_port, start_engine, wait_until

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def am_alerts(url: str, run: str) -> list[dict[str, Any]]:
    """The alerts Alertmanager lists for this test run (GET /api/v2/alerts, filtered by the run label)."""
    query = urllib.parse.urlencode({"filter": f'run="{run}"'})
    with _OPENER.open(f"{url}/api/v2/alerts?{query}", timeout=10) as resp:
        data: list[dict[str, Any]] = json.loads(resp.read())
    return data


def by_series(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["labels"]["series"]: a for a in alerts}


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state.db")
    yield s
    s.close()


def make_alerter(url: str, store: StateStore, run: str, **kwargs: Any) -> Alerter:
    settings: dict[str, Any] = {"resolve_after": 2, "cooldown_s": 0, "backoff_s": 0.1, "backoff_max_s": 0.5}
    return Alerter([AlertmanagerSink(url, timeout_s=3)], store, labels={"run": run}, **(settings | kwargs))


def test_fire_and_resolve_visible_in_alertmanager(alertmanager: Service, store: StateStore, run_id: str) -> None:
    alerter = make_alerter(alertmanager.url, store, run_id, annotations={"runbook_url": "http://runbooks/cpu"})
    now = time.time()
    (fired,) = alerter.observe("cpu", {"__name__": "node_cpu", "host": "web-1"}, now - 20, 97.0, 0.99, True)
    assert alerter.observe("cpu", {"host": "web-1"}, now - 10, 98.0, 0.99, True) == []  # deduplicated
    assert alerter.flush().ok
    listed = wait_until(
        lambda: am_alerts(alertmanager.url, run_id), timeout=15, interval=0.2, what="the alert in Alertmanager"
    )
    (alert,) = listed
    assert alert["labels"] == fired.labels
    assert alert["labels"]["host"] == "web-1" and alert["labels"]["alertname"] == "AnomalyDetected"
    assert alert["labels"]["metric"] == "node_cpu"
    assert alert["annotations"]["runbook_url"] == "http://runbooks/cpu"
    assert alert["annotations"]["value"] == "97" and "cpu" in alert["annotations"]["summary"]
    assert alert["status"]["state"] in ("active", "unprocessed")

    out = []
    for i in range(2):
        out += alerter.observe("cpu", {"host": "web-1"}, now - 5 + i, 20.0, 0.1, False)
    assert [a.status for a in out] == ["resolved"]
    assert alerter.flush().ok
    wait_until(
        lambda: not am_alerts(alertmanager.url, run_id),
        timeout=15,
        interval=0.2,
        what="the resolved alert to leave the active list",
    )


def test_restart_from_the_same_store_does_not_refire(alertmanager: Service, tmp_path: Path, run_id: str) -> None:
    path = tmp_path / "state.db"
    now = time.time()
    first = make_alerter(alertmanager.url, StateStore(path), run_id)
    assert len(first.observe("disk", {}, now - 30, 1.0, 0.9, True)) == 1
    assert first.flush().sent == 1
    first.store.close()

    second = make_alerter(alertmanager.url, StateStore(path), run_id)
    assert [a.key for a in second.active] == ["disk"]
    assert second.observe("disk", {}, now - 20, 1.0, 0.9, True) == []
    report = second.flush()
    assert report.sent == 0 and report.ok  # nothing new to say
    (alert,) = wait_until(lambda: am_alerts(alertmanager.url, run_id), timeout=15, interval=0.2, what="the alert")
    assert alert["labels"]["series"] == "disk"
    resolved = second.observe("disk", {}, now - 10, 0.0, 0.0, False) + second.observe("disk", {}, now - 5, 0, 0, False)
    assert [a.status for a in resolved] == ["resolved"] and second.flush().sent == 1
    wait_until(lambda: not am_alerts(alertmanager.url, run_id), timeout=15, interval=0.2, what="resolution")
    second.store.close()


@pytest.fixture
def own_alertmanager(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An Alertmanager of this test's own, which the test stops and starts again on the same port."""
    holder: dict[str, Any] = {"port": free_port(), "workdir": tmp_path / "am", "svc": None}

    def start() -> LocalService:
        svc = start_engine("alertmanager", holder["workdir"], holder["port"])
        holder["svc"] = svc
        return svc

    holder["start"] = start
    start()
    try:
        yield holder
    finally:
        if holder["svc"] is not None:
            holder["svc"].stop()


def test_alertmanager_down_queues_and_delivers_when_back(
    own_alertmanager: dict[str, Any], store: StateStore, run_id: str
) -> None:
    url = own_alertmanager["svc"].url
    local = RecordingSink(name="local")
    alerter = Alerter(
        [AlertmanagerSink(url, timeout_s=3), local],
        store,
        labels={"run": run_id},
        resolve_after=2,
        cooldown_s=0,
        backoff_s=0.1,
        backoff_max_s=0.5,
        resend_s=1.0,
    )
    now = time.time()
    alerter.observe("before", {}, now - 60, 5.0, 0.9, True)
    assert alerter.flush().ok
    wait_until(lambda: am_alerts(url, run_id), timeout=15, interval=0.2, what="the first alert")

    own_alertmanager["svc"].stop()
    own_alertmanager["svc"] = None
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        AlertmanagerSink(url, timeout_s=3).send([alerter.active[0].alert])
    (fired,) = alerter.observe("during", {}, now - 30, 6.0, 0.95, True)
    report = alerter.flush()
    assert report.pending >= 1 and any(name.startswith("alertmanager:") for name in report.errors)
    assert "unreachable" in next(iter(report.errors.values()))
    assert [a.labels["series"] for a in local.sent] == ["before", "during"]  # other sinks keep flowing
    for _ in range(5):  # the loop keeps going while Alertmanager is away; the queue only grows
        alerter.flush()
    pending = alerter.outbox(status="pending")
    assert {r["payload"]["labels"]["series"] for r in pending} >= {"during"}
    assert all(r["sink"].startswith("alertmanager:") for r in pending)

    own_alertmanager["start"]()  # same port, empty memory: it forgot "before"

    def delivered() -> bool:
        alerter.flush()
        return set(by_series(am_alerts(url, run_id))) == {"before", "during"}

    wait_until(delivered, timeout=30, interval=0.3, what="the queued alert and the re-sent one in Alertmanager")
    listed = by_series(am_alerts(url, run_id))
    assert listed["during"]["labels"] == fired.labels
    assert alerter.flush(force=True).pending == 0
