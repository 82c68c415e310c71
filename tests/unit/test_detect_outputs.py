"""Scoring a frame, plots, alerting rules, the Grafana dashboard and the detect: config section."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mlctl.core.errors import UsageError
from mlctl.detect.export import ALERT_NAME, SCORE, THRESHOLD, alerting_rules, dashboard, scrape_config
from mlctl.detect.plot import plot
from mlctl.detect.scoring import score_frame
from mlctl.detect.sources import read_input
from mlctl.detect.spec import DetectSpec, with_overrides
from tests.support import detect as _  # noqa: F401  (registers test-jump)


def _csv(tmp_path: Path, values: list[float], extra: str = "") -> Path:
    path = tmp_path / "m.csv"
    path.write_text("timestamp,value" + extra + "\n" + "".join(
        f"{60 * i},{v}\n" for i, v in enumerate(values)))  # fmt: skip
    return path


def test_score_frame_rows_and_summary(tmp_path: Path) -> None:
    frame = read_input(str(_csv(tmp_path, [1, 1, 1, 20, 1, float("nan"), 1])))
    res = score_frame(frame, detector="test-jump")
    rows = res.rows()
    assert [r["anomaly_score"] for r in rows] == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert [r["is_anomaly"] for r in rows] == [False, False, False, True, True, False, False]
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert rows[5]["value"] is None  # NaN kept as a missing value, not dropped
    s = res.summary()
    assert s["points"] == 7 and s["anomalies"] == 2 and s["threshold"] == 0.5 and s["detector"] == "test-jump"
    assert score_frame(frame, detector="test-jump", threshold=1.0).anomalies == 2
    assert score_frame(frame, detector="test-jump", params={"scale": 100.0}).anomalies == 0


def test_multivariate_frame_gets_one_score_per_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("timestamp,cpu,mem\n0,1,5\n60,1,5\n120,1,50\n")
    res = score_frame(read_input(str(path)), detector="test-jump")
    rows = res.rows()
    assert list(rows[2]) == ["timestamp", "cpu", "mem", "anomaly_score", "is_anomaly"]
    assert rows[2]["is_anomaly"] and not rows[1]["is_anomaly"]


def test_unknown_detector_and_bad_param(tmp_path: Path) -> None:
    frame = read_input(str(_csv(tmp_path, [1, 2])))
    with pytest.raises(Exception, match="no detector named"):
        score_frame(frame, detector="nope")
    with pytest.raises(UsageError, match="has no parameter 'bogus'"):
        score_frame(frame, detector="test-jump", params={"bogus": 1})
    with pytest.raises(UsageError, match="outside"):
        score_frame(frame, detector="test-jump", params={"scale": -1})


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_plot_formats(tmp_path: Path, suffix: str) -> None:
    res = score_frame(read_input(str(_csv(tmp_path, [1, 1, 30, 1]))), detector="test-jump")
    out = plot(res, tmp_path / f"p{suffix}")
    data = out.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    elif suffix == ".svg":
        assert b"<svg" in data
    else:
        text = data.decode()
        assert text.startswith("<!doctype html>") and "<svg" in text and "<td>2</td>" in text  # 2 anomalies


def test_plot_rejects_bad_targets(tmp_path: Path) -> None:
    res = score_frame(read_input(str(_csv(tmp_path, [1, 2]))), detector="test-jump")
    with pytest.raises(UsageError, match="unknown format"):
        plot(res, tmp_path / "p.gif")
    with pytest.raises(UsageError, match="does not exist"):
        plot(res, tmp_path / "missing" / "p.png")


def test_spec_overrides_name_the_flag() -> None:
    spec = with_overrides(DetectSpec(), interval="30s", query="up", webhooks=["slack+https://h/x"])
    assert spec.interval_s == 30 and spec.step_s == 30 and spec.query == "up"
    assert with_overrides(spec, step="1m").step_s == 60
    with pytest.raises(UsageError, match="--interval"):
        with_overrides(spec, interval="soon")
    with pytest.raises(UsageError, match="--alertmanager"):
        with_overrides(spec, alertmanager="127.0.0.1:9093")
    with pytest.raises(UsageError, match="--webhooks"):
        with_overrides(spec, webhooks=["ftp://x"])
    with pytest.raises(UsageError, match="--name"):
        with_overrides(spec, name="a b")
    assert with_overrides(spec) is spec


def test_rules_text_is_valid_yaml_with_the_threshold() -> None:
    import yaml

    spec = DetectSpec(name="web", threshold=0.8, labels={"team": "sre"}, interval="30s")
    doc = yaml.safe_load(alerting_rules(spec, for_="1m"))
    rules = doc["groups"][0]["rules"]
    anomaly = next(r for r in rules if r["alert"] == ALERT_NAME)
    assert anomaly["expr"] == f'{SCORE}{{watch="web"}} >= 0.8' and anomaly["for"] == "1m"
    assert anomaly["labels"] == {"severity": "warning", "team": "sre"}
    assert "{{ $labels.instance }}" in anomaly["annotations"]["summary"]
    stale = next(r for r in rules if r["alert"] == "MlctlDetectWatchStale")
    assert "> 150" in stale["expr"]  # five intervals of 30s
    assert "honor_labels: true" in scrape_config(spec) and "127.0.0.1:9108" in scrape_config(spec)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")
def test_rules_pass_promtool(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(alerting_rules(DetectSpec(name="web", threshold=0.7, labels={"team": 'a "quoted" name'})))
    proc = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 rules found" in proc.stdout + proc.stderr


def test_dashboard_imports_as_is() -> None:
    spec = DetectSpec(name="web", query="rate(cpu_seconds_total[1m])", threshold=0.65)
    doc = dashboard(spec)
    json.loads(json.dumps(doc))  # plain JSON
    assert doc["__inputs"][0]["name"] == "DS_PROMETHEUS" and doc["__inputs"][0]["pluginId"] == "prometheus"
    assert doc["uid"] == dashboard(spec)["uid"] and len(doc["uid"]) <= 40  # stable, within Grafana's limit
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    assert spec.query in exprs and f'{SCORE}{{watch="web"}}' in exprs and f'{THRESHOLD}{{watch="web"}}' in exprs
    for p in doc["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and p["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert [t["refId"] for t in p["targets"]] == [chr(ord("A") + i) for i in range(len(p["targets"]))]
    score_panel = next(p for p in doc["panels"] if p["title"] == "Anomaly score")
    steps = score_panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == 0.65
    annotation = doc["annotations"]["list"][1]
    assert ALERT_NAME in annotation["expr"] and 'watch="web"' in annotation["expr"]


def test_outputs_in_csv_format(capsys: pytest.CaptureFixture[str]) -> None:
    from mlctl.core.output import render

    render([{"a": 1, "b": [1, 2], "c": None, "d": True}, {"a": 2, "e": "x,y"}], fmt="csv")
    assert capsys.readouterr().out == 'a,b,c,d,e\n1,"[1, 2]",,true,\n2,,,,"x,y"\n'
    render({"k": "v"}, fmt="csv")
    assert capsys.readouterr().out == "key,value\nk,v\n"
    render(np.float64(1.5).item(), fmt="csv")
    assert capsys.readouterr().out == "value\n1.5\n"
