"""What the ``mlctl detect`` commands other than ``score`` return: results that know their document
(json/yaml), their rows (csv/jsonl) and their table, so the commands only call and render.

``score`` returns :class:`mlctl.detect.scoring.ScoreReport`; ``evaluate`` returns
:class:`mlctl.detect.evaluate.EvaluationReport`; ``rules`` and ``dashboard`` return the
:class:`~mlctl.core.observability.AlertingRules` and :class:`~mlctl.core.observability.Dashboard`
results every capability's rules and dashboards share (re-exported here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlctl.core.observability import AlertingRules, Dashboard, dashboard_result, rules_result
from mlctl.core.output import Result, to_data
from mlctl.detect.spec import DetectSpec

__all__ = ["AlertingRules", "Dashboard", "DetectorList", "WatchOutcome", "WatchPlan", "alerting_rules",
           "grafana_dashboard", "list_detectors", "watch_plan"]


class DetectorList(Result):
    """``mlctl detect detectors``: one row per detector with its default threshold and parameters."""

    title = "detectors"
    columns = ("name", "default", "threshold", "summary", "params")

    def __init__(self, detectors: list[dict[str, Any]]) -> None:
        self.detectors = detectors

    def document(self) -> list[dict[str, Any]]:
        return self.detectors

    def table(self) -> list[dict[str, Any]]:
        return [{**r, "params": ", ".join(f"{k}={v['default']}" for k, v in r["params"].items())}
                for r in self.detectors]


def list_detectors() -> DetectorList:
    """Every registered detector: ``name``, ``default`` (the default detector?), ``threshold``,
    ``summary``, ``params`` (``{NAME: {"default", "doc"}}``)."""
    from mlctl.detect.base import DEFAULT_DETECTOR, available_detectors

    return DetectorList([
        {"name": name, "default": name == DEFAULT_DETECTOR, "threshold": cls.default_threshold,
         "summary": cls.summary,
         "params": {k: {"default": p.default, "doc": p.doc} for k, p in cls.params.items()}}
        for name, cls in available_detectors().items()
    ])


class WatchPlan(Result):
    """``mlctl detect watch --dry-run``: the effective detect: spec and how long it would run."""

    title = "mlctl detect watch --dry-run (nothing was started)"

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan

    def document(self) -> dict[str, Any]:
        return self.plan

    def table(self) -> dict[str, Any]:
        return self.plan


def watch_plan(spec: DetectSpec, state_dir: Path, *, duration_s: float | None = None,
               iterations: int | None = None) -> WatchPlan:
    """What ``detect watch`` would run with ``spec`` (nothing is started)."""
    plan = to_data(spec.model_dump())
    plan.update({"duration_s": duration_s, "iterations": iterations, "state_dir": str(state_dir)})
    return WatchPlan(plan)


class WatchOutcome(Result):
    """What one run of ``detect watch`` did (a :class:`~mlctl.detect.watch.WatchReport`): the document
    holds its ``events``; the table leaves them out."""

    def __init__(self, report: Any) -> None:
        self.report = report
        self.title = f"watch {report.watch}"

    def document(self) -> dict[str, Any]:
        from mlctl.detect.watch import report_dict

        return to_data(report_dict(self.report, events=True))

    def table(self) -> dict[str, Any]:
        from mlctl.detect.watch import report_dict

        return to_data(report_dict(self.report, events=False))


def alerting_rules(spec: DetectSpec, *, for_: str = "0s", out: Path | None = None) -> AlertingRules:
    """Prometheus alerting rules on the exported score (see :func:`mlctl.detect.export.alerting_rules`);
    with ``out`` they are written there and the scrape config to add is told on stderr."""
    from mlctl.core.durations import parse_duration
    from mlctl.detect import export

    if for_ not in ("0", "0s"):
        parse_duration(for_, what="--for")
    return rules_result(export.alerting_rules(spec, for_=for_), export.scrape_config(spec), out)


def grafana_dashboard(spec: DetectSpec, *, title: str | None = None, out: Path | None = None) -> Dashboard:
    """A Grafana dashboard for the watch ``spec`` (written to ``out`` when given)."""
    from mlctl.detect.export import dashboard

    return dashboard_result(dashboard(spec, title=title), out)
