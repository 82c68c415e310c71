from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from mlctl.core import config as cfg
from mlctl.core.errors import ConfigError, NotAProject, OperationFailed


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
    loaded = cfg.load_config(env={"MLCTL_NOT_A_KEY": "1", "MLCTL_CONFIG": "", "OTHER": "x"}, warn=None)
    assert loaded.config == cfg.config_model()()


def test_unknown_env_vars_warn_with_a_suggestion(isolated_env: Path) -> None:
    env = {"MLCTL_DEPLOY_PROT": "9000", "MLCTL_TRAIN__SED": "1", "MLCTL_ZZZ": "1", "OTHER": "x",
           "MLCTL_DEPLOY_PORT": "9001"}
    seen: list[str] = []
    loaded = cfg.load_config(env=env, warn=seen.append)
    assert loaded.config.deploy.port == 9001  # the known one still applies
    assert seen == loaded.warnings
    assert seen == [
        "environment variable MLCTL_DEPLOY_PROT is not an mlctl setting: ignored; did you mean MLCTL_DEPLOY_PORT?",
        "environment variable MLCTL_TRAIN__SED is not an mlctl setting: ignored; did you mean MLCTL_TRAIN__SEED?",
        "environment variable MLCTL_ZZZ is not an mlctl setting: ignored; settings are MLCTL_<SECTION>_<KEY>, "
        "e.g. MLCTL_DEPLOY_PORT; see `mlctl config show`",
    ]


def test_non_config_env_vars_are_neither_settings_nor_warned(isolated_env: Path) -> None:
    env = {"MLCTL_CONFIG": "", "MLCTL_CACHE_DIR": "/tmp/c", "MLCTL_BENCH_DATA": "/data",
           "MLCTL_TEST_REDIS_URL": "redis://x", "MLCTL_TEST_REAL_KUBECONFIG": "k"}
    seen: list[str] = []
    assert cfg.load_config(env=env, warn=seen.append).config == cfg.config_model()()
    assert seen == []
    assert all(cfg.is_non_config_env(v) for v in env)
    assert cfg.env_key("MLCTL_CACHE_DIR", cfg.known_keys()) is None


def test_every_mlctl_env_var_the_code_reads_is_a_setting_or_listed() -> None:
    """A new MLCTL_* variable read by the code must be added to NON_CONFIG_ENV, or users get a warning."""
    import re

    root = Path(cfg.__file__).resolve().parents[2]
    names: set[str] = set()
    for folder in ("mlctl", "commands", "benchmarks"):
        for f in (root / folder).rglob("*.py"):
            names |= set(re.findall(r"environ(?:\.get)?\(?\[?[\"'](MLCTL_[A-Z0-9_]+)", f.read_text("utf-8")))
    assert {"MLCTL_CONFIG", "MLCTL_CACHE_DIR", "MLCTL_BENCH_DATA"} <= names
    keys = cfg.known_keys()
    assert [n for n in names if not cfg.is_non_config_env(n) and cfg.env_key(n, keys) is None] == []


def test_duplicate_yaml_keys_warn(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    f = project / "mlctl.yaml"
    f.write_text(
        "deploy:\n  port: 8100\n  port: 8200\nproject:\n  name: x\nlogs:\n  routes:\n"
        "    - {classes: '*', sinks: [index], classes: e}\n"
    )
    seen: list[str] = []
    loaded = cfg.load_config(warn=seen.append)
    assert loaded.config.deploy.port == 8200  # PyYAML keeps the last one
    assert seen == [
        f"{f}:3: duplicate key 'deploy.port' (first on line 2): the last value is used",
        f"{f}:8: duplicate key 'logs.routes[0].classes' (first on line 8): the last value is used",
    ]
    assert cfg.duplicate_keys(f)[0] == cfg.DuplicateKey("deploy.port", 2, 3)
    # a merge key (<<) overridden by an explicit key is not a duplicate; an alias met twice is walked once
    f.write_text("deploy:\n  <<: &base {port: 8100}\n  port: 8200\nservices: {}\n")
    loaded = cfg.load_config(warn=None)
    assert loaded.warnings == [] and loaded.config.deploy.port == 8200


def test_duplicate_yaml_keys_in_the_user_file_warn(isolated_env: Path) -> None:
    user = write(cfg.user_config_path(), "tracking:\n  experiment: a\ntracking:\n  uri: sqlite:///x.db\n")
    loaded = cfg.load_config(warn=None)
    assert loaded.warnings == [f"{user}:3: duplicate key 'tracking' (first on line 1): the last value is used"]
    assert loaded.config.tracking.experiment == "default"  # the whole first mapping was replaced


def test_default_warnings_go_to_stderr(isolated_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg.load_config(env={"MLCTL_DEPLOY_PROT": "1"})
    assert capsys.readouterr().err == (
        "warning: environment variable MLCTL_DEPLOY_PROT is not an mlctl setting: ignored; "
        "did you mean MLCTL_DEPLOY_PORT?\n"
    )


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
    assert cfg.load_config().config == cfg.config_model()()
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


def test_set_value_refuses_a_read_only_file_even_as_root(project: Path) -> None:
    path = project / "mlctl.yaml"
    before = path.read_text()
    path.chmod(0o444)
    with pytest.raises(OperationFailed, match=r"mlctl.yaml is read-only \(mode 0444\): not changed") as info:
        cfg.set_value(path, "deploy.port", "9000")
    assert info.value.exit_code == 1 and "chmod u+w" in (info.value.hint or "")
    with pytest.raises(OperationFailed):
        cfg.set_value(path, "deploy.port", "9000", dry_run=True)  # the plan says it would fail
    assert path.read_text() == before
    assert (path.stat().st_mode & 0o777) == 0o444


def test_set_value_keeps_the_mode_and_writes_atomically(project: Path) -> None:
    path = project / "mlctl.yaml"
    path.chmod(0o600)
    cfg.set_value(path, "deploy.port", "9000")
    assert (path.stat().st_mode & 0o777) == 0o600
    assert "port: 9000" in path.read_text()
    assert sorted(p.name for p in project.iterdir()) == ["mlctl.yaml"]  # no temporary file left


def test_set_value_writes_through_a_symlink(project: Path) -> None:
    real = project / "conf" / "real.yaml"
    real.parent.mkdir()
    real.write_text("# mine\ndeploy:\n  port: 8100  # the port\n")
    real.chmod(0o640)
    link = project / "mlctl.yaml"
    link.unlink()
    link.symlink_to(Path("conf") / "real.yaml")
    assert cfg.set_value(link, "deploy.port", "9000") == 9000
    assert link.is_symlink() and link.resolve() == real
    assert real.read_text() == "# mine\ndeploy:\n  port: 9000  # the port\n"
    assert (real.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in real.parent.iterdir()) == ["real.yaml"]
    real.chmod(0o444)
    with pytest.raises(OperationFailed, match="a link to .*real.yaml.*read-only"):
        cfg.set_value(link, "deploy.port", "9001")


def test_set_value_repairs_an_invalid_file(project: Path) -> None:
    path = project / "mlctl.yaml"
    path.write_text("deploy:\n  port: lots  # fix me\n  replicas: 0\nbogus: 1\n")
    seen: list[str] = []
    assert cfg.set_value(path, "deploy.port", "9000", warn=seen.append) == 9000
    assert "port: 9000  # fix me" in path.read_text()
    assert seen == [f"{path}: deploy.replicas: Input should be greater than or equal to 1: still to fix",
                    f"{path}: bogus: unknown key: still to fix"]
    # an invalid new value is still refused, and the file is left as it was
    before = path.read_text()
    with pytest.raises(ConfigError, match=r"deploy.replicas: Input should be a valid integer.*\(got 'x'\)"):
        cfg.set_value(path, "deploy.replicas", "x")
    assert path.read_text() == before
    cfg.set_value(path, "deploy.replicas", "2", warn=None)
    assert "replicas: 2" in path.read_text()


def test_set_value_refuses_a_change_that_breaks_another_key(project: Path) -> None:
    path = project / "mlctl.yaml"
    path.write_text("train:\n  model: logistic_regression\n")
    before = path.read_text()
    with pytest.raises(ConfigError, match=r"train.task = 'regression' would make train.model invalid"):
        cfg.set_value(path, "train.task", "regression")
    assert path.read_text() == before


def test_set_value_ignores_the_environment_and_the_user_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCTL_DEPLOY_PORT", "not a port")
    write(cfg.user_config_path(), "deploy:\n  replicas: 0\n")
    path = project / "mlctl.yaml"
    assert cfg.set_value(path, "deploy.port", "9000") == 9000


def test_set_value_refuses_duplicate_keys(project: Path) -> None:
    path = project / "mlctl.yaml"
    path.write_text("deploy:\n  port: 1\n  port: 2\n")
    with pytest.raises(ConfigError, match=r"yaml:3: duplicate key 'deploy.port' \(first on line 2\): not changed"):
        cfg.set_value(path, "deploy.replicas", "2")
    assert path.read_text() == "deploy:\n  port: 1\n  port: 2\n"


def test_set_value_dry_run_writes_nothing(project: Path) -> None:
    path = project / "mlctl.yaml"
    before = path.read_text()
    assert cfg.set_value(path, "deploy.port", "9000", dry_run=True) == 9000
    assert path.read_text() == before
    with pytest.raises(ConfigError):
        cfg.set_value(path, "deploy.port", "x", dry_run=True)


def test_a_folder_named_mlctl_yaml(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(isolated_env / "mlctl.yaml", "project:\n  name: parent\n")
    sub = isolated_env / "sub"
    (sub / "mlctl.yaml").mkdir(parents=True)
    monkeypatch.chdir(sub)
    loaded = cfg.load_config(warn=None)
    assert loaded.project_file is None and loaded.root == sub  # the parent project is not used instead
    assert loaded.warnings == [f"{sub / 'mlctl.yaml'} is a directory, not a project file: ignored"]
    with pytest.raises(NotAProject, match=r"sub/mlctl.yaml is a directory, not a project file"):
        loaded.require_project()
    with pytest.raises(NotAProject, match="is a directory"):
        cfg.project_file_to_edit()
    with pytest.raises(ConfigError, match="is a directory, not a project file"):
        cfg.load_config(project_file=sub / "mlctl.yaml", warn=None)


def test_project_file_to_edit_does_not_validate(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / ".")
    (project / "mlctl.yaml").write_text("deploy:\n  port: lots\n")
    assert cfg.project_file_to_edit() == project / "mlctl.yaml"
    monkeypatch.chdir(project.parent)
    with pytest.raises(NotAProject, match="no mlctl.yaml found"):
        cfg.project_file_to_edit()
    with pytest.raises(NotAProject, match="file not found"):
        cfg.project_file_to_edit(project / "nope.yaml")


# -- the section registry ------------------------------------------------------------------------


class _Demo(BaseModel):
    """``demo:`` a section registered by a test."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rate: int = Field(1, ge=1, description="demo rate")
    mode: str = Field("a", description="demo mode")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the section registry, restored (with its cached model) after the test."""
    cfg.config_model()  # compose first: the composition root is imported once
    monkeypatch.setattr(cfg, "_registry", dict(cfg._registry))
    monkeypatch.setattr(cfg, "_model", cfg._model)


def test_capability_sections_come_from_the_composition_root() -> None:
    import mlctl.sections

    assert cfg.COMPOSITION_ROOT == mlctl.sections.__name__ == "mlctl.sections"
    model = cfg.config_model()
    assert model is cfg.config_model()  # cached
    assert issubclass(model, cfg.CoreConfig) and model.__name__ == "MlctlConfig"
    assert list(model.model_fields) == ["project", "tracking", "deploy", "services", "train", "detect", "logs",
                                        "serve"]
    assert [s.name for s in cfg.registered_sections()] == ["train", "detect", "logs", "serve"]
    assert model.model_fields["train"].description == "``train:`` the training job of this project."
    assert mlctl.sections.MlctlConfig is model  # the whole model's public name, where it is named
    assert f"{model.__module__}.{model.__qualname__}" == "mlctl.sections.MlctlConfig"
    loaded = cfg.load_config(warn=None).config
    assert pickle.loads(pickle.dumps(loaded)) == loaded == model()
    assert not hasattr(cfg, "MlctlConfig")  # core names only its own part, CoreConfig
    with pytest.raises(AttributeError):
        mlctl.sections.NoSuchName  # noqa: B018


def test_the_typed_view_of_the_sections_matches_the_registry() -> None:
    """mlctl.sections declares the composed model's fields for type checkers: keep both in step."""
    import ast

    import mlctl.sections

    tree = ast.parse(Path(mlctl.sections.__file__).read_text(encoding="utf-8"))
    stub = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "MlctlConfig")
    typed = {n.target.id: ast.unparse(n.annotation) for n in stub.body
             if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}  # fmt: skip
    assert typed == {s.name: s.model.__name__ for s in cfg.registered_sections()}


def test_a_registered_section_is_loaded_validated_and_settable(
        registry: None, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = cfg.config_model()
    cfg.register_section("demo", _Demo)
    model = cfg.config_model()
    assert model is not before and list(model.model_fields)[-1] == "demo"
    assert model.model_fields["demo"].description == "``demo:`` a section registered by a test."
    assert {"demo.rate", "demo.mode"} <= set(cfg.known_keys())
    assert cfg.key_description("demo.rate") == "demo rate"
    assert cfg.key_hint("demo.rat") == "did you mean 'demo.rate'?"

    monkeypatch.chdir(project)
    loaded = cfg.load_config(env={"MLCTL_DEMO_RATE": "3"}, warn=None)
    assert loaded.config.demo.rate == 3 and loaded.origins["demo.rate"] == "env: MLCTL_DEMO_RATE"
    assert loaded.config.demo.mode == "a" and loaded.origins["demo.mode"] == "default"
    assert cfg.env_var_hint("MLCTL_DEMO_RAT") == "did you mean MLCTL_DEMO_RATE?"

    path = project / "mlctl.yaml"
    assert cfg.set_value(path, "demo.rate", "5", warn=None) == 5
    assert cfg.load_config(env={}, warn=None).config.demo.rate == 5
    with pytest.raises(ConfigError, match=r"demo.rate: Input should be greater than or equal to 1"):
        cfg.set_value(path, "demo.rate", "0", warn=None)
    path.write_text("demo:\n  rat: 2\n")
    with pytest.raises(ConfigError, match=r"mlctl.yaml:2: demo.rat: unknown key") as info:
        cfg.load_config(env={}, warn=None)
    assert info.value.hint == "did you mean 'rate'?"


def test_register_section_is_idempotent_and_refuses_clashes(registry: None) -> None:
    cfg.register_section("demo", _Demo)
    model = cfg.config_model()
    cfg.register_section("demo", _Demo)  # the same model again: nothing changes
    assert cfg.config_model() is model

    class Other(BaseModel):
        x: int = 1

    class NoDefault(BaseModel):
        x: int

    with pytest.raises(ValueError, match=r"'demo' is already registered with .*_Demo"):
        cfg.register_section("demo", Other)
    for name in ("deploy", "services", "model_config", "copy"):
        with pytest.raises(ValueError, match="reserved"):
            cfg.register_section(name, Other)
    for name in ("Bad", "two words", "_private", ""):
        with pytest.raises(ValueError, match="lowercase identifier"):
            cfg.register_section(name, Other)
    with pytest.raises(ValueError, match="needs defaults for every field"):
        cfg.register_section("nodefault", NoDefault)
    with pytest.raises(TypeError, match="not a pydantic model"):
        cfg.register_section("plain", dict)  # type: ignore[arg-type]
    assert [s.name for s in cfg.registered_sections()][-1] == "demo"
    assert cfg.config_model() is model
