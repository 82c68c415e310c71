"""Tables fit the terminal: one line per row at 80 and 120 columns, every column with --wide."""

from __future__ import annotations

import pytest

from mlctl.core import doctor
from mlctl.core.doctor import EngineCheck
from mlctl.core.output import fit_widths

CHECKS = [
    EngineCheck("MLflow server", "http://127.0.0.1:5000", False, "unreachable: [Errno 111] Connection refused",
                True, "shared tracking and model registry (tracking.uri: http://...)"),
    EngineCheck("Elasticsearch/OpenSearch", "http://127.0.0.1:9200", True, "OpenSearch 2.19.0", False,
                "log index and search beyond one machine"),
    EngineCheck("PostgreSQL", "postgresql://mlctl@db.internal.example:5432/tracking", False,
                "unreachable: timed out", True, "tracking and tuning storage beyond one machine"),
]

AT_80 = """\
optional engines

  engine                     status   installed   url
 RULE78
  MLflow server              down     yes         http://127.0.0.1:5000
  Elasticsearch/OpenSearch   up       no          http://127.0.0.1:9200
  PostgreSQL                 down     yes         postgresql://mlctl@db.inter…

""".replace("RULE78", "─" * 78)

AT_120 = """\
optional engines

  engine                     status   installed   url
 RULE102
  MLflow server              down     yes         http://127.0.0.1:5000
  Elasticsearch/OpenSearch   up       no          http://127.0.0.1:9200
  PostgreSQL                 down     yes         postgresql://mlctl@db.internal.example:5432/tracking

""".replace("RULE102", "─" * 102)


def _plain(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


@pytest.fixture
def doctor_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "run_doctor", lambda config: CHECKS)
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.mark.parametrize(("columns", "expected"), [(80, AT_80), (120, AT_120)])
def test_doctor_table_is_one_line_per_row(cli, doctor_checks, monkeypatch: pytest.MonkeyPatch, columns: int,
                                          expected: str) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    r = cli("doctor")
    assert r.code == 0
    assert _plain(r.out) == expected
    assert max(len(line) for line in r.out.splitlines()) <= columns


def test_doctor_wide_shows_every_column_uncut(cli, doctor_checks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    r = cli("doctor", "--wide")
    assert r.code == 0
    lines = _plain(r.out).splitlines()
    assert lines[2].split() == ["engine", "status", "installed", "url", "detail", "enables"]
    assert len(lines) == 5 + len(CHECKS)  # still one line per row (title, blank, header, rule, rows, blank)
    for check in CHECKS:
        assert check.url in r.out and check.detail in r.out and check.enables in r.out
    assert "…" not in r.out
    r = cli("doctor")  # --wide holds for its own invocation only
    assert "detail" not in r.out


def test_fit_widths_caps_only_the_long_columns() -> None:
    assert fit_widths([10, 40, 30], 60) == [10, 25, 25]
    assert fit_widths([10, 40, 30], 200) == [10, 40, 30]
    assert fit_widths([16, 16, 100], 40) == [16, 16, 8]  # never below the floor, short columns whole


# --------------------------------------------------------------------------- status and releases

from tests.unit.test_releases import env  # noqa: E402, F401 - the fixture is used by name


@pytest.fixture
def two_releases(cli, env, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201, F811
    monkeypatch.setenv("NO_COLOR", "1")
    _, aliases = env
    assert cli("deploy", "churn@champion", "--port", "18612").code == 0
    aliases["champion"] = "2"
    assert cli("deploy", "churn@champion", "--port", "18612").code == 0
    return env


@pytest.mark.parametrize("columns", [80, 120])
def test_status_deployments_fit_one_line_per_row(cli, two_releases, monkeypatch: pytest.MonkeyPatch,
                                                 columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    out = _plain(cli("status").out)
    lines = out.splitlines()
    lines = lines[lines.index("deployments"):]
    assert lines[2].split() == ["deployment", "model", "ready", "health", "endpoint", "age"]
    row = lines[4].split()
    assert (row[:3], row[4], len(row)) == (["churn", "churn:2@champion", "0/1"], "127.0.0.1:18612", 6)
    assert lines[5] == "" and max(len(line) for line in out.splitlines()) <= columns
    wide = _plain(cli("status", "--wide").out)
    assert "target" in wide and "http://127.0.0.1:18612" in wide


@pytest.mark.parametrize("columns", [80, 120])
def test_releases_fit_one_line_per_row(cli, two_releases, monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    out = cli("releases", "churn").out
    lines = _plain(out).splitlines()
    assert lines[2].split() == ["rev", "model", "target", "status", "age", "digest"]
    rows = [line.split() for line in lines[4:6]]
    assert [r[:4] for r in rows] == [["1", "churn:1@champion", "local", "superseded"],
                                     ["2", "churn:2@champion", "local", "active"]]
    assert [r[5] for r in rows] == ["sha1", "sha2"]  # the digest's first 7 characters
    assert max(len(line) for line in out.splitlines()) <= columns
    wide = _plain(cli("releases", "churn", "--wide").out)
    assert "sha256" in wide and "rollback of" in wide
