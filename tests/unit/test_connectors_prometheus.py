"""PrometheusClient against an in-process fake of the Prometheus HTTP API on loopback.

The fake computes each series from a function of time, answers on the step grid like Prometheus,
and refuses range queries over 11,000 points per series as Prometheus does.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from mlctl.connectors.prometheus import (
    MAX_POINTS_PER_SERIES,
    Poller,
    PrometheusClient,
    Series,
    merge_series,
    parse_duration,
    require_series,
)
from mlctl.core.errors import ConfigError, NotFound, ServiceUnavailable, UsageError, exit_code_for
from mlctl.core.proc import free_port


def _fmt_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


@dataclass
class FakeProm:
    """State of the fake server: the series it serves and every request it got."""

    series: list[tuple[dict[str, str], Callable[[float], float | None]]] = field(default_factory=list)
    fail: tuple[int, str, str] | None = None  # (HTTP status, content type, body) to answer instead
    delay_s: float = 0.0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, str, str]:
        self.requests.append((path, params))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail is not None:
            return self.fail
        query = params.get("query", "")
        if query.startswith("bad("):
            body = {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "("'}
            return 400, "application/json", json.dumps(body)
        if query == "scalar":
            return 200, "application/json", _ok({"resultType": "scalar", "result": [float(params["time"]), "4.5"]})
        if path == "/api/v1/query":
            t = float(params.get("time", time.time()))
            result = [
                {"metric": labels, "value": [t, _fmt_value(v)]}
                for labels, fn in self.series
                if (v := fn(t)) is not None
            ]
            return 200, "application/json", _ok({"resultType": "vector", "result": result})
        if path == "/api/v1/query_range":
            start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
            n = int(math.floor((end - start) / step + 1e-9)) + 1
            if n > MAX_POINTS_PER_SERIES:
                body = {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": "exceeded maximum resolution of 11,000 points per timeseries",
                }
                return 400, "application/json", json.dumps(body)
            result = []
            for labels, fn in self.series:
                values = []
                for k in range(n):
                    t = round(start + k * step, 3)
                    v = fn(t)
                    if v is not None:
                        values.append([t, _fmt_value(v)])
                if values:
                    result.append({"metric": labels, "values": values})
            return 200, "application/json", _ok({"resultType": "matrix", "result": result})
        return 404, "text/plain", "404 page not found"

    def range_requests(self) -> list[dict[str, str]]:
        return [p for path, p in self.requests if path == "/api/v1/query_range"]


def _ok(data: dict[str, Any]) -> str:
    return json.dumps({"status": "success", "data": data})


@pytest.fixture
def fake() -> Iterator[FakeProm]:
    state = FakeProm()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", 0))
            params = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            status, ctype, body = state.answer(self.path, params)
            raw = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def linear(t: float) -> float:
    return t / 10.0


def test_parse_duration() -> None:
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("15s") == 15.0
    assert parse_duration("0.5") == 0.5
    for bad in ("", "5x", "-3", "1m5", 0):
        with pytest.raises(UsageError):
            parse_duration(bad)


def test_query_range_values_and_special_floats(fake: FakeProm) -> None:
    special = {100.0: math.nan, 110.0: math.inf, 120.0: -math.inf}
    fake.series = [
        ({"__name__": "cpu", "host": "a"}, linear),
        ({"__name__": "cpu", "host": "b"}, lambda t: special.get(t, 1.0)),
    ]
    result = PrometheusClient(fake.url).query_range("cpu", 100, 150, 10)
    by_host = {s.labels["host"]: s for s in result}
    a, b = by_host["a"], by_host["b"]
    assert a.timestamps.tolist() == [100.0, 110.0, 120.0, 130.0, 140.0, 150.0]
    assert a.values.tolist() == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    assert a.values.dtype == np.float64 and a.name == "cpu" and len(a) == 6
    assert math.isnan(b.values[0]) and b.values[1] == math.inf and b.values[2] == -math.inf
    assert a.key == 'cpu{host="a"}'
    (req,) = fake.range_requests()
    assert req["query"] == "cpu" and req["step"] == "10.0" and req["start"] == "100.000"


def test_long_range_is_split_under_the_point_limit(fake: FakeProm) -> None:
    fake.series = [({"__name__": "m"}, linear)]
    start, step, n = 1_000_000.0, 1.0, 25_001
    (series,) = PrometheusClient(fake.url).query_range("m", start, start + (n - 1) * step, step)
    requests = fake.range_requests()
    assert len(requests) == 3  # 10,000 + 10,000 + 5,001
    for req in requests:
        points = (float(req["end"]) - float(req["start"])) / float(req["step"]) + 1
        assert points <= MAX_POINTS_PER_SERIES
    assert len(series) == n
    assert np.all(np.diff(series.timestamps) == step)  # stitched, no duplicates, no holes
    np.testing.assert_allclose(series.values, series.timestamps / 10.0)


def test_chunked_series_appearing_in_one_chunk_only(fake: FakeProm) -> None:
    fake.series = [
        ({"__name__": "m", "i": "early"}, lambda t: 1.0 if t < 50 else None),
        ({"__name__": "m", "i": "late"}, lambda t: 2.0 if t >= 50 else None),
    ]
    result = PrometheusClient(fake.url).query_range("m", 0, 99, 1, max_points=30)
    assert len(fake.range_requests()) == 4
    by = {s.labels["i"]: s for s in result}
    assert by["early"].timestamps.tolist() == list(range(50))
    assert by["late"].timestamps.tolist() == list(range(50, 100))


def test_query_instant_with_datetime_and_scalar(fake: FakeProm) -> None:
    fake.series = [({"__name__": "up", "job": "x"}, lambda t: 1.0)]
    when = datetime(2024, 1, 1, tzinfo=UTC)
    (s,) = PrometheusClient(fake.url).query("up", when)
    assert s.timestamps.tolist() == [when.timestamp()] and s.values.tolist() == [1.0]
    (scalar,) = PrometheusClient(fake.url).query("scalar", 12.0)
    assert scalar.labels == {} and scalar.values.tolist() == [4.5]
    with pytest.raises(UsageError, match="timezone"):
        PrometheusClient(fake.url).query("up", datetime(2024, 1, 1))


def test_no_series_is_empty_and_require_series_raises(fake: FakeProm) -> None:
    client = PrometheusClient(fake.url)
    assert client.query_range("absent_metric", 0, 10, 1) == []
    assert client.query("absent_metric") == []
    with pytest.raises(NotFound, match="absent_metric") as info:
        require_series(client.query("absent_metric"), "absent_metric")
    assert "label matchers" in (info.value.hint or "")
    fake.series = [({"__name__": "m"}, linear)]
    assert require_series(client.query("m", 1), "m")[0].values.tolist() == [0.1]


def test_bad_promql_is_a_usage_error(fake: FakeProm) -> None:
    with pytest.raises(UsageError) as info:
        PrometheusClient(fake.url).query_range("bad(", 0, 10, 1)
    assert "bad(" in info.value.message and "bad_data" in info.value.message
    assert "parse error" in info.value.message and exit_code_for(info.value) == 2


@pytest.mark.parametrize(
    ("fail", "error", "code"),
    [
        ((422, "application/json", '{"status":"error","errorType":"execution","error":"many-to-many"}'), UsageError, 2),
        (
            (503, "application/json", '{"status":"error","errorType":"timeout","error":"query timed out"}'),
            ServiceUnavailable,
            4,
        ),
        ((502, "text/html", "<html>bad gateway</html>"), ServiceUnavailable, 4),
        ((200, "text/html", "<html>a login page</html>"), ConfigError, 2),
        ((404, "text/plain", "404 page not found"), ConfigError, 2),
        ((401, "application/json", '{"status":"error","errorType":"unauthorized","error":"no"}'), ConfigError, 2),
    ],
)
def test_error_answers_map_to_typed_errors(fake: FakeProm, fail: tuple[int, str, str], error: type, code: int) -> None:
    fake.fail = fail
    with pytest.raises(error) as info:
        PrometheusClient(fake.url).query("up")
    assert exit_code_for(info.value) == code
    assert fake.url in info.value.message or "query" in info.value.message


def test_unreachable_is_service_unavailable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable) as info:
        PrometheusClient(url, timeout_s=2).query_range("up", 0, 10, 1)
    assert exit_code_for(info.value) == 4
    assert url in info.value.message and url in (info.value.hint or "")


def test_timeout_is_service_unavailable(fake: FakeProm) -> None:
    fake.delay_s = 1.0
    with pytest.raises(ServiceUnavailable, match="no answer within 0.2s"):
        PrometheusClient(fake.url, timeout_s=0.2).query("up")


def test_headers_are_sent_and_bad_urls_refused(fake: FakeProm) -> None:
    with pytest.raises(ConfigError):
        PrometheusClient("prometheus:9090")
    client = PrometheusClient(fake.url + "/", headers={"Authorization": "Bearer t"})
    assert client.url == fake.url
    with pytest.raises(UsageError, match="ends"):
        client.query_range("up", 10, 0, 1)


def test_poller_yields_each_point_once_and_covers_gaps(fake: FakeProm) -> None:
    fake.series = [({"__name__": "m", "s": "1"}, linear)]
    poller = Poller(PrometheusClient(fake.url), "m", step=10, since=1000)
    seen: list[float] = []
    for now in (1035, 1035, 1041, 1049, 1100, 1100.5, 1190):  # repeats, sub-step moves and a gap
        for s in poller.poll_once(now=now):
            assert s.labels == {"__name__": "m", "s": "1"}
            np.testing.assert_allclose(s.values, s.timestamps / 10.0)
            seen.extend(s.timestamps.tolist())
    assert seen == [float(t) for t in range(1010, 1191, 10)]  # every grid point after `since`, once


def test_poller_without_since_starts_now_and_bounds_lookback(fake: FakeProm) -> None:
    fake.series = [({"__name__": "m"}, linear)]
    poller = Poller(PrometheusClient(fake.url), "m", step=1, max_lookback_s=5)
    (first,) = poller.poll_once(now=500.2)
    assert first.timestamps.tolist() == [500.0]
    (after_gap,) = poller.poll_once(now=1000)
    assert after_gap.timestamps.tolist() == [995.0, 996.0, 997.0, 998.0, 999.0, 1000.0]


def test_poller_failure_loses_nothing(fake: FakeProm) -> None:
    fake.series = [({"__name__": "m"}, linear)]
    poller = Poller(PrometheusClient(fake.url), "m", step=1, since=0)
    assert poller.poll_once(now=3)[0].timestamps.tolist() == [1.0, 2.0, 3.0]
    fake.fail = (503, "text/plain", "down")
    with pytest.raises(ServiceUnavailable):
        poller.poll_once(now=5)
    fake.fail = None
    assert poller.poll_once(now=6)[0].timestamps.tolist() == [4.0, 5.0, 6.0]


def test_poll_iterates_until_max_iterations_or_stop(fake: FakeProm) -> None:
    fake.series = [({"__name__": "m"}, lambda t: 1.0)]
    client = PrometheusClient(fake.url)
    polls = list(client.poll("m", 0.01, since=time.time() - 5, step=1, max_iterations=3))
    assert len(polls) == 3
    stamps = [t for batch in polls for s in batch for t in s.timestamps.tolist()]
    assert len(stamps) >= 5 and len(stamps) == len(set(stamps)) and stamps == sorted(stamps)
    stop = threading.Event()
    count = 0
    for _ in client.poll("m", 0.01, stop=stop, max_iterations=1000):
        count += 1
        if count == 4:
            stop.set()
    assert count == 4


def test_merge_series_dedupes_overlap() -> None:
    a = Series({"x": "1"}, np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0]))
    b = Series({"x": "1"}, np.array([3.0, 4.0]), np.array([30.0, 40.0]))
    c = Series({"x": "2"}, np.array([1.0]), np.array([5.0]))
    merged = {s.labels["x"]: s for s in merge_series([[a, c], [b]])}
    assert merged["1"].timestamps.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert merged["1"].values.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert merged["2"].values.tolist() == [5.0]
