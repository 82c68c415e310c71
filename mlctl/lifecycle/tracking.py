"""Where runs and models are tracked: the MLflow connection, its errors, and what a run records.

``tracking.uri`` picks the store. The default, ``sqlite:///.mlctl/mlflow.db``, is relative to
the project root and is resolved to an absolute ``sqlite:////...`` URI, with artifacts under
``<project>/.mlctl/mlartifacts``: an embedded store, no server. ``http(s)://`` points at an
MLflow tracking server (``mlflow server``), which stores artifacts itself. Database URIs
(``postgresql://``, ``mysql://``) are used directly, with artifacts under ``.mlctl/mlartifacts``.

A server that does not answer raises :class:`~mlctl.core.errors.ServiceUnavailable` (exit 4)
before any work starts; MLflow errors are mapped onto mlctl's error types by
:func:`mlflow_errors`.

>>> resolve_uri("sqlite:///.mlctl/mlflow.db", Path("/p"))
'sqlite:////p/.mlctl/mlflow.db'
>>> resolve_uri("http://127.0.0.1:5000/", Path("/p"))
'http://127.0.0.1:5000'
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlctl.core.config import LoadedConfig
from mlctl.core.errors import MlctlError, NotFound, OperationFailed, ServiceUnavailable

ARTIFACTS_DIR = "mlartifacts"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
        with _NO_PROXY.open(uri + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceUnavailable(
            f"MLflow tracking server at {redact(uri)} is unreachable: {reason}",
            hint="start it (mlflow server --host 127.0.0.1 --port PORT ...), or point --tracking-uri / "
                 "tracking.uri at a running one; `mlctl doctor` checks it",
        ) from None


def quiet_mlflow(verbose: bool = False) -> None:
    """Keep MLflow, Alembic and Optuna chatter off stderr (shown with --verbose).

    Call it after importing mlflow: importing it configures its own logger.
    """
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # stdout holds only mlctl's document
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    level = logging.INFO if verbose else logging.WARNING
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(level)


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "unknown error"


@contextmanager
def mlflow_errors(uri: str) -> Iterator[None]:
    """Map MLflow and connection errors onto mlctl errors (NotFound, ServiceUnavailable, OperationFailed)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlctlError:
        raise
    except MlflowException as exc:
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
        raise


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
    if not is_server(uri):
        if uri.startswith("sqlite:///"):
            db = Path(uri[len("sqlite:///"):])
            if not create and not db.exists():
                raise NotFound(f"no models are registered yet (no tracking store at {db})",
                               hint="run `mlctl train --register NAME` first, or pass --tracking-uri")
            db.parent.mkdir(parents=True, exist_ok=True)
        folder = loaded.state_dir / ARTIFACTS_DIR
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        artifact_root = folder.resolve().as_uri()
    from mlflow import MlflowClient

    quiet_mlflow(verbose)  # again: importing mlflow reset its logger's level
    with mlflow_errors(uri):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return Tracking(uri=uri, client=client, artifact_root=artifact_root)


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
