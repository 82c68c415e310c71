"""Every command's ``-o json`` is a contract: each document matches its schema under ``docs/schemas/``.

The tests below run each command with ``-o json`` in scratch projects (in-process, the way the other
command tests do) and keep the documents; the last test checks them all against their schemas with
the ``check-jsonschema`` CLI in one run. Two more checks tie the schemas to the CLI: every command
that takes ``-o`` has a schema file, and every schema file belongs to a command.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from mlctl.commands import app
from tests.commands.test_serve_cmd import calls, gateway_calls, live_gateway, saved  # noqa: F401 - fixtures
from tests.commands.test_train_cmd import make_project, mlflow_db_template  # noqa: F401 - fixture
from tests.support import detect as _  # noqa: F401  (registers test-jump)
from tests.unit.test_releases import env  # noqa: F401 - fixture used by name

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")

#: schema name (the command path joined by ``-``) -> the documents the commands printed
DOCS: dict[str, list[Any]] = {}


def schema_name(path: list[str]) -> str:
    """``["models", "list"]`` -> ``models-list`` (the file ``docs/schemas/models-list.json``)."""
    return "-".join(path)


def commands_with_output() -> list[str]:
    """The schema name of every command (leaf of the Typer app) that accepts ``-o/--output``."""
    found: list[str] = []

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "list_commands"):
            ctx = type(cmd).context_class(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, [*path, name])
        elif any("--output" in getattr(p, "opts", ()) for p in cmd.params):
            found.append(schema_name(path))

    walk(typer.main.get_command(app), [])
    return found


def run_json(cli: Any, schema: str, *args: str) -> Any:  # noqa: ANN401 - a JSON document
    """Run ``mlctl ARGS -o json``; keep its document for the schema check and return it."""
    r = cli(*args, "-o", "json")
    assert r.code == 0, f"mlctl {' '.join(args)}: {r.err}"
    doc = json.loads(r.out)
    DOCS.setdefault(schema, []).append(doc)
    return doc


# --------------------------------------------------------------------------- the CLI and the schema files


def test_every_command_with_output_has_a_schema_and_every_schema_a_command() -> None:
    commands = set(commands_with_output())
    files = {p.stem for p in SCHEMAS.glob("*.json")}
    assert len(commands) >= 30
    assert sorted(commands - files) == [], "commands whose -o json has no schema under docs/schemas/"
    assert sorted(files - commands) == [], "schemas under docs/schemas/ that belong to no command"
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", path.name
        assert schema.get("title") and schema.get("description"), f"{path.name}: say what the document is"


def test_the_schemas_are_listed_in_the_cli_reference() -> None:
    text = (SCHEMAS.parents[0] / "cli.md").read_text()
    for path in SCHEMAS.glob("*.json"):
        assert f"schemas/{path.name}" in text, f"docs/cli.md does not link {path.name}"


# --------------------------------------------------------------------------- the documents


def test_project_commands(cli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from mlctl.core import doctor

    run_json(cli, "version", "version")
    run_json(cli, "init", "init", "--list")
    run_json(cli, "init", "init", "service", "scaffolded", "--name", "demo-api")
    run_json(cli, "init", "init", "anomaly", "planned", "--dry-run")
    monkeypatch.chdir(isolated_env / "scaffolded")
    run_json(cli, "status", "status")
    run_json(cli, "config-show", "config", "show")
    run_json(cli, "config-get", "config", "get", "deploy.port")
    run_json(cli, "config-get", "config", "get", "project.template")
    run_json(cli, "config-set", "config", "set", "deploy.port", "9001", "--dry-run")
    run_json(cli, "config-set", "config", "set", "deploy.port", "9001")
    checks = [doctor.EngineCheck("MLflow server", "http://127.0.0.1:5000", True, "ok", True, "tracking server"),
              doctor.EngineCheck("Redis", "redis://127.0.0.1:6379", False, "unreachable: refused", False, "cache")]
    monkeypatch.setattr(doctor, "run_doctor", lambda config: checks)
    run_json(cli, "doctor", "doctor")


def test_train_and_models(cli, isolated_env: Path, mlflow_db_template: Path,  # noqa: ANN001, F811
                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(isolated_env / "ml", mlflow_db_template)
    monkeypatch.chdir(root)
    run_json(cli, "train", "train", "--dry-run")
    run_json(cli, "train", "train", "--register", "demo")
    run_json(cli, "train", "train", "--register", "demo", "--param", "n_estimators=3")
    run_json(cli, "models-list", "models", "list")
    run_json(cli, "models-show", "models", "show", "demo")
    run_json(cli, "models-compare", "models", "compare", "demo", "1", "2")
    run_json(cli, "models-promote", "models", "promote", "demo", "2", "--dry-run")
    run_json(cli, "models-promote", "models", "promote", "demo", "2")
    run_json(cli, "status", "status")  # with runs
    # experiments on the registered model (variants checked against the real registry)
    run_json(cli, "serve-experiment-create", "serve", "experiment", "create", "ab", "--model", "demo",
             "--variants", "champion:50,1:50", "--shadow", "2:5", "--dry-run")
    run_json(cli, "serve-experiment-create", "serve", "experiment", "create", "ab", "--model", "demo",
             "--variants", "champion:50,1:50", "--shadow", "2:5")
    run_json(cli, "serve-experiment-list", "serve", "experiment", "list")
    run_json(cli, "serve-experiment-show", "serve", "experiment", "show", "ab")
    from mlctl.serving.experiments.store import Tally, open_store

    with open_store("sqlite", base=root / ".mlctl") as store:
        tally = Tally()
        for variant, wins in (("champion", 100), ("1", 160)):
            for i in range(1000):
                tally.outcome("ab", variant, float(i < wins))
        tally.shadow("ab", "2", agreed=True)
        store.flush(tally)
    run_json(cli, "serve-report", "serve", "report", "ab", "--promote", "--dry-run")
    run_json(cli, "serve-experiment-pause", "serve", "experiment", "pause", "ab")
    run_json(cli, "serve-experiment-resume", "serve", "experiment", "resume", "ab", "--dry-run")
    run_json(cli, "serve-experiment-resume", "serve", "experiment", "resume", "ab")
    run_json(cli, "serve-experiment-stop", "serve", "experiment", "stop", "ab")
    run_json(cli, "serve-report", "serve", "report", "ab")


def test_serve_model(cli, project: Path, monkeypatch: pytest.MonkeyPatch, calls: dict) -> None:  # noqa: ANN001, F811
    monkeypatch.chdir(project)
    run_json(cli, "serve-model", "serve", "model", "fraud@champion", "--port", "0")


def test_serve_start(cli, project: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                     gateway_calls: dict) -> None:  # noqa: F811
    monkeypatch.chdir(project)
    run_json(cli, "serve-start", "serve", "start", "--models", "fraud,churn", "--port", "0")


def test_serve_rules_and_dashboard(cli, isolated_env: Path) -> None:  # noqa: ANN001
    run_json(cli, "serve-rules", "serve", "rules")
    run_json(cli, "serve-rules", "serve", "rules", "--out", str(isolated_env / "rules.yml"), "--for", "2m")
    run_json(cli, "serve-dashboard", "serve", "dashboard")
    run_json(cli, "serve-dashboard", "serve", "dashboard", "--out", str(isolated_env / "gateway.json"))


def test_serve_manifests(cli, isolated_env: Path) -> None:  # noqa: ANN001
    args = ("serve", "manifests", "--models", "churn", "--image", "mlctl:1", "--state", "redis://redis:6379/0",
            "--tracking-uri", "http://mlflow:5000")
    run_json(cli, "serve-manifests", *args)
    run_json(cli, "serve-manifests", *args, "--hpa-max", "4", "--cpu", "1", "--out", str(isolated_env / "gw.yaml"))


def test_serve_status(cli, project: Path, monkeypatch: pytest.MonkeyPatch, live_gateway: str) -> None:  # noqa: ANN001, F811
    monkeypatch.chdir(project)
    run_json(cli, "serve-status", "serve", "status", "--gateway", live_gateway)


def test_deploy_rollback_releases(cli, env) -> None:  # noqa: ANN001, F811
    aliases = env[1]
    run_json(cli, "deploy-up", "deploy", "up", "churn@champion", "--dry-run")
    run_json(cli, "deploy-up", "deploy", "churn@champion", "--port", "9100")
    aliases["champion"] = "2"
    run_json(cli, "deploy-up", "deploy", "churn@champion")
    run_json(cli, "deploy-scale", "deploy", "scale", "churn", "--replicas", "2", "--dry-run")
    run_json(cli, "deploy-scale", "deploy", "scale", "churn", "--replicas", "2")
    run_json(cli, "status", "status")  # with a deployment
    run_json(cli, "rollback", "rollback", "churn", "--dry-run")
    run_json(cli, "rollback", "rollback", "churn")
    run_json(cli, "releases", "releases", "churn")
    run_json(cli, "deploy-logs", "deploy", "logs", "churn")
    run_json(cli, "deploy-stop", "deploy", "stop", "churn", "--dry-run")
    run_json(cli, "deploy-stop", "deploy", "stop", "churn")


class _Prometheus(http.server.BaseHTTPRequestHandler):
    """``/api/v1/query_range``: two series, one point a minute over the asked range."""

    def do_GET(self) -> None:  # noqa: N802 - the handler's name
        import urllib.parse

        self._answer(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)))

    def do_POST(self) -> None:  # noqa: N802 - the handler's name
        import urllib.parse

        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._answer(dict(urllib.parse.parse_qsl(body)))

    def _answer(self, q: dict[str, str]) -> None:
        start, end, step = float(q.get("start", 0)), float(q.get("end", 0)), float(q.get("step", 60))
        times = [start + i * step for i in range(int((end - start) // step) + 1)][-50:]
        result = [{"metric": {"__name__": "cpu", "host": host},
                   "values": [[t, str(1.0 + (30.0 if host == "a" and i == len(times) - 1 else 0.0))]
                              for i, t in enumerate(times)]} for host in ("a", "b")]
        body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_detect(cli, isolated_env: Path, prometheus: str) -> None:  # noqa: ANN001
    (isolated_env / "cpu.csv").write_text("timestamp,value\n" + "".join(
        f"2024-05-01T00:{i:02d}:00Z,{25 if i == 30 else 1}\n" for i in range(40)))
    run_json(cli, "detect-score", "detect", "score", "cpu.csv", "-d", "test-jump")
    run_json(cli, "detect-score", "detect", "score", "--prometheus", prometheus, "--query", "cpu", "--since", "30m",
             "-d", "test-jump")
    run_json(cli, "detect-watch", "detect", "watch", "--query", "cpu", "--dry-run")
    run_json(cli, "detect-watch", "detect", "watch", "--prometheus", prometheus, "--query", "cpu", "--history", "30m",
             "--interval", "1s", "--iterations", "1", "--metrics-port", "0", "-d", "test-jump")
    run_json(cli, "detect-rules", "detect", "rules", "-t", "0.8")
    run_json(cli, "detect-rules", "detect", "rules", "--out", "rules.yml")
    run_json(cli, "detect-dashboard", "detect", "dashboard", "--query", "cpu")
    run_json(cli, "detect-dashboard", "detect", "dashboard", "--query", "cpu", "--out", "dash.json")
    run_json(cli, "detect-detectors", "detect", "detectors")
    nab = isolated_env / "nab" / "data" / "web"
    nab.mkdir(parents=True)
    (nab / "cpu.csv").write_text("timestamp,value\n" + "".join(
        f"2024-05-01 {i // 60:02d}:{i % 60:02d}:00,{25 if i == 150 else 1}\n" for i in range(200)))
    labels = isolated_env / "nab" / "windows.json"
    labels.write_text(json.dumps({"web/cpu.csv": [["2024-05-01 02:20:00.000000", "2024-05-01 02:40:00.000000"]]}))
    run_json(cli, "detect-evaluate", "detect", "evaluate", "--data", str(isolated_env / "nab" / "data"),
             "--labels", str(labels), "-d", "test-jump")


def test_classify_logs(cli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from mlctl.scaffold import render_template
    from tests.commands.test_classify_logs_cmd import _openssh_like

    render_template("logs", isolated_env / "shop-logs")
    monkeypatch.chdir(isolated_env / "shop-logs")
    run_json(cli, "classify-logs-parse", "classify-logs", "parse", "data/sample.log")
    run_json(cli, "classify-logs-classify", "classify-logs", "classify", "data/sample.log", "--no-model")
    run_json(cli, "classify-logs-train", "classify-logs", "train", "--data", "data/labelled.csv")
    run_json(cli, "classify-logs-classify", "classify-logs", "classify", "data/sample.log", "--route")
    run_json(cli, "classify-logs-search", "classify-logs", "search", "password", "-n", "5")
    run_json(cli, "classify-logs-stream", "classify-logs", "stream", "--from", "data/sample.log")
    run_json(cli, "classify-logs-retrain", "classify-logs", "retrain", "--since", "3650d",
             "--data", "data/labelled.csv")
    run_json(cli, "classify-logs-dag", "classify-logs", "dag", "--out", "dags/retrain.py")
    folder = isolated_env / "loghub" / "Ssh"
    folder.mkdir(parents=True)
    (folder / "Ssh_2k.log").write_text(_openssh_like(20))
    rows = [f'{i + 1},E{i % 4},"t{i % 4}"' for i in range(20)]
    (folder / "Ssh_2k.log_structured_corrected.csv").write_text("LineId,EventId,EventTemplate\n" + "\n".join(rows))
    run_json(cli, "classify-logs-evaluate", "classify-logs", "evaluate", "--data", str(isolated_env / "loghub"),
             "-f", "auto")


# --------------------------------------------------------------------------- the check, batched


def test_every_document_matches_its_schema(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """One ``check-jsonschema`` run over every document kept above: each instance file holds
    ``{"schema": NAME, "document": DOC}`` and an envelope schema sends ``document`` to
    ``docs/schemas/NAME.json``."""
    if not DOCS:
        pytest.skip("run the whole module: the tests above collect the documents")
    here = {item.name for item in request.session.items if getattr(item, "module", None) is request.module}
    if {"test_project_commands", "test_train_and_models", "test_serve_model", "test_deploy_rollback_releases",
            "test_detect", "test_classify_logs"} <= here:  # the whole module ran: every command was covered
        missing = sorted(set(commands_with_output()) - set(DOCS))
        assert missing == [], f"no -o json document was checked for: {missing}"
    exe = str(CHECK_JSONSCHEMA) if CHECK_JSONSCHEMA.exists() else shutil.which("check-jsonschema")
    assert exe, "check-jsonschema is not installed (it is a dev dependency)"
    envelope = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["schema", "document"],
        "properties": {"schema": {"enum": sorted(DOCS)}},
        "allOf": [{"if": {"properties": {"schema": {"const": name}}},
                   "then": {"properties": {"document": {"$ref": (SCHEMAS / f"{name}.json").as_uri()}}}}
                  for name in sorted(DOCS)],
    }
    (tmp_path / "envelope.json").write_text(json.dumps(envelope))
    instances = []
    for name, docs in sorted(DOCS.items()):
        for i, doc in enumerate(docs, 1):
            path = tmp_path / f"{name}.{i}.json"
            path.write_text(json.dumps({"schema": name, "document": doc}))
            instances.append(str(path))
    r = subprocess.run([exe, "--schemafile", str(tmp_path / "envelope.json"), *instances],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([exe, "--check-metaschema", *map(str, sorted(SCHEMAS.glob("*.json")))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
