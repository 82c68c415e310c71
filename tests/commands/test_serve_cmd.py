"""``mlctl serve model``: options -> resolve_model -> Predictor.from_artifact -> run_server; output and errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

import mlctl.lifecycle.registry as registry
import mlctl.serving.runner as runner
from mlctl.core.errors import NotFound
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.serialize import save_model
from mlctl.serving import Predictor
from tests.commands.test_fast_start import HEAVY, loaded

SIG = {"inputs": [{"name": f"f{i}", "type": "double"} for i in range(3)], "outputs": [{"name": "y", "type": "long"}]}


@pytest.fixture
def saved(tmp_path: Path) -> ModelArtifact:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    est = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
    path = tmp_path / "m" / "model.skops"
    return ModelArtifact(name="fraud", version="4", alias="champion", path=path, sha256=save_model(est, path),
                         signature=SIG)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, saved: ModelArtifact) -> dict[str, Any]:
    """resolve_model returns ``saved``; run_server records its arguments and reports ready."""
    seen: dict[str, Any] = {}

    def resolve(ref: str, loaded_config: Any) -> ModelArtifact:
        seen["ref"] = ref
        seen["config_port"] = loaded_config.config.deploy.port
        if ref.startswith("missing"):
            raise NotFound(f"model '{ref}' not found", hint="mlctl models list")
        return saved

    def run_server(predictor: Predictor, **kwargs: Any) -> None:
        seen["predictor"] = predictor
        seen.update(kwargs)
        kwargs["on_ready"](runner.ServerInfo(predictor.name, predictor.version, predictor.artifact.alias,
                                             predictor.artifact.sha256, f"http://{kwargs['host']}:{kwargs['port']}",
                                             1234))

    monkeypatch.setattr(registry, "resolve_model", resolve)
    monkeypatch.setattr(runner, "run_server", run_server)
    return seen


def test_serve_model_resolves_loads_and_serves_with_the_flags(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                              calls: dict[str, Any], saved: ModelArtifact) -> None:
    monkeypatch.chdir(project)
    r = cli("serve", "model", "fraud@champion", "--port", "9001", "--host", "0.0.0.0", "--max-batch", "32",
            "--max-wait-ms", "1.5", "--queue-size", "200")
    assert r.code == 0, r.err
    assert r.out == ""
    assert r.err == "Serving fraud version 4 (champion) at http://0.0.0.0:9001 (Ctrl-C to stop)\n"
    assert calls["ref"] == "fraud@champion"
    predictor = calls["predictor"]
    assert isinstance(predictor, Predictor) and predictor.artifact == saved and predictor.fast_path
    assert {k: calls[k] for k in ("host", "port", "max_batch", "max_wait_ms", "queue_size", "log_level")} == {
        "host": "0.0.0.0", "port": 9001, "max_batch": 32, "max_wait_ms": 1.5, "queue_size": 200,
        "log_level": "warning"}


def test_the_port_defaults_to_deploy_port(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                          calls: dict[str, Any]) -> None:
    monkeypatch.chdir(project)  # its mlctl.yaml sets deploy.port: 8100
    r = cli("serve", "model", "fraud@champion")
    assert r.code == 0, r.err
    assert calls["port"] == 8100 and calls["host"] == "127.0.0.1"
    assert (calls["max_batch"], calls["max_wait_ms"], calls["queue_size"]) == (64, 2.0, 1024)
    assert calls["workers"] == 1 and calls["predictor"].fast_path


def test_workers_and_no_fast_path_reach_the_server(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                   calls: dict[str, Any], saved: ModelArtifact) -> None:
    import gc

    monkeypatch.chdir(project)
    r = cli("serve", "model", "fraud@champion", "--workers", "3", "--no-fast-path")
    assert r.code == 0, r.err
    assert calls["workers"] == 3
    predictor = calls["predictor"]
    assert predictor.artifact == saved and not predictor.fast_path  # the estimator's own predict
    assert gc.isenabled()  # the start's pause on the collector ended with the command


def test_json_output_is_one_document_once_ready(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                calls: dict[str, Any], saved: ModelArtifact) -> None:
    monkeypatch.chdir(project)
    r = cli("serve", "model", "fraud@champion", "-p", "9002", "-o", "json")
    assert r.code == 0 and r.err == ""
    assert json.loads(r.out) == {"model": "fraud", "version": "4", "alias": "champion", "sha256": saved.sha256,
                                 "endpoint": "http://127.0.0.1:9002", "pid": 1234}


def test_quiet_prints_nothing_and_verbose_shows_server_logs(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                            calls: dict[str, Any]) -> None:
    monkeypatch.chdir(project)
    r = cli("serve", "model", "fraud@champion", "-q")
    assert r.code == 0 and r.out == "" and r.err == ""
    r = cli("serve", "model", "fraud@champion", "-v")
    assert r.code == 0 and calls["log_level"] == "info"


def test_an_unknown_model_exits_2_with_the_registry_message(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                            calls: dict[str, Any]) -> None:
    monkeypatch.chdir(project)
    r = cli("serve", "model", "missing@champion", "-o", "json")
    assert r.code == 2 and r.out == ""
    assert json.loads(r.err) == {"error": {"type": "NotFound", "message": "model 'missing@champion' not found",
                                           "hint": "mlctl models list"}}
    assert "predictor" not in calls


def test_a_tampered_model_exits_1(cli, project: Path, monkeypatch: pytest.MonkeyPatch, calls: dict[str, Any],
                                  saved: ModelArtifact) -> None:
    monkeypatch.chdir(project)
    Path(saved.path).write_bytes(Path(saved.path).read_bytes() + b"!")
    r = cli("serve", "model", "fraud@champion")
    assert r.code == 1
    assert r.err.startswith("Error: model file ") and "refusing to load it" in r.err
    assert "predictor" not in calls


def test_a_port_in_use_exits_2_naming_the_holder(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                  saved: ModelArtifact) -> None:
    """A port held by another process is a usage problem: exit 2, as `mlctl deploy` does (issue 8)."""
    import os
    import socket

    monkeypatch.chdir(project)
    monkeypatch.setattr(registry, "resolve_model", lambda ref, loaded_config: saved)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("serve", "model", "fraud@champion", "--port", str(port))
        j = cli("serve", "model", "fraud@champion", "--port", str(port), "-o", "json")
    assert r.code == 2
    lines = r.err.splitlines()
    assert lines[0].startswith(f"Error: port {port} on 127.0.0.1 is already in use by pid {os.getpid()} (")
    assert lines[1:] == ["Hint: choose another --port, or stop what listens there"]
    assert j.code == 2 and j.out == ""
    error = json.loads(j.err)["error"]
    assert error["type"] == "UsageError" and error["details"] == {"port": port, "host": "127.0.0.1",
                                                                  "holder_pid": os.getpid()}


def test_other_server_failures_still_exit_1(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                            saved: ModelArtifact) -> None:
    from mlctl.core.errors import OperationFailed

    def fails(predictor: Predictor, **kwargs: Any) -> None:
        raise OperationFailed("the model server failed to start; see the log lines above")

    monkeypatch.chdir(project)
    monkeypatch.setattr(registry, "resolve_model", lambda ref, loaded_config: saved)
    monkeypatch.setattr(runner, "run_server", fails)
    r = cli("serve", "model", "fraud@champion", "--port", "0")
    assert r.code == 1 and r.err.startswith("Error: the model server failed to start")


@pytest.mark.parametrize("args", [["serve", "model"], ["serve", "model", "m@a", "--port", "70000"],
                                  ["serve", "model", "m@a", "--max-batch", "0"],
                                  ["serve", "model", "m@a", "--workers", "0"]])
def test_usage_errors_exit_2(cli, args: list[str]) -> None:
    assert cli(*args).code == 2


def test_help_has_an_example(cli) -> None:
    r = cli("serve", "model", "--help")
    assert r.code == 0 and "Example: mlctl serve model fraud@champion --port 8000" in r.out
    r = cli("serve", "--help")
    assert r.code == 0 and "model" in r.out


@pytest.mark.parametrize("args", [["serve", "--help"], ["serve", "model", "--help"]])
def test_serve_help_imports_nothing_heavy(args: list[str], project: Path) -> None:
    result = loaded(args, project, [*HEAVY, "fastapi", "uvicorn", "starlette", "prometheus_client"])
    assert result == {"code": 0, "heavy": []}


# --------------------------------------------------------------------------- serve start (the gateway)


@pytest.fixture
def gateway_calls(monkeypatch: pytest.MonkeyPatch, saved: ModelArtifact) -> dict[str, Any]:
    """resolve_model gives ``saved`` as the version a reference names (``NAME``: 4, ``@champion``: 4,
    ``@challenger``: 5, ``:N``: N); run_asgi runs the app's lifespan and reports ready."""
    import asyncio
    import dataclasses

    seen: dict[str, Any] = {"refs": []}

    def resolve(ref: str, loaded_config: Any) -> ModelArtifact:
        seen["refs"].append(ref)
        if ref.startswith("missing"):
            raise NotFound(f"model '{ref}' not found", hint="mlctl models list")
        version = ref.split(":")[1] if ":" in ref else ("5" if ref.endswith("@challenger") else "4")
        return dataclasses.replace(saved, name=ref.split("@")[0].split(":")[0], version=version,
                                   alias=ref.split("@")[1] if "@" in ref else "champion")

    def run_asgi(app: Any, describe: Any, **kwargs: Any) -> None:
        seen["app"] = app
        seen.update(kwargs)

        async def main() -> None:
            async with app.router.lifespan_context(app):
                kwargs["on_ready"](describe(f"http://{kwargs['host']}:{kwargs['port']}"))

        asyncio.run(main())

    monkeypatch.setattr(registry, "resolve_model", resolve)
    monkeypatch.setattr(runner, "run_asgi", run_asgi)
    return seen


def test_serve_start_loads_each_model_and_prints_its_endpoints(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                               gateway_calls: dict[str, Any]) -> None:
    monkeypatch.chdir(project)
    r = cli("serve", "start", "--models", "fraud,churn,fraud", "-p", "9003", "--max-batch", "8")
    assert r.code == 0, r.err
    assert gateway_calls["refs"] == ["fraud", "churn"]  # each model once, its default version
    assert r.err.splitlines() == [
        f"Gateway at http://127.0.0.1:9003 (pid {os.getpid()}; Ctrl-C to stop)",
        "  http://127.0.0.1:9003/v1/models/churn/predict: versions 4 (default 4)",
        "  http://127.0.0.1:9003/v1/models/fraud/predict: versions 4 (default 4)",
    ]
    app = gateway_calls["app"]
    assert app.models["fraud"].versions["4"].settings["max_batch"] == 8 and gateway_calls["port"] == 9003


def test_serve_start_loads_every_version_a_running_experiment_names(cli, project: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     gateway_calls: dict[str, Any]) -> None:
    from mlctl.serving.experiments.definition import new_experiment
    from mlctl.serving.experiments.store import open_store

    monkeypatch.chdir(project)
    with open_store("sqlite", base=project / ".mlctl") as store:
        store.create(new_experiment("ab", "fraud", "champion:50,challenger:50", shadow="7:10"))
    r = cli("serve", "start", "--models", "fraud", "-o", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["models"] == [{"name": "fraud", "versions": ["4", "5", "7"], "aliases": {"champion": "4",
                              "challenger": "5"}, "default": "4", "experiment": "ab"}]
    assert doc["store"].endswith(".mlctl/experiments.db") and doc["endpoint"] == "http://127.0.0.1:8100"
    assert gateway_calls["refs"] == ["fraud", "fraud@champion", "fraud@challenger", "fraud:7"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), 2, "name the models to serve"),
        (("--models", "fraud", "--all"), 2, "not both"),
        (("--models", "missing"), 2, "model 'missing' not found"),
    ],
)
def test_serve_start_refuses_what_it_cannot_serve(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                  gateway_calls: dict[str, Any], args: tuple[str, ...], code: int,
                                                  message: str) -> None:
    monkeypatch.chdir(project)
    r = cli("serve", "start", *args)
    assert r.code == code and message in r.err and "app" not in gateway_calls


# --------------------------------------------------------------------------- serve status


@pytest.fixture
def live_gateway(saved: ModelArtifact) -> Any:
    """A real gateway (two versions of fraud, champion -> 4) served by uvicorn in a thread."""
    import dataclasses
    import socket
    import threading
    import time

    import uvicorn

    from mlctl.serving import create_app
    from mlctl.serving.gateway import Gateway, ServedModel

    apps = {v: create_app(Predictor.from_artifact(dataclasses.replace(saved, version=v))) for v in ("4", "5")}
    gw = Gateway({"fraud": ServedModel("fraud", apps, {"champion": "4"}, "4", "champion", {"4": 3 * 2**20})})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(gw, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)
    sock.close()


def test_serve_status_shows_each_loaded_version(cli, project: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                                                live_gateway: str) -> None:
    monkeypatch.chdir(project)
    r = cli("serve", "status", "--gateway", live_gateway, "-o", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out) == {"endpoint": live_gateway, "ready": True, "models": [
        {"name": "fraud", "versions": ["4", "5"], "aliases": {"champion": "4"}, "default": "4", "experiment": None,
         "memory_bytes": {"4": 3 * 2**20, "5": None}}]}
    r = cli("serve", "status", "--gateway", live_gateway)
    assert r.code == 0 and "3.0" in r.out and "champion" in r.out and "(ready)" in r.out


def test_serve_status_of_a_gateway_that_is_not_there_exits_4(cli, project: Path,  # noqa: ANN001
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mlctl.engines import free_port

    monkeypatch.chdir(project)
    r = cli("serve", "status", "--gateway", f"http://127.0.0.1:{free_port()}", "-o", "json")
    assert r.code == 4 and json.loads(r.err)["error"]["type"] == "ServiceUnavailable"


# --------------------------------------------------------------------------- serve manifests


def test_serve_manifests_validate_and_take_their_urls_from_config(cli, project: Path,  # noqa: ANN001
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.k8s_validate import validate_strict

    (project / "validate").mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLCTL_SERVE__STATE", "redis://redis:6379/0")
    monkeypatch.setenv("MLCTL_TRACKING__URI", "http://mlflow:5000")
    r = cli("serve", "manifests", "--models", "churn,fraud", "--image", "mlctl:1", "--hpa-max", "6", "--cpu", "1",
            "-o", "json")
    assert r.code == 0, r.err
    docs = json.loads(r.out)["manifests"]
    assert [m["kind"] for m in docs] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    check = validate_strict(project / "validate", docs)
    assert check.returncode == 0, check.stdout + check.stderr
    container = docs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:4] == ["mlctl", "serve", "start", "--models"] and "churn,fraud" in container["command"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLCTL_SERVE__STATE"] == "redis://redis:6379/0" and env["MLCTL_TRACKING__URI"] == "http://mlflow:5000"
    out = project / "k8s" / "gateway.yaml"
    r = cli("serve", "manifests", "--models", "churn", "--image", "mlctl:1", "--state-secret", "redis:url",
            "--out", str(out))
    assert r.code == 0 and "wrote Kubernetes manifests" in r.out
    text = out.read_text()
    assert "secretKeyRef" in text and "&id" not in text and text.count("\n---\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "must be Redis"),  # the project's embedded sqlite state
        (("--state", "redis://u:pw@redis:6379/0"), "--state-secret NAME:url"),
        (("--state-secret", "nokey"), "SECRET:KEY"),
        (("--state", "redis://redis:6379/0", "--hpa-cpu", "70"), "--hpa-max"),
    ],
)
def test_serve_manifests_refuse_what_replicas_cannot_share(cli, project: Path,  # noqa: ANN001
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            args: tuple[str, ...], message: str) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLCTL_TRACKING__URI", "http://mlflow:5000")
    r = cli("serve", "manifests", "--models", "churn", "--image", "mlctl:1", *args)
    assert r.code == 2 and message in r.err
