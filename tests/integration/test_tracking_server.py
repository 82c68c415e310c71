"""``mlctl train`` / ``mlctl models`` / ``resolve_model`` against a real MLflow tracking server whose
backend store is PostgreSQL (the ``mlflow_server`` fixture) and which proxies the artifacts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import pytest

from mlctl.commands import main
from mlctl.core.config import load_config
from mlctl.engines import Service, find_binary
from mlctl.lifecycle import registry, serialize
from tests.commands.test_train_cmd import make_project

pytestmark = pytest.mark.integration


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _psql(backend_store_uri: str, sql: str) -> str:
    psql = shutil.which("psql") or find_binary("psql")
    assert psql
    url = backend_store_uri.replace("postgresql+psycopg://", "postgresql://", 1)
    result = subprocess.run([psql, url, "-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True,
                            text=True, timeout=30, env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_train_register_promote_and_resolve_on_the_server(mlflow_server: Service, isolated_env: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(isolated_env / "proj", None)
    monkeypatch.chdir(root)
    uri = mlflow_server.url
    name = f"srv-{uuid.uuid4().hex[:8]}"

    code, out, err = _cli(capsys, "train", "--tracking-uri", uri, "--register", name, "-o", "json")
    assert code == 0, err
    first = json.loads(out)
    assert first["registered"] == {"name": name, "version": "1", "alias": "challenger"}
    code, out, err = _cli(capsys, "train", "--tracking-uri", uri, "--register", name, "-p", "n_estimators=3",
                          "-p", "max_depth=2", "-o", "json")
    assert code == 0, err
    second = json.loads(out)
    assert second["registered"]["version"] == "2"
    assert not (root / ".mlctl" / "mlflow.db").exists()  # nothing tracked locally

    code, out, err = _cli(capsys, "models", "list", "--tracking-uri", uri, "-o", "json")
    assert code == 0, err
    [listed] = [m for m in json.loads(out) if m["name"] == name]
    assert listed["latest_version"] == "2" and listed["aliases"] == {"challenger": "2"}

    code, out, err = _cli(capsys, "models", "show", name, "--tracking-uri", uri, "-o", "json")
    assert code == 0, err
    versions = json.loads(out)["versions"]
    assert [v["artifact_sha256"] for v in versions] == [first["artifact_sha256"], second["artifact_sha256"]]
    assert versions[0]["metrics"]["accuracy"] == pytest.approx(first["metrics"]["accuracy"])

    code, out, err = _cli(capsys, "models", "compare", name, "1", "2", "--tracking-uri", uri, "-o", "json")
    assert code == 0, err
    params = {p["name"]: p for p in json.loads(out)["params"]}
    assert (params["n_estimators"]["v1"], params["n_estimators"]["v2"]) == ("10", "3")

    code, out, err = _cli(capsys, "models", "promote", name, "1", "--tracking-uri", uri, "-o", "json")
    assert code == 0 and json.loads(out)["changed"] is True, err
    code, out, err = _cli(capsys, "models", "promote", name, "1", "--tracking-uri", uri, "-o", "json")
    assert code == 0 and json.loads(out)["changed"] is False, err
    code, out, err = _cli(capsys, "models", "show", f"{name}x", "--tracking-uri", uri, "-o", "json")
    assert code == 2 and name in json.loads(err)["error"]["hint"]

    loaded = load_config({"tracking.uri": uri}, start=root, use_user_file=False, env={})
    art = registry.resolve_model(name, loaded)  # bare name -> champion
    assert (art.version, art.alias, art.sha256) == ("1", "champion", first["artifact_sha256"])
    assert art.path == root / ".mlctl" / "models" / name / "1" / "model.skops"
    assert art.signature["outputs"] == [{"name": "label", "type": "string"}]
    assert registry.set_alias(name, "champion", "2", loaded) == "1"
    model = serialize.load_model(registry.resolve_model(f"{name}@champion", loaded))
    assert model.predict(pd.DataFrame([{"x1": 0.9, "x2": 0.8, "x3": 0.1, "colour": "red"}]))[0] in ("good", "bad")

    backend = getattr(mlflow_server, "info", {}).get("backend_store_uri")
    if backend:  # our own server: the registry really lives in PostgreSQL, the artifacts behind the server
        rows = _psql(backend, f"SELECT version FROM model_versions WHERE name = '{name}' ORDER BY version")
        assert rows.split() == ["1", "2"]
        runs = _psql(backend, f"SELECT count(*) FROM runs WHERE run_uuid IN ('{first['run_id']}', "
                              f"'{second['run_id']}') AND status = 'FINISHED'")
        assert runs.strip() == "2"
        stored = Path(mlflow_server.info["artifacts_destination"])
        files = [p for p in stored.rglob("model.skops") if first["run_id"] in str(p)]
        assert len(files) == 1 and serialize.sha256_file(files[0]) == first["artifact_sha256"]
