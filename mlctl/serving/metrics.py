"""Prometheus metrics of one model server app, in a registry of its own.

Every series carries ``model`` and ``version`` labels. Each app gets its own
:class:`prometheus_client.CollectorRegistry`, so several apps in one process (tests, an A/B
router) never clash over metric names.

=====================================  =========  ===========================================
metric                                 kind       labels (besides model, version)
=====================================  =========  ===========================================
mlctl_http_requests_total              counter    endpoint, status
mlctl_http_request_duration_seconds    histogram  endpoint
mlctl_predict_errors_total             counter    reason (invalid_json, invalid_input,
                                                  too_large, overloaded, predict_failed,
                                                  not_ready, method_not_allowed)
mlctl_predict_rows_total               counter
mlctl_batch_size_rows                  histogram
mlctl_batch_duration_seconds           histogram
mlctl_queue_depth_rows                 gauge
mlctl_batches_in_flight                gauge
mlctl_model_info                       gauge      alias, sha256, flavor (value 1)
=====================================  =========  ===========================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Paths with their own ``endpoint`` label; anything else is counted as ``other``.
ENDPOINTS = ("/v1/predict", "/health", "/ready", "/metadata", "/metrics")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
ERROR_REASONS = ("invalid_json", "invalid_input", "too_large", "overloaded", "predict_failed", "not_ready",
                 "method_not_allowed")


class ServerMetrics:
    """The metrics of one app, with label children bound once (cheap to update per request)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: str, version: str, *, alias: str | None = None, sha256: str = "",
                 flavor: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        base = ("model", "version")
        self._labels = (model, version)
        self.requests = Counter("mlctl_http_requests_total", "HTTP requests by endpoint and status code",
                                (*base, "endpoint", "status"), registry=self.registry)
        self.latency = Histogram("mlctl_http_request_duration_seconds", "HTTP request latency",
                                 (*base, "endpoint"), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("mlctl_predict_errors_total", "Prediction requests that failed, by reason",
                              (*base, "reason"), registry=self.registry)
        self.rows = Counter("mlctl_predict_rows_total", "Rows predicted", base, registry=self.registry)
        self.batch_size = Histogram("mlctl_batch_size_rows", "Rows per model call (micro-batch size)", base,
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_duration = Histogram("mlctl_batch_duration_seconds", "Duration of one model call", base,
                                        buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("mlctl_queue_depth_rows", "Rows waiting for the model", base,
                                 registry=self.registry)
        self.in_flight = Gauge("mlctl_batches_in_flight", "Model calls running now", base,
                               registry=self.registry)
        info = Gauge("mlctl_model_info", "The served model (value 1)", (*base, "alias", "sha256", "flavor"),
                     registry=self.registry)
        info.labels(model, version, alias or "", sha256, flavor).set(1)
        # Bound children: label lookups once, not per request.
        self._latency = {e: self.latency.labels(model, version, e) for e in (*ENDPOINTS, "other")}
        self._errors = {r: self.errors.labels(model, version, r) for r in ERROR_REASONS}
        self._requests: dict[tuple[str, int], Any] = {}
        self._rows = self.rows.labels(model, version)
        self._batch_size = self.batch_size.labels(model, version)
        self._batch_duration = self.batch_duration.labels(model, version)
        for r in ERROR_REASONS:  # present from the start, at 0
            self._errors[r]
        self._requests_child("/v1/predict", 200)

    def _requests_child(self, endpoint: str, status: int) -> Any:
        key = (endpoint, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(*self._labels, endpoint, str(status))
        return child

    @staticmethod
    def endpoint(path: str) -> str:
        """The ``endpoint`` label of a request path."""
        return path if path in ENDPOINTS else "other"

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self._requests_child(endpoint, status).inc()
        self._latency[endpoint].observe(seconds)

    def observe_error(self, reason: str) -> None:
        self._errors[reason].inc()

    def observe_batch(self, rows: int, requests: int, seconds: float) -> None:
        """The micro-batcher's hook: one model call of ``rows`` rows from ``requests`` requests."""
        self._rows.inc(rows)
        self._batch_size.observe(rows)
        self._batch_duration.observe(seconds)

    def track_queue(self, depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        """Read the queue depth and batches in flight at scrape time."""
        self.queue_depth.labels(*self._labels).set_function(depth)
        self.in_flight.labels(*self._labels).set_function(in_flight)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric of this app."""
        return generate_latest(self.registry)
