"""A small Prometheus HTTP API client: instant and range queries, and polling for new points.

HTTP through :mod:`mlctl.core.http` (no proxy for loopback); numpy holds the samples. Every failure is a typed error:

* the server cannot be reached, times out or answers 5xx: :class:`ServiceUnavailable` (exit 4),
  with a hint naming the URL;
* Prometheus rejects the query (HTTP 400/422 with ``{"status": "error", "errorType", "error"}``):
  :class:`UsageError` quoting the PromQL and Prometheus's message;
* the URL answers but is not a Prometheus API (404, HTML, wrong JSON): :class:`ConfigError`.

A query matching nothing returns ``[]``; :func:`require_series` turns that into :class:`NotFound`.
Range queries longer than Prometheus's 11,000-points-per-series limit are split into chunks and
stitched back together, so callers never see that limit.

>>> parse_duration("1m30s"), parse_duration(15), parse_duration("250ms")
(90.0, 15.0, 0.25)
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlctl.core import http
from mlctl.core.durations import parse_duration
from mlctl.core.errors import ConfigError, NotFound, ServiceUnavailable, UsageError, require

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "MAX_POINTS_PER_SERIES",
    "Poller",
    "PrometheusClient",
    "Series",
    "TimeLike",
    "parse_duration",
    "require_series",
]

#: Prometheus refuses range queries that would return more points than this per series.
MAX_POINTS_PER_SERIES = 11_000
#: Points asked for per chunk of a long range query (a margin under the server's limit).
CHUNK_POINTS = 10_000

TimeLike = float | int | datetime


def _np() -> Any:
    return require("numpy", "ml", feature="Prometheus series")


def _timestamp(value: TimeLike) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UsageError(f"datetime {value.isoformat()} has no timezone", hint="give it one, e.g. tzinfo=UTC")
        return value.timestamp()
    return float(value)


def _fmt(ts: float) -> str:
    """A timestamp as Prometheus wants it: seconds with millisecond precision, no float noise."""
    return f"{ts:.3f}"


@dataclass
class Series:
    """One time series: its labels, timestamps (float seconds since the epoch) and values (float64).

    ``NaN`` and ``±Inf`` samples are kept as the floats they are.
    """

    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(len(self.timestamps))

    @property
    def name(self) -> str:
        """The metric name (``__name__``), or ``""`` for computed series."""
        return self.labels.get("__name__", "")

    @property
    def key(self) -> str:
        """A stable text identity: ``name{a="1",b="2"}`` with labels sorted."""
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()) if k != "__name__")
        return f"{self.name}{{{inner}}}"


def _label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _series_from_pairs(labels: Mapping[str, str], pairs: Sequence[Sequence[Any]]) -> Series:
    np = _np()
    ts = np.fromiter((float(p[0]) for p in pairs), dtype=np.float64, count=len(pairs))
    vals = np.fromiter((float(p[1]) for p in pairs), dtype=np.float64, count=len(pairs))  # "NaN", "+Inf" parse
    return Series(labels=dict(labels), timestamps=ts, values=vals)


def _parse_result(data: Mapping[str, Any], promql: str) -> list[Series]:
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "matrix" and isinstance(result, list):
        return [_series_from_pairs(r.get("metric", {}), r.get("values", [])) for r in result]
    if kind == "vector" and isinstance(result, list):
        return [_series_from_pairs(r.get("metric", {}), [r["value"]] if "value" in r else []) for r in result]
    if kind == "scalar" and isinstance(result, list):
        return [_series_from_pairs({}, [result])]
    if kind == "string":
        raise UsageError(f"the query {promql!r} returns a string, not numbers")
    raise ConfigError(f"unexpected Prometheus result type {kind!r} for {promql!r}")


def require_series(result: list[Series], promql: str) -> list[Series]:
    """``result`` unchanged when it holds at least one series, else :class:`NotFound` with a hint."""
    if not result:
        raise NotFound(
            f"the query {promql!r} returned no series",
            hint="check the metric name and label matchers (try it in the Prometheus UI), and that the target "
            "is being scraped in this time range",
        )
    return result


def merge_series(parts: Sequence[Sequence[Series]]) -> list[Series]:
    """Join chunks of one query into one :class:`Series` per label set, time-ordered, duplicates removed."""
    np = _np()
    grouped: dict[tuple[tuple[str, str], ...], list[Series]] = {}
    for part in parts:
        for s in part:
            grouped.setdefault(_label_key(s.labels), []).append(s)
    out = []
    for pieces in grouped.values():
        if len(pieces) == 1:
            out.append(pieces[0])
            continue
        ts = np.concatenate([p.timestamps for p in pieces])
        vals = np.concatenate([p.values for p in pieces])
        ts, first = np.unique(ts, return_index=True)
        out.append(Series(labels=dict(pieces[0].labels), timestamps=ts, values=vals[first]))
    return out


class PrometheusClient:
    """The Prometheus HTTP API at ``url`` (``http://host:9090``, a path prefix is kept).

    >>> PrometheusClient("http://127.0.0.1:9090/").url
    'http://127.0.0.1:9090'
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0, headers: Mapping[str, str] | None = None) -> None:
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"invalid Prometheus URL {url!r}", hint="use http://host:9090")
        self.url = url.strip().rstrip("/")
        self.timeout_s = float(timeout_s)
        self.headers = dict(headers or {})

    # -- transport ----------------------------------------------------------------------------
    def _unavailable(self, why: str) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"Prometheus at {self.url} is unavailable: {why}",
            hint=f"check that Prometheus runs and answers at {self.url} (curl {self.url}/-/ready)",
        )

    def _api(self, path: str, params: Mapping[str, str], promql: str) -> Any:
        """POST a form to ``/api/v1/<path>`` and return the ``data`` of a success answer."""
        body = urllib.parse.urlencode(params).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json", **self.headers}
        try:  # sent once: a query that timed out on the server is not sent again (pollers retry later)
            resp = http.request("POST", f"{self.url}/api/v1/{path}", body=body, headers=headers,
                                timeout=self.timeout_s)
        except ServiceUnavailable as exc:  # refused, reset, timed out, cut short
            raise self._unavailable(exc.details.get("reason", exc.message)) from exc
        status, raw = resp.status, resp.body
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or "status" not in payload:
            if status >= 500:
                raise self._unavailable(f"HTTP {status}")
            raise ConfigError(
                f"{self.url} did not answer like a Prometheus API (HTTP {status})",
                hint="point it at the Prometheus server itself, e.g. http://host:9090",
            )
        if payload["status"] == "success" and status < 300:
            return payload.get("data", {})
        etype, message = payload.get("errorType", "error"), payload.get("error", f"HTTP {status}")
        if status in (400, 422) or etype in ("bad_data", "execution"):
            raise UsageError(
                f"Prometheus rejected the query {promql!r}: {etype}: {message}",
                hint="fix the PromQL expression (check it in the Prometheus UI)",
            )
        if status in (401, 403):
            raise ConfigError(
                f"Prometheus at {self.url} refused access (HTTP {status}): {message}",
                hint="pass credentials with headers={'Authorization': ...}",
            )
        if status >= 500 or etype in ("timeout", "canceled", "internal", "unavailable"):
            raise self._unavailable(f"{etype}: {message}")
        raise ConfigError(f"Prometheus at {self.url} answered HTTP {status}: {etype}: {message}")

    # -- queries ------------------------------------------------------------------------------
    def query(self, promql: str, time: TimeLike | None = None) -> list[Series]:
        """The instant query ``promql`` at ``time`` (default: now); one point per series."""
        params = {"query": promql}
        if time is not None:
            params["time"] = _fmt(_timestamp(time))
        return _parse_result(self._api("query", params, promql), promql)

    def query_range(
        self, promql: str, start: TimeLike, end: TimeLike, step: float | str, *, max_points: int = CHUNK_POINTS
    ) -> list[Series]:
        """``promql`` evaluated at ``start, start + step, ... <= end``; long ranges are fetched in chunks."""
        t0, t1, dt = _timestamp(start), _timestamp(end), parse_duration(step)
        if t1 < t0:
            raise UsageError(f"the range ends ({_fmt(t1)}) before it starts ({_fmt(t0)})")
        max_points = max(1, min(int(max_points), MAX_POINTS_PER_SERIES))
        parts = []
        for c0, c1 in _chunks(t0, t1, dt, max_points):
            params = {"query": promql, "start": _fmt(c0), "end": _fmt(c1), "step": repr(dt)}
            parts.append(_parse_result(self._api("query_range", params, promql), promql))
        return parts[0] if len(parts) == 1 else merge_series(parts)

    def poll(
        self,
        promql: str,
        interval_s: float,
        since: TimeLike | None = None,
        *,
        step: float | str | None = None,
        stop: threading.Event | None = None,
        max_iterations: int | None = None,
        max_lookback_s: float = 3600.0,
    ) -> Iterator[list[Series]]:
        """Yield, every ``interval_s``, the points of ``promql`` that are new since the last yield.

        See :class:`Poller`; stops when ``stop`` is set or after ``max_iterations`` yields.
        """
        poller = Poller(
            self, promql, step=step if step is not None else interval_s, since=since, max_lookback_s=max_lookback_s
        )
        yield from poller.iterate(interval_s, stop=stop, max_iterations=max_iterations)


def _chunks(t0: float, t1: float, step: float, max_points: int) -> list[tuple[float, float]]:
    """Split ``[t0, t1]`` on the step grid into ranges of at most ``max_points`` evaluations each."""
    total = int(math.floor((t1 - t0) / step + 1e-9)) + 1
    out = []
    for first in range(0, total, max_points):
        last = min(first + max_points, total) - 1
        out.append((t0 + first * step, t0 + last * step))
    return out


@dataclass
class Poller:
    """Incremental reads of one query: each :meth:`poll_once` returns only points not returned before.

    Points lie on a fixed grid (multiples of ``step``), so a point is never returned twice even when
    polls overlap; a poll that comes late (the loop was busy, Prometheus was down) covers the whole
    gap, back to at most ``max_lookback_s``. A failed poll raises and changes nothing: the next one
    picks up where the last success stopped.
    """

    client: PrometheusClient
    promql: str
    step: float | str = 15.0
    since: TimeLike | None = None
    max_lookback_s: float = 3600.0
    _next: float | None = field(default=None, init=False, repr=False)
    _last: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.step = parse_duration(self.step)
        if self.since is not None:
            self._next = self._grid(_timestamp(self.since)) + self.step

    def _grid(self, ts: float) -> float:
        step = float(self.step)
        return math.floor(ts / step + 1e-9) * step

    def poll_once(self, now: float | None = None) -> list[Series]:
        """The series with points in ``(last poll, now]`` (only the new points; empty series left out)."""
        np = _np()
        step = float(self.step)
        end = self._grid(time.time() if now is None else now)
        start = end if self._next is None else max(self._next, self._grid(end - self.max_lookback_s))
        if start > end:
            return []
        result = self.client.query_range(self.promql, start, end, step)
        fresh = []
        for s in result:
            key = _label_key(s.labels)
            keep = s.timestamps > self._last.get(key, -math.inf)
            if np.any(keep):
                fresh.append(Series(labels=s.labels, timestamps=s.timestamps[keep], values=s.values[keep]))
                self._last[key] = float(s.timestamps[keep][-1])
        self._next = end + step
        return fresh

    def iterate(
        self, interval_s: float, *, stop: threading.Event | None = None, max_iterations: int | None = None
    ) -> Iterator[list[Series]]:
        """Poll every ``interval_s`` seconds, yielding each poll's new points (possibly ``[]``)."""
        interval = parse_duration(interval_s)
        done = 0
        while not (stop is not None and stop.is_set()):
            if max_iterations is not None and done >= max_iterations:
                return
            began = time.monotonic()
            yield self.poll_once()
            done += 1
            if max_iterations is not None and done >= max_iterations:
                return
            wait = max(0.0, interval - (time.monotonic() - began))
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
