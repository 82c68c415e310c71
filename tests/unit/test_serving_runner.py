"""run_server in this process: bind or adopt a socket, ready file, on_ready, graceful stop on signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlctl.core.errors import UsageError
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.serving import Predictor, ServerInfo, run_server
from mlctl.serving.runner import adopt_socket, bind_socket

SIG = {"inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}]}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Sum:
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return rows.sum(axis=1)


def predictor() -> Predictor:
    return Predictor(ModelArtifact("adder", "2", "stable", Path("m.skops"), "cd" * 32, signature=SIG), Sum())


def post(endpoint: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(f"{endpoint}/v1/predict", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with _OPENER.open(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def serve_then(action: Callable[[ServerInfo], None], sig: int = signal.SIGTERM, **kwargs: Any) -> dict[str, Any]:
    """Run the server in this (main) thread; ``action`` runs in a helper thread once ready, then ``sig`` stops it."""
    seen: dict[str, Any] = {}

    def on_ready(info: ServerInfo) -> None:
        seen["info"] = info
        if kwargs.get("ready_file") is not None:
            seen["ready_file_text"] = Path(kwargs["ready_file"]).read_text()

        def work() -> None:
            try:
                action(info)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                seen["error"] = exc
            finally:
                os.kill(os.getpid(), sig)

        threading.Thread(target=work, daemon=True).start()

    try:
        run_server(predictor(), on_ready=on_ready, log_level="warning", **kwargs)
    except KeyboardInterrupt:
        seen["interrupted"] = True
    if "error" in seen:
        raise seen["error"]
    return seen


def test_serves_on_a_port_writes_the_ready_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "run" / "ready"
    answers: list[Any] = []
    seen = serve_then(lambda info: answers.append(post(info.endpoint, {"records": [{"a": 1, "b": 2.5}]})),
                      port=0, ready_file=ready, max_batch=8)
    info = seen["info"]
    assert (info.model, info.version, info.alias, info.sha256, info.pid) == ("adder", "2", "stable", "cd" * 32,
                                                                             os.getpid())
    assert info.endpoint.startswith("http://127.0.0.1:")
    assert seen["ready_file_text"] == f"{os.getpid()}\n"
    assert answers == [(200, {"predictions": [3.5], "model": "adder", "version": "2"})]
    assert not ready.exists() and "interrupted" not in seen


def test_sigint_stops_gracefully_then_raises_keyboard_interrupt() -> None:
    seen = serve_then(lambda info: None, sig=signal.SIGINT, port=0)
    assert seen["interrupted"]


def test_serves_on_an_inherited_listening_socket() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = os.dup(listener.fileno())  # what a supervisor hands down; the server owns (and closes) its copy
    answers: list[Any] = []
    try:
        seen = serve_then(lambda info: answers.append(post(f"http://127.0.0.1:{port}", [{"a": 2, "b": 2}])), fd=fd)
        assert seen["info"].endpoint == f"http://127.0.0.1:{port}"
        assert answers == [(200, {"predictions": [4.0], "model": "adder", "version": "2"})]
        # The listener itself stays open for the next server.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        listener.close()


def test_a_ready_file_of_another_process_is_left_alone(tmp_path: Path) -> None:
    ready = tmp_path / "ready"

    def replace(info: ServerInfo) -> None:
        ready.write_text("999999\n")  # a newer server took over the file

    serve_then(replace, port=0, ready_file=ready)
    assert ready.read_text() == "999999\n"


def test_usage_and_bind_errors() -> None:
    with pytest.raises(UsageError, match="port or an inherited socket"):
        run_server(predictor(), port=None, fd=None)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()}"):
            run_server(predictor(), port=port)
    with pytest.raises(UsageError, match="cannot resolve host"):
        bind_socket("no-such-host.invalid", 0)
    r, w = os.pipe()
    try:
        with pytest.raises(UsageError, match="not a usable socket"):
            adopt_socket(r)
    finally:
        os.close(r)
        os.close(w)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(UsageError, match="not a stream socket"):
            adopt_socket(udp.fileno())


def test_bad_batching_settings_fail_before_binding() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        run_server(predictor(), port=0, max_batch=0)


def saved_artifact(tmp_path: Path) -> Path:
    from sklearn.ensemble import RandomForestRegressor

    from mlctl.lifecycle.serialize import save_model

    X = np.random.default_rng(0).normal(size=(50, 2))
    est = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, X.sum(axis=1))
    path = tmp_path / "model" / "model.skops"
    ModelArtifact("adder", "2", None, path, save_model(est, path), signature=SIG).to_json(path.parent / "artifact.json")
    return path.parent / "artifact.json"


def test_module_main_serves_an_artifact_until_sigterm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlctl.serving.__main__ import main

    artifact = saved_artifact(tmp_path)
    ready = tmp_path / "ready"
    answers: list[Any] = []

    def client() -> None:
        try:
            for _ in range(600):
                if ready.exists():
                    break
                threading.Event().wait(0.05)
            endpoint = f"http://127.0.0.1:{port}"
            answers.append(post(endpoint, [{"a": 1.0, "b": 1.0}]))
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=client, daemon=True).start()
    code = main(["--artifact", str(artifact), "--port", str(port), "--ready-file", str(ready), "--max-batch", "4",
                 "--max-wait-ms", "1", "--queue-size", "50", "--workers", "1", "--max-body-bytes", "10000",
                 "--log-level", "warning", "--no-fast-path"])
    assert code == 0
    assert answers and answers[0][0] == 200 and len(answers[0][1]["predictions"]) == 1


def test_module_main_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlctl.serving.__main__ import main

    assert main(["--artifact", str(tmp_path / "none.json")]) == 1
    assert capsys.readouterr().err == f"error: artifact file not found: {tmp_path / 'none.json'}\n"
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["--artifact", str(tmp_path / "bad.json")]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot read artifact {tmp_path / 'bad.json'}: ")
    artifact = saved_artifact(tmp_path)
    model = artifact.parent / "model.skops"
    model.write_bytes(b"garbage")
    assert main(["--artifact", str(artifact)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: model file ") and err.count("\n") == 1
    for argv in (["--artifact", "a.json", "--port", "1", "--fd", "3"], ["--artifact", "a.json", "--port", "99999"],
                 ["--artifact", "a.json", "--max-wait-ms", "-1"], ["--port", "1"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
