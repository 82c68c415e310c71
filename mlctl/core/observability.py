"""Prometheus alerting rules and Grafana dashboards as files: the parts every capability that serves
``/metrics`` shares (``mlctl detect rules|dashboard``, ``mlctl serve rules|dashboard``).

* :func:`grafana_dashboard` -- the dashboard envelope that imports as is (``__inputs`` naming the
  Prometheus data source, ``__requires``, a stable uid within Grafana's 40 characters, the built-in
  annotation, templating), around the panels a capability builds with :func:`panel`;
* :func:`alert_rule` and :func:`rule_group` -- Prometheus alerting rules as YAML text, ready for
  ``promtool check rules``;
* :class:`AlertingRules` and :class:`Dashboard` -- the results the commands render, made by
  :func:`rules_result` and :func:`dashboard_result`, which also write ``--out``.

Only the standard library and :mod:`mlctl.core` are imported: the capabilities build the queries.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlctl.core.errors import UsageError
from mlctl.core.output import Result, Table, message

#: the data source every panel, target and annotation reads: filled in when the dashboard is imported
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
#: Grafana's limit on a dashboard uid
UID_MAX = 40
#: panel types with their names in ``__requires``
PANEL_NAMES = {"timeseries": "Time series", "stat": "Stat", "gauge": "Gauge", "bargauge": "Bar gauge",
               "table": "Table", "text": "Text"}
_UID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_PROM_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")


def yaml_str(value: str) -> str:
    """``value`` as a double-quoted YAML scalar (a JSON string is one)."""
    return json.dumps(value)


def prometheus_duration(text: str, *, what: str = "duration") -> str:
    """``text`` if Prometheus reads it as a duration (``30s``, ``5m``, ``1h30m``, ``0``), else a
    :class:`UsageError` naming ``what``.

    >>> prometheus_duration("1h30m")
    '1h30m'
    """
    if text == "0" or (text and _PROM_DURATION.match(text)):
        return text
    raise UsageError(f"{what}: expected a Prometheus duration such as 30s, 5m or 1h30m, got {text!r}")


# -- alerting rules ----------------------------------------------------------------------------------


def alert_rule(alert: str, expr: str, *, for_: str, labels: Mapping[str, str],
               annotations: Mapping[str, str]) -> str:
    """One alerting rule as YAML text, indented for a group's ``rules:`` list.

    The expression is a literal block (its lines as written, no escaping); labels and annotations
    are double-quoted scalars, so Prometheus templates (``{{ $labels.model }}``) pass as they are.
    """
    body = "".join(f"          {line}\n" for line in expr.strip().splitlines())
    label_lines = "".join(f"          {k}: {yaml_str(v)}\n" for k, v in labels.items())
    note_lines = "".join(f"          {k}: {yaml_str(v)}\n" for k, v in annotations.items())
    return (f"      - alert: {alert}\n"
            f"        expr: |-\n{body}"
            f"        for: {for_}\n"
            f"        labels:\n{label_lines}"
            f"        annotations:\n{note_lines}")


def rule_group(name: str, rules: Iterable[str], *, header: Sequence[str] = ()) -> str:
    """A rules file holding one group: ``header`` lines as comments, then ``groups:``."""
    comments = "".join(f"# {line}\n" for line in header)
    return f"{comments}groups:\n  - name: {name}\n    rules:\n" + "".join(rules)


# -- Grafana -----------------------------------------------------------------------------------------


def panel(
    pid: int,
    title: str,
    targets: list[dict[str, Any]],
    y: int,
    *,
    kind: str = "timeseries",
    w: int = 24,
    h: int = 8,
    x: int = 0,
    field_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One Grafana panel on the Prometheus data source: ``targets`` (``expr``, ``legendFormat``...)
    get their ``refId`` (A, B, ...) and data source; ``kind`` is ``timeseries`` or ``stat``."""
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": dict(DATASOURCE),
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": [{"refId": chr(ord("A") + i), "datasource": dict(DATASOURCE), **t} for i, t in enumerate(targets)],
        "fieldConfig": field_config or {"defaults": {}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}},
    }


def dashboard_uid(prefix: str, name: str) -> str:
    """A stable Grafana uid ``PREFIX + NAME`` (characters Grafana refuses become ``-``); past 40
    characters it is cut and a hash of the full name keeps it unique.

    >>> dashboard_uid("mlctl-detect-", "web.1")
    'mlctl-detect-web-1'
    """
    uid = _UID_UNSAFE.sub("-", prefix + name)
    if len(uid) > UID_MAX:
        uid = uid[:27] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return uid


def grafana_dashboard(
    *,
    title: str,
    uid_prefix: str,
    name: str,
    tags: Sequence[str],
    panels: list[dict[str, Any]],
    annotations: Sequence[dict[str, Any]] = (),
    templating: Sequence[dict[str, Any]] = (),
    refresh: str = "30s",
    time_from: str = "now-6h",
) -> dict[str, Any]:
    """A Grafana dashboard (JSON model with ``__inputs``) that imports as is: ``panels`` (see
    :func:`panel`) under ``title``, uid from ``uid_prefix`` and ``name`` (:func:`dashboard_uid`),
    ``annotations`` after Grafana's built-in one and ``templating`` variables."""
    kinds = list(dict.fromkeys(p["type"] for p in panels))
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            *({"type": "panel", "id": k, "name": PANEL_NAMES.get(k, k.title()), "version": ""} for k in kinds),
        ],
        "uid": dashboard_uid(uid_prefix, name),
        "title": title,
        "tags": list(tags),
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *annotations,
            ]
        },
        "templating": {"list": list(templating)},
        "panels": panels,
    }


# -- results -----------------------------------------------------------------------------------------


class AlertingRules(Result):
    """Alerting rules: the rules text (printed as it is in a table), or the file written; with the
    scrape config to add to ``prometheus.yml`` either way.

    Document: ``{"rules": str, "scrape_config": str}``, or with a file ``{"file": str, "scrape_config": str}``.
    """

    def __init__(self, rules: str, scrape_config: str, file: Path | None = None) -> None:
        self.rules, self.scrape_config, self.file = rules, scrape_config, file

    def document(self) -> dict[str, Any]:
        if self.file is None:
            return {"rules": self.rules, "scrape_config": self.scrape_config}
        return {"file": str(self.file), "scrape_config": self.scrape_config}

    def tables(self) -> Iterable[Table]:
        if self.file is None:
            return [Table(self.rules, fmt="text")]
        return [Table(self.document(), title="wrote alerting rules")]


class Dashboard(Result):
    """A Grafana dashboard: the dashboard itself (a table prints its JSON, ready to import), or,
    written to a file, ``{"file", "uid", "title", "panels"}`` (``panels`` is their number)."""

    def __init__(self, dashboard: dict[str, Any], file: Path | None = None) -> None:
        self.dashboard, self.file = dashboard, file

    def document(self) -> dict[str, Any]:
        if self.file is None:
            return self.dashboard
        d = self.dashboard
        return {"file": str(self.file), "uid": d["uid"], "title": d["title"], "panels": len(d["panels"])}

    def tables(self) -> Iterable[Table]:
        if self.file is None:
            return [Table(dashboard_json(self.dashboard), fmt="text")]
        return [Table(self.document(), title="wrote Grafana dashboard")]


def dashboard_json(dashboard: Mapping[str, Any]) -> str:
    """The dashboard as the file holds it: indented JSON with a final newline."""
    return json.dumps(dashboard, indent=2) + "\n"


def write_out(out: Path, text: str) -> Path:
    """Write ``text`` to ``out``, creating its folder; returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def rules_result(rules: str, scrape_config: str, out: Path | None = None) -> AlertingRules:
    """The result of a rules command; with ``out`` the rules are written there and the lines to add
    to ``prometheus.yml`` are told on stderr."""
    if out is not None:
        write_out(out, rules)
        message(f"Add to prometheus.yml: rule_files: ['{out}'] and under scrape_configs:\n{scrape_config}")
    return AlertingRules(rules, scrape_config, out)


def dashboard_result(dashboard: dict[str, Any], out: Path | None = None) -> Dashboard:
    """The result of a dashboard command; with ``out`` the JSON is written there."""
    if out is not None:
        write_out(out, dashboard_json(dashboard))
    return Dashboard(dashboard, out)
