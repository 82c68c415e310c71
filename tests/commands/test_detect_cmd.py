"""``mlctl detect``: the command layer over the library, its outputs and exit codes."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from mlctl.core.proc import free_port
from tests.support import detect as _  # noqa: F401  (registers test-jump)


@pytest.fixture
def series(isolated_env: Path) -> Path:
    path = isolated_env / "cpu.csv"
    values = [1, 1, 1, 25, 1, 1]
    path.write_text("timestamp,value\n" + "".join(f"2024-05-01T00:0{i}:00Z,{v}\n" for i, v in enumerate(values)))
    return path


def test_score_csv_writes_every_point(cli, series: Path) -> None:  # noqa: ANN001
    r = cli("detect", "score", str(series), "-d", "test-jump", "-o", "csv")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "timestamp,value,anomaly_score,is_anomaly"
    assert lines[4] == "2024-05-01T00:03:00Z,25.0,1.0,true" and len(lines) == 7


def test_score_json_has_summary_and_points(cli, series: Path) -> None:  # noqa: ANN001
    r = cli("detect", "score", str(series), "-d", "test-jump", "-p", "scale=48", "-o", "json")
    doc = json.loads(r.out)
    assert doc["summary"][0]["points"] == 6 and doc["summary"][0]["params"] == {"scale": 48.0}
    assert doc["summary"][0]["anomalies"] == 2 and [p["is_anomaly"] for p in doc["points"]].count(True) == 2
    r = cli("detect", "score", str(series), "-d", "test-jump", "--anomalies-only", "-o", "jsonl")
    assert [json.loads(line)["timestamp"] for line in r.out.splitlines()] == [
        "2024-05-01T00:03:00Z", "2024-05-01T00:04:00Z"]  # fmt: skip


def test_score_table_lists_flagged_points_and_plots(cli, series: Path, isolated_env: Path) -> None:  # noqa: ANN001
    r = cli("detect", "score", str(series), "-d", "test-jump", "--plot", "out.png")
    assert r.code == 0, r.err
    assert "2 anomalous point(s)" in r.out and "2024-05-01T00:03:00Z" in r.out
    assert (isolated_env / "out.png").read_bytes().startswith(b"\x89PNG")


def test_score_reads_stdin(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"timestamp": 0, "value": 1}\n{"timestamp": 60, "value": 9}\n'))
    r = cli("detect", "score", "-", "-d", "test-jump", "-o", "csv")
    assert r.code == 0 and r.out.splitlines()[-1] == "1970-01-01T00:01:00Z,9.0,0.8,true"


def test_warnings_go_to_stderr(cli, isolated_env: Path) -> None:  # noqa: ANN001
    (isolated_env / "u.csv").write_text("timestamp,value\n120,1\n0,1\n60,nan\n")
    r = cli("detect", "score", "u.csv", "-d", "test-jump", "-o", "csv")
    assert r.code == 0 and "out of time order" in r.err and "missing, NaN" in r.err
    assert len(r.out.splitlines()) == 4  # nothing dropped


@pytest.mark.parametrize(("content", "code", "text"), [
    ("", 2, "the file is empty"),
    ("timestamp,value\n", 2, "no data rows"),
    ("timestamp,value\n1,abc\n", 2, "is not a number"),
    (None, 2, "no such file"),
])  # fmt: skip
def test_score_bad_input_exit_codes(cli, isolated_env: Path, content: str | None, code: int, text: str) -> None:  # noqa: ANN001
    if content is not None:
        (isolated_env / "bad.csv").write_text(content)
    r = cli("detect", "score", "bad.csv", "-o", "json")
    assert r.code == code
    assert text in json.loads(r.err)["error"]["message"] and r.out == ""


def test_score_a_value_only_csv_in_file_order(cli, isolated_env: Path) -> None:  # noqa: ANN001
    (isolated_env / "v.csv").write_text("value\n1\n1\n1\n25\n1\n")
    r = cli("detect", "score", "v.csv", "-d", "test-jump", "-o", "csv")
    assert r.code == 0, r.err
    assert [line.split(",")[0] for line in r.out.splitlines()] == ["timestamp", "0", "1", "2", "3", "4"]
    assert "v.csv: no timestamp column: the 5 point(s) are numbered 0, 1, 2... in file order" in r.err
    r = cli("detect", "score", "v.csv", "-d", "test-jump", "--plot", "v.png")
    assert r.code == 0, r.err
    assert (isolated_env / "v.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("detector", ["context", "zscore", "iforest", "changepoint"])
def test_score_values_near_the_float_limit_leaks_no_warning(cli, isolated_env: Path, detector: str) -> None:  # noqa: ANN001
    import warnings

    rows = "".join(f"{1714521600 + 60 * i},{(1.7e308 if i % 3 else -1.7e308) * (0.5 + (i % 7) / 14)!r}\n"
                   for i in range(300))  # fmt: skip
    (isolated_env / "big.csv").write_text("timestamp,value\n" + rows)
    params = ["-p", "min_points=40", "-p", "refit_every=60", "-p", "n_estimators=10"] if detector == "iforest" else []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would become an "unexpected error", exit 1
        r = cli("detect", "score", "big.csv", "-d", detector, *params, "-o", "json")
    assert r.code == 0, r.err
    assert "Warning" not in r.err
    doc = json.loads(r.out)
    assert doc["summary"][0]["points"] == 300 and 0 <= doc["summary"][0]["max_score"] <= 1


def test_score_huge_timestamps_exit_2(cli, isolated_env: Path) -> None:  # noqa: ANN001
    (isolated_env / "t.jsonl").write_text('{"timestamp": 1e300, "value": 1}\n')
    r = cli("detect", "score", "t.jsonl", "-o", "json")
    assert r.code == 2 and "unreadable timestamp on line 1" in json.loads(r.err)["error"]["message"]


def test_score_needs_exactly_one_source(cli, series: Path) -> None:  # noqa: ANN001
    assert cli("detect", "score").code == 2
    r = cli("detect", "score", str(series), "--query", "up")
    assert r.code == 2 and "either INPUT or --query" in r.err


def test_prometheus_unreachable_is_exit_4(cli) -> None:  # noqa: ANN001
    url = f"http://127.0.0.1:{free_port()}"
    r = cli("detect", "score", "--prometheus", url, "--query", "up", "-o", "json")
    assert r.code == 4 and url in r.err
    r = cli("detect", "watch", "--prometheus", url, "--query", "up", "--iterations", "1", "--metrics-port", "0")
    assert r.code == 4


def test_unknown_detector(cli, series: Path) -> None:  # noqa: ANN001
    r = cli("detect", "score", str(series), "-d", "nope")
    assert r.code == 2 and "no detector named 'nope'" in r.err


def test_detectors_lists_the_registry(cli) -> None:  # noqa: ANN001
    doc = json.loads(cli("detect", "detectors", "-o", "json").out)
    row = next(d for d in doc if d["name"] == "test-jump")
    assert row["threshold"] == 0.5 and row["params"]["scale"]["default"] == 10.0


def test_rules_and_dashboard(cli, isolated_env: Path) -> None:  # noqa: ANN001
    r = cli("detect", "rules", "-t", "0.75", "--name", "web")
    assert r.code == 0 and 'mlctl_detect_anomaly_score{watch="web"} >= 0.75' in r.out
    r = cli("detect", "rules", "--out", "rules/x.yml", "-t", "0.75", "-o", "json")
    assert json.loads(r.out)["file"] == "rules/x.yml" and (isolated_env / "rules/x.yml").exists()
    assert cli("detect", "rules", "--for", "later").code == 2
    r = cli("detect", "dashboard", "--query", "up", "-t", "0.5")
    assert r.code == 2  # dashboard takes no threshold flag: it reads detect.threshold
    r = cli("detect", "dashboard", "--query", "up")
    assert json.loads(r.out)["panels"][0]["targets"][0]["expr"] == "up"
    r = cli("detect", "dashboard", "--out", "g/d.json", "-o", "json")
    assert json.loads(r.out)["panels"] == 6 and json.loads((isolated_env / "g/d.json").read_text())["uid"]


def test_watch_dry_run_and_config(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(project)
    (project / "mlctl.yaml").write_text("detect:\n  query: up\n  interval: 30s\n  name: web\n")
    r = cli("detect", "watch", "--dry-run", "--interval", "1m", "-o", "json")
    doc = json.loads(r.out)
    assert r.code == 0 and doc["query"] == "up" and doc["interval"] == "1m" and doc["name"] == "web"
    assert doc["prometheus"] == "http://127.0.0.1:9090"  # from services.prometheus
    r = cli("detect", "watch", "--dry-run", "--interval", "soon")
    assert r.code == 2 and "--interval" in r.err
    (project / "mlctl.yaml").write_text("detect:\n  quary: up\n")
    assert cli("detect", "watch", "--dry-run").code == 2


def test_watch_without_query_is_a_usage_error(cli) -> None:  # noqa: ANN001
    r = cli("detect", "watch", "--iterations", "1")
    assert r.code == 2 and "no query" in r.err
