"""Configuration: pydantic models, layered sources, and where each value came from.

Precedence, highest first: flags > ``MLCTL_*`` environment > project ``mlctl.yaml``
(found by walking up from the working directory) > user file
(``$XDG_CONFIG_HOME/mlctl/config.yaml``, default ``~/.config/mlctl/config.yaml``) > defaults.

Environment variables name a dotted key with ``_`` or ``__`` for the dot:
``MLCTL_TRACKING_URI`` and ``MLCTL_TRACKING__URI`` both set ``tracking.uri``.
``MLCTL_CONFIG`` names the project file explicitly. Other ``MLCTL_*`` variables that are not
settings are listed in :data:`NON_CONFIG_ENV`; any other unknown ``MLCTL_*`` variable (a typo such
as ``MLCTL_DEPLOY_PROT``) is reported with a warning, as are duplicate keys in a file.

Sections: core defines the sections every part of mlctl shares (``project``, ``tracking``,
``deploy``, ``services``) in :class:`CoreConfig`; each capability owns its section's model and is
registered with :func:`register_section` by the composition root, the module named by
:data:`COMPOSITION_ROOT` (``mlctl/sections.py``). Core imports no capability: :func:`config_model`
imports the composition root by name the first time it is called and builds the whole model
from :class:`CoreConfig` plus every registered section, so every caller of :func:`load_config`
sees every section.

>>> env_key("MLCTL_DEPLOY__PORT", ["deploy.port", "deploy.target"])
'deploy.port'
"""

from __future__ import annotations

import difflib
import importlib
import io
import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from mlctl.core.errors import ConfigError, NotAProject, OperationFailed, UsageError

PROJECT_FILE = "mlctl.yaml"
STATE_DIR = ".mlctl"
#: ``MLCTL_*`` environment variables that are not settings: never read as config keys, never
#: reported as unknown. Names ending in ``_`` are prefixes. Add new ones here, in one place.
NON_CONFIG_ENV: tuple[str, ...] = (
    "MLCTL_CONFIG",  # the project file to use (also --config)
    "MLCTL_CACHE_DIR",  # mlctl's cache (wheelhouse, base images)
    "MLCTL_BENCH_DATA",  # benchmark corpora (benchmarks/)
    "MLCTL_TEST_",  # the test suite's engines and switches (MLCTL_TEST_<NAME>_URL, ...)
)


def is_non_config_env(var: str) -> bool:
    """Whether ``var`` is an ``MLCTL_*`` variable with another purpose than a setting.

    >>> is_non_config_env("MLCTL_TEST_REDIS_URL"), is_non_config_env("MLCTL_DEPLOY_PORT")
    (True, False)
    """
    return any(var.startswith(n) if n.endswith("_") else var == n for n in NON_CONFIG_ENV)


def _warn(text: str) -> None:
    """A warning line on stderr, like every other warning of the CLI (hidden by ``--quiet``)."""
    from mlctl.core.output import message

    message(f"warning: {text}")


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


class CoreConfig(_Section):
    """The sections core defines; :func:`config_model` adds every registered section to them."""

    project: ProjectSection = ProjectSection()
    tracking: TrackingSection = TrackingSection()
    deploy: DeploySection = DeploySection()
    services: ServicesSection = ServicesSection()

    if TYPE_CHECKING:
        # Registered sections (``config.train``...) are fields of the composed model only; to a
        # type checker they are reachable as attributes of any value. Core fields stay typed.
        def __getattr__(self, name: str) -> Any: ...


# -- the section registry -----------------------------------------------------------------------

#: The module that registers every capability's section (the composition root). Core never
#: imports it statically; :func:`config_model` imports it by this name the first time.
COMPOSITION_ROOT = "mlctl.sections"


@dataclass(frozen=True)
class Section:
    """A registered config section: its top-level key, its pydantic model and a one-line description."""

    name: str
    model: type[BaseModel]
    description: str = ""


_registry: dict[str, Section] = {}
_lock = threading.RLock()
_model: type[CoreConfig] | None = None
_root_imported = False


def register_section(name: str, model: type[BaseModel], *, description: str = "") -> None:
    """Add ``model`` as the ``name:`` section of the configuration (e.g. ``train``).

    The model must be a pydantic model whose fields all have defaults (its defaults are the
    section's defaults); forbid extra keys in it (``extra="forbid"``) so typos are reported.
    Registering the same model under the same name again does nothing; another model under a
    registered name, a core section's name, or a name that is not a lowercase identifier raises
    ``ValueError``. ``description`` defaults to the first line of the model's docstring.
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"config section '{name}': {model!r} is not a pydantic model")
    if not name.isidentifier() or name.startswith("_") or name != name.lower():
        raise ValueError(f"config section name {name!r} must be a lowercase identifier not starting with '_'")
    if name in CoreConfig.model_fields or hasattr(BaseModel, name):
        raise ValueError(f"config section '{name}' is reserved by mlctl.core.config")
    global _model
    with _lock:
        known = _registry.get(name)
        if known is not None:
            if known.model is model:
                return
            raise ValueError(f"config section '{name}' is already registered with "
                             f"{known.model.__module__}.{known.model.__qualname__}")
        try:
            model()
        except ValidationError as exc:
            raise ValueError(f"config section '{name}': {model.__qualname__} needs defaults for every field "
                             f"({exc.error_count()} missing or invalid)") from None
        if not description:
            description = ((model.__doc__ or "").strip().splitlines() or [""])[0]
        _registry[name] = Section(name, model, description)
        _model = None  # rebuilt by the next config_model()


def registered_sections() -> list[Section]:
    """The sections added to :class:`CoreConfig`, in registration order (after composition)."""
    _compose()
    with _lock:
        return list(_registry.values())


def _compose() -> None:
    """Import the composition root once, so that every capability's section is registered."""
    global _root_imported
    if _root_imported:
        return
    with _lock:
        if not _root_imported:
            importlib.import_module(COMPOSITION_ROOT)
            _root_imported = True


def config_model() -> type[CoreConfig]:
    """The whole configuration's model: :class:`CoreConfig` plus every registered section.

    Built once and cached; rebuilt when a section is registered afterwards.

    >>> list(config_model().model_fields)[3:5]
    ['services', 'train']
    """
    global _model
    _compose()
    with _lock:
        if _model is None:
            sections: dict[str, Any] = {
                s.name: (s.model, Field(s.model(), description=s.description)) for s in _registry.values()
            }
            # named where it is public (mlctl.sections.MlctlConfig), so instances pickle and print as such
            _model = create_model("MlctlConfig", __base__=CoreConfig, __module__=COMPOSITION_ROOT, **sections)
        return _model


Origin = Literal["default", "user", "project", "env", "flag"]


@dataclass
class LoadedConfig:
    """The validated config, its root folder, and the origin of every leaf value.

    Origins are ``default``, ``user`` (the user file), ``project`` (the project file),
    ``env: MLCTL_...`` or ``flag``.
    """

    config: CoreConfig  # an instance of config_model(): every registered section too
    root: Path
    project_file: Path | None
    user_file: Path | None
    origins: dict[str, str] = field(default_factory=dict)
    #: warnings found while loading (duplicate keys, unknown MLCTL_* variables...)
    warnings: list[str] = field(default_factory=list)
    #: a ``mlctl.yaml`` found walking up that is not a file (a folder, a broken link)
    not_a_file: Path | None = None

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def project_name(self) -> str:
        return self.config.project.name or self.root.name

    def values(self) -> dict[str, Any]:
        return flatten(self.config.model_dump(mode="json"))

    def require_project(self) -> Path:
        if self.project_file is None and self.not_a_file is not None:
            raise NotAProject(_not_a_file_message(self.not_a_file),
                              hint="remove or rename it (a project file is a YAML file), or cd into a project")
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


def known_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema (default: the whole configuration, :func:`config_model`)."""
    if model is None:
        model = config_model()
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
    model: type[BaseModel] = config_model()
    *parents, leaf = key.split(".")
    for p in parents:
        ann = model.model_fields[p].annotation
        assert isinstance(ann, type) and issubclass(ann, BaseModel)
        model = ann
    return model.model_fields[leaf].description or ""


def env_key(var: str, keys: Iterable[str]) -> str | None:
    """The dotted key an ``MLCTL_*`` variable names, or None."""
    if not var.startswith("MLCTL_") or is_non_config_env(var):
        return None
    rest = var[len("MLCTL_") :].lower()
    for key in keys:
        if rest in (key.replace(".", "__"), key.replace(".", "_")):
            return key
    return None


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlctl" / "config.yaml"


def env_var_hint(var: str) -> str:
    """The hint for an unknown ``MLCTL_*`` variable: the closest setting's variable, if any.

    >>> env_var_hint("MLCTL_DEPLOY_PROT")
    'did you mean MLCTL_DEPLOY_PORT?'
    """
    sep = "__" if "__" in var else "_"
    names = ["MLCTL_" + k.replace(".", sep).upper() for k in known_keys()]
    close = difflib.get_close_matches(var, names, n=1)
    if close:
        return f"did you mean {close[0]}?"
    return "settings are MLCTL_<SECTION>_<KEY>, e.g. MLCTL_DEPLOY_PORT; see `mlctl config show`"


def unknown_env_vars(environ: Mapping[str, str], keys: Iterable[str] | None = None) -> list[str]:
    """``MLCTL_*`` variables that name no setting and are not in :data:`NON_CONFIG_ENV`, sorted."""
    keys = list(known_keys() if keys is None else keys)
    return sorted(v for v in environ if v.startswith("MLCTL_") and not is_non_config_env(v)
                  and env_key(v, keys) is None)  # fmt: skip


def _not_a_file_message(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return f"{path} is a broken symbolic link, not a project file"
    if path.is_dir():
        return f"{path} is a directory, not a project file"
    return f"{path} is not a regular file"


def _find(start: Path | None = None) -> tuple[Path | None, Path | None]:
    """``(project file, blocker)``: the nearest ``mlctl.yaml`` walking up from ``start``, or the
    nearest entry of that name that is not a file (a folder, a broken link), where the search stops:
    a parent project is never used in its place."""
    explicit = os.environ.get("MLCTL_CONFIG")
    if explicit:
        return Path(explicit).expanduser().resolve(), None
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate, None
        if candidate.exists() or candidate.is_symlink():
            return None, candidate
    return None, None


def find_project_file(start: Path | None = None) -> Path | None:
    """The nearest ``mlctl.yaml`` walking up from ``start`` (default: cwd)."""
    return _find(start)[0]


def project_file_to_edit(project_file: Path | None = None, *, start: Path | None = None) -> Path:
    """The project file ``mlctl config set`` edits: found as :func:`load_config` finds it, without
    loading or validating it (so that a file with an invalid value can be repaired).

    The path is returned as given (a symbolic link stays a link); raises :class:`NotAProject`.
    """
    if project_file is not None:
        path: Path | None = Path(os.path.abspath(project_file.expanduser()))
        blocker = None
    else:
        explicit = os.environ.get("MLCTL_CONFIG")
        if explicit:
            path, blocker = Path(os.path.abspath(Path(explicit).expanduser())), None
        else:
            path, blocker = _find(start)
    if path is None:
        root = blocker.parent if blocker else (start or Path.cwd()).resolve()
        LoadedConfig(CoreConfig(), root, None, None, not_a_file=blocker).require_project()
    assert path is not None
    if not path.is_file():
        if path.exists() or path.is_symlink():
            raise NotAProject(_not_a_file_message(path), hint="check MLCTL_CONFIG or --config")
        raise NotAProject(f"{path}: file not found", hint="check MLCTL_CONFIG or --config")
    return path


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


@dataclass(frozen=True)
class DuplicateKey:
    """A key given twice in one mapping of a YAML file (the last value is the one used)."""

    key: str  # dotted path, e.g. ``deploy.port``
    first_line: int
    line: int

    def location(self, path: Path) -> str:
        return f"{path}:{self.line}: duplicate key '{self.key}' (first on line {self.first_line})"

    def describe(self, path: Path) -> str:
        return f"{self.location(path)}: the last value is used"


def _duplicates(node: Any, prefix: str = "", seen: set[int] | None = None) -> list[DuplicateKey]:
    """Duplicate keys in a composed YAML node tree, in document order."""
    import yaml

    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias met again (or a recursive structure)
        return []
    seen.add(id(node))
    out: list[DuplicateKey] = []
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                key, line = f"{prefix}{k.value}", k.start_mark.line + 1
                if key in lines:
                    out.append(DuplicateKey(key, lines[key], line))
                else:
                    lines[key] = line
                out.extend(_duplicates(v, key + ".", seen))
    elif isinstance(node, yaml.SequenceNode):
        base = prefix[:-1] if prefix.endswith(".") else prefix
        for i, item in enumerate(node.value):
            out.extend(_duplicates(item, f"{base}[{i}].", seen))
    return out


def _parse_yaml_file(path: Path) -> tuple[dict[str, Any], str, list[DuplicateKey]]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path} is a directory, not a config file") from exc
    except PermissionError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        duplicates = _duplicates(node) if node is not None else []  # before construction merges `<<` keys
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}", hint="fix the YAML syntax") from exc
    finally:
        loader.dispose()
    if data is None:
        return {}, text, duplicates
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data, text, duplicates


def read_yaml_file(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a config file into a mapping, with clear errors naming the file."""
    data, text, _ = _parse_yaml_file(path)
    return data, text


def duplicate_keys(path: Path) -> list[DuplicateKey]:
    """Keys given twice in one mapping of a config file (PyYAML keeps the last silently)."""
    return _parse_yaml_file(path)[2]


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
    warn: Callable[[str], None] | None = _warn,
) -> LoadedConfig:
    """Build the effective configuration from every layer, validating the result.

    ``overrides`` are flag values by dotted key (None values are ignored). Problems that do not
    stop the load (duplicate keys, unknown ``MLCTL_*`` variables, a ``mlctl.yaml`` that is a
    folder) are passed to ``warn`` as they are found (by default a ``warning:`` line on stderr;
    None: silent) and kept in :attr:`LoadedConfig.warnings`.
    """
    environ = os.environ if env is None else env
    model = config_model()
    keys = known_keys(model)
    merged: dict[str, Any] = model().model_dump()
    origins = {k: "default" for k in flatten(merged)}
    sources: dict[str, tuple[Path, str]] = {}
    found: list[str] = []

    def note(text: str) -> None:
        found.append(text)
        if warn is not None:
            warn(text)

    user_file = user_config_path() if use_user_file else None
    if user_file is not None and user_file.is_file():
        data, text, dups = _parse_yaml_file(user_file)
        for d in dups:
            note(d.describe(user_file))
        sources["user"] = (user_file, text)
        _merge(merged, data, origins, "user")
    else:
        if user_file is not None and (user_file.exists() or user_file.is_symlink()):
            note(f"{_not_a_file_message(user_file)}: ignored")
        user_file = None

    blocker = None
    if project_file:
        pfile: Path | None = project_file.resolve()
    else:
        pfile, blocker = _find(start)
        if blocker is not None:
            note(f"{_not_a_file_message(blocker)}: ignored")
    if pfile is not None:
        if not pfile.is_file():
            if pfile.exists():
                raise ConfigError(_not_a_file_message(pfile), hint="check MLCTL_CONFIG or --config")
            raise ConfigError(f"{pfile}: file not found", hint="check MLCTL_CONFIG or --config")
        data, text, dups = _parse_yaml_file(pfile)
        for d in dups:
            note(d.describe(pfile))
        sources["project"] = (pfile, text)
        _merge(merged, data, origins, "project")

    env_layer = {}
    for var, value in environ.items():
        key = env_key(var, keys)
        if key is not None:
            env_layer[key] = value
    for var in unknown_env_vars(environ, keys):
        note(f"environment variable {var} is not an mlctl setting: ignored; {env_var_hint(var)}")
    _merge(merged, _unflatten(env_layer), origins, "env")
    flag_layer = {k: v for k, v in (overrides or {}).items() if v is not None}
    _merge(merged, _unflatten(flag_layer), origins, "flag")

    try:
        config = model.model_validate(merged)
    except ValidationError as exc:
        raise _explain(exc, origins, sources) from None
    if pfile:
        root = pfile.parent
    elif blocker is not None:
        root = blocker.parent
    else:
        root = (start or Path.cwd()).resolve()
    described = {}
    for key in flatten(config.model_dump(mode="json")):
        origin = origins.get(key, "default")
        if origin == "env":
            var = next((v for v in environ if env_key(v, [key]) == key), "")
            described[key] = f"env: {var}"
        else:
            described[key] = origin
    return LoadedConfig(config, root, pfile, user_file, described, warnings=found, not_a_file=blocker)


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


def _problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every validation problem of a config document, as ``(dotted key, message)``."""
    try:
        config_model().model_validate(data)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            out.append((key, msg))
        return out
    return []


def _under(key: str, other: str) -> bool:
    return other == key or other.startswith(key + ".")


def _coerced(key: str, value: Any, data: Mapping[str, Any]) -> Any:
    """The value as the schema stores it (``"9000"`` -> 9000), from the whole document when it is
    valid, else from the key alone."""
    for doc in (data, _unflatten({key: value})):
        try:
            return flatten(config_model().model_validate(doc).model_dump(mode="json")).get(key, value)
        except ValidationError:
            continue
    return value


def _check_writable(path: Path, target: Path) -> os.stat_result:
    """Refuse a file that is read-only by its mode bits (even for root, who could write it), or not
    writable by this user, or whose folder is not (the file is replaced, not rewritten in place)."""
    st = target.stat()
    shown = path if path == target else f"{path} (a link to {target})"
    if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise OperationFailed(
            f"{shown} is read-only (mode {stat.S_IMODE(st.st_mode):04o}): not changed",
            hint=f"make it writable first (chmod u+w {target}) if it is meant to be edited",
        )
    if not os.access(target, os.W_OK):
        raise OperationFailed(f"cannot write {shown}: permission denied",
                              hint="check the file's owner and mode")  # fmt: skip
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OperationFailed(
            f"cannot write {shown}: permission denied on its folder {target.parent}",
            hint="the file is replaced atomically, so its folder must be writable",
        )
    return st


def _replace_file(target: Path, text: str, st: os.stat_result) -> None:
    """Write ``text`` to a new file beside ``target`` and rename it over ``target`` (atomic), keeping
    ``target``'s mode (and owner and group where allowed)."""
    import tempfile

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(fh.fileno(), st.st_uid, st.st_gid)
                except OSError:
                    pass  # not allowed: the new file stays ours
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def set_value(project_file: Path, key: str, raw: str, *, dry_run: bool = False,
              warn: Callable[[str], None] | None = _warn) -> Any:
    """Set ``key`` in the project file, keeping its comments and layout; returns the new value.

    Only this file is read (not the environment or the user file), and it is validated after the
    change: a value that is invalid, or that makes another key invalid, is refused (ConfigError),
    while a file that is invalid elsewhere can still be repaired one key at a time (what stays
    invalid is reported to ``warn``). A symbolic link is written through: its target is replaced,
    keeping its mode. A read-only file (no write bit, even for root) or one this user cannot write
    is refused (OperationFailed). A file with a duplicate key is refused: which one to set is
    ambiguous. ``dry_run`` checks everything and writes nothing.
    """
    if key not in known_keys():
        raise ConfigError(f"unknown config key '{key}'", hint=key_hint(key))
    value = parse_value(raw)
    target = Path(os.path.realpath(project_file))
    data, text, dups = _parse_yaml_file(target)
    if dups:
        d = dups[0]
        raise ConfigError(f"{d.location(project_file)}: not changed",
                          hint="remove one of them first: which one to set is ambiguous")  # fmt: skip
    before = _problems(data)
    _merge(data, _unflatten({key: value}), {}, "flag")
    after = _problems(data)
    for problem_key, msg in after:
        if _under(key, problem_key):
            raise ConfigError(f"{key}: {msg} (got {raw!r})", details={"key": key})
    for problem_key, msg in after:
        if (problem_key, msg) not in before:
            raise ConfigError(f"{key} = {raw!r} would make {problem_key} invalid: {msg}",
                              details={"key": key})  # fmt: skip
    final = _coerced(key, value, data)
    st = _check_writable(project_file, target)
    if dry_run:
        return final

    from ruamel.yaml import YAML, CommentedMap
    from ruamel.yaml.error import YAMLError as RuamelError

    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    try:
        doc = yaml_rt.load(text)
    except RuamelError as exc:
        raise ConfigError(f"{project_file}: cannot edit this YAML: {str(exc).splitlines()[0]}",
                          hint="edit the file by hand") from None  # fmt: skip
    if doc is None:
        doc = CommentedMap()
    node = doc
    *parents, leaf = key.split(".")
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = CommentedMap()
        node = node[p]
    node[leaf] = final
    buf = io.StringIO()
    yaml_rt.dump(doc, buf)
    try:
        _replace_file(target, buf.getvalue(), st)
    except PermissionError as exc:
        raise OperationFailed(f"cannot write {project_file}: permission denied",
                              hint="check the file's and its folder's owner and mode") from exc  # fmt: skip
    except OSError as exc:
        raise OperationFailed(f"cannot write {project_file}: {exc.strerror or exc}") from exc
    if warn is not None:
        for problem_key, msg in after:
            warn(f"{project_file}: {problem_key}: {msg}: still to fix")
    return final
