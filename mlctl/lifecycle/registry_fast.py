"""Reading the model registry without importing MLflow: what ``mlctl serve`` needs to start fast.

Importing mlflow and opening its client costs seconds; resolving ``NAME@ALIAS`` needs three small
lookups. :func:`reader_for` returns a :class:`RegistryReader` that answers them directly:

* the embedded store (``sqlite:///...``): MLflow's own tables (``registered_models``,
  ``model_versions``, ``registered_model_aliases``, ``model_version_tags``) read with the
  standard library's ``sqlite3``, read-only;
* an MLflow tracking server (``http(s)://``): its REST API (``registered-models/get``,
  ``model-versions/get``, ``model-versions/search``) through :mod:`mlctl.core.http`.

Where it cannot answer exactly as the MLflow client would (another database, a store whose
schema it does not know, several workspaces, TLS client settings, a server error), it raises
:class:`CannotAnswer` and the caller uses the MLflow client instead. It reads, never writes.
Versions deleted in MLflow (stage ``Deleted_Internal``) are invisible, as they are to the client.
"""

from __future__ import annotations

import json
import os
import sqlite3
import urllib.parse
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core import http
from mlctl.core.config import LoadedConfig
from mlctl.core.errors import MlctlError
from mlctl.lifecycle.tracking import is_server, resolve_uri, sqlite_file

#: MLflow's stage of a deleted model version (rows kept, never shown)
DELETED_STAGE = "Deleted_Internal"
DEFAULT_WORKSPACE = "default"
#: MLflow client settings this reader does not reproduce: with any of them set, MLflow answers
_CLIENT_SETTINGS = ("MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
                    "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_AUTH")
_TABLES = {"registered_models", "model_versions", "registered_model_aliases", "model_version_tags"}
_TIMEOUT_S = 10.0


class CannotAnswer(Exception):
    """This store cannot be read without MLflow's client (the caller falls back to it)."""


@dataclass(frozen=True)
class ModelRecord:
    """A registered model: its name and its aliases (alias -> version)."""

    name: str
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionRecord:
    """A model version as the resolver needs it."""

    name: str
    version: str
    run_id: str | None
    tags: dict[str, str]
    download_uri: str | None  # where its files are: storage_location, else source (as MLflow's client)


class RegistryReader(ABC):
    """The registry lookups :func:`mlctl.lifecycle.registry.resolve_model` makes."""

    @abstractmethod
    def model(self, name: str) -> ModelRecord | None:
        """The registered model ``name`` (None when there is none)."""

    @abstractmethod
    def model_names(self, limit: int = 50) -> list[str]:
        """Names of registered models, sorted, at most ``limit``."""

    @abstractmethod
    def versions(self, name: str) -> list[str]:
        """Versions of ``name``, ascending."""

    @abstractmethod
    def version(self, name: str, version: str) -> VersionRecord | None:
        """That version (None when there is none)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release what the reader holds."""


def reader_for(loaded: LoadedConfig) -> RegistryReader:
    """A reader for the configured tracking store, or :class:`CannotAnswer`."""
    configured = loaded.config.tracking.uri
    if configured.startswith("sqlite:///") and not configured.startswith("sqlite:////"):
        loaded.require_project()  # a relative store needs a project, as for MLflow's client
    uri = resolve_uri(configured, loaded.root)
    workspace = (os.environ.get("MLFLOW_WORKSPACE") or "").strip()
    if workspace and workspace != DEFAULT_WORKSPACE:
        raise CannotAnswer(f"workspace {workspace!r}")
    if is_server(uri):
        if any(os.environ.get(v) for v in _CLIENT_SETTINGS):
            raise CannotAnswer("MLflow client TLS/auth settings")
        return RestReader(uri)
    db = sqlite_file(uri)
    if db is None:
        raise CannotAnswer(f"store {uri.split(':', 1)[0]}")
    if not db.is_file():
        raise CannotAnswer("no store yet")  # MLflow's path says so (and creates nothing)
    return SqliteReader(db)


# --------------------------------------------------------------------------- embedded SQLite


class SqliteReader(RegistryReader):
    """MLflow's registry tables in an SQLite file, read-only."""

    def __init__(self, db: Path) -> None:
        try:
            self.conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not _TABLES <= tables:
                raise CannotAnswer("the registry tables are not there (yet)")
            self._workspaces = "workspace" in self._columns("registered_models")
            if self._workspaces and self._one("SELECT 1 FROM registered_models WHERE workspace != ? LIMIT 1",
                                              (DEFAULT_WORKSPACE,)):
                raise CannotAnswer("several workspaces")
            self._storage = "storage_location" in self._columns("model_versions")
        except sqlite3.Error as exc:
            self.close()
            raise CannotAnswer(f"sqlite: {exc}") from None
        except CannotAnswer:
            self.close()
            raise

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self.conn.execute(sql, args))
        except sqlite3.Error as exc:
            raise CannotAnswer(f"sqlite: {exc}") from None

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        rows = self._rows(sql, args)
        return rows[0] if rows else None

    def model(self, name: str) -> ModelRecord | None:
        if self._one("SELECT name FROM registered_models WHERE name = ?", (name,)) is None:
            return None
        aliases = self._rows("SELECT alias, version FROM registered_model_aliases WHERE name = ?", (name,))
        return ModelRecord(name, {str(a): str(v) for a, v in aliases})

    def model_names(self, limit: int = 50) -> list[str]:
        return [str(r[0]) for r in self._rows("SELECT name FROM registered_models ORDER BY name LIMIT ?", (limit,))]

    def versions(self, name: str) -> list[str]:
        rows = self._rows("SELECT version FROM model_versions WHERE name = ? AND current_stage != ?",
                          (name, DELETED_STAGE))
        return [str(v) for v in sorted(int(r[0]) for r in rows)]

    def version(self, name: str, version: str) -> VersionRecord | None:
        location = "storage_location" if self._storage else "NULL"
        row = self._one(f"SELECT version, run_id, source, {location} FROM model_versions "  # noqa: S608 - fixed
                        "WHERE name = ? AND version = ? AND current_stage != ?", (name, int(version), DELETED_STAGE))
        if row is None:
            return None
        tags = self._rows("SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
                          (name, int(version)))
        return VersionRecord(name=name, version=str(row[0]), run_id=row[1] or None,
                             tags={str(k): str(v) for k, v in tags}, download_uri=row[3] or row[2] or None)

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- MLflow REST API


class RestReader(RegistryReader):
    """An MLflow tracking server's REST API (``/api/2.0/mlflow/...``), with MLflow's own
    credentials (``MLFLOW_TRACKING_TOKEN``, or ``MLFLOW_TRACKING_USERNAME`` and ``_PASSWORD``)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        self.headers = {"Accept": "application/json"}
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif user and password:
            import base64

            self.headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _get(self, endpoint: str, **params: Any) -> dict[str, Any] | None:
        """The JSON answer of ``GET endpoint``; None when the server says the resource does not exist."""
        url = f"{self.uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(params)}"
        try:
            resp = http.request("GET", url, headers=self.headers, timeout=_TIMEOUT_S)
        except (MlctlError, ValueError) as exc:  # unreachable, timed out: MLflow's path reports it
            raise CannotAnswer(f"{endpoint}: {exc}") from None
        if resp.status >= 400:
            try:
                code = json.loads(resp.body or b"{}").get("error_code")
            except (ValueError, AttributeError):
                code = None
            if resp.status == 404 and code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise CannotAnswer(f"HTTP {resp.status} from {endpoint}")
        try:
            return dict(json.loads(resp.body or b"{}"))
        except (ValueError, TypeError) as exc:  # not JSON (or not an object): MLflow's path reports it
            raise CannotAnswer(f"{endpoint}: {exc}") from None

    def model(self, name: str) -> ModelRecord | None:
        doc = self._get("registered-models/get", name=name)
        if doc is None:
            return None
        rm = doc.get("registered_model") or {}
        return ModelRecord(str(rm.get("name", name)),
                           {str(a["alias"]): str(a["version"]) for a in rm.get("aliases") or []})

    def model_names(self, limit: int = 50) -> list[str]:
        doc = self._get("registered-models/search", max_results=limit) or {}
        return sorted(str(m["name"]) for m in doc.get("registered_models") or [])

    def versions(self, name: str) -> list[str]:
        found: list[int] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"filter": f"name='{name}'", "max_results": 1000}
            if token:
                params["page_token"] = token
            doc = self._get("model-versions/search", **params) or {}
            found += [int(v["version"]) for v in doc.get("model_versions") or []
                      if v.get("current_stage") != DELETED_STAGE]
            token = doc.get("next_page_token")
            if not token:
                return [str(v) for v in sorted(found)]

    def version(self, name: str, version: str) -> VersionRecord | None:
        doc = self._get("model-versions/get", name=name, version=version)
        if doc is None:
            return None
        mv = doc.get("model_version") or {}
        tags = {str(t["key"]): str(t.get("value", "")) for t in mv.get("tags") or []}
        return VersionRecord(name=name, version=str(mv.get("version", version)), run_id=mv.get("run_id") or None,
                             tags=tags, download_uri=mv.get("storage_location") or mv.get("source") or None)
