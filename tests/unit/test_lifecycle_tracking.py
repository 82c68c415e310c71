"""Tracking: URI resolution, reachability, error mapping, git commit and environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlctl.core.errors import NotFound, OperationFailed, ServiceUnavailable
from mlctl.core.proc import free_port
from mlctl.lifecycle import tracking


def test_resolve_uri(tmp_path: Path) -> None:
    assert tracking.resolve_uri("sqlite:///.mlctl/mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/.mlctl/mlflow.db"
    assert tracking.resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert tracking.resolve_uri("file:./mlruns", tmp_path) == (tmp_path / "mlruns").as_uri()
    assert tracking.resolve_uri("https://mlflow.example/", tmp_path) == "https://mlflow.example"



@pytest.mark.parametrize(("installed", "expected"), [
    ({"psycopg"}, "postgresql+psycopg://u@h/db"),  # psycopg 3 only: named, SQLAlchemy defaults to psycopg2
    ({"psycopg2", "psycopg"}, "postgresql://u@h/db"),
    (set(), "postgresql://u@h/db"),  # no driver: SQLAlchemy's own message names the missing one
])
def test_postgres_urls_name_the_installed_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 installed: set[str], expected: str) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name in installed else None if name.startswith("psycopg")
                        else real(name, *a))
    assert tracking.resolve_uri("postgresql://u@h/db", tmp_path) == expected


def test_redact() -> None:
    assert tracking.redact("http://u:pw@h:5000") == "http://u:***@h:5000"
    assert tracking.redact("http://h:5000") == "http://h:5000"


def test_unreachable_server_is_service_unavailable_with_a_hint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable, match=f"MLflow tracking server at {url} is unreachable") as info:
        tracking.check_reachable(url, timeout=1)
    assert info.value.exit_code == 4 and "--tracking-uri" in (info.value.hint or "")
    tracking.check_reachable("sqlite:////x.db")  # embedded stores need no check


def test_mlflow_errors_are_mapped() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    with pytest.raises(NotFound, match="no such run"):
        with tracking.mlflow_errors("http://h"):
            raise MlflowException("no such run\nmore", error_code=RESOURCE_DOES_NOT_EXIST)
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        with tracking.mlflow_errors("http://h"):
            raise MlflowException("API request failed: Max retries exceeded with url")
    with pytest.raises(OperationFailed, match="MLflow: boom"):
        with tracking.mlflow_errors("http://h"):
            raise MlflowException("boom")


def test_git_commit(tmp_path: Path) -> None:
    assert tracking.git_commit(tmp_path) == "none"
    run = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f").write_text("1")
    run("add", "f")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    commit = tracking.git_commit(tmp_path)
    assert len(commit) == 40
    (tmp_path / "f").write_text("2")
    assert tracking.git_commit(tmp_path) == commit + "+dirty"


def test_environment_names_the_versions() -> None:
    env = tracking.environment()
    assert {"python", "platform", "mlctl", "scikit-learn", "mlflow", "numpy", "pandas", "skops", "optuna"} <= set(env)


def test_sqlite_file() -> None:
    assert tracking.sqlite_file("sqlite:////p/.mlctl/mlflow.db") == Path("/p/.mlctl/mlflow.db")
    assert tracking.sqlite_file("sqlite:////p/x.db?timeout=5") == Path("/p/x.db")
    assert tracking.sqlite_file("sqlite:///:memory:") is None
    assert tracking.sqlite_file("postgresql+psycopg://u@h/db") is None


def test_mlflow_and_alembic_logs_stay_off_stderr_unless_verbose() -> None:
    import logging

    tracking.quiet_mlflow(verbose=False)
    try:
        for name in ("mlflow.store.db.utils", "alembic.runtime.migration", "optuna"):
            assert not logging.getLogger(name).isEnabledFor(logging.ERROR)  # mlctl reports the error itself
        tracking.quiet_mlflow(verbose=True)
        assert logging.getLogger("mlflow.store.db.utils").isEnabledFor(logging.INFO)
    finally:
        tracking.quiet_mlflow(verbose=False)


READONLY = ("(raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block)\n"
            "(sqlite3.OperationalError) attempt to write a readonly database\n[SQL: INSERT INTO runs ...]")


def test_a_read_only_store_is_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import OperationalError

    from mlctl.core import locks
    from mlctl.core.errors import StateError

    db = tmp_path / "mlflow.db"
    db.write_bytes(b"")
    uri = f"sqlite:///{db}"
    with pytest.raises(StateError, match=f"cannot write to the MLflow tracking store {db}: read-only database"):
        with tracking.mlflow_errors(uri):
            raise MlflowException(READONLY)
    monkeypatch.setattr(locks, "_can_write", lambda p: False)  # as a user without the permission
    with pytest.raises(StateError) as info:
        with tracking.mlflow_errors(uri):
            raise MlflowException(READONLY)
    assert info.value.message == f"cannot write to the MLflow tracking store {db}: permission denied"
    with pytest.raises(StateError, match=f"cannot write to the MLflow tracking store {db}: permission denied"):
        with tracking.mlflow_errors(uri):  # SQLAlchemy's own error, not wrapped by MLflow
            raise OperationalError("INSERT", {}, Exception("attempt to write a readonly database"))
    with pytest.raises(OperationFailed, match="MLflow store sqlite:///.*: .*table experiments already exists"):
        with tracking.mlflow_errors(uri):
            raise OperationalError("CREATE TABLE", {}, Exception("table experiments already exists"))
    with pytest.raises(StateError, match="cannot access /p/.mlctl/mlartifacts/x: permission denied"):
        with tracking.mlflow_errors(uri):
            raise PermissionError(13, "Permission denied", "/p/.mlctl/mlartifacts/x")


def test_connect_refuses_an_unwritable_store_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlctl.core import locks
    from mlctl.core.config import load_config
    from mlctl.core.errors import StateError

    (tmp_path / "mlctl.yaml").write_text("project:\n  name: p\n", encoding="utf-8")
    (tmp_path / ".mlctl").mkdir()
    db = tmp_path / ".mlctl" / "mlflow.db"
    db.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(locks, "_can_write", lambda p: Path(p) != db)
    with pytest.raises(StateError) as info:
        tracking.connect(load_config())
    assert info.value.message == f"cannot write to the MLflow tracking store {db.resolve()}: permission denied"
    assert not (tmp_path / ".mlctl" / ".mlflow.db.lock").exists()
