"""The local target for real: a supervisor, model-server processes on a shared socket, a client."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlctl.core.errors import OperationFailed, UsageError
from mlctl.core.proc import free_port
from mlctl.lifecycle.deploy.base import DeploySpec, ModelArtifact
from mlctl.lifecycle.deploy.local import LocalTarget

FEATURES = [f"f{i}" for i in range(4)]


def make_artifact(folder: Path, version: str, n_estimators: int) -> ModelArtifact:
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from mlctl.lifecycle.serialize import save_model

    rng = np.random.default_rng(int(version))
    x = rng.normal(size=(200, len(FEATURES)))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(x, y)
    path = folder / f"v{version}" / "model.skops"
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = save_model(model, path)
    signature = {"inputs": [{"name": f, "type": "double"} for f in FEATURES],
                 "outputs": [{"name": "prediction", "type": "long"}]}
    return ModelArtifact("churn", version, "champion", path, sha, "sklearn", signature)


def predict(endpoint: str, row: list[float], timeout: float = 10.0) -> dict:
    body = json.dumps({"records": [dict(zip(FEATURES, row, strict=True))]}).encode()
    req = urllib.request.Request(f"{endpoint}/v1/predict", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LocalTarget]:
    t = LocalTarget(tmp_path / ".mlctl")
    yield t
    for name in t.list():
        t.stop(name)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelArtifact]:
    folder = tmp_path_factory.mktemp("models")
    return {"1": make_artifact(folder, "1", 10), "2": make_artifact(folder, "2", 20)}


def spec(artifact: ModelArtifact, port: int, replicas: int = 2, root: Path = Path(".")) -> DeploySpec:
    return DeploySpec("churn", artifact, replicas=replicas, port=port, project_root=root, ready_timeout_s=60)


def test_deploy_serves_and_restarts_a_crashed_server(target: LocalTarget, artifacts: dict) -> None:
    port = free_port()
    status = target.apply(spec(artifacts["1"], port))
    assert status.health == "healthy" and status.replicas_ready == 2 and status.endpoint == f"http://127.0.0.1:{port}"
    assert predict(status.endpoint, [1.0, 1.0, 0.0, 0.0])["version"] == "1"
    assert get_json(f"{status.endpoint}/metadata")["sha256"] == artifacts["1"].sha256
    workers = status.details["workers"]
    assert len({w["pid"] for w in workers}) == 2

    victim = workers[0]["pid"]
    os.kill(victim, signal.SIGKILL)  # a server process our supervisor started
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = target.status("churn")
        pids = {w["pid"] for w in now.details["workers"]}
        if victim not in pids and now.replicas_ready == 2:
            break
        time.sleep(0.2)
    assert victim not in pids and now.health == "healthy"
    assert max(w["restarts"] for w in now.details["workers"]) == 1
    assert "exited" in target.logs("churn")


def test_update_under_load_loses_no_request(target: LocalTarget, artifacts: dict) -> None:
    port = free_port()
    status = target.apply(spec(artifacts["1"], port))
    failures: list[str] = []
    versions: set[str] = set()
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            try:
                versions.add(predict(status.endpoint, [0.5, -0.2, 0.1, 0.0])["version"])
            except (urllib.error.URLError, OSError, ValueError) as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    updated = target.apply(spec(artifacts["2"], port))
    time.sleep(1.0)
    done.set()
    for t in threads:
        t.join(timeout=30)
    assert failures == []
    assert versions == {"1", "2"}
    assert updated.version == "2" and updated.details["revision"] == 2
    assert get_json(f"{status.endpoint}/metadata")["version"] == "2"


def test_a_broken_revision_keeps_the_old_one_serving(target: LocalTarget, artifacts: dict, tmp_path: Path) -> None:
    port = free_port()
    status = target.apply(spec(artifacts["1"], port, replicas=1))
    broken_file = tmp_path / "broken.skops"
    broken_file.write_bytes(artifacts["2"].path.read_bytes()[:-10] + b"tampered!!")
    broken = ModelArtifact("churn", "3", None, broken_file, artifacts["2"].sha256, "sklearn",
                           artifacts["2"].signature)
    with pytest.raises(OperationFailed, match="revision 2"):
        target.apply(spec(broken, port, replicas=1))
    assert predict(status.endpoint, [0.0, 0.0, 0.0, 0.0])["version"] == "1"
    assert target.status("churn").health == "healthy"


def test_port_in_use_is_refused(target: LocalTarget, artifacts: dict) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} is already in use"):
            target.apply(spec(artifacts["1"], port))
    assert target.supervisor_pid("churn") is None


def test_stop_is_idempotent(target: LocalTarget, artifacts: dict) -> None:
    target.apply(spec(artifacts["1"], free_port(), replicas=1))
    pid = target.supervisor_pid("churn")
    assert pid is not None
    assert target.stop("churn") is True
    assert target.stop("churn") is False
    assert target.status("churn").health == "down"
    assert not Path(f"/proc/{pid}").exists() or target.supervisor_pid("churn") is None


def test_plan_describes_without_changing(target: LocalTarget, artifacts: dict) -> None:
    plan = target.plan(spec(artifacts["1"], 8123))
    assert plan.target == "local" and "start a supervisor" in plan.actions[0]
    assert target.status("churn") is None
