"""Prometheus alerting rules and a Grafana dashboard for the model gateway (``mlctl serve rules`` and
``mlctl serve dashboard``), on the metrics its ``/metrics`` serves.

The gateway's own metrics (:mod:`mlctl.serving.gateway`): requests by model, version, variant and
status, latency by model and variant, experiment assignments, sticky fallbacks, shadow outcomes,
feedback, the experiment store's health and alias moves. Its ``/metrics`` also holds every loaded
version's model-server metrics (:mod:`mlctl.serving.metrics`, labels ``model`` and ``version``):
micro-batch sizes, queue depth and prediction errors. Requests not under an experiment carry the
variant ``-``.

Nothing here imports ``prometheus_client``: the names are the strings the gateway registers, and a
unit test checks every query against the registered ones.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlctl.core.errors import UsageError
from mlctl.core.observability import (
    DATASOURCE,
    AlertingRules,
    Dashboard,
    alert_rule,
    dashboard_result,
    grafana_dashboard,
    panel,
    prometheus_duration,
    rule_group,
    rules_result,
)

# The gateway's metrics (mlctl.serving.gateway._GatewayMetrics).
REQUESTS = "mlctl_gateway_requests_total"
LATENCY_BUCKET = "mlctl_gateway_request_duration_seconds_bucket"
ASSIGNMENTS = "mlctl_gateway_assignments_total"
FALLBACKS = "mlctl_gateway_sticky_fallbacks_total"
SHADOW = "mlctl_gateway_shadow_requests_total"
FEEDBACK = "mlctl_gateway_feedback_total"
STATE_UP = "mlctl_gateway_state_up"
STATE_ERRORS = "mlctl_gateway_state_errors_total"
ALIAS_MOVES = "mlctl_gateway_alias_moves_total"
# Each loaded version's model-server metrics (mlctl.serving.metrics.ServerMetrics).
BATCH_SIZE_BUCKET = "mlctl_batch_size_rows_bucket"
QUEUE_DEPTH = "mlctl_queue_depth_rows"
PREDICT_ERRORS = "mlctl_predict_errors_total"

DEFAULT_JOB = "mlctl-gateway"
DEFAULT_TARGET = "127.0.0.1:8000"
GROUP = "mlctl-gateway"
#: the alerts, in the order of the rules file
ALERTS = ("MlctlGatewayHighErrorRate", "MlctlGatewayHighLatency", "MlctlGatewayStoreDown",
          "MlctlGatewayAliasMoveRejected", "MlctlGatewayShadowDisagreement", "MlctlGatewayDown")
_JOB = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
_TARGET = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")


def _check_job(job: str) -> str:
    if not _JOB.match(job):
        raise UsageError(f"--job: {job!r} is not a job name (letters, digits, '_', '.', ':', '-'; at most 128)",
                         hint="name it as the scrape config's job_name, such as mlctl-gateway")
    return job


def _check_ratio(value: float, what: str) -> float:
    if not 0 < value <= 1:
        raise UsageError(f"{what}: expected a ratio in (0, 1], got {value:g}")
    return value


def rules_text(*, error_rate: float = 0.05, p99_ms: float = 250.0, for_: str = "5m", job: str = DEFAULT_JOB,
               shadow_disagreement: float = 0.2) -> str:
    """The gateway's alerting rules as YAML text (group ``mlctl-gateway``), one rule per name in
    :data:`ALERTS`; ``for_`` holds the error-rate, latency and shadow rules that long."""
    _check_job(job)
    prometheus_duration(for_, what="--for")
    _check_ratio(error_rate, "--error-rate")
    _check_ratio(shadow_disagreement, "--shadow-disagreement")
    if not p99_ms > 0:
        raise UsageError(f"--p99-ms: expected a positive number of milliseconds, got {p99_ms:g}")
    sel = f'job="{job}"'
    where = "{{ $labels.model }} variant {{ $labels.variant }}"
    moves = f'{ALIAS_MOVES}{{{sel}, outcome=~"refused|failed"}}'
    rules = [
        alert_rule(
            "MlctlGatewayHighErrorRate",
            f'sum by (model, variant) (rate({REQUESTS}{{{sel}, status=~"5.."}}[5m]))\n'
            f"  / sum by (model, variant) (rate({REQUESTS}{{{sel}}}[5m]))\n"
            f"  > {error_rate:g}",
            for_=for_, labels={"severity": "critical"},
            annotations={
                "summary": f"{where}: {{{{ $value | humanizePercentage }}}} of requests fail with 5xx",
                "description": f"More than {error_rate * 100:g}% of the gateway's requests to {where} answered 5xx "
                               f"over 5m (job {job}).",
            },
        ),
        alert_rule(
            "MlctlGatewayHighLatency",
            "histogram_quantile(0.99,\n"
            f"  sum by (model, variant, le) (rate({LATENCY_BUCKET}{{{sel}}}[5m])))\n"
            f"  > {p99_ms / 1000:g}",
            for_=for_, labels={"severity": "warning"},
            annotations={
                "summary": f"{where}: p99 latency {{{{ $value | humanizeDuration }}}}",
                "description": f"The 99th percentile of the gateway's latency for {where} is over {p99_ms:g} ms "
                               f"over 5m (job {job}).",
            },
        ),
        alert_rule(
            "MlctlGatewayStoreDown",
            f"{STATE_UP}{{{sel}}} == 0",
            for_="1m", labels={"severity": "warning"},
            annotations={
                "summary": "{{ $labels.instance }}: the experiment store is unreachable",
                "description": "The gateway keeps serving with the experiments it last read and counts "
                               "assignments in memory; feedback gets 503 until the store is back.",
            },
        ),
        alert_rule(
            "MlctlGatewayAliasMoveRejected",
            "sum by (model, alias, outcome) (\n"
            f"  increase({moves}[10m]) > 0\n"
            f"  or ({moves} unless {moves} offset 10m)\n"
            ") > 0",
            for_="0s", labels={"severity": "warning"},
            annotations={
                "summary": "{{ $labels.model }}@{{ $labels.alias }}: an alias move was {{ $labels.outcome }}",
                "description": "The registry moved {{ $labels.model }}@{{ $labels.alias }} in the last 10m and "
                               "the gateway did not follow (refused: another input signature; failed: the "
                               "version could not be loaded). The previous version keeps serving.",
            },
        ),
        alert_rule(
            "MlctlGatewayShadowDisagreement",
            f'sum by (model, experiment, target) (rate({SHADOW}{{{sel}, outcome="disagree"}}[15m]))\n'
            f'  / sum by (model, experiment, target) (rate({SHADOW}{{{sel}, outcome=~"agree|disagree"}}[15m]))\n'
            f"  > {shadow_disagreement:g}",
            for_=for_, labels={"severity": "info"},
            annotations={
                "summary": "{{ $labels.model }} shadow variant {{ $labels.target }} disagrees on "
                           "{{ $value | humanizePercentage }} of requests",
                "description": "In experiment {{ $labels.experiment }}, the shadow variant {{ $labels.target }} "
                               f"of {{{{ $labels.model }}}} answered differently on more than "
                               f"{shadow_disagreement * 100:g}% of the copies it got over 15m.",
            },
        ),
        alert_rule(
            "MlctlGatewayDown",
            f"up{{{sel}}} == 0",
            for_="1m", labels={"severity": "critical"},
            annotations={
                "summary": "{{ $labels.instance }}: the model gateway's /metrics is down",
                "description": f"Prometheus cannot scrape the gateway (job {job}): every model it serves is "
                               "probably unreachable.",
            },
        ),
    ]
    header = ("Alerting rules on the mlctl model gateway's metrics. Load with rule_files: in prometheus.yml;",
              f"check with: promtool check rules FILE. Generated by mlctl serve rules for job {job!r}.")
    return rule_group(GROUP, rules, header=header)


def scrape_config(*, job: str = DEFAULT_JOB, target: str = DEFAULT_TARGET) -> str:
    """The prometheus.yml ``scrape_configs`` entry for the gateway's ``/metrics``."""
    _check_job(job)
    if not _TARGET.match(target):
        raise UsageError(f"--target: expected HOST:PORT, got {target!r}")
    return (
        f"  - job_name: {job}\n"
        "    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )


def gateway_rules(*, error_rate: float = 0.05, p99_ms: float = 250.0, for_: str = "5m", job: str = DEFAULT_JOB,
                  shadow_disagreement: float = 0.2, target: str = DEFAULT_TARGET,
                  out: Path | None = None) -> AlertingRules:
    """Prometheus alerting rules for the gateway (see :func:`rules_text`) with the scrape config
    for ``target``; with ``out`` they are written there and the scrape config to add is told on
    stderr."""
    return rules_result(rules_text(error_rate=error_rate, p99_ms=p99_ms, for_=for_, job=job,
                                   shadow_disagreement=shadow_disagreement),
                        scrape_config(job=job, target=target), out)


def _percent(*, max_: float | None = 1) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": "percentunit", "min": 0}
    if max_ is not None:
        defaults["max"] = max_
    return {"defaults": defaults, "overrides": []}


def _unit(unit: str) -> dict[str, Any]:
    return {"defaults": {"unit": unit, "min": 0}, "overrides": []}


def dashboard(*, title: str | None = None, job: str = DEFAULT_JOB) -> dict[str, Any]:
    """A Grafana dashboard (JSON model with ``__inputs``) for the gateway scraped as ``job``, with a
    ``model`` variable (every model by default) and alias moves as annotations."""
    _check_job(job)
    sel = f'job="{job}", model=~"$model"'
    win = "[$__rate_interval]"
    req = f"{REQUESTS}{{{sel}}}"
    lat = f"sum by (model, variant, le) (rate({LATENCY_BUCKET}{{{sel}}}{win}))"
    assigned = f"rate({ASSIGNMENTS}{{{sel}}}{win})"
    shadow = f"rate({SHADOW}{{{sel}}}{win})"
    panels = [
        panel(1, "Requests/s by model and variant", [
            {"expr": f"sum by (model, variant) (rate({req}{win}))", "legendFormat": "{{model}} {{variant}}"}],
            0, w=12, field_config=_unit("reqps")),
        panel(2, "5xx ratio by model and variant", [
            {"expr": f'sum by (model, variant) (rate({REQUESTS}{{{sel}, status=~"5.."}}{win}))\n'
                     f"  / sum by (model, variant) (rate({req}{win}))", "legendFormat": "{{model}} {{variant}}"}],
            0, w=12, x=12, field_config=_percent()),
        panel(3, "Latency p50 / p99 by variant", [
            {"expr": f"histogram_quantile(0.5, {lat})", "legendFormat": "p50 {{model}} {{variant}}"},
            {"expr": f"histogram_quantile(0.99, {lat})", "legendFormat": "p99 {{model}} {{variant}}"}],
            8, w=12, field_config=_unit("s")),
        panel(4, "Traffic share by variant", [
            {"expr": f"sum by (model, experiment, variant) ({assigned})\n"
                     f"  / ignoring(variant) group_left sum by (model, experiment) ({assigned})",
             "legendFormat": "{{model}} {{experiment}} {{variant}}"}],
            8, w=12, x=12, field_config=_percent()),
        panel(5, "Shadow agreement ratio", [
            {"expr": f'sum by (model, experiment, target) (rate({SHADOW}{{{sel}, outcome="agree"}}{win}))\n'
                     f"  / sum by (model, experiment, target) ({shadow})",
             "legendFormat": "{{model}} {{experiment}} {{target}}"}],
            16, w=12, field_config=_percent()),
        panel(6, "Feedback/s by status", [
            {"expr": f'sum by (status) (rate({FEEDBACK}{{job="{job}"}}{win}))', "legendFormat": "{{status}}"}],
            16, w=12, x=12, field_config=_unit("reqps")),
        panel(7, "Experiment store up", [{"expr": f'min({STATE_UP}{{job="{job}"}})'}], 24, kind="stat", w=6, h=4,
              field_config={"defaults": {"mappings": [{"type": "value", "options": {
                  "0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}}}]},
                  "overrides": []}),
        panel(8, "Store errors (1h)", [{"expr": f'sum(increase({STATE_ERRORS}{{job="{job}"}}[1h]))'}], 24,
              kind="stat", w=6, h=4, x=6),
        panel(9, "Alias moves (24h)", [{"expr": f"sum by (outcome) (increase({ALIAS_MOVES}{{{sel}}}[24h]))",
                                        "legendFormat": "{{outcome}}"}], 24, kind="stat", w=6, h=4, x=12),
        panel(10, "Sticky fallbacks/s", [{"expr": f'sum(rate({FALLBACKS}{{job="{job}"}}{win}))'}], 24,
              kind="stat", w=6, h=4, x=18),
        panel(11, "Batch size p50 by model and version", [
            {"expr": f"histogram_quantile(0.5, sum by (model, version, le) "
                     f"(rate({BATCH_SIZE_BUCKET}{{{sel}}}{win})))", "legendFormat": "{{model}} v{{version}}"}],
            28, w=8, field_config=_unit("none")),
        panel(12, "Queue depth by model and version", [
            {"expr": f"sum by (model, version) ({QUEUE_DEPTH}{{{sel}}})", "legendFormat": "{{model}} v{{version}}"}],
            28, w=8, x=8, field_config=_unit("none")),
        panel(13, "Model errors/s by reason", [
            {"expr": f"sum by (model, version, reason) (rate({PREDICT_ERRORS}{{{sel}}}{win})) > 0",
             "legendFormat": "{{model}} v{{version}} {{reason}}"}],
            28, w=8, x=16, field_config=_unit("reqps")),
    ]  # fmt: skip
    models = f'label_values({REQUESTS}{{job="{job}"}}, model)'
    variable = {
        "name": "model",
        "label": "Model",
        "type": "query",
        "datasource": dict(DATASOURCE),
        "definition": models,
        "query": {"query": models, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
    }
    alias_moves = {
        "datasource": dict(DATASOURCE),
        "enable": True,
        "iconColor": "orange",
        "name": "Alias moves",
        "expr": f"changes({ALIAS_MOVES}{{{sel}}}[2m]) > 0",
        "step": "60s",
        "titleFormat": "{{model}}@{{alias}} {{outcome}}",
        "textFormat": "alias move {{outcome}}",
        "useValueForTime": False,
    }
    return grafana_dashboard(title=title or f"mlctl gateway: {job}", uid_prefix="mlctl-gateway-", name=job,
                             tags=["mlctl", "model-gateway"], panels=panels, annotations=[alias_moves],
                             templating=[variable])


def gateway_dashboard(*, title: str | None = None, job: str = DEFAULT_JOB, out: Path | None = None) -> Dashboard:
    """A Grafana dashboard for the gateway scraped as ``job`` (see :func:`dashboard`), written to
    ``out`` when given."""
    return dashboard_result(dashboard(title=title, job=job), out)
