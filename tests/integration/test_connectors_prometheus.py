"""PrometheusClient against a real Prometheus: a metric pushed to a real Pushgateway and scraped from it."""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlctl.connectors.prometheus import PrometheusClient, require_series
from mlctl.core.errors import NotFound, ServiceUnavailable, UsageError, exit_code_for
from mlctl.engines import Service, free_port, wait_until

JOB = "mlctl_it_push"
METRIC = "mlctl_it_queue_depth"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(method: str, url: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, method=method)
    with _OPENER.open(request, timeout=10) as resp:
        return int(resp.status)


@pytest.fixture(scope="module")
def scraped(prometheus: Service, pushgateway: Service) -> Iterator[PrometheusClient]:
    """Prometheus scraping the Pushgateway every second, with two series of ``METRIC`` pushed to it."""
    config = getattr(prometheus, "info", {}).get("config")
    if not config:
        pytest.skip("needs a Prometheus started by this test session (its config is rewritten)")
    path = Path(config)
    original = path.read_text()
    host_port = pushgateway.url.split("://", 1)[1].rstrip("/")
    path.write_text(
        original + f"  - job_name: {JOB}\n    honor_labels: true\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['{host_port}']\n"
    )
    body = f'{METRIC}{{queue="a"}} 42\n{METRIC}{{queue="b"}} NaN\n'.encode()
    assert _http("PUT", f"{pushgateway.url}/metrics/job/{JOB}", body) == 200
    assert _http("POST", f"{prometheus.url}/-/reload") == 200
    client = PrometheusClient(prometheus.url, timeout_s=5)
    try:
        wait_until(
            lambda: len(client.query(METRIC)) == 2,
            timeout=30,
            interval=0.25,
            what=f"Prometheus to scrape {METRIC} from the Pushgateway",
        )
        yield client
    finally:
        path.write_text(original)
        _http("POST", f"{prometheus.url}/-/reload")
        _http("DELETE", f"{pushgateway.url}/metrics/job/{JOB}")


def test_query_returns_the_pushed_values(scraped: PrometheusClient) -> None:
    result = {s.labels["queue"]: s for s in scraped.query(METRIC)}
    assert result["a"].values.tolist() == [42.0]
    assert math.isnan(result["b"].values[0])
    assert result["a"].labels["job"] == JOB and result["a"].name == METRIC
    assert abs(result["a"].timestamps[0] - time.time()) < 120


def test_query_range_and_chunking_against_the_server(scraped: PrometheusClient) -> None:
    query = f'{METRIC}{{queue="a"}}'

    def three_points() -> float | None:
        now = time.time()
        return now if len(scraped.query_range(query, now - 3, now, 1)[0]) >= 3 else None

    end = wait_until(three_points, timeout=30, interval=0.5, what="three seconds of samples")
    (series,) = scraped.query_range(query, end - 3, end, 1)
    assert np.all(series.values == 42.0) and np.all(np.diff(series.timestamps) == 1.0)
    # a range over the server's 11,000-point limit is fetched in chunks and stitched together
    (long,) = scraped.query_range(query, end - 3 * 3600, end, 0.5)
    assert len(long) >= 3 and np.all(np.diff(long.timestamps) > 0) and np.all(long.values == 42.0)
    assert long.timestamps[-1] == pytest.approx(series.timestamps[-1], abs=1.0)


def test_poll_yields_new_points_only(scraped: PrometheusClient) -> None:
    stamps: list[float] = []
    for batch in scraped.poll(f'{METRIC}{{queue="a"}}', 0.5, since=time.time() - 2, step=0.5, max_iterations=4):
        for s in batch:
            assert np.all(s.values == 42.0)
            stamps.extend(s.timestamps.tolist())
    assert len(stamps) >= 4 and len(set(stamps)) == len(stamps) and stamps == sorted(stamps)


def test_bad_promql_is_a_usage_error(prometheus: Service) -> None:
    with pytest.raises(UsageError) as info:
        PrometheusClient(prometheus.url).query_range("sum(rate(up[1m]", time.time() - 60, time.time(), 15)
    assert "sum(rate(up[1m]" in info.value.message and "bad_data" in info.value.message
    assert exit_code_for(info.value) == 2


def test_no_series_is_empty(prometheus: Service) -> None:
    client = PrometheusClient(prometheus.url)
    assert client.query_range("mlctl_no_such_metric_xyz", time.time() - 60, time.time(), 15) == []
    with pytest.raises(NotFound, match="no series"):
        require_series(client.query("mlctl_no_such_metric_xyz"), "mlctl_no_such_metric_xyz")


def test_prometheus_self_scrape_series(prometheus: Service) -> None:
    (up,) = PrometheusClient(prometheus.url).query('up{job="prometheus"}')
    assert up.values.tolist() == [1.0]


def test_unreachable_is_exit_4() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable) as info:
        PrometheusClient(url, timeout_s=2).query("up")
    assert exit_code_for(info.value) == 4 and url in (info.value.hint or "")
