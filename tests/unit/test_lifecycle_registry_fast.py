"""Resolving registered models without MLflow (``mlctl.lifecycle.registry_fast``): the same
artifacts and the same errors as MLflow's client, and a fall-back to it where it cannot answer.

One MLflow SQLite store per module, written with MLflow's own client: model ``fraud`` (versions 1,
2 and a deleted 3; ``champion`` -> 1, ``challenger`` -> 2), ``bare`` (versions 1 and 2, no alias),
``empty`` (no version) and ``untagged`` (a version without mlctl's SHA-256 tag). A faithful
stand-in for an MLflow tracking server's REST API answers from that store with MLflow's own JSON
(entities' protos through ``message_to_json``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.ensemble import RandomForestClassifier

from mlctl.core.config import LoadedConfig, load_config
from mlctl.core.errors import NotFound, OperationFailed
from mlctl.lifecycle import registry
from mlctl.lifecycle.registry_fast import CannotAnswer, RestReader, SqliteReader, reader_for
from mlctl.lifecycle.serialize import ArtifactTampered, save_model

SIG = {"inputs": [{"name": f"f{i}", "type": "double"} for i in range(3)], "outputs": [{"name": "y", "type": "long"}]}
REFS = ["fraud@champion", "fraud@challenger", "fraud:1", "fraud:2", "fraud", "bare", "bare:1"]
MISSING = {
    "ghost": ("no registered model named 'ghost'", "registered models: bare, empty, fraud, untagged"),
    "ghost@champion": ("no registered model named 'ghost'", "registered models: bare, empty, fraud, untagged"),
    "fraud@staging": ("model 'fraud' has no alias 'staging'", "aliases: challenger -> v2, champion -> v1"),
    "bare@champion": ("model 'bare' has no alias 'champion'",
                      "'bare' has no aliases yet; set one with `mlctl models promote bare VERSION --alias champion`"),
    "fraud:9": ("model 'fraud' has no version 9", "versions: 1, 2"),
    "fraud:3": ("model 'fraud' has no version 3", "versions: 1, 2"),  # deleted
    "empty": ("model 'empty' has no versions", "register one with `mlctl train --register`"),
    "empty:1": ("model 'empty' has no version 1", "it has no versions yet"),
}


def _model_folder(folder: Path, seed: int) -> str:
    """An MLflow model folder as mlctl train writes it (model.skops + MLmodel); its SHA-256."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3))
    est = RandomForestClassifier(n_estimators=3, random_state=seed).fit(X, (X[:, 0] > 0).astype(int))
    sha = save_model(est, folder / "model.skops")
    (folder / "MLmodel").write_text(yaml.safe_dump({
        "flavors": {"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops",
                                "skops_trusted_types": ["sklearn.tree._tree.Tree"]}},
        "signature": {"inputs": json.dumps(SIG["inputs"]), "outputs": json.dumps(SIG["outputs"])}}))
    return sha


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from mlctl.lifecycle.tracking import quiet_mlflow

    quiet_mlflow()
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("registry") / "proj"
    (root / ".mlctl").mkdir(parents=True)
    (root / "mlctl.yaml").write_text("project: {name: reg}\n", encoding="utf-8")
    db = root / ".mlctl" / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    shas: dict[tuple[str, str], str] = {}

    def add(name: str, version: int, *, tagged: bool = True) -> None:
        folder = root / "artifacts" / f"{name}-{version}"
        folder.mkdir(parents=True)
        sha = _model_folder(folder, version)
        tags = {"mlctl.artifact_path": "model.skops", "mlctl.flavor": "sklearn"}
        if tagged:
            tags["mlctl.artifact_sha256"] = sha
        mv = client.create_model_version(name, source=folder.as_uri(), run_id=None, tags=tags)
        assert str(mv.version) == str(version)
        shas[(name, str(version))] = sha

    for name in ("fraud", "bare", "empty", "untagged"):
        client.create_registered_model(name)
    for version in (1, 2, 3):
        add("fraud", version)
    client.delete_model_version("fraud", "3")
    client.set_registered_model_alias("fraud", "champion", "1")
    client.set_registered_model_alias("fraud", "challenger", "2")
    add("bare", 1)
    add("bare", 2)
    add("untagged", 1, tagged=False)
    return {"root": root, "db": db, "client": client, "shas": shas}


@pytest.fixture
def loaded(store: dict[str, Any]) -> LoadedConfig:
    shutil.rmtree(store["root"] / ".mlctl" / "models", ignore_errors=True)
    return load_config(start=store["root"], use_user_file=False, env={})


def _errors(ref: str, loaded: LoadedConfig) -> list[tuple[str, str | None]]:
    out = []
    for fast in (True, False):
        with pytest.raises(NotFound) as info:
            registry.resolve_model(ref, loaded, fast=fast)
        out.append((info.value.message, info.value.hint))
    return out


# --------------------------------------------------------------------------- same answers as MLflow


@pytest.mark.parametrize("ref", REFS)
def test_the_fast_path_gives_the_artifact_mlflow_gives(ref: str, loaded: LoadedConfig, store: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fast = registry.resolve_model(ref, loaded)  # no local copy yet: copied from the artifact store
    monkeypatch.setattr(registry, "_download", lambda *a: pytest.fail("the fast path must not download"))
    again = registry.resolve_model(ref, loaded)  # the verified local copy
    monkeypatch.undo()
    shutil.rmtree(store["root"] / ".mlctl" / "models")
    slow = registry.resolve_model(ref, loaded, fast=False)  # downloaded by MLflow
    assert fast == again == slow
    assert fast.sha256 == store["shas"][(fast.name, fast.version)]
    assert fast.path == store["root"] / ".mlctl" / "models" / fast.name / fast.version / "model.skops"
    assert fast.signature == SIG and fast.flavor == "sklearn" and fast.run_id is None


def test_aliases_and_bare_names_resolve_as_documented(loaded: LoadedConfig) -> None:
    got = {ref: (a.version, a.alias) for ref in REFS for a in [registry.resolve_model(ref, loaded)]}
    assert got == {"fraud@champion": ("1", "champion"), "fraud@challenger": ("2", "challenger"),
                   "fraud:1": ("1", None), "fraud:2": ("2", None), "fraud": ("1", "champion"),
                   "bare": ("2", None), "bare:1": ("1", None)}


def test_a_copy_into_dest_matches_mlflows_download(loaded: LoadedConfig, tmp_path: Path) -> None:
    fast = registry.resolve_model("fraud@challenger", loaded, dest=tmp_path / "fast")
    slow = registry.resolve_model("fraud@challenger", loaded, dest=tmp_path / "slow", fast=False)
    assert replace(fast, path=slow.path) == slow
    files = {side: sorted(p.name for p in (tmp_path / side).iterdir()) for side in ("fast", "slow")}
    assert files["fast"] == files["slow"] == ["MLmodel", "model.skops"]


@pytest.mark.parametrize("ref", sorted(MISSING))
def test_unknown_names_aliases_and_versions_raise_the_same_not_found(ref: str, loaded: LoadedConfig) -> None:
    fast, slow = _errors(ref, loaded)
    assert fast == slow == MISSING[ref]


def test_a_version_without_a_recorded_sha256_is_refused_alike(loaded: LoadedConfig) -> None:
    messages = []
    for fast in (True, False):
        with pytest.raises(OperationFailed, match="has no recorded SHA-256") as info:
            registry.resolve_model("untagged:1", loaded, fast=fast)
        messages.append(info.value.message)
    assert messages[0] == messages[1]


def test_a_tampered_copy_is_replaced_and_a_tampered_store_refused(loaded: LoadedConfig, store: dict[str, Any],
                                                                  tmp_path: Path) -> None:
    art = registry.resolve_model("bare:1", loaded)
    original = art.path.read_bytes()
    art.path.write_bytes(original + b"!")
    assert registry.resolve_model("bare:1", loaded).path.read_bytes() == original  # copied again, verified
    stored = store["root"] / "artifacts" / "bare-1" / "model.skops"
    try:
        stored.write_bytes(original + b"!")
        with pytest.raises(ArtifactTampered, match="refusing to load it"):
            registry.resolve_model("bare:1", loaded, dest=tmp_path / "elsewhere")
    finally:
        stored.write_bytes(original)


def test_resolving_imports_no_mlflow(store: dict[str, Any]) -> None:
    code = ("import sys; from mlctl.core.config import load_config; from mlctl.lifecycle.registry import resolve_model;"
            f"a = resolve_model('fraud@champion', load_config(start=__import__('pathlib').Path({str(store['root'])!r}),"
            " use_user_file=False, env={})); print(a.version, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["1", "False"]


# --------------------------------------------------------------------------- falling back to MLflow


@pytest.fixture
def through_mlflow(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each time resolve_model opens MLflow's client."""
    opened: list[str] = []
    real = registry.connect

    def connect(loaded: LoadedConfig, **kwargs: Any) -> Any:
        opened.append(loaded.config.tracking.uri)
        return real(loaded, **kwargs)

    monkeypatch.setattr(registry, "connect", connect)
    return opened


def test_the_fast_path_does_not_open_mlflow(loaded: LoadedConfig, through_mlflow: list[str]) -> None:
    registry.resolve_model("fraud@champion", loaded)
    assert through_mlflow == []


def test_when_the_reader_cannot_answer_mlflow_does(loaded: LoadedConfig, through_mlflow: list[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    expected = registry.resolve_model("fraud@challenger", loaded)

    def cannot(loaded: LoadedConfig) -> Any:
        raise CannotAnswer("test")

    monkeypatch.setattr(registry, "reader_for", cannot)
    assert registry.resolve_model("fraud@challenger", loaded) == expected
    assert _errors("fraud@staging", loaded)[0] == MISSING["fraud@staging"]
    assert len(through_mlflow) == 3


def test_artifacts_that_are_not_local_files_are_downloaded_by_mlflow(loaded: LoadedConfig, through_mlflow: list[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = SqliteReader.version

    def remote(self: SqliteReader, name: str, version: str) -> Any:
        found = real(self, name, version)
        return None if found is None else replace(found, download_uri="s3://bucket/model")

    monkeypatch.setattr(SqliteReader, "version", remote)
    art = registry.resolve_model("fraud:2", loaded)
    assert through_mlflow and art.version == "2" and art.path.is_file()
    through_mlflow.clear()
    assert registry.resolve_model("fraud:2", loaded) == art  # the verified copy: no download needed
    assert through_mlflow == []


def test_readers_for_each_store(loaded: LoadedConfig, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                tmp_path: Path) -> None:
    def reader(uri: str) -> Any:
        return reader_for(load_config({"tracking.uri": uri}, start=store["root"], use_user_file=False, env={}))

    embedded = reader_for(loaded)
    assert isinstance(embedded, SqliteReader) and embedded.versions("fraud") == ["1", "2"]
    embedded.close()
    assert isinstance(reader("http://127.0.0.1:5000"), RestReader)
    for uri in ("postgresql://u@127.0.0.1/db", f"sqlite:///{tmp_path / 'none.db'}", "file:///tmp/mlruns"):
        with pytest.raises(CannotAnswer):
            reader(uri)
    monkeypatch.setenv("MLFLOW_WORKSPACE", "team-a")
    with pytest.raises(CannotAnswer, match="workspace"):
        reader_for(loaded)
    monkeypatch.delenv("MLFLOW_WORKSPACE")
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    with pytest.raises(CannotAnswer):
        reader("https://mlflow.example")


def test_stores_it_does_not_know_are_left_to_mlflow(store: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(CannotAnswer, match="registry tables"):
        SqliteReader(empty)
    other = tmp_path / "workspaces.db"
    shutil.copy(store["db"], other)
    with sqlite3.connect(other) as conn:
        conn.execute("UPDATE registered_models SET workspace = 'team-a' WHERE name = 'bare'")
    with pytest.raises(CannotAnswer, match="workspaces"):
        SqliteReader(other)


def test_no_store_yet_is_mlflows_not_found(isolated_env: Path) -> None:
    (isolated_env / "mlctl.yaml").write_text("project: {name: p}\n", encoding="utf-8")
    with pytest.raises(NotFound, match="no models are registered yet"):
        registry.resolve_model("fraud", load_config(start=isolated_env, use_user_file=False, env={}))
    assert not (isolated_env / ".mlctl").exists()


# --------------------------------------------------------------------------- a tracking server's REST API


class _Api(BaseHTTPRequestHandler):
    """MLflow's REST API for the registry reads, answered by MLflow's client from the store."""

    client: Any = None
    seen: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        from mlflow.exceptions import MlflowException
        from mlflow.utils.proto_json_utils import message_to_json

        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        endpoint = url.path.removeprefix("/api/2.0/mlflow/")
        self.seen.append(endpoint)
        try:
            if endpoint == "registered-models/get":
                body = {"registered_model": json.loads(message_to_json(
                    self.client.get_registered_model(q["name"]).to_proto()))}
            elif endpoint == "registered-models/search":
                found = self.client.search_registered_models(max_results=int(q["max_results"]))
                body = {"registered_models": [json.loads(message_to_json(m.to_proto())) for m in found]}
            elif endpoint == "model-versions/search":
                found = self.client.search_model_versions(q["filter"], max_results=int(q["max_results"]))
                body = {"model_versions": [json.loads(message_to_json(v.to_proto())) for v in found]}
            elif endpoint == "model-versions/get":
                body = {"model_version": json.loads(message_to_json(
                    self.client.get_model_version(q["name"], q["version"]).to_proto()))}
            else:
                self.send_error(404)
                return
            status = 200
        except MlflowException as exc:
            status, body = exc.get_http_status_code(), {"error_code": exc.error_code, "message": exc.message}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def rest(store: dict[str, Any]) -> Iterator[str]:
    _Api.client = store["client"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("ref", REFS)
def test_the_rest_reader_finds_what_the_sqlite_reader_finds(ref: str, rest: str, store: dict[str, Any]) -> None:
    parsed = registry.parse_ref(ref)
    over_http = registry._find_version_fast(RestReader(rest), *parsed)
    local = SqliteReader(store["db"])
    try:
        assert over_http == registry._find_version_fast(local, *parsed)
    finally:
        local.close()


@pytest.mark.parametrize("ref", sorted(MISSING))
def test_the_rest_reader_raises_the_same_not_found(ref: str, rest: str) -> None:
    with pytest.raises(NotFound) as info:
        registry._find_version_fast(RestReader(rest), *registry.parse_ref(ref))
    assert (info.value.message, info.value.hint) == MISSING[ref]


def test_a_server_model_with_a_verified_copy_starts_without_mlflow(rest: str, store: dict[str, Any],
                                                                  loaded: LoadedConfig,
                                                                  through_mlflow: list[str]) -> None:
    registry.resolve_model("fraud@champion", loaded)  # a verified copy in .mlctl/models/fraud/1
    on_server = load_config({"tracking.uri": rest}, start=store["root"], use_user_file=False, env={})
    _Api.seen.clear()
    art = registry.resolve_model("fraud@champion", on_server)
    assert (art.version, art.alias, art.sha256) == ("1", "champion", store["shas"][("fraud", "1")])
    assert through_mlflow == [] and _Api.seen == ["registered-models/get", "model-versions/get"]


def test_rest_errors_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = RestReader("http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(CannotAnswer):
        dead.model("fraud")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0k")
    assert RestReader("http://x").headers["Authorization"] == "Bearer t0k"
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "u")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "p")
    assert RestReader("http://x").headers["Authorization"] == "Basic dTpw"
