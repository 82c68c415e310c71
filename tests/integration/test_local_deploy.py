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
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.base import DeploySpec
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
    with pytest.raises(OperationFailed, match="revision 2 .*revision 1 \\(churn:1\\) keeps serving"):
        target.apply(spec(broken, port, replicas=1))
    assert predict(status.endpoint, [0.0, 0.0, 0.0, 0.0])["version"] == "1"
    now = target.status("churn")
    # the status tells what serves (issue 8): version 1, revision 1, not the failed request
    assert (now.health, now.version, now.digest, now.endpoint) == ("healthy", "1", artifacts["1"].sha256,
                                                                   status.endpoint)
    assert now.details["revision"] == 1 and now.details["requested_revision"] == 2
    assert "revision 2:" in now.details["last_error"]

    # a server of the serving revision that crashes now comes back as version 1, not as the failed one
    (worker,) = now.details["workers"]
    os.kill(worker["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        again = target.status("churn")
        if again.replicas_ready == 1 and again.details["workers"][0]["pid"] != worker["pid"]:
            break
        time.sleep(0.2)
    assert again.health == "healthy" and again.details["workers"][0]["revision"] == 1
    assert predict(status.endpoint, [0.0, 0.0, 0.0, 0.0])["version"] == "1"

    # the next deploy gets a new revision number, never the failed one's
    fixed = target.apply(spec(artifacts["2"], port, replicas=1))
    assert fixed.version == "2" and fixed.details["revision"] == 3
    assert predict(status.endpoint, [0.0, 0.0, 0.0, 0.0])["version"] == "2"


def test_a_new_port_starts_beside_the_old_one(target: LocalTarget, artifacts: dict, tmp_path: Path) -> None:
    """Deploying to another port: the old port serves until the new one is ready, then closes."""
    old_port, new_port, taken_port = free_port(), free_port(), free_port()
    first = target.apply(spec(artifacts["1"], old_port, replicas=1))
    supervisor = target.supervisor_pid("churn")

    broken_file = tmp_path / "broken.skops"
    broken_file.write_bytes(artifacts["2"].path.read_bytes()[:-10] + b"tampered!!")
    broken = ModelArtifact("churn", "3", None, broken_file, artifacts["2"].sha256, "sklearn",
                           artifacts["2"].signature)
    with pytest.raises(OperationFailed, match="keeps serving on port"):
        target.apply(spec(broken, new_port, replicas=1))
    assert predict(first.endpoint, [0.0, 0.0, 0.0, 0.0])["version"] == "1"
    assert not _listening(new_port)  # the failed revision's socket is closed again
    now = target.status("churn")
    assert (now.version, now.endpoint) == ("1", first.endpoint)

    with socket.socket() as busy:  # a port held by someone else: refused before anything changes
        busy.bind(("127.0.0.1", taken_port))
        busy.listen()
        with pytest.raises(UsageError, match=f"port {taken_port} on 127.0.0.1 is already in use"):
            target.apply(spec(artifacts["2"], taken_port, replicas=1))
    assert predict(first.endpoint, [0.0, 0.0, 0.0, 0.0])["version"] == "1"

    moved = target.apply(spec(artifacts["2"], new_port, replicas=1))
    assert moved.endpoint == f"http://127.0.0.1:{new_port}" and moved.version == "2"
    assert predict(moved.endpoint, [0.0, 0.0, 0.0, 0.0])["version"] == "2"
    assert target.supervisor_pid("churn") == supervisor  # the same supervisor, one per deployment
    deadline = time.monotonic() + 30
    while _listening(old_port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _listening(old_port)


def test_a_second_deploy_while_one_runs_is_refused_naming_it(target: LocalTarget, artifacts: dict) -> None:
    import subprocess
    import sys

    from mlctl.lifecycle.deploy.lock import DeploymentBusy

    folder = target.folder("churn")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path\n"
         "from mlctl.lifecycle.deploy.lock import deployment_lock\n"
         f"with deployment_lock(Path({str(folder)!r}), 'churn', 'deploy'):\n"
         "    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(DeploymentBusy, match=f"deployment churn is busy: pid {holder.pid} ") as exc:
            target.apply(spec(artifacts["1"], free_port(), replicas=1))
        assert exc.value.details["holder"]["operation"] == "deploy"
        assert target.supervisor_pid("churn") is None and target.status("churn") is None
    finally:
        holder.communicate("", timeout=30)
    assert target.apply(spec(artifacts["1"], free_port(), replicas=1)).health == "healthy"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_port_in_use_is_refused(target: LocalTarget, artifacts: dict) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        held = f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()} "
        with pytest.raises(UsageError, match=held) as exc:
            target.apply(spec(artifacts["1"], port))
    assert exc.value.details["holder_pid"] == os.getpid()
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


def _workers_of(target: LocalTarget, name: str) -> list[dict]:
    return [w for w in target.status(name).details["workers"] if w["ready"]]


def test_scale_up_and_down_under_load_loses_no_request(target: LocalTarget, artifacts: dict) -> None:
    port = free_port()
    status = target.apply(spec(artifacts["1"], port, replicas=1))
    failures: list[str] = []
    answered: list[int] = []
    done = threading.Event()

    def client() -> None:  # paced: a request every 20 ms per client, not a flood that starves the servers
        while not done.is_set():
            try:
                predict(status.endpoint, [0.5, -0.2, 0.1, 0.0], timeout=30)
                answered.append(1)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                failures.append(repr(exc))
            done.wait(0.02)

    threads = [threading.Thread(target=client) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        up = target.scale("churn", 3)
        assert (up.replicas_desired, up.replicas_ready, up.health) == (3, 3, "healthy")
        assert len({w["pid"] for w in _workers_of(target, "churn")}) == 3
        live = json.loads((target.folder("churn") / "status.json").read_text())
        assert (live["desired_replicas"], live["ready_replicas"], live["revision"]) == (3, 3, 1)
        before = len(answered)
        deadline = time.monotonic() + 30
        while len(answered) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.05)  # requests keep flowing with three servers
        down = target.scale("churn", 1)
        assert (down.replicas_desired, down.replicas_ready, down.health) == (1, 1, "healthy")
        while len(answered) < before + 40 and time.monotonic() < deadline + 30:
            time.sleep(0.05)  # ... and with one again
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert failures == []
    assert len(answered) >= 40
    assert len(_workers_of(target, "churn")) == 1 and target.status("churn").details["revision"] == 1
    assert predict(status.endpoint, [0.0, 0.0, 0.0, 0.0])["version"] == "1"


def test_scale_checks_and_a_failed_revision_is_not_retried(target: LocalTarget, artifacts: dict,
                                                           tmp_path: Path) -> None:
    from mlctl.core.errors import NotFound

    with pytest.raises(NotFound):
        target.scale("nothing-here", 2)
    port = free_port()
    status = target.apply(spec(artifacts["1"], port, replicas=1))
    for bad in (-1, 65):
        with pytest.raises(UsageError, match="replicas"):
            target.scale("churn", bad)
    broken_file = tmp_path / "broken.skops"
    broken_file.write_bytes(artifacts["2"].path.read_bytes()[:-10] + b"tampered!!")
    broken = ModelArtifact("churn", "3", None, broken_file, artifacts["2"].sha256, "sklearn",
                           artifacts["2"].signature)
    with pytest.raises(OperationFailed):
        target.apply(spec(broken, port, replicas=1))
    # scaling after a failed revision scales what serves (revision 1) and does not start the failed one again
    scaled = target.scale("churn", 2)
    assert (scaled.version, scaled.replicas_ready, scaled.details["revision"]) == ("1", 2, 1)
    assert {w["revision"] for w in scaled.details["workers"]} == {1}
    zero = target.scale("churn", 0)
    assert (zero.replicas_desired, zero.replicas_ready) == (0, 0) and zero.details["workers"] == []
    again = target.scale("churn", 1)
    assert again.replicas_ready == 1 and predict(status.endpoint, [0.0, 0.0, 0.0, 0.0])["version"] == "1"
    target.stop("churn")
    with pytest.raises(OperationFailed, match="not running"):
        target.scale("churn", 2)
