"""``detect score`` as a library call: Prometheus read in the library, one document shape, streamed rows."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
import yaml

from mlctl.connectors import prometheus
from mlctl.connectors.prometheus import Series
from mlctl.core.output import render, ui
from mlctl.detect.scoring import ScoreReport, score
from mlctl.detect.spec import DetectSpec
from tests.support import detect as _  # noqa: F401  (registers test-jump)

T0 = 1_700_000_000.0


class TwoSeries:
    """query_range answering two series of the same metric (two hosts)."""

    calls: list[tuple[str, float, float, float]] = []

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.url = url

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        TwoSeries.calls.append((promql, start, end, step))
        times = T0 + 60.0 * np.arange(5)
        return [Series({"__name__": "cpu", "host": h}, times, np.array(v, dtype=float))
                for h, v in (("a", [1, 1, 30, 1, 1]), ("b", [2, 2, 2, 2, 2]))]


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch) -> DetectSpec:
    TwoSeries.calls = []
    monkeypatch.setattr(prometheus, "PrometheusClient", TwoSeries)
    return DetectSpec(prometheus="http://127.0.0.1:9", detector="test-jump", step="1m")


def _render(result: ScoreReport, fmt: str) -> str:
    ui.stdout = out = io.StringIO()
    try:
        render(result, fmt=fmt)
    finally:
        ui.stdout = None
    return out.getvalue()


def test_the_library_reads_prometheus_and_scores_each_series(spec: DetectSpec) -> None:
    report = score(spec, query="cpu", since="10m")
    [(promql, start, end, step)] = TwoSeries.calls
    assert promql == "cpu" and end - start == 600 and step == 60
    doc = report.document()
    assert [s["series"] for s in doc["summary"]] == [{"__name__": "cpu", "host": "a"}, {"__name__": "cpu", "host": "b"}]
    assert len(doc["points"]) == 10 and doc["points"][0]["series"] == 'cpu{host="a"}'


def test_json_and_yaml_give_one_shape_for_one_or_several_series(spec: DetectSpec, tmp_path: Any) -> None:
    several = score(spec, query="cpu")
    assert json.loads(_render(several, "json")) == yaml.safe_load(_render(several, "yaml"))
    path = tmp_path / "one.csv"
    path.write_text("timestamp,value\n0,1\n60,1\n120,9\n")
    one = score(spec, input=str(path))
    doc = json.loads(_render(one, "json"))
    assert isinstance(doc["summary"], list) and len(doc["summary"]) == 1
    assert doc == yaml.safe_load(_render(one, "yaml"))


def test_csv_streams_rows_with_a_header_even_when_none_is_flagged(spec: DetectSpec) -> None:
    text = _render(score(spec, query="cpu"), "csv")
    lines = text.splitlines()
    assert lines[0] == "series,timestamp,value,anomaly_score,is_anomaly" and len(lines) == 11
    quiet = _render(ScoreReport(score(spec, query="cpu").results[1:], anomalies_only=True), "csv")
    assert quiet.splitlines() == ["series,timestamp,value,anomaly_score,is_anomaly"]


def test_one_source_exactly(spec: DetectSpec) -> None:
    from mlctl.core.errors import UsageError

    with pytest.raises(UsageError, match="either INPUT or --query"):
        score(spec)
