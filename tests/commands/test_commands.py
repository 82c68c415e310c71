"""Each command: options -> library call -> output."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from mlctl.core.state import StateStore, utcnow

SERVICE_FILES = {
    "api/__init__.py", "api/main.py", "api/models.py",
    "ml/__init__.py", "ml/preprocessing.py", "ml/training.py", "ml/inference.py",
    "tests/test_api.py", "tests/test_ml.py",
    "docker/Dockerfile", "k8s/deployment.yaml", "k8s/service.yaml", ".github/workflows/ci.yml",
    "requirements.txt", "README.md", "mlctl.yaml",
}


def test_init_list(cli) -> None:
    r = cli("init", "--list", "-o", "json")
    assert r.code == 0
    names = {t["name"]: t["description"] for t in json.loads(r.out)}
    assert "service" in names and names["service"]
    r = cli("init", "--list")
    assert "service" in r.out


def test_init_service_then_status(cli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = cli("init", "service", "fraud-api", "-o", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert set(doc["files"]) == SERVICE_FILES
    assert doc["name"] == "fraud-api" and doc["template"] == "service"
    assert Path(doc["directory"]) == isolated_env / "fraud-api"

    monkeypatch.chdir(isolated_env / "fraud-api" / "api")
    r = cli("status", "-o", "json")
    assert r.code == 0, r.err
    status = json.loads(r.out)
    assert status["project"] == "fraud-api"
    assert status["template"] == "service"
    assert status["config_file"] == str(isolated_env / "fraud-api" / "mlctl.yaml")
    assert status["counts"] == {"runs": 0, "releases": 0, "deployments": 0, "alerts": 0}
    assert status["state_initialised"] is False
    assert not (isolated_env / "fraud-api" / ".mlctl").exists()
    r = cli("status")
    assert r.code == 0 and "fraud-api" in r.out and "not created yet" in r.out


def test_init_default_template_and_name(cli, isolated_env: Path) -> None:
    r = cli("init", "svc", "--name", "Risk Scorer", "-o", "json")
    assert r.code == 0
    assert json.loads(r.out)["name"] == "risk-scorer"
    assert "name: risk-scorer" in (isolated_env / "svc" / "mlctl.yaml").read_text()


def test_init_dry_run(cli, isolated_env: Path) -> None:
    r = cli("init", "service", "planned", "--dry-run")
    assert r.code == 0 and "would write 16 files" in r.out
    assert not (isolated_env / "planned").exists()


def test_init_refuses_non_empty_dir(cli, isolated_env: Path) -> None:
    d = isolated_env / "busy"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    r = cli("init", "service", str(d))
    assert r.code == 2
    assert r.err.splitlines()[0] == f"Error: directory {d} is not empty"
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"]
    r = cli("init", "service", str(d), "--force", "--yes")
    assert r.code == 0 and (d / "mlctl.yaml").exists() and (d / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(("args", "message"), [
    (["init", "nosuch", "x"], "unknown template 'nosuch'"),
    (["init", "../service", "x"], "invalid template name '../service'"),
    (["init"], "missing the project folder"),
])
def test_init_bad_input(cli, args: list[str], message: str) -> None:
    r = cli(*args)
    assert r.code == 2
    assert message in r.err and "Traceback" not in r.err


def test_init_unicode_name_is_explained(cli, isolated_env: Path) -> None:
    r = cli("init", "service", "prój ét 数据", "-o", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["name"] == "proj-et"
    assert r.err.splitlines() == [
        "project name 'proj-et' (from 'prój ét 数据': accents removed; '数据' dropped, no ASCII form)"]
    assert "name: proj-et" in (isolated_env / "prój ét 数据" / "mlctl.yaml").read_text()
    r = cli("init", "service", "数据")
    assert r.code == 2 and "cannot derive a project name from '数据'" in r.err
    assert not (isolated_env / "数据").exists()


def test_failed_init_force_leaves_the_folder_as_it_was(cli, isolated_env: Path) -> None:
    d = isolated_env / "busy"
    d.mkdir()
    (d / "api").write_text("a file where the template has a folder")
    (d / "README.md").write_text("mine")
    r = cli("init", "service", str(d), "--force", "--yes")
    assert r.code == 2
    assert r.err.splitlines()[0] == f"Error: cannot write api/__init__.py: {d / 'api'} is a file, not a folder"
    assert sorted(p.name for p in d.iterdir()) == ["README.md", "api"]
    assert (d / "README.md").read_text() == "mine"


def test_init_json_error(cli) -> None:
    r = cli("init", "nosuch", "x", "-o", "json")
    assert r.code == 2 and r.out == ""
    err = json.loads(r.err)["error"]
    assert err["type"] == "NotFound" and "available templates" in err["hint"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions; see the simulated test")
def test_init_into_read_only_directory(cli, isolated_env: Path) -> None:
    ro = isolated_env / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = cli("init", "service", str(ro / "p"), "-o", "json")
    assert r.code == 1
    err = json.loads(r.err)["error"]
    assert err["type"] == "OperationFailed" and "permission denied" in err["message"]


def test_init_permission_denied_is_one_clear_line(cli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same path as above, simulated so that it also runs as root (CI)."""
    real_mkdir = Path.mkdir

    def denied(self: Path, *args: object, **kwargs: object) -> None:
        if self.name == "locked":
            raise PermissionError(13, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", denied)
    r = cli("init", "service", "locked")
    assert r.code == 1
    assert r.err.splitlines()[0] == f"Error: cannot write to {isolated_env / 'locked'}: permission denied"
    assert not (isolated_env / "locked").exists()


def test_status_reads_counts(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    store = StateStore(project / ".mlctl" / "state.db")
    store.insert("runs", {"id": "r1", "kind": "train", "status": "ok", "started_at": utcnow()})
    store.close()
    r = cli("status", "-o", "json")
    assert json.loads(r.out)["counts"]["runs"] == 1


def test_status_corrupt_state(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    (project / ".mlctl").mkdir()
    (project / ".mlctl" / "state.db").write_bytes(b"garbage" * 50)
    r = cli("status")
    assert r.code == 1
    assert "is corrupt" in r.err and "Traceback" not in r.err
    assert (project / ".mlctl" / "state.db").read_bytes() == b"garbage" * 50


def test_status_newer_schema(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    StateStore(project / ".mlctl" / "state.db").connect().execute("PRAGMA user_version = 7")
    r = cli("status", "-o", "json")
    assert r.code == 1
    assert "newer than this mlctl" in json.loads(r.err)["error"]["message"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("deploy:\n  port: lots\n", "mlctl.yaml:2: deploy.port: Input should be a valid integer"),
    ("bogus: 1\n", "mlctl.yaml:1: bogus: unknown key"),
    ("deploy: [\n", "invalid YAML"),
])
def test_invalid_config_exits_2_naming_file_and_key(cli, project: Path, monkeypatch: pytest.MonkeyPatch,
                                                    text: str, fragment: str) -> None:
    monkeypatch.chdir(project)
    (project / "mlctl.yaml").write_text(text)
    for args in (["status"], ["config", "show"]):
        r = cli(*args)
        assert r.code == 2, args
        assert fragment in r.err and str(project) in r.err


def test_config_show_origin(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLCTL_TRACKING_URI", "http://127.0.0.1:5000")
    r = cli("config", "show", "-o", "json")
    doc = json.loads(r.out)
    assert doc["values"]["deploy.port"] == 8100
    assert doc["origins"]["deploy.port"] == "project"
    assert doc["project_file"] == str(project / "mlctl.yaml")
    assert doc["origins"]["tracking.uri"] == "env: MLCTL_TRACKING_URI"
    assert doc["origins"]["deploy.target"] == "default"
    r = cli("config", "show", "--origin")
    assert "origin" in r.out and "env: MLCTL_TRACKING_URI" in r.out.replace("\n", "")
    r = cli("config", "show")
    assert "env: MLCTL_TRACKING_URI" not in r.out.replace("\n", "")


def test_explicit_config_flag(cli, isolated_env: Path) -> None:
    f = isolated_env / "other.yaml"
    f.write_text("deploy:\n  port: 9999\n")
    r = cli("--config", str(f), "config", "get", "deploy.port")
    assert r.code == 0 and r.out.strip() == "9999"


def test_config_get_and_set(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    r = cli("config", "set", "deploy.port", "9001", "--dry-run", "-o", "json")
    assert json.loads(r.out)["dry_run"] is True
    assert "8100" in (project / "mlctl.yaml").read_text()
    r = cli("config", "set", "deploy.port", "9001")
    assert r.code == 0 and "deploy.port = 9001" in r.err
    r = cli("config", "get", "deploy.port", "-o", "json")
    assert json.loads(r.out) == {"key": "deploy.port", "value": 9001,
                                 "origin": "project"}
    assert "# the name" in (project / "mlctl.yaml").read_text()
    r = cli("config", "set", "deploy.port", "9002", "-o", "json")
    assert json.loads(r.out)["value"] == 9002


def test_config_bad_keys(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    r = cli("config", "get", "deploy.prot")
    assert r.code == 2 and "did you mean 'deploy.port'" in r.err
    r = cli("config", "set", "deploy.prot", "1")
    assert r.code == 2
    r = cli("config", "set", "deploy.port", "x")
    assert r.code == 2 and "deploy.port" in r.err


def test_config_set_outside_project(cli) -> None:
    r = cli("config", "set", "deploy.port", "1")
    assert r.code == 2 and "no mlctl.yaml" in r.err


def test_config_set_read_only_file_exits_1(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    path = project / "mlctl.yaml"
    path.chmod(0o444)
    r = cli("config", "set", "deploy.port", "9000", "-o", "json")
    assert r.code == 1 and r.out == ""
    err = json.loads(r.err)["error"]
    assert err["type"] == "OperationFailed"
    assert err["message"] == f"{path} is read-only (mode 0444): not changed"
    assert "8100" in path.read_text() and (path.stat().st_mode & 0o777) == 0o444


def test_config_set_permission_denied_exits_1(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the docs' exit-code table says (1: permission denied), simulated so that it also runs as root."""
    monkeypatch.chdir(project)

    def denied(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", denied)
    r = cli("config", "set", "deploy.port", "9000")
    assert r.code == 1
    assert r.err.splitlines()[0] == f"Error: cannot write {project / 'mlctl.yaml'}: permission denied"
    assert sorted(p.name for p in project.iterdir()) == ["mlctl.yaml"]  # the temporary file is removed


def test_config_set_through_a_symlink(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    real = project / "shared.yaml"
    (project / "mlctl.yaml").rename(real)
    real.chmod(0o640)
    (project / "mlctl.yaml").symlink_to("shared.yaml")
    r = cli("config", "set", "deploy.port", "9000")
    assert r.code == 0, r.err
    assert (project / "mlctl.yaml").is_symlink() and "port: 9000" in real.read_text()
    assert (real.stat().st_mode & 0o777) == 0o640


def test_config_set_repairs_an_invalid_value(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    (project / "mlctl.yaml").write_text("deploy:\n  port: lots\n")
    assert cli("config", "show").code == 2  # an invalid file is still refused by everything else
    r = cli("config", "set", "deploy.port", "lots2")
    assert r.code == 2 and "deploy.port" in r.err
    r = cli("config", "set", "deploy.port", "9000")
    assert r.code == 0, r.err
    assert cli("config", "get", "deploy.port").out.strip() == "9000"


def test_config_set_dry_run_validates(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    r = cli("config", "set", "deploy.port", "9001", "--dry-run", "-o", "json")
    assert r.code == 0 and json.loads(r.out) == {"file": str(project / "mlctl.yaml"), "key": "deploy.port",
                                                 "value": 9001, "dry_run": True}
    r = cli("config", "set", "deploy.port", "x", "--dry-run")
    assert r.code == 2 and "deploy.port" in r.err


def test_a_folder_named_mlctl_yaml_is_named(cli, isolated_env: Path) -> None:
    (isolated_env / "mlctl.yaml").mkdir()
    for args in (["status"], ["config", "set", "deploy.port", "1"]):
        r = cli(*args)
        assert r.code == 2, args
        assert f"Error: {isolated_env / 'mlctl.yaml'} is a directory, not a project file" in r.err
        assert "no mlctl.yaml found" not in r.err


def test_config_warnings_on_stderr(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLCTL_DEPLOY_PROT", "9000")
    monkeypatch.setenv("MLCTL_TEST_SOMETHING", "1")
    (project / "mlctl.yaml").write_text("deploy:\n  port: 8100\n  port: 8200\n")
    r = cli("config", "get", "deploy.port", "-o", "json")
    assert r.code == 0 and json.loads(r.out)["value"] == 8200
    assert r.err.splitlines() == [
        f"warning: {project / 'mlctl.yaml'}:3: duplicate key 'deploy.port' (first on line 2): the last value is used",
        "warning: environment variable MLCTL_DEPLOY_PROT is not an mlctl setting: ignored; "
        "did you mean MLCTL_DEPLOY_PORT?",
    ]
    assert cli("--quiet", "config", "get", "deploy.port").err == ""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doctor_reports_down_engines_and_exits_0(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("MLCTL_SERVICES_PROMETHEUS", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLCTL_SERVICES_REDIS", f"redis://127.0.0.1:{port}/0")
    r = cli("doctor", "-o", "json")
    assert r.code == 0
    rows = {e["engine"]: e for e in json.loads(r.out)["engines"]}
    assert len(rows) == 10
    assert rows["Prometheus"]["reachable"] is False
    assert rows["Prometheus"]["url"] == f"http://127.0.0.1:{port}"
    assert "unreachable" in rows["Redis"]["detail"]
    assert rows["Kubernetes API"]["detail"].startswith("not configured")
    r = cli("doctor")
    assert r.code == 0 and "down" in r.out
