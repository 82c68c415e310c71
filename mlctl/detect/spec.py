"""The ``detect:`` section of ``mlctl.yaml``: what to watch, how to score it, where alerts go.

:mod:`mlctl.sections` registers :class:`DetectSpec` as the ``detect`` section; keep this module
light (pydantic and mlctl.core only): it is imported whenever the configuration is loaded.

.. code-block:: yaml

    detect:
      prometheus: http://127.0.0.1:9090    # default: services.prometheus
      query: 'avg by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1m]))'
      interval: 15s                        # polling period of `mlctl detect watch`
      history: 6h                          # warm-up window read with query_range at start
      detector: context                    # see `mlctl detect detectors`
      threshold: null                      # default: the detector's own threshold
      alertmanager: http://127.0.0.1:9093  # optional
      webhooks: [https://hooks.example/alerts, slack+https://hooks.example/T000/B000]
      cooldown: 5m
      resolve_after: 3                     # normal points before an alert resolves
      metrics_port: 9108                   # the watch loop's /metrics for Prometheus to scrape
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlctl.core.durations import parse_duration
from mlctl.core.errors import UsageError

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class DetectSpec(BaseModel):
    """``detect:`` anomaly detection on server metrics."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field("default", description="name of this watch (its state and alert labels)")
    prometheus: str | None = Field(None, description="Prometheus URL (default: services.prometheus)")
    query: str | None = Field(None, description="PromQL query whose series are watched")
    interval: str = Field("15s", description="polling period of the watch loop")
    step: str | None = Field(None, description="query_range resolution (default: the interval)")
    history: str = Field("6h", description="history read at start to warm the detectors up")
    detector: str | None = Field(None, description="detector name (default: the built-in default, context)")
    params: dict[str, Any] = Field(default_factory=dict, description="detector parameters")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="score at which a point is anomalous")
    alertmanager: str | None = Field(None, description="Alertmanager URL to send alerts to")
    webhooks: list[str] = Field(default_factory=list, description="webhook URLs (slack+https://... for Slack)")
    severity: str = Field("warning", description="severity label of the alerts")
    labels: dict[str, str] = Field(default_factory=dict, description="extra labels on every alert")
    cooldown: str = Field("5m", description="quiet time after an alert resolves before the series may fire again")
    resolve_after: int = Field(3, ge=1, le=10_000, description="normal points in a row that resolve an alert")
    metrics_port: int = Field(9108, ge=0, le=65535, description="port of the watch loop's /metrics (0: any free)")
    metrics_host: str = Field("127.0.0.1", description="address the /metrics endpoint listens on")

    @field_validator("interval", "history", "cooldown")
    @classmethod
    def _duration(cls, v: str) -> str:
        try:
            parse_duration(v)
        except UsageError as exc:
            raise ValueError(exc.message) from None
        return v

    @field_validator("step")
    @classmethod
    def _step(cls, v: str | None) -> str | None:
        return None if v is None else cls._duration(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or not set(v) <= _NAME_CHARS:
            raise ValueError("use letters, digits, '_', '-' and '.' only")
        return v

    @field_validator("prometheus", "alertmanager")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return v

    @field_validator("webhooks")
    @classmethod
    def _webhooks(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("http://", "https://", "slack+http://", "slack+https://")):
                raise ValueError(f"{url!r} must be an http(s):// or slack+http(s):// URL")
        return v

    @property
    def interval_s(self) -> float:
        return parse_duration(self.interval)

    @property
    def step_s(self) -> float:
        return parse_duration(self.step) if self.step else self.interval_s

    @property
    def history_s(self) -> float:
        return parse_duration(self.history)

    @property
    def cooldown_s(self) -> float:
        return parse_duration(self.cooldown)


def with_overrides(spec: DetectSpec, **flags: Any) -> DetectSpec:
    """``spec`` with command-line values applied (``None`` means not given); bad values name the flag."""
    from pydantic import ValidationError

    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return spec
    try:
        return DetectSpec.model_validate({**spec.model_dump(), **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        raise UsageError(f"--{key.replace('_', '-')}: {err['msg']}", hint="see `mlctl detect watch --help`") from None
