"""`mlctl doctor` against real engines started by the harness, and against closed ports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlctl.commands import main
from mlctl.core.proc import free_port
from mlctl.engines import Service


def doctor_json(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    capsys.readouterr()
    assert main(["doctor", "-o", "json"]) == 0
    return {row["engine"]: row for row in json.loads(capsys.readouterr().out)["engines"]}


def test_doctor_reports_real_engines_up(postgres: Service, redis: Service, prometheus: Service,
                                        alertmanager: Service, pushgateway: Service, project: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(project)
    (project / "mlctl.yaml").write_text(
        "services:\n"
        f"  postgres: {postgres.url}\n"
        f"  redis: {redis.url}\n"
        f"  prometheus: {prometheus.url}\n"
        f"  alertmanager: {alertmanager.url}\n"
        f"  pushgateway: {pushgateway.url}\n"
    )
    rows = doctor_json(capsys)
    expected = {"PostgreSQL": postgres, "Redis": redis, "Prometheus": prometheus,
                "Alertmanager": alertmanager, "Pushgateway": pushgateway}
    for name, svc in expected.items():
        assert rows[name]["reachable"] is True, rows[name]
        assert rows[name]["url"] == svc.url
    assert rows["Redis"]["detail"] == "PING -> PONG"
    assert rows["PostgreSQL"]["detail"] == "protocol 3.0 handshake ok"
    assert str(rows["Alertmanager"]["detail"]).startswith("version ")
    assert main(["doctor"]) == 0
    table = capsys.readouterr().out
    assert table.count(" up ") >= 5


def test_doctor_reports_closed_ports_down(project: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(project)
    port = free_port()
    for key, scheme in [("POSTGRES", "postgresql"), ("REDIS", "redis"), ("PROMETHEUS", "http"),
                        ("ALERTMANAGER", "http"), ("PUSHGATEWAY", "http")]:
        monkeypatch.setenv(f"MLCTL_SERVICES_{key}", f"{scheme}://127.0.0.1:{port}")
    rows = doctor_json(capsys)
    for name in ("PostgreSQL", "Redis", "Prometheus", "Alertmanager", "Pushgateway"):
        assert rows[name]["reachable"] is False
        assert "unreachable" in str(rows[name]["detail"])
        assert rows[name]["url"].endswith(f":{port}")
