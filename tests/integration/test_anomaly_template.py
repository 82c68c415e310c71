"""``mlctl init anomaly``: the scaffold is consistent with the code and passes Prometheus' own checkers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mlctl.core.config import load_config
from mlctl.detect.export import alerting_rules, dashboard
from mlctl.detect.scoring import score_frame
from mlctl.detect.sources import read_input
from mlctl.scaffold import render_template


@pytest.fixture
def scaffold(tmp_path: Path) -> Path:
    render_template("anomaly", tmp_path / "cpu-watch")
    return tmp_path / "cpu-watch"


def test_files_and_config(scaffold: Path) -> None:
    files = sorted(str(p.relative_to(scaffold)) for p in scaffold.rglob("*") if p.is_file())
    assert files == ["README.md", "alertmanager/alertmanager.yml", "data/example.csv", "grafana/dashboard.json",
                     "mlctl.yaml", "prometheus/prometheus.yml", "prometheus/rules.yml"]  # fmt: skip
    spec = load_config(start=scaffold).config.detect
    assert spec.name == "cpu-watch" and "node_cpu_seconds_total" in (spec.query or "")
    assert spec.alertmanager == "http://127.0.0.1:9093" and spec.metrics_port == 9108


def test_generated_files_match_the_generators(scaffold: Path) -> None:
    spec = load_config(start=scaffold).config.detect
    assert (scaffold / "prometheus/rules.yml").read_text() == alerting_rules(spec)
    assert json.loads((scaffold / "grafana/dashboard.json").read_text()) == dashboard(spec)


def test_example_data_scores_offline(scaffold: Path) -> None:
    frame = read_input(str(scaffold / "data/example.csv"))
    assert len(frame) == 2016 and not frame.warnings
    res = score_frame(frame)
    assert res.anomalies >= 1
    flagged = {frame.labels[i] for i in range(len(frame)) if res.flags[i]}
    assert any(t.startswith("2024-05-06T05:") for t in flagged)  # the injected bump at row 1500


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")
def test_prometheus_config_and_rules_pass_promtool(scaffold: Path) -> None:
    proc = subprocess.run(["promtool", "check", "config", str(scaffold / "prometheus/prometheus.yml")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 3 rules found" in proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool (Debian prometheus-alertmanager) not installed")
def test_alert_routes_pass_amtool(scaffold: Path) -> None:
    proc = subprocess.run(["amtool", "check-config", str(scaffold / "alertmanager/alertmanager.yml")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    route = subprocess.run(["amtool", "config", "routes", "test", "--config.file",
                            str(scaffold / "alertmanager/alertmanager.yml"), "severity=critical"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert route.stdout.strip() == "pager", route.stdout + route.stderr
