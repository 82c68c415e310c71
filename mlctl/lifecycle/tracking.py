"""Where runs and models are tracked: the MLflow connection, its errors, and what a run records.

``tracking.uri`` picks the store. The default, ``sqlite:///.mlctl/mlflow.db``, is relative to
the project root and is resolved to an absolute ``sqlite:////...`` URI, with artifacts under
``<project>/.mlctl/mlartifacts``: an embedded store, no server. ``http(s)://`` points at an
MLflow tracking server (``mlflow server``), which stores artifacts itself. Database URIs
(``postgresql://``, ``mysql://``) are used directly, with artifacts under ``.mlctl/mlartifacts``.

A server that does not answer raises :class:`~mlctl.core.errors.ServiceUnavailable` (exit 4)
before any work starts; MLflow errors are mapped onto mlctl's error types by
:func:`mlflow_errors`.

An embedded SQLite store is created (its schema migrated by MLflow) by the first process that
opens it, under an inter-process lock (:func:`mlctl.core.locks.store_lock`), so several
``mlctl train`` started at once in a fresh project wait for one another instead of racing
through the migrations. A store that cannot be written is refused before any work starts, with
one line naming the file and the cause.

>>> resolve_uri("sqlite:///.mlctl/mlflow.db", Path("/p"))
'sqlite:////p/.mlctl/mlflow.db'
>>> resolve_uri("http://127.0.0.1:5000/", Path("/p"))
'http://127.0.0.1:5000'
"""

from __future__ import annotations

import errno
import logging
import os
import platform
import sqlite3
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl.core import http
from mlctl.core.config import LoadedConfig
from mlctl.core.errors import MlctlError, NotFound, OperationFailed, ServiceUnavailable, StateError
from mlctl.core.locks import check_writable, store_lock

ARTIFACTS_DIR = "mlartifacts"


def sqlalchemy_url(url: str) -> str:
    """A database URL with a driver SQLAlchemy can load here: ``postgresql://`` uses psycopg 3
    when psycopg2 is not installed.

    >>> sqlalchemy_url("sqlite:////x.db")
    'sqlite:////x.db'
    """
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres") and sep:
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            return f"postgresql+psycopg://{rest}"
        return f"postgresql://{rest}"
    return url


def resolve_uri(uri: str, root: Path) -> str:
    """Make a tracking URI absolute: relative SQLite and file paths are taken from the project root."""
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        if rel != ":memory:":
            return f"sqlite:///{(root / rel).resolve()}"
    if uri.startswith("file:") and not uri.startswith("file:///"):
        rel = uri[len("file:"):].lstrip("/") if uri.startswith("file://") else uri[len("file:"):]
        return (root / rel).resolve().as_uri()
    return sqlalchemy_url(uri)


def sqlite_file(uri: str) -> Path | None:
    """The database file of an ``sqlite:///`` URI (None for other stores and in-memory SQLite).

    >>> sqlite_file("sqlite:////p/.mlctl/mlflow.db")
    PosixPath('/p/.mlctl/mlflow.db')
    >>> sqlite_file("http://127.0.0.1:5000") is None
    True
    """
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


def is_server(uri: str) -> bool:
    """True for an MLflow tracking server (http/https)."""
    return uri.startswith(("http://", "https://"))


def redact(url: str) -> str:
    """A URL with its password replaced by ``***``.

    >>> redact("postgresql://u:secret@h:5432/db")
    'postgresql://u:***@h:5432/db'
    """
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Raise :class:`ServiceUnavailable` (with a hint) when a tracking server does not answer."""
    if not is_server(uri):
        return
    try:
        http.request("GET", uri + "/health", timeout=timeout, limit=0)  # any HTTP answer will do
    except (ServiceUnavailable, ValueError) as exc:
        reason = exc.details.get("reason", exc.message) if isinstance(exc, ServiceUnavailable) else exc
        raise ServiceUnavailable(
            f"MLflow tracking server at {redact(uri)} is unreachable: {reason}",
            hint="start it (mlflow server --host 127.0.0.1 --port PORT ...), or point --tracking-uri / "
                 "tracking.uri at a running one; `mlctl doctor` checks it",
        ) from None


def quiet_mlflow(verbose: bool = False) -> None:
    """Keep MLflow, Alembic and Optuna chatter off stderr (shown with --verbose).

    Call it after importing mlflow: importing it configures its own logger. Without ``verbose``
    nothing of theirs reaches stderr, errors included: mlctl reports the failure itself, in one
    line (or one JSON document).
    """
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # stdout holds only mlctl's document
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    level = logging.INFO if verbose else logging.CRITICAL + 1
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(level)


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "unknown error"


_READONLY_MARKS = ("readonly database", "read-only file system", "unable to open database file")


def _unwritable(uri: str, text: str) -> StateError | None:
    """The one-line error for a store that turned out not to be writable (None: not that)."""
    low = text.lower()
    if not any(m in low for m in _READONLY_MARKS):
        return None
    db = sqlite_file(uri)
    if db is None:
        line = next(ln for ln in text.splitlines() if any(m in ln.lower() for m in _READONLY_MARKS))
        return StateError(f"the MLflow tracking store {redact(uri)} is read-only: {line.strip()}")
    try:
        check_writable(db, what="MLflow tracking store")
    except StateError as exc:
        return exc
    return StateError(f"cannot write to the MLflow tracking store {db}: read-only database",
                      hint="check the permissions of the file and its folder")


@contextmanager
def mlflow_errors(uri: str) -> Iterator[None]:
    """Map MLflow and connection errors onto mlctl errors (NotFound, ServiceUnavailable, OperationFailed)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlctlError:
        raise
    except MlflowException as exc:
        unwritable = _unwritable(uri, exc.message)
        if unwritable is not None:
            raise unwritable from exc
        message = _first_line(exc.message)
        if any(s in exc.message for s in ("Max retries exceeded", "Connection refused", "ConnectionError",
                                          "Failed to establish")):
            raise ServiceUnavailable(f"MLflow tracking server at {redact(uri)} is unreachable: {message}",
                                     hint="check that the server runs and tracking.uri points at it") from None
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFound(message) from None
        raise OperationFailed(f"MLflow: {message}") from exc
    except ConnectionError as exc:
        raise ServiceUnavailable(f"MLflow tracking server at {redact(uri)} is unreachable: {exc}") from None
    except OSError as exc:
        import requests

        if isinstance(exc, requests.exceptions.ConnectionError):
            raise ServiceUnavailable(f"MLflow tracking server at {redact(uri)} is unreachable: {exc}") from None
        if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
            where = exc.filename or redact(uri)
            raise StateError(f"cannot access {where}: {(exc.strerror or str(exc)).lower()}",
                             hint="check the permissions of .mlctl/ and the files in it") from exc
        raise
    except Exception as exc:  # SQLAlchemy errors MLflow lets through
        if not type(exc).__module__.startswith("sqlalchemy"):
            raise
        unwritable = _unwritable(uri, str(exc))
        if unwritable is not None:
            raise unwritable from exc
        raise OperationFailed(f"MLflow store {redact(uri)}: {_first_line(str(exc))}",
                              hint="rerun with --verbose for details") from exc


@dataclass
class Tracking:
    """An open connection to the tracking store and model registry."""

    uri: str
    client: Any  # mlflow.MlflowClient
    artifact_root: str | None  # file URI for embedded stores; None: the server decides

    def experiment_id(self, name: str, *, create: bool = True) -> str | None:
        """The id of experiment ``name``, created (with the project's artifact root) when missing."""
        with mlflow_errors(self.uri):
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                if exp.lifecycle_stage == "deleted":
                    self.client.restore_experiment(exp.experiment_id)
                return str(exp.experiment_id)
            if not create:
                return None
            from mlflow.exceptions import MlflowException

            try:
                return str(self.client.create_experiment(name, artifact_location=self.artifact_root))
            except MlflowException:  # created meanwhile by another process
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                return str(exp.experiment_id)


def _relative(uri: str) -> bool:
    return (uri.startswith("sqlite:///") and not uri.startswith("sqlite:////")) or (
        uri.startswith("file:") and not uri.startswith("file:///"))


def connect(loaded: LoadedConfig, *, verbose: bool = False, create: bool = True) -> Tracking:
    """Open the configured tracking store (checking that a server answers first).

    A relative store (the default ``sqlite:///.mlctl/mlflow.db``) needs a project. With
    ``create=False`` (read-only commands) an embedded store that does not exist yet is not
    created: :class:`~mlctl.core.errors.NotFound` says nothing is registered yet.
    """
    configured = loaded.config.tracking.uri
    if _relative(configured):
        loaded.require_project()
    uri = resolve_uri(configured, loaded.root)
    check_reachable(uri)
    quiet_mlflow(verbose)  # environment first: mlflow reads some of it at import
    artifact_root = None
    db = sqlite_file(uri)
    if not is_server(uri):
        if db is not None:
            if not create and not db.exists():
                raise NotFound(f"no models are registered yet (no tracking store at {db})",
                               hint="run `mlctl train --register NAME` first, or pass --tracking-uri")
            if create:
                check_writable(db, what="MLflow tracking store")
        folder = loaded.state_dir / ARTIFACTS_DIR
        if create:
            check_writable(folder, what="MLflow artifact folder", database=False)
            folder.mkdir(parents=True, exist_ok=True)
        artifact_root = folder.resolve().as_uri()
    from mlflow import MlflowClient

    quiet_mlflow(verbose)  # again: importing mlflow reset its logger's level
    with mlflow_errors(uri):
        if db is not None:
            client = _embedded_client(MlflowClient, uri, db, create)
        else:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return Tracking(uri=uri, client=client, artifact_root=artifact_root)


def _mlflow_tables_exist(db: Path) -> bool:
    """Whether MLflow's schema is in ``db`` (read with the standard library, in milliseconds)."""
    if not db.is_file() or db.stat().st_size == 0:
        return False
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return {"alembic_version", "experiments", "runs", "registered_models"} <= names


def _embedded_client(client_cls: Any, uri: str, db: Path, create: bool) -> Any:
    """An MLflow client on an SQLite file, which the first process to open it creates while the
    others wait (mlctl only creates it under the exclusive lock, so a store seen with its tables
    under the shared lock is complete). A reader that cannot create the lock file (a read-only
    project) goes on without it."""
    what = f"the MLflow tracking store {db}"
    with store_lock(db, required=create, what=what, shared=True):
        if _mlflow_tables_exist(db):
            return client_cls(tracking_uri=uri, registry_uri=uri)
    with store_lock(db, required=create, what=what):
        client = client_cls(tracking_uri=uri, registry_uri=uri)  # creates and migrates the schema
        client.search_registered_models(max_results=1)  # opens the registry's store too
        return client


def git_commit(root: Path) -> str:
    """The project's git commit (``+dirty`` when it has uncommitted changes), or ``none``."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return "none"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    commit = head.stdout.strip()
    return commit + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def environment() -> dict[str, str]:
    """Python, platform, mlctl and the key libraries' versions."""
    from importlib.metadata import PackageNotFoundError, version

    from mlctl import __version__

    env = {"python": platform.python_version(), "platform": f"{platform.system().lower()}-{platform.machine()}",
           "mlctl": __version__}
    for dist in ("scikit-learn", "mlflow", "numpy", "pandas", "skops", "optuna"):
        try:
            env[dist] = version(dist)
        except PackageNotFoundError:
            env[dist] = "none"
    return env
