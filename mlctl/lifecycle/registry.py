"""The model registry (MLflow's): list, show, compare, move aliases, and resolve a model to a
verified local file.

References name a registered model and, optionally, which version:

* ``NAME@ALIAS`` -- the version holding that alias (``fraud@champion``);
* ``NAME:VERSION`` -- that version (``fraud:3``);
* ``NAME`` -- the version holding alias ``champion`` when there is one, else the latest version.
  :func:`parse_ref` returns ``(NAME, None, None)`` for it; :func:`resolve_model` applies the rule.

:func:`resolve_model` answers without importing MLflow where it can (the embedded SQLite store
read with ``sqlite3``, a tracking server through its REST API: :mod:`mlctl.lifecycle.registry_fast`),
and uses MLflow's client otherwise; both give the same artifact and the same errors.

Every version registered by ``mlctl train`` carries these tags: ``mlctl.artifact_sha256`` (of
``model.skops``, verified at every load), ``mlctl.artifact_path`` (the file inside the version's
folder), ``mlctl.flavor`` (``sklearn`` or ``torch``), ``mlctl.task``, ``mlctl.model``, ``mlctl.primary_metric``
and ``mlctl.dataset_sha256``.

>>> parse_ref("fraud@champion"), parse_ref("fraud:3"), parse_ref("fraud")
(('fraud', 'champion', None), ('fraud', None, '3'), ('fraud', None, None))
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlctl.core.config import LoadedConfig
from mlctl.core.errors import NotFound, OperationFailed, UsageError
from mlctl.core.output import Result, Table, to_data
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.metrics import better, higher_is_better
from mlctl.lifecycle.registry_fast import CannotAnswer, RegistryReader, VersionRecord, reader_for
from mlctl.lifecycle.serialize import MODEL_FILE, MODEL_FILES, sha256_file, verify_sha256
from mlctl.lifecycle.tracking import Tracking, connect, mlflow_errors

log = logging.getLogger("mlctl.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_SHA256 = "mlctl.artifact_sha256"
TAG_PATH = "mlctl.artifact_path"
TAG_FLAVOR = "mlctl.flavor"
MODELS_DIR = "models"

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_REF_HINT = "use NAME, NAME@ALIAS (e.g. fraud@champion) or NAME:VERSION (e.g. fraud:3)"


def parse_ref(text: str) -> tuple[str, str | None, str | None]:
    """Split a model reference into ``(name, alias, version)``; bad syntax raises UsageError.

    ``NAME@ALIAS`` -> ``(name, alias, None)``; ``NAME:VERSION`` -> ``(name, None, version)``;
    ``NAME`` -> ``(name, None, None)``, which :func:`resolve_model` resolves to the version holding
    alias ``champion`` if that alias exists, else to the latest version.
    """
    raw = (text or "").strip()
    name, alias, version = raw, None, None
    if "@" in raw:
        name, alias = raw.split("@", 1)
        if not _ALIAS.match(alias) or alias.lower() == "latest":
            raise UsageError(f"bad model reference '{text}': '{alias}' is not a valid alias", hint=_REF_HINT)
    elif ":" in raw:
        name, version = raw.split(":", 1)
        if not version.isdigit() or int(version) < 1:
            raise UsageError(f"bad model reference '{text}': version must be a positive number", hint=_REF_HINT)
        version = str(int(version))
    if not _NAME.match(name):
        raise UsageError(f"bad model reference '{text}'", hint=_REF_HINT)
    return name, alias, version


def check_alias(alias: str) -> str:
    """An alias mlflow accepts (letters, digits, ``_``, ``-``; not ``latest`` nor ``v<N>``)."""
    if not _ALIAS.match(alias) or alias.lower() == "latest" or re.match(r"^[vV]\d+$", alias):
        raise UsageError(f"'{alias}' is not a valid alias",
                         hint="use letters, digits, '_' and '-' (not 'latest' or v<number>), e.g. champion")
    return alias


# --------------------------------------------------------------------------- plain results


def _iso(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else None


@dataclass
class ModelSummary:
    """One row of ``mlctl models list``."""

    name: str
    latest_version: str | None
    aliases: dict[str, str]
    updated: str | None
    description: str | None


@dataclass
class VersionInfo:
    """One version of a registered model."""

    version: str
    aliases: list[str]
    run_id: str | None
    status: str
    created: str | None
    artifact_sha256: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class ModelList(list[ModelSummary], Result):
    """``mlctl models list``: a list of model summaries that renders itself."""

    title = "registered models"

    def document(self) -> list[dict[str, Any]]:
        return [to_data(m) for m in self]

    def table(self) -> list[dict[str, Any]]:
        return [{"name": m.name, "latest": m.latest_version,
                 "aliases": ", ".join(f"{a}=v{v}" for a, v in m.aliases.items()) or None, "updated": m.updated}
                for m in self]


@dataclass
class ModelDetail(Result):
    """``mlctl models show NAME``."""

    name: str
    description: str | None
    aliases: dict[str, str]
    versions: list[VersionInfo]

    def document(self) -> dict[str, Any]:
        return to_data(self)

    def rows(self) -> list[dict[str, Any]]:
        return [to_data(v) for v in self.versions]

    def tables(self) -> list[Table]:
        return [Table(self.table_rows(), title=f"model {self.name}")]

    def table_rows(self) -> list[dict[str, Any]]:
        return [{"version": v.version, "aliases": ", ".join(v.aliases) or None,
                 "created": (v.created or "")[:16].replace("T", " ") or None,
                 "sha256": (v.artifact_sha256 or "")[:12] or None,
                 "metrics": " ".join(f"{k}={x:.4g}" for k, x in sorted(v.metrics.items())) or None}
                for v in self.versions]


@dataclass
class MetricComparison:
    """One metric of ``models compare``: both values and which is better (``v1``, ``v2`` or None)."""

    name: str
    v1: float | None
    v2: float | None
    higher_is_better: bool
    better: str | None


@dataclass
class ParamComparison:
    """One parameter of ``models compare``."""

    name: str
    v1: str | None
    v2: str | None
    same: bool


@dataclass
class Comparison(Result):
    """``mlctl models compare NAME V1 V2``."""

    name: str
    v1: str
    v2: str
    metrics: list[MetricComparison]
    params: list[ParamComparison]

    def document(self) -> dict[str, Any]:
        return to_data(self)

    def rows(self) -> Iterator[dict[str, Any]]:
        for m in self.metrics:
            yield {"kind": "metric", **to_data(m)}
        for p in self.params:
            yield {"kind": "param", **to_data(p)}

    def tables(self) -> list[Table]:
        return [Table(self.table_rows(), title=f"{self.name}: v{self.v1} vs v{self.v2}")]

    def table_rows(self) -> list[dict[str, Any]]:
        def cell(x: Any, mark: bool) -> str:
            shown = "-" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))
            return f"{shown} *" if mark else shown

        rows: list[dict[str, Any]] = []
        for m in self.metrics:
            rows.append({"": "metric", "name": m.name + (" (higher better)" if m.higher_is_better else
                                                         " (lower better)"),
                         f"v{self.v1}": cell(m.v1, m.better == "v1"), f"v{self.v2}": cell(m.v2, m.better == "v2")})
        for p in self.params:
            rows.append({"": "param", "name": p.name + ("" if p.same else " (differs)"),
                         f"v{self.v1}": cell(p.v1, False), f"v{self.v2}": cell(p.v2, False)})
        return rows


@dataclass
class PromoteResult(Result):
    """``mlctl models promote``: what the alias pointed at before and after."""

    name: str
    alias: str
    version: str
    previous: str | None
    changed: bool
    dry_run: bool

    def document(self) -> dict[str, Any]:
        return to_data(self)

    def tables(self) -> list[Table]:
        return [Table(self.document(), title=f"{self.name}@{self.alias}")]

    def notes(self) -> list[str]:
        before = f"v{self.previous}" if self.previous else "nothing"
        if not self.changed:
            return [f"{self.name}@{self.alias} already points at v{self.version}; nothing to do"]
        if self.dry_run:
            return [f"would move {self.name}@{self.alias}: {before} -> v{self.version} (dry run, nothing changed)"]
        return [f"{self.name}@{self.alias}: {before} -> v{self.version}"]


@dataclass
class RegisteredVersion:
    """The version ``mlctl train`` registered."""

    name: str
    version: str
    alias: str


# --------------------------------------------------------------------------- lookups


def _no_model(name: str, names: list[str]) -> NotFound:
    return NotFound(f"no registered model named '{name}'",
                    hint=f"registered models: {', '.join(sorted(names))}" if names else
                    "no models are registered yet; run `mlctl train --register NAME`")


def _no_versions(name: str) -> NotFound:
    return NotFound(f"model '{name}' has no versions", hint="register one with `mlctl train --register`")


def _no_alias(name: str, alias: str, aliases: dict[str, str]) -> NotFound:
    return NotFound(f"model '{name}' has no alias '{alias}'", hint=_alias_hint(name, aliases))


def _no_version(name: str, version: str | None, versions: list[str]) -> NotFound:
    shown = ", ".join(versions)
    return NotFound(f"model '{name}' has no version {version}",
                    hint=f"versions: {shown}" if shown else "it has no versions yet")


def _model_or_not_found(tr: Tracking, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return tr.client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    raise _no_model(name, [m.name for m in tr.client.search_registered_models(max_results=50)])


def _versions(tr: Tracking, name: str) -> list[Any]:
    found = tr.client.search_model_versions(f"name='{name}'", max_results=1000)
    return sorted(found, key=lambda v: int(v.version))


def _alias_hint(name: str, aliases: dict[str, Any]) -> str:
    if not aliases:
        return f"'{name}' has no aliases yet; set one with `mlctl models promote {name} VERSION --alias champion`"
    return "aliases: " + ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items()))


def _find_version(tr: Tracking, name: str, alias: str | None, version: str | None) -> tuple[Any, str | None]:
    """The model version a parsed reference names, and the alias used (if any)."""
    from mlflow.exceptions import MlflowException

    rm = _model_or_not_found(tr, name)
    aliases = dict(getattr(rm, "aliases", {}) or {})
    if alias is None and version is None:
        if CHAMPION in aliases:
            alias = CHAMPION
        else:
            versions = _versions(tr, name)
            if not versions:
                raise _no_versions(name)
            return versions[-1], None
    if alias is not None:
        if alias not in aliases:
            raise _no_alias(rm.name, alias, aliases)
        return tr.client.get_model_version(name, aliases[alias]), alias
    try:
        return tr.client.get_model_version(name, version), None
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    raise _no_version(name, version, [str(v.version) for v in _versions(tr, name)])


def _find_version_fast(reader: RegistryReader, name: str, alias: str | None,
                      version: str | None) -> tuple[VersionRecord, str | None]:
    """:func:`_find_version` through a :class:`~mlctl.lifecycle.registry_fast.RegistryReader` (no MLflow):
    the same rule for a bare name, the same :class:`NotFound` errors; :class:`CannotAnswer` where
    the store is not as expected (an alias naming a missing version)."""
    rm = reader.model(name)
    if rm is None:
        raise _no_model(name, reader.model_names(50))
    if alias is None and version is None:
        if CHAMPION in rm.aliases:
            alias = CHAMPION
        else:
            versions = reader.versions(name)
            if not versions:
                raise _no_versions(name)
            version = versions[-1]
    if alias is not None:
        if alias not in rm.aliases:
            raise _no_alias(rm.name, alias, rm.aliases)
        found = reader.version(name, rm.aliases[alias])
        if found is None:
            raise CannotAnswer(f"alias {alias} names version {rm.aliases[alias]}, which is not there")
        return found, alias
    found = reader.version(name, str(version))
    if found is None:
        raise _no_version(name, version, reader.versions(name))
    return found, None


def _run_data(tr: Tracking, run_id: str | None) -> tuple[dict[str, float], dict[str, str]]:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return {}, {}
    try:
        run = tr.client.get_run(run_id)
    except MlflowException:
        return {}, {}
    return dict(run.data.metrics), dict(run.data.params)


# --------------------------------------------------------------------------- public API


def list_models(loaded: LoadedConfig) -> ModelList:
    """Every registered model with its latest version and aliases."""
    try:
        tr = connect(loaded, create=False)
    except NotFound:
        return ModelList()  # an embedded store that was never created holds no models
    with mlflow_errors(tr.uri):
        models = tr.client.search_registered_models(max_results=1000)
        out = ModelList()
        for rm in sorted(models, key=lambda m: m.name):
            latest = max((int(v.version) for v in (rm.latest_versions or [])), default=None)
            out.append(ModelSummary(name=rm.name, latest_version=None if latest is None else str(latest),
                                    aliases={a: str(v) for a, v in sorted((rm.aliases or {}).items())},
                                    updated=_iso(rm.last_updated_timestamp), description=rm.description or None))
    return out


def show_model(loaded: LoadedConfig, name: str) -> ModelDetail:
    """A registered model's versions, with their aliases, hashes and run metrics."""
    tr = connect(loaded, create=False)
    with mlflow_errors(tr.uri):
        rm = _model_or_not_found(tr, name)
        aliases = {a: str(v) for a, v in sorted((rm.aliases or {}).items())}
        versions = []
        for mv in _versions(tr, name):
            metrics, _ = _run_data(tr, mv.run_id)
            versions.append(VersionInfo(
                version=str(mv.version), aliases=sorted(a for a, v in aliases.items() if v == str(mv.version)),
                run_id=mv.run_id, status=str(mv.status), created=_iso(mv.creation_timestamp),
                artifact_sha256=(mv.tags or {}).get(TAG_SHA256), metrics=metrics,
                tags={k: v for k, v in (mv.tags or {}).items() if k.startswith("mlctl.")}))
    return ModelDetail(name=rm.name, description=rm.description or None, aliases=aliases, versions=versions)


def compare(loaded: LoadedConfig, name: str, v1: str, v2: str) -> Comparison:
    """Two versions' metrics and params side by side, marking the better value of each metric."""
    tr = connect(loaded, create=False)
    with mlflow_errors(tr.uri):
        mv1, _ = _find_version(tr, name, None, parse_ref(f"{name}:{v1}")[2])
        mv2, _ = _find_version(tr, name, None, parse_ref(f"{name}:{v2}")[2])
        m1, p1 = _run_data(tr, mv1.run_id)
        m2, p2 = _run_data(tr, mv2.run_id)
    metrics = []
    for metric in sorted(set(m1) | set(m2)):
        a, b = m1.get(metric), m2.get(metric)
        which = better(metric, a, b)
        metrics.append(MetricComparison(metric, a, b, higher_is_better(metric),
                                        {-1: "v1", 1: "v2", 0: None}[which]))
    params = [ParamComparison(p, p1.get(p), p2.get(p), p1.get(p) == p2.get(p)) for p in sorted(set(p1) | set(p2))]
    return Comparison(name=name, v1=str(mv1.version), v2=str(mv2.version), metrics=metrics, params=params)


def _set_alias(tr: Tracking, name: str, alias: str, version: str, *, dry_run: bool = False) -> PromoteResult:
    check_alias(alias)
    mv, _ = _find_version(tr, name, None, parse_ref(f"{name}:{version}")[2])
    rm = tr.client.get_registered_model(name)
    previous = (rm.aliases or {}).get(alias)
    previous = None if previous is None else str(previous)
    changed = previous != str(mv.version)
    if changed and not dry_run:
        tr.client.set_registered_model_alias(name, alias, str(mv.version))
    return PromoteResult(name=name, alias=alias, version=str(mv.version), previous=previous, changed=changed,
                         dry_run=dry_run)


def promote(loaded: LoadedConfig, name: str, version: str, alias: str = CHAMPION, *,
            dry_run: bool = False) -> PromoteResult:
    """Point ``alias`` at ``version`` (idempotent; ``dry_run`` changes nothing)."""
    tr = connect(loaded, create=False)
    with mlflow_errors(tr.uri):
        return _set_alias(tr, name, alias, version, dry_run=dry_run)


def set_alias(name: str, alias: str, version: str, loaded_config: LoadedConfig) -> str | None:
    """Point ``alias`` of model ``name`` at ``version``; returns the version that held it before (or None)."""
    return promote(loaded_config, name, version, alias).previous


def champion_metrics(tr: Tracking, name: str) -> dict[str, float] | None:
    """The run metrics of the version holding alias ``champion``, or None when there is none."""
    from mlflow.exceptions import MlflowException

    with mlflow_errors(tr.uri):
        try:
            rm = tr.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        version = (rm.aliases or {}).get(CHAMPION)
        if version is None:
            return None
        mv = tr.client.get_model_version(name, str(version))
        return _run_data(tr, mv.run_id)[0]


def register_version(tr: Tracking, name: str, run_id: str, source: str, tags: dict[str, str], *,
                     alias: str = CHALLENGER) -> RegisteredVersion:
    """Create a version of ``name`` (creating the model if needed) from ``source`` and give it ``alias``."""
    from mlflow.exceptions import MlflowException

    with mlflow_errors(tr.uri):
        try:
            tr.client.create_registered_model(name, description="registered by mlctl train")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        mv = tr.client.create_model_version(name, source=source, run_id=run_id, tags=tags)
        tr.client.set_registered_model_alias(name, alias, str(mv.version))
    return RegisteredVersion(name=name, version=str(mv.version), alias=alias)


def read_signature(mlmodel: Path) -> dict[str, Any]:
    """The signature in an ``MLmodel`` file as ``{"inputs": [{"name", "type"}], "outputs": [...]}``."""
    import yaml

    doc = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    sig = doc.get("signature") or {}
    types = {"float": "double", "integer": "long"}

    def cols(raw: Any) -> list[dict[str, str]]:
        items = json.loads(raw) if isinstance(raw, str) else (raw or [])
        return [{"name": str(c.get("name")), "type": types.get(c.get("type"), c.get("type"))} for c in items]

    return {"inputs": cols(sig.get("inputs")), "outputs": cols(sig.get("outputs"))}


def _download(tr: Tracking, mv: Any, dest: Path, model_file: str = MODEL_FILE) -> None:
    """Download a version's model folder into ``dest`` (replacing what was there)."""
    import mlflow.artifacts

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        with mlflow_errors(tr.uri):
            source = tr.client.get_model_version_download_uri(mv.name, str(mv.version))
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging),
                                                             tracking_uri=tr.uri))
        if local.is_file():
            local = local.parent
        if not (local / model_file).is_file():
            raise OperationFailed(f"model '{mv.name}' version {mv.version} has no {model_file} at {source}",
                                  hint="only versions registered by `mlctl train` can be resolved")
        if dest.exists():
            shutil.rmtree(dest)
        local.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_local(uri: str | None, dest: Path, model_file: str) -> None:
    """Copy a version's folder from a local artifact location (``file://``) into ``dest``, as
    :func:`_download` does through MLflow; :class:`CannotAnswer` for any other location."""
    parts = urllib.parse.urlsplit(uri or "")
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise CannotAnswer(f"artifacts at {uri!r} are not local files")
    source = Path(urllib.request.url2pathname(parts.path))
    if not (source / model_file).is_file() and not (source.is_file() and source.name == model_file):
        raise CannotAnswer(f"no {model_file} at {uri}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        local = staging / "copy"
        if source.is_dir():
            shutil.copytree(source, local)
        else:
            local.mkdir()
            shutil.copy2(source, local / source.name)
        if dest.exists():
            shutil.rmtree(dest)
        local.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _artifact(loaded_config: LoadedConfig, dest: Path | None, name: str, version: str, alias: str | None,
              tags: dict[str, str], run_id: str | None, fetch: Any) -> ModelArtifact:
    """The verified artifact of a found version; ``fetch(folder, file_name)`` brings its files
    when there is no verified copy in ``folder`` yet."""
    expected = tags.get(TAG_SHA256)
    if not expected:
        raise OperationFailed(f"model '{name}' version {version} has no recorded SHA-256 ({TAG_SHA256} tag)",
                              hint="register models with `mlctl train --register NAME` so they can be verified")
    folder = Path(dest) if dest is not None else loaded_config.state_dir / MODELS_DIR / name / version
    file_name = Path(tags.get(TAG_PATH) or MODEL_FILES.get(tags.get(TAG_FLAVOR, "sklearn"), MODEL_FILE)).name
    model_file = folder / file_name
    cached = model_file.is_file() and (folder / "MLmodel").is_file() and sha256_file(model_file) == expected
    if not cached:
        fetch(folder, file_name)
    verify_sha256(model_file, expected)
    return ModelArtifact(name=name, version=version, alias=alias, path=model_file.resolve(),
                         sha256=expected, flavor=tags.get(TAG_FLAVOR, "sklearn"),
                         signature=read_signature(folder / "MLmodel"), run_id=run_id)


def _resolve_fast(name: str, alias: str | None, version: str | None, loaded_config: LoadedConfig,
                  dest: Path | None) -> ModelArtifact:
    """:func:`resolve_model` without MLflow (raises :class:`CannotAnswer` where it cannot)."""
    reader = reader_for(loaded_config)
    try:
        found, alias_used = _find_version_fast(reader, name, alias, version)
    finally:
        reader.close()
    return _artifact(loaded_config, dest, name, found.version, alias_used, found.tags, found.run_id,
                     lambda folder, file_name: _copy_local(found.download_uri, folder, file_name))


def resolve_model(ref: str, loaded_config: LoadedConfig, *, dest: Path | None = None,
                  fast: bool = True) -> ModelArtifact:
    """Resolve ``ref`` in the configured registry to a local, SHA-256-verified model file.

    The version's folder is downloaded to ``dest`` (default ``<project>/.mlctl/models/NAME/VERSION/``)
    unless a verified copy is already there. Unknown model/alias/version raise :class:`NotFound`
    (hint: what exists); a hash mismatch raises
    :class:`~mlctl.lifecycle.serialize.ArtifactTampered`.

    With ``fast`` (the default) the registry is read without MLflow where possible
    (:mod:`mlctl.lifecycle.registry_fast`; a local artifact store is copied directly); where that
    cannot answer, MLflow's client does, with the same result.
    """
    name, alias, version = parse_ref(ref)
    if fast:
        try:
            return _resolve_fast(name, alias, version, loaded_config, dest)
        except CannotAnswer as exc:
            log.debug("resolving %s through MLflow's client: %s", ref, exc)
    tr = connect(loaded_config, create=False)
    with mlflow_errors(tr.uri):
        mv, alias_used = _find_version(tr, name, alias, version)
    return _artifact(loaded_config, dest, name, str(mv.version), alias_used, dict(mv.tags or {}), mv.run_id,
                     lambda folder, file_name: _download(tr, mv, folder, file_name))
