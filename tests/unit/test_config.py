from __future__ import annotations

from pathlib import Path

import pytest

from mlctl.core import config as cfg
from mlctl.core.errors import ConfigError, NotAProject


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_file(isolated_env: Path) -> None:
    loaded = cfg.load_config()
    assert loaded.project_file is None
    assert loaded.config.tracking.uri == "sqlite:///.mlctl/mlflow.db"
    assert loaded.origins["tracking.uri"] == "default"
    assert loaded.root == isolated_env
    with pytest.raises(NotAProject):
        loaded.require_project()


def test_project_file_found_walking_up(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deep = project / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    loaded = cfg.load_config()
    assert loaded.project_file == project / "mlctl.yaml"
    assert loaded.root == project
    assert loaded.project_name == "demo"
    assert loaded.config.deploy.port == 8100
    assert loaded.origins["deploy.port"] == "project"
    assert loaded.state_dir == project / ".mlctl"


def test_precedence_flag_env_project_user_default(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    write(cfg.user_config_path(), "deploy:\n  port: 7000\n  replicas: 3\ntracking:\n  experiment: user-exp\n")
    write(project / "mlctl.yaml", "deploy:\n  port: 8100\n  replicas: 2\n")
    monkeypatch.setenv("MLCTL_DEPLOY__REPLICAS", "5")
    monkeypatch.setenv("MLCTL_TRACKING_URI", "http://127.0.0.1:5000")
    loaded = cfg.load_config({"tracking.uri": "http://127.0.0.1:5001", "deploy.target": None})
    c = loaded.config
    assert c.tracking.uri == "http://127.0.0.1:5001"
    assert loaded.origins["tracking.uri"] == "flag"
    assert c.deploy.replicas == 5 and loaded.origins["deploy.replicas"] == "env: MLCTL_DEPLOY__REPLICAS"
    assert c.deploy.port == 8100 and loaded.origins["deploy.port"] == "project"
    assert c.tracking.experiment == "user-exp" and loaded.origins["tracking.experiment"] == "user"
    assert c.deploy.target == "local" and loaded.origins["deploy.target"] == "default"


def test_explicit_config_env(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(isolated_env / "elsewhere" / "custom.yaml", "project:\n  name: other\n")
    monkeypatch.setenv("MLCTL_CONFIG", str(f))
    assert cfg.load_config().project_name == "other"
    monkeypatch.setenv("MLCTL_CONFIG", str(isolated_env / "missing.yaml"))
    with pytest.raises(ConfigError, match="file not found"):
        cfg.load_config()


def test_unknown_env_vars_are_ignored(isolated_env: Path) -> None:
    loaded = cfg.load_config(env={"MLCTL_NOT_A_KEY": "1", "MLCTL_CONFIG": "", "OTHER": "x"})
    assert loaded.config == cfg.MlctlConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deploy:\n  port: lots\n", r"mlctl.yaml:2: deploy.port: Input should be a valid integer.*'lots'"),
        ("deploy:\n  port: 70000\n", r"mlctl.yaml:2: deploy.port: Input should be less than or equal to 65535"),
        ("trackng:\n  uri: x\n", r"mlctl.yaml:1: trackng: unknown key"),
        ("deploy:\n  prot: 1\n", r"mlctl.yaml:2: deploy.prot: unknown key"),
        ("deploy:\n  target: moon\n", r"deploy.target: Value error, must be local, docker or k8s"),
        ("tracking:\n  uri: ftp://x\n", r"tracking.uri: Value error, must start with"),
        ("deploy: [1, 2\n", r"mlctl.yaml:2:1: invalid YAML"),
        ("- a\n- b\n", r"top level must be a mapping"),
    ],
)
def test_invalid_project_file(project: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    monkeypatch.chdir(project)
    (project / "mlctl.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        cfg.load_config()
    assert info.value.exit_code == 2
    assert str(project / "mlctl.yaml") in info.value.message


def test_unknown_key_suggests_the_close_one(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    (project / "mlctl.yaml").write_text("trackng:\n  uri: x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        cfg.load_config()
    assert info.value.hint == "did you mean 'tracking'?"


def test_bad_env_value_names_the_variable(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCTL_DEPLOY_PORT", "abc")
    with pytest.raises(ConfigError, match=r"environment \(MLCTL_DEPLOY_PORT\): deploy.port"):
        cfg.load_config()


def test_empty_and_unreadable_files(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    (project / "mlctl.yaml").write_text("", encoding="utf-8")
    assert cfg.load_config().config == cfg.MlctlConfig()
    (project / "mlctl.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not UTF-8"):
        cfg.load_config()


def test_known_keys_and_descriptions() -> None:
    keys = cfg.known_keys()
    assert "tracking.uri" in keys and "services.prometheus" in keys and "deploy.port" in keys
    assert all(cfg.key_description(k) for k in keys)


def test_set_value_keeps_comments(project: Path) -> None:
    path = project / "mlctl.yaml"
    assert cfg.set_value(path, "deploy.port", "9000") == 9000
    assert cfg.set_value(path, "tracking.uri", "http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    text = path.read_text()
    assert "# project file" in text and "# the name" in text
    assert "port: 9000" in text
    loaded = cfg.load_config(project_file=path)
    assert loaded.config.deploy.port == 9000
    assert loaded.config.tracking.uri == "http://127.0.0.1:5000"


def test_set_value_rejects_bad_keys_and_values(project: Path) -> None:
    path = project / "mlctl.yaml"
    before = path.read_text()
    with pytest.raises(ConfigError, match="unknown config key 'deploy.prot'") as info:
        cfg.set_value(path, "deploy.prot", "1")
    assert info.value.hint == "did you mean 'deploy.port'?"
    with pytest.raises(ConfigError, match="deploy.port"):
        cfg.set_value(path, "deploy.port", "many")
    assert path.read_text() == before


def test_set_value_into_empty_file(project: Path) -> None:
    path = project / "mlctl.yaml"
    path.write_text("")
    cfg.set_value(path, "project.name", "fresh")
    assert cfg.load_config(project_file=path).project_name == "fresh"


def test_parse_value() -> None:
    assert cfg.parse_value("8000") == 8000
    assert cfg.parse_value("true") is True
    assert cfg.parse_value("null") is None
    assert cfg.parse_value("[1, 2") == "[1, 2"
    assert cfg.parse_value("{a: 1}") == "{a: 1}"


def test_error_inside_a_mapping_value_names_the_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    (project / "mlctl.yaml").write_text("train:\n  gates:\n    min_nonsense: 0.5\n")
    with pytest.raises(ConfigError) as info:
        cfg.load_config()
    assert info.value.message.startswith(f"{project / 'mlctl.yaml'}:2: train.gates")
