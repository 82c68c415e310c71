"""Configuration: pydantic models, layered sources, and where each value came from.

Precedence, highest first: flags > ``MLCTL_*`` environment > project ``mlctl.yaml``
(found by walking up from the working directory) > user file
(``$XDG_CONFIG_HOME/mlctl/config.yaml``, default ``~/.config/mlctl/config.yaml``) > defaults.

Environment variables name a dotted key with ``_`` or ``__`` for the dot:
``MLCTL_TRACKING_URI`` and ``MLCTL_TRACKING__URI`` both set ``tracking.uri``.
``MLCTL_CONFIG`` names the project file explicitly.

>>> env_key("MLCTL_DEPLOY__PORT", ["deploy.port", "deploy.target"])
'deploy.port'
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlctl.core.errors import ConfigError, NotAProject, UsageError
from mlctl.detect.spec import DetectSpec
from mlctl.lifecycle.spec import TrainSpec
from mlctl.logs.spec import LogsSpec

PROJECT_FILE = "mlctl.yaml"
STATE_DIR = ".mlctl"
_RESERVED_ENV = {"MLCTL_CONFIG", "MLCTL_BENCH_DATA"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProjectSection(_Section):
    """``project:`` what this project is."""

    name: str | None = Field(None, description="project name (defaults to the folder name)")
    template: str | None = Field(None, description="template it was scaffolded from")
    app: str | None = Field(None, description="ASGI app of the project's service, module:attribute")


class TrackingSection(_Section):
    """``tracking:`` where runs, metrics and models are tracked."""

    uri: str = Field("sqlite:///.mlctl/mlflow.db", description="MLflow tracking URI; sqlite:/// or http(s)://")
    experiment: str = Field("default", description="default experiment name")

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("sqlite:///", "http://", "https://", "file:", "postgresql://", "mysql://")):
            raise ValueError("must start with sqlite:///, http(s)://, file:, postgresql:// or mysql://")
        return v


class DeploySection(_Section):
    """``deploy:`` where and how models are deployed."""

    target: str = Field("local", description="local, docker, or k8s://CONTEXT/NAMESPACE")
    port: int = Field(8000, ge=1, le=65535, description="first port of the model server")
    replicas: int = Field(1, ge=1, le=1000, description="server replicas")
    dockerfile: str | None = Field(None, description="Dockerfile of the project's service")
    manifests: str | None = Field(None, description="folder of Kubernetes manifests")

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        if v not in ("local", "docker") and not v.startswith("k8s://"):
            raise ValueError("must be local, docker or k8s://CONTEXT/NAMESPACE")
        return v


class ServicesSection(_Section):
    """``services:`` URLs of the optional engines mlctl can use (see ``mlctl doctor``)."""

    mlflow: str = Field("http://127.0.0.1:5000", description="MLflow tracking server")
    prometheus: str = Field("http://127.0.0.1:9090", description="Prometheus server")
    alertmanager: str = Field("http://127.0.0.1:9093", description="Alertmanager")
    pushgateway: str = Field("http://127.0.0.1:9091", description="Prometheus Pushgateway")
    kafka: str = Field("kafka://127.0.0.1:9092", description="Kafka-protocol broker")
    search: str = Field("http://127.0.0.1:9200", description="Elasticsearch/OpenSearch")
    redis: str = Field("redis://127.0.0.1:6379/0", description="Redis")
    postgres: str = Field("postgresql://127.0.0.1:5432/postgres", description="PostgreSQL")
    docker: str = Field("unix:///var/run/docker.sock", description="Docker engine")
    kubernetes: str | None = Field(None, description="Kubernetes API URL (default: from KUBECONFIG)")


class MlctlConfig(_Section):
    """The whole effective configuration."""

    project: ProjectSection = ProjectSection()
    tracking: TrackingSection = TrackingSection()
    deploy: DeploySection = DeploySection()
    services: ServicesSection = ServicesSection()
    train: TrainSpec = TrainSpec()
    detect: DetectSpec = DetectSpec()
    logs: LogsSpec = LogsSpec()


Origin = Literal["default", "user", "project", "env", "flag"]


@dataclass
class LoadedConfig:
    """The validated config, its root folder, and the origin of every leaf value.

    Origins are ``default``, ``user`` (the user file), ``project`` (the project file),
    ``env: MLCTL_...`` or ``flag``.
    """

    config: MlctlConfig
    root: Path
    project_file: Path | None
    user_file: Path | None
    origins: dict[str, str] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def project_name(self) -> str:
        return self.config.project.name or self.root.name

    def values(self) -> dict[str, Any]:
        return flatten(self.config.model_dump(mode="json"))

    def require_project(self) -> Path:
        if self.project_file is None:
            raise NotAProject(
                f"no {PROJECT_FILE} found in {self.root} or any parent folder",
                hint="run `mlctl init DIR` to create a project, or cd into one",
            )
        return self.project_file


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def known_keys(model: type[BaseModel] = MlctlConfig, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema."""
    keys: list[str] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(known_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def key_description(key: str) -> str:
    """The schema's description of a dotted key."""
    model: type[BaseModel] = MlctlConfig
    *parents, leaf = key.split(".")
    for p in parents:
        ann = model.model_fields[p].annotation
        assert isinstance(ann, type) and issubclass(ann, BaseModel)
        model = ann
    return model.model_fields[leaf].description or ""


def env_key(var: str, keys: Iterable[str]) -> str | None:
    """The dotted key an ``MLCTL_*`` variable names, or None."""
    if not var.startswith("MLCTL_") or var in _RESERVED_ENV:
        return None
    rest = var[len("MLCTL_") :].lower()
    for key in keys:
        if rest in (key.replace(".", "__"), key.replace(".", "_")):
            return key
    return None


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlctl" / "config.yaml"


def find_project_file(start: Path | None = None) -> Path | None:
    """The nearest ``mlctl.yaml`` walking up from ``start`` (default: cwd)."""
    explicit = os.environ.get("MLCTL_CONFIG")
    if explicit:
        return Path(explicit).expanduser().resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    return None


def _line_of(text: str, path: tuple[str, ...]) -> int | None:
    """1-based line of a dotted path in a YAML document, for error messages."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in path:
        if not isinstance(node, yaml.MappingNode):
            break
        for k, v in node.value:
            if k.value == part:
                line, node = k.start_mark.line + 1, v
                break
        else:
            break
    return line


def read_yaml_file(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a config file into a mapping, with clear errors naming the file."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except (PermissionError, IsADirectoryError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}", hint="fix the YAML syntax") from exc
    if data is None:
        return {}, text
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data, text


def _merge(base: dict[str, Any], layer: Mapping[str, Any], origins: dict[str, str], origin: str,
           prefix: str = "") -> None:
    for k, v in layer.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v, origins, origin, key + ".")
        else:
            base[k] = dict(v) if isinstance(v, Mapping) else v
            if isinstance(v, Mapping):
                for sub in flatten(v, key + "."):
                    origins[sub] = origin
            else:
                origins[key] = origin


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _explain(exc: ValidationError, origins: Mapping[str, str], sources: Mapping[str, tuple[Path, str]]) -> ConfigError:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc)
    origin = origins.get(key) or "default"
    if origin == "default":  # a mapping value (e.g. train.gates): blame the layer that set its entries
        origin = next((o for k, o in origins.items() if k.startswith(key + ".") and o != "default"), origin)
    where = origin
    if origin in sources:
        path, text = sources[origin]
        line = _line_of(text, loc)
        where = f"{path}:{line}" if line else str(path)
    elif origin == "env":
        where = "environment (MLCTL_" + key.replace(".", "_").upper() + ")"
    hint = None
    if err["type"] == "extra_forbidden":
        parent_keys = [k.split(".")[len(loc) - 1] for k in known_keys() if k.startswith(".".join(loc[:-1]))]
        close = difflib.get_close_matches(loc[-1], parent_keys, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "see `mlctl config show` for the known keys"
        problem = "unknown key"
    else:
        problem = err["msg"]
        if "input" in err and not isinstance(err["input"], dict):
            problem += f" (got {err['input']!r})"
    return ConfigError(f"{where}: {key}: {problem}", hint=hint, details={"key": key, "source": where})


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    start: Path | None = None,
    project_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    use_user_file: bool = True,
) -> LoadedConfig:
    """Build the effective configuration from every layer, validating the result.

    ``overrides`` are flag values by dotted key (None values are ignored).
    """
    environ = os.environ if env is None else env
    keys = known_keys()
    merged: dict[str, Any] = MlctlConfig().model_dump()
    origins = {k: "default" for k in flatten(merged)}
    sources: dict[str, tuple[Path, str]] = {}

    user_file = user_config_path() if use_user_file else None
    if user_file is not None and user_file.is_file():
        data, text = read_yaml_file(user_file)
        sources["user"] = (user_file, text)
        _merge(merged, data, origins, "user")
    else:
        user_file = None

    pfile = project_file.resolve() if project_file else find_project_file(start)
    if pfile is not None:
        if not pfile.is_file():
            raise ConfigError(f"{pfile}: file not found", hint="check MLCTL_CONFIG or --config")
        data, text = read_yaml_file(pfile)
        sources["project"] = (pfile, text)
        _merge(merged, data, origins, "project")

    env_layer = {}
    for var, value in environ.items():
        key = env_key(var, keys)
        if key is not None:
            env_layer[key] = value
    _merge(merged, _unflatten(env_layer), origins, "env")
    flag_layer = {k: v for k, v in (overrides or {}).items() if v is not None}
    _merge(merged, _unflatten(flag_layer), origins, "flag")

    try:
        config = MlctlConfig.model_validate(merged)
    except ValidationError as exc:
        raise _explain(exc, origins, sources) from None
    root = pfile.parent if pfile else (start or Path.cwd()).resolve()
    described = {}
    for key in flatten(config.model_dump(mode="json")):
        origin = origins.get(key, "default")
        if origin == "env":
            var = next((v for v in environ if env_key(v, [key]) == key), "")
            described[key] = f"env: {var}"
        else:
            described[key] = origin
    return LoadedConfig(config, root, pfile, user_file, described)


def parse_value(raw: str) -> Any:
    """A command-line value as YAML scalar: ``8000`` -> 8000, ``true`` -> True, ``null`` -> None."""
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return value if isinstance(value, (str, int, float, bool)) or value is None else raw


def parse_params(items: Iterable[str], *, flag: str = "--param") -> dict[str, Any]:
    """``["n_estimators=200", "max_depth=null"]`` -> ``{"n_estimators": 200, "max_depth": None}``.

    Values are YAML scalars (numbers, ``true``/``false``, ``null``, text).

    >>> parse_params(["alpha=0.5", "solver=lbfgs"])
    {'alpha': 0.5, 'solver': 'lbfgs'}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not key.strip().isidentifier():
            raise UsageError(f"{flag} '{item}': expected NAME=VALUE", hint=f"e.g. {flag} n_estimators=200")
        out[key.strip()] = parse_value(raw)
    return out


def key_hint(key: str) -> str:
    """The hint for an unknown dotted key: the closest known one, if any.

    >>> key_hint("deploy.prot")
    "did you mean 'deploy.port'?"
    """
    close = difflib.get_close_matches(key, known_keys(), n=1)
    return f"did you mean '{close[0]}'?" if close else "see `mlctl config show` for the known keys"


def set_value(project_file: Path, key: str, raw: str) -> Any:
    """Set ``key`` in the project file, keeping its comments and layout; returns the new value."""
    if key not in known_keys():
        raise ConfigError(f"unknown config key '{key}'", hint=key_hint(key))
    value = parse_value(raw)
    data, _ = read_yaml_file(project_file)
    _merge(data, _unflatten({key: value}), {}, "flag")
    try:
        validated = MlctlConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"{key}: {err['msg']} (got {raw!r})") from None
    final = flatten(validated.model_dump(mode="json")).get(key, value)

    from ruamel.yaml import YAML, CommentedMap

    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    doc = yaml_rt.load(project_file.read_text(encoding="utf-8"))
    if doc is None:
        doc = CommentedMap()
    node = doc
    *parents, leaf = key.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = CommentedMap()
        node = node[p]
    node[leaf] = final
    tmp = project_file.with_name(f".{project_file.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            yaml_rt.dump(doc, fh)
        os.replace(tmp, project_file)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{project_file}: cannot write: {exc.strerror}") from exc
    return final
