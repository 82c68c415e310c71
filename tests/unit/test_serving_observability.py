"""The gateway's Prometheus alerting rules and Grafana dashboard: valid for promtool, firing on the
right series, and querying only metrics the gateway really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlctl.core.errors import UsageError
from mlctl.core.observability import AlertingRules, Dashboard, dashboard_uid
from mlctl.serving.gateway import _GatewayMetrics
from mlctl.serving.metrics import ServerMetrics
from mlctl.serving.observability import (
    ALERTS,
    dashboard,
    gateway_dashboard,
    gateway_rules,
    rules_text,
    scrape_config,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus) not installed")
#: Prometheus' own series, besides the gateway's
BUILTIN = {"up", "ALERTS"}
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
             "gauge": ("",), "info": ("_info",), "summary": ("", "_count", "_sum", "_created")}


def exported_names() -> set[str]:
    """Every series name the gateway's /metrics can hold: its own registry's and a model server's,
    read from the registered collectors (not a list kept here)."""
    names: set[str] = set()
    for registry in (_GatewayMetrics().registry, ServerMetrics("m", "1").registry):
        for family in registry.collect():
            names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The series names an expression selects: identifiers before ``{`` and any ``mlctl_`` name."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and strings say nothing
    return set(re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{", bare)) | set(re.findall(r"\bmlctl_[A-Za-z0-9_]+", bare))


def rules_of(text: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["groups"]] == ["mlctl-gateway"]
    return list(doc["groups"][0]["rules"])


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_the_exported_names_are_read_from_the_registries() -> None:
    names = exported_names()
    assert {"mlctl_gateway_requests_total", "mlctl_gateway_request_duration_seconds_bucket",
            "mlctl_gateway_state_up", "mlctl_batch_size_rows_bucket", "mlctl_queue_depth_rows"} <= names
    assert "mlctl_gateway_state_up_total" not in names
    assert metric_names('sum(rate(a_total{x="b{c}"}[5m])) / up{job="j"} + mlctl_x') == {"a_total", "up", "mlctl_x"}


def test_rules_parse_and_name_model_and_variant() -> None:
    rules = rules_of(rules_text())
    assert tuple(r["alert"] for r in rules) == ALERTS
    by_name = {r["alert"]: r for r in rules}
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    for name in ("MlctlGatewayHighErrorRate", "MlctlGatewayHighLatency"):
        rule = by_name[name]
        assert "by (model, variant" in rule["expr"] and rule["for"] == "5m"
        assert "$labels.model" in rule["annotations"]["summary"]
        assert "$labels.variant" in rule["annotations"]["summary"]
    assert by_name["MlctlGatewayShadowDisagreement"]["labels"]["severity"] == "info"
    assert "$labels.target" in by_name["MlctlGatewayShadowDisagreement"]["annotations"]["summary"]
    assert by_name["MlctlGatewayStoreDown"]["for"] == "1m"
    assert by_name["MlctlGatewayDown"]["expr"] == 'up{job="mlctl-gateway"} == 0'
    assert "[10m]" in by_name["MlctlGatewayAliasMoveRejected"]["expr"]


def test_rule_thresholds_follow_the_arguments() -> None:
    by_name = {r["alert"]: r for r in rules_of(rules_text(error_rate=0.02, p99_ms=120, for_="10m", job="gw-2"))}
    assert by_name["MlctlGatewayHighErrorRate"]["expr"].endswith("> 0.02")
    assert by_name["MlctlGatewayHighLatency"]["expr"].endswith("> 0.12")  # seconds, as the histogram holds them
    assert by_name["MlctlGatewayHighErrorRate"]["for"] == "10m"
    assert all('job="gw-2"' in r["expr"] for r in by_name.values())


def test_every_rule_queries_only_exported_metrics() -> None:
    exported = exported_names() | BUILTIN
    for rule in rules_of(rules_text()):
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']}: {sorted(names - exported)}"


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"for_": "soon"}, "--for"), ({"for_": "5"}, "--for"), ({"error_rate": 0}, "--error-rate"),
    ({"error_rate": 1.5}, "--error-rate"), ({"p99_ms": -1}, "--p99-ms"), ({"job": 'a"b'}, "--job"),
    ({"shadow_disagreement": 2}, "--shadow-disagreement")])
def test_bad_arguments_name_their_flag(kwargs: dict[str, Any], flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        rules_text(**kwargs)


def test_scrape_config() -> None:
    doc = yaml.safe_load("scrape_configs:\n" + scrape_config())
    assert doc["scrape_configs"] == [{"job_name": "mlctl-gateway", "metrics_path": "/metrics",
                                      "static_configs": [{"targets": ["127.0.0.1:8000"]}]}]
    assert "gw:9000" in scrape_config(job="gw", target="gw:9000")
    with pytest.raises(UsageError, match="--target"):
        scrape_config(target="no port")


@needs_promtool
def test_rules_pass_promtool(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(rules_text(job="gw.prod:1"))
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(ALERTS)} rules found" in proc.stdout + proc.stderr


@needs_promtool
def test_rules_fire_on_synthetic_series(tmp_path: Path) -> None:
    """promtool's rule tests: 10% 5xx on one variant, the store down, a refused alias move whose series
    is new (its first increment creates it), the target down; and nothing on healthy series."""
    (tmp_path / "rules.yml").write_text(rules_text())
    job = 'job="mlctl-gateway", instance="gw:8000"'
    series = [
        (f'mlctl_gateway_requests_total{{{job}, model="iris", version="2", variant="b", status="200"}}',
         "0+90x30"),
        (f'mlctl_gateway_requests_total{{{job}, model="iris", version="2", variant="b", status="500"}}',
         "0+10x30"),
        (f'mlctl_gateway_requests_total{{{job}, model="iris", version="1", variant="a", status="200"}}',
         "0+100x30"),
        (f"mlctl_gateway_state_up{{{job}}}", "1 1 1 0x27"),
        (f'mlctl_gateway_alias_moves_total{{{job}, model="iris", alias="champion", outcome="refused"}}',
         "_x20 1x10"),
        (f'up{{{job}}}', "1x20 0x10"),
    ]
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": [
            {"eval_time": "15m", "alertname": "MlctlGatewayHighErrorRate", "exp_alerts": [{
                "exp_labels": {"severity": "critical", "model": "iris", "variant": "b"},
                "exp_annotations": {
                    "summary": "iris variant b: 10% of requests fail with 5xx",
                    "description": "More than 5% of the gateway's requests to iris variant b answered 5xx over "
                                   "5m (job mlctl-gateway)."}}]},
            {"eval_time": "15m", "alertname": "MlctlGatewayStoreDown", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "job": "mlctl-gateway", "instance": "gw:8000"},
                "exp_annotations": {
                    "summary": "gw:8000: the experiment store is unreachable",
                    "description": "The gateway keeps serving with the experiments it last read and counts "
                                   "assignments in memory; feedback gets 503 until the store is back."}}]},
            {"eval_time": "10m", "alertname": "MlctlGatewayAliasMoveRejected", "exp_alerts": []},
            {"eval_time": "22m", "alertname": "MlctlGatewayAliasMoveRejected", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "model": "iris", "alias": "champion", "outcome": "refused"},
                "exp_annotations": {
                    "summary": "iris@champion: an alias move was refused",
                    "description": "The registry moved iris@champion in the last 10m and the gateway did not "
                                   "follow (refused: another input signature; failed: the version could not be "
                                   "loaded). The previous version keeps serving."}}]},
            {"eval_time": "33m", "alertname": "MlctlGatewayAliasMoveRejected", "exp_alerts": []},  # old news
            {"eval_time": "15m", "alertname": "MlctlGatewayDown", "exp_alerts": []},
            {"eval_time": "25m", "alertname": "MlctlGatewayDown", "exp_alerts": [{
                "exp_labels": {"severity": "critical", "job": "mlctl-gateway", "instance": "gw:8000"},
                "exp_annotations": {
                    "summary": "gw:8000: the model gateway's /metrics is down",
                    "description": "Prometheus cannot scrape the gateway (job mlctl-gateway): every model it "
                                   "serves is probably unreachable."}}]},
            {"eval_time": "15m", "alertname": "MlctlGatewayHighLatency", "exp_alerts": []},
        ],
    }]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    proc = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _targets(doc: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in doc["annotations"]["list"] if "expr" in a]
    return exprs + [v["definition"] for v in doc["templating"]["list"]]


def test_dashboard_imports_as_is() -> None:
    doc = dashboard()
    assert json.loads(json.dumps(doc)) == doc  # plain JSON
    assert doc["__inputs"][0]["name"] == "DS_PROMETHEUS" and doc["title"] == "mlctl gateway: mlctl-gateway"
    assert doc["uid"] == dashboard()["uid"] and len(doc["uid"]) <= 40
    assert len(dashboard(job="x" * 100)["uid"]) <= 40
    assert dashboard(job="a" * 60)["uid"] != dashboard(job="a" * 59 + "b")["uid"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    kinds = {r["id"] for r in doc["__requires"] if r["type"] == "panel"}
    assert kinds == {p["type"] for p in doc["panels"]}
    cells: set[tuple[int, int]] = set()
    for p in doc["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24
        here = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not here & cells, f"panel {p['title']!r} overlaps another"
        cells |= here
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}" and p["targets"]
        assert [t["refId"] for t in p["targets"]] == [chr(ord("A") + i) for i in range(len(p["targets"]))]
    assert [v["name"] for v in doc["templating"]["list"]] == ["model"]
    assert dashboard(title="Gateway")["title"] == "Gateway"


def test_dashboard_queries_only_exported_metrics() -> None:
    exported = exported_names() | BUILTIN
    doc = dashboard(job="gw")
    for expr in _targets(doc):
        names = metric_names(expr)
        assert names and names <= exported, f"{expr}: {sorted(names - exported)}"
        assert 'job="gw"' in expr
    titles = " | ".join(p["title"] for p in doc["panels"])
    for wanted in ("Requests/s", "5xx ratio", "p50 / p99", "Traffic share", "Shadow agreement", "store up",
                   "Feedback/s", "Batch size p50", "Queue depth"):
        assert wanted in titles


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule promtool parses."""
    exprs = [e.replace("$__rate_interval", "5m").replace("$model", ".*") for e in _targets(dashboard())]
    exprs = [e for e in exprs if not e.startswith("label_values(")]  # Grafana's, not PromQL
    rules = [{"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_results_write_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = gateway_rules()
    assert isinstance(rules, AlertingRules) and rules.document() == {"rules": rules_text(),
                                                                      "scrape_config": scrape_config()}
    out = tmp_path / "prometheus" / "gateway.yml"
    written = gateway_rules(out=out, p99_ms=100)
    assert out.read_text() == rules_text(p99_ms=100)
    assert written.document() == {"file": str(out), "scrape_config": scrape_config()}
    assert f"rule_files: ['{out}']" in capsys.readouterr().err

    board = gateway_dashboard()
    assert isinstance(board, Dashboard) and board.document() == dashboard()
    out = tmp_path / "grafana" / "gateway.json"
    written_board = gateway_dashboard(out=out, title="GW")
    assert json.loads(out.read_text()) == dashboard(title="GW") and out.read_text().endswith("}\n")
    assert written_board.document() == {"file": str(out), "uid": dashboard_uid("mlctl-gateway-", "mlctl-gateway"),
                                        "title": "GW", "panels": len(dashboard()["panels"])}
