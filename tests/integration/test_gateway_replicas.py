"""``mlctl serve start --replicas 2``: two gateway processes on one socket under the deployment
supervisor, a real registered model; a crashed process is restarted while the other serves, and
SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlctl.commands import main
from mlctl.engines import free_port
from tests.commands.test_train_cmd import make_project, mlflow_db_template  # noqa: F401 - fixture
from tests.support.local_servers import gone

pytestmark = pytest.mark.integration
MLCTL = str(Path(sys.executable).with_name("mlctl"))


def _predict(url: str) -> int:
    body = json.dumps({"records": [{"x1": 0.2, "x2": 0.7, "x3": 0.1, "colour": "red"}]}).encode()
    req = urllib.request.Request(url + "/v1/models/demo/predict", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_two_supervised_gateway_processes_on_one_port(isolated_env: Path, mlflow_db_template: Path,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(isolated_env / "proj", mlflow_db_template)
    monkeypatch.chdir(root)
    assert main(["-q", "train", "--register", "demo"]) == 0
    port = free_port()
    proc = subprocess.Popen([MLCTL, "serve", "start", "--models", "demo", "--replicas", "2", "--port", str(port),
                             "-o", "json"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1"})
    try:
        text = ""
        while True:  # one JSON document, once every process is ready
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, proc.stderr.read()  # type: ignore[union-attr]
            text += line
            if line.rstrip() == "}":
                break
        doc = json.loads(text)
        url = doc["endpoint"]
        assert doc["models"][0]["name"] == "demo" and url == f"http://127.0.0.1:{port}"
        status = json.loads((root / ".mlctl" / "gateway" / str(port) / "status.json").read_text())
        workers = [w["pid"] for w in status["workers"]]
        assert len(workers) == 2 and status["ready_replicas"] == 2
        assert [_predict(url) for _ in range(50)] == [200] * 50
        os.kill(workers[0], signal.SIGKILL)  # one process crashes; the other keeps serving
        assert [_predict(url) for _ in range(50)] == [200] * 50
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # the supervisor starts a new one in its slot
            status = json.loads((root / ".mlctl" / "gateway" / str(port) / "status.json").read_text())
            if status["ready_replicas"] == 2 and workers[0] not in [w["pid"] for w in status["workers"]]:
                break
            time.sleep(0.5)
        assert status["ready_replicas"] == 2, status
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    assert code == 0
    assert all(gone(pid) for pid in [w["pid"] for w in status["workers"]] + [doc["pid"]])
