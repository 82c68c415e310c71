"""Tracking: URI resolution, reachability, error mapping, git commit and environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlctl.core.errors import NotFound, OperationFailed, ServiceUnavailable
from mlctl.core.services import free_port
from mlctl.lifecycle import tracking


def test_resolve_uri(tmp_path: Path) -> None:
    assert tracking.resolve_uri("sqlite:///.mlctl/mlflow.db", tmp_path) == f"sqlite:///{tmp_path}/.mlctl/mlflow.db"
    assert tracking.resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert tracking.resolve_uri("file:./mlruns", tmp_path) == (tmp_path / "mlruns").as_uri()
    assert tracking.resolve_uri("https://mlflow.example/", tmp_path) == "https://mlflow.example"
    assert tracking.resolve_uri("postgresql://u@h/db", tmp_path) == "postgresql+psycopg://u@h/db"


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
