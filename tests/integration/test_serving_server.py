"""The model server process for real: ``python -m mlctl.serving`` over loopback HTTP.

Covers what local deploys, Docker images and pods rely on: ready file, predictions equal to the
model's, bad input never 500 (10 MB body included), many concurrent clients with distinct rows,
graceful SIGTERM with in-flight requests, two processes on one inherited socket swapped without
a failed request, and one-line errors with exit codes; and ``mlctl serve model`` from a registry.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from mlctl.core.proc import free_port, wait_until
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.serialize import save_model

ROOT = Path(__file__).resolve().parents[2]
FEATURES = [f"f{i}" for i in range(5)]
SIGNATURE = {"inputs": [{"name": f, "type": "double"} for f in FEATURES],
             "outputs": [{"name": "label", "type": "long"}]}


@dataclass
class Model:
    artifact_json: Path
    artifact: ModelArtifact
    estimator: Any


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    folder = tmp_path_factory.mktemp("model")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, len(FEATURES)))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    est = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    path = folder / "model.skops"
    art = ModelArtifact("churn", "3", "champion", path, save_model(est, path), "sklearn", SIGNATURE, "run-1")
    art.to_json(folder / "artifact.json")
    return Model(folder / "artifact.json", art, est)


class Server:
    """One ``python -m mlctl.serving`` process; stopped by its PID."""

    def __init__(self, args: list[str], workdir: Path, pass_fds: tuple[int, ...] = (), port: int | None = None):
        self.ready_file = workdir / f"ready-{time.monotonic_ns()}"
        self.log = workdir / f"{self.ready_file.name}.log"
        self.port = port
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "mlctl.serving", *args,
                                          "--ready-file", str(self.ready_file)],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, pass_fds=pass_fds)

    def wait_ready(self, timeout: float = 240) -> Server:  # a liveness bound: a loaded 2-core machine is slow
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.log.read_text()}")
            return self.ready_file.exists()

        wait_until(ready, timeout=timeout, interval=0.05, what="the model server's ready file")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def start(servers: list[Server], model: Model, tmp_path: Path, *extra: str) -> Server:
    port = free_port()
    s = Server(["--artifact", str(model.artifact_json), "--port", str(port), *extra], tmp_path, port=port)
    servers.append(s)
    return s.wait_ready()


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def predict(port: int, rows: np.ndarray) -> list[Any]:
    body = json.dumps({"records": [dict(zip(FEATURES, map(float, r), strict=True)) for r in rows]}).encode()
    status, _, data = request(port, "POST", "/v1/predict", body, {"Content-Type": "application/json"})
    assert status == 200, data
    return json.loads(data)["predictions"]


def test_serves_the_model_and_stops_cleanly_on_sigterm(model: Model, servers: list[Server], tmp_path: Path) -> None:
    s = start(servers, model, tmp_path)
    assert s.ready_file.read_text().strip() == str(s.proc.pid)
    rows = np.random.default_rng(1).normal(size=(30, len(FEATURES)))
    assert predict(s.port, rows) == model.estimator.predict(rows).tolist()
    assert request(s.port, "GET", "/health")[0] == 200
    status, _, body = request(s.port, "GET", "/ready")
    assert status == 200 and json.loads(body)["version"] == "3"
    meta = json.loads(request(s.port, "GET", "/metadata")[2])
    assert (meta["name"], meta["version"], meta["alias"], meta["sha256"], meta["signature"]) == (
        "churn", "3", "champion", model.artifact.sha256, SIGNATURE)
    metrics = request(s.port, "GET", "/metrics")[2].decode()
    assert 'mlctl_http_requests_total{endpoint="/v1/predict",model="churn",status="200",version="3"} 1.0' in metrics
    assert s.stop() == 0
    assert not s.ready_file.exists()
    assert "serving churn version 3" in s.log.read_text()


def test_bad_input_over_http_is_4xx_never_500(model: Model, servers: list[Server], tmp_path: Path) -> None:
    s = start(servers, model, tmp_path)
    good = {f: 0.5 for f in FEATURES}
    cases = [
        (json.dumps({"records": [{**good, "f2": "x"}]}).encode(), 422),
        (json.dumps({"records": [{k: v for k, v in good.items() if k != "f4"}]}).encode(), 422),
        (json.dumps({"records": [{**good, "f9": 1}]}).encode(), 422),
        (json.dumps({"records": []}).encode(), 422),
        (json.dumps({"records": [1, 2]}).encode(), 422),
        (b'{"records": [{"f0": NaN}]}', 422),
        (b"{not json", 400),
        (b"\xff\xfe", 400),
        (json.dumps({"records": [good] * 200_000}).encode(), 413),  # about 14 MB
        (b"0" * 10_000_000, 413),
    ]
    for body, expected in cases:
        status, headers, data = request(s.port, "POST", "/v1/predict", body, {"Content-Type": "application/json"})
        assert status == expected, (body[:60], status, data[:200])
        assert headers["content-type"] == "application/json" and "detail" in json.loads(data)
    # A chunked body without Content-Length, over the limit.
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    conn.request("POST", "/v1/predict", body=iter([b" " * 65536] * 40), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    assert conn.getresponse().status == 413
    conn.close()
    assert predict(s.port, np.zeros((1, len(FEATURES)))) == model.estimator.predict(np.zeros((1, 5))).tolist()
    metrics = request(s.port, "GET", "/metrics")[2].decode()
    assert 'status="500"' not in metrics


def test_many_concurrent_clients_each_get_their_own_rows(model: Model, servers: list[Server],
                                                        tmp_path: Path) -> None:
    s = start(servers, model, tmp_path)
    rng = np.random.default_rng(5)
    batches = [rng.normal(size=(int(rng.integers(1, 4)), len(FEATURES))) * 2 for _ in range(240)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda rows: predict(s.port, rows), batches))
    for rows, got in zip(batches, answers, strict=True):
        assert got == model.estimator.predict(rows).tolist()
    metrics = request(s.port, "GET", "/metrics")[2].decode()
    count = next(line for line in metrics.splitlines() if line.startswith("mlctl_batch_size_rows_count"))
    assert 0 < float(count.split()[-1]) <= 240


SLOW_SERVER = """
import sys, time
from pathlib import Path
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.serving import Predictor, run_server

class Slow:
    def predict(self, rows):
        time.sleep(1.5)
        return rows[:, 0] * 2

art = ModelArtifact.from_json(Path(sys.argv[1]))
run_server(Predictor(art, Slow()), port=int(sys.argv[2]), ready_file=Path(sys.argv[3]))
"""


def test_sigterm_lets_in_flight_requests_finish(model: Model, tmp_path: Path) -> None:
    port = free_port()
    ready = tmp_path / "slow.ready"
    log = tmp_path / "slow.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(model.artifact_json), str(port), str(ready)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, timeout=240, what="the slow server")
        assert proc.poll() is None, log.read_text()
        result: dict[str, Any] = {}

        def call() -> None:
            body = json.dumps([{f: 2.0 for f in FEATURES}]).encode()
            result["answer"] = request(port, "POST", "/v1/predict", body)

        client = threading.Thread(target=call)
        client.start()

        def in_flight() -> bool:
            text = request(port, "GET", "/metrics")[2].decode()
            return any(line.startswith("mlctl_batches_in_flight") and line.endswith(" 1.0")
                       for line in text.splitlines())

        wait_until(in_flight, timeout=30, interval=0.02, what="the request to reach the model")
        proc.send_signal(signal.SIGTERM)
        client.join(60)
        status, _, data = result["answer"]
        assert status == 200 and json.loads(data)["predictions"] == [4.0]
        assert proc.wait(60) == 0
        assert not ready.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_servers_on_one_inherited_socket_swap_without_a_failed_request(model: Model, servers: list[Server],
                                                                          tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    args = ["--artifact", str(model.artifact_json), "--fd", str(fd)]
    old = Server(args, tmp_path, pass_fds=(fd,))
    servers.append(old)
    old.wait_ready()
    stop = threading.Event()
    outcomes: list[int | str] = []
    row = np.ones((1, len(FEATURES)))
    expected = model.estimator.predict(row).tolist()

    def client() -> None:
        while not stop.is_set():
            try:
                outcomes.append(200 if predict(port, row) == expected else "wrong answer")
            except (OSError, http.client.HTTPException, AssertionError) as exc:
                outcomes.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(outcomes) >= 20, timeout=180, what="requests to the old server")
        new = Server(args, tmp_path, pass_fds=(fd,))
        servers.append(new)
        new.wait_ready()
        before = len(outcomes)
        assert old.stop() == 0  # graceful: the new process keeps accepting on the same socket
        wait_until(lambda: len(outcomes) >= before + 30, timeout=180, what="requests after the swap")
        assert new.proc.poll() is None
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        listener.close()
    failures = [o for o in outcomes if o != 200]
    assert failures == [] and len(outcomes) >= 50


def test_errors_are_one_line_with_exit_codes(model: Model, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mlctl.serving", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    missing = run("--artifact", str(tmp_path / "nope.json"), "--port", "0")
    assert missing.returncode == 1
    assert missing.stderr == f"error: artifact file not found: {tmp_path / 'nope.json'}\n"

    folder = tmp_path / "tampered"
    folder.mkdir()
    (folder / "model.skops").write_bytes(Path(model.artifact.path).read_bytes() + b"\0")
    ModelArtifact(**{**model.artifact.__dict__, "path": folder / "model.skops"}).to_json(folder / "artifact.json")
    tampered = run("--artifact", str(folder / "artifact.json"), "--port", "0")
    assert tampered.returncode == 1
    assert len(tampered.stderr.splitlines()) == 1 and "refusing to load it" in tampered.stderr

    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = run("--artifact", str(model.artifact_json), "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2 and f"is already in use by pid {os.getpid()}" in busy.stderr

    both = run("--artifact", str(model.artifact_json), "--port", "1", "--fd", "3")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert run("--port", "1").returncode == 2
    assert run("--artifact", "x.json", "--max-batch", "0").returncode == 2


def test_ctrl_c_stops_gracefully_with_exit_130(model: Model, servers: list[Server], tmp_path: Path) -> None:
    s = start(servers, model, tmp_path)
    assert s.stop(signal.SIGINT) == 130
    assert not s.ready_file.exists()


def test_the_command_line_flags_reach_the_batcher(model: Model, servers: list[Server], tmp_path: Path) -> None:
    s = start(servers, model, tmp_path, "--queue-size", "3", "--max-batch", "2", "--max-wait-ms", "0.5")
    rows = np.zeros((4, len(FEATURES)))
    body = json.dumps({"records": [dict(zip(FEATURES, map(float, r), strict=True)) for r in rows]}).encode()
    status, _, data = request(s.port, "POST", "/v1/predict", body)
    assert status == 413 and "at most 3" in json.loads(data)["detail"][0]["msg"]
    assert os.path.exists(s.ready_file)


def test_mlctl_serve_model_resolves_the_registered_model_and_passes_its_flags(model: Model, tmp_path: Path) -> None:
    """``mlctl serve model NAME@ALIAS`` on the embedded store: resolved without MLflow (the version's
    folder copied and verified), ``--workers`` and ``--no-fast-path`` reach the server."""
    import shutil

    import yaml

    from mlctl.lifecycle.tracking import quiet_mlflow

    quiet_mlflow()
    from mlflow import MlflowClient

    root = tmp_path / "proj"
    (root / ".mlctl").mkdir(parents=True)
    (root / "mlctl.yaml").write_text("project: {name: served}\n", encoding="utf-8")
    registered = tmp_path / "registered"
    registered.mkdir()
    shutil.copy(model.artifact.path, registered / "model.skops")
    (registered / "MLmodel").write_text(yaml.safe_dump({
        "flavors": {"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops",
                                "skops_trusted_types": ["sklearn.tree._tree.Tree"]}},
        "signature": {"inputs": json.dumps(SIGNATURE["inputs"]), "outputs": json.dumps(SIGNATURE["outputs"])}}))
    uri = f"sqlite:///{root / '.mlctl' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("churn")
    client.create_model_version("churn", registered.as_uri(), tags={"mlctl.artifact_sha256": model.artifact.sha256,
                                                                    "mlctl.artifact_path": "model.skops",
                                                                    "mlctl.flavor": "sklearn"})
    client.set_registered_model_alias("churn", "champion", "1")

    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mlctl", "serve", "model", "churn@champion", "--port", str(port),
                                 "--workers", "2", "--no-fast-path", "-v", "-o", "json"],
                                cwd=root, stdout=subprocess.PIPE, stderr=err)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"mlctl serve exited with {proc.returncode}: {log.read_text()}")
            try:
                return request(port, "GET", "/ready")[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=120, interval=0.05, what="mlctl serve model")
        rows = np.random.default_rng(2).normal(size=(20, len(FEATURES)))
        assert predict(port, rows) == model.estimator.predict(rows).tolist()
        meta = json.loads(request(port, "GET", "/metadata")[2])
        assert (meta["name"], meta["version"], meta["alias"], meta["sha256"]) == (
            "churn", "1", "champion", model.artifact.sha256)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()
    doc = json.loads(out)
    assert (doc["model"], doc["version"], doc["alias"], doc["endpoint"]) == (
        "churn", "1", "champion", f"http://127.0.0.1:{port}")
    text = log.read_text()
    assert "workers=2" in text and "predict=RandomForestClassifier.predict" in text
    copied = root / ".mlctl" / "models" / "churn" / "1" / "model.skops"
    assert copied.read_bytes() == model.artifact.path.read_bytes()
