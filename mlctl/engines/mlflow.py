"""The MLflow tracking server: ``mlflow server`` on loopback, one worker, job execution off.

The registered ``mlflow`` engine stores runs in SQLite in its workdir; :func:`mlflow_recipe` makes
a recipe for another backend store (``postgresql+psycopg://...``), to register under ``mlflow``
or a name of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlctl.core.probes import http_ready
from mlctl.core.proc import LOOPBACK
from mlctl.engines._base import flag_pairs, require_binary
from mlctl.engines._registry import EngineSpec, Recipe, engine, http_probe

__all__ = ["mlflow_recipe", "mlflow_server_spec"]


def _mlflow_binary() -> str:
    """``mlflow`` next to this interpreter (the virtual environment's), else on PATH."""
    import sys

    beside = Path(sys.executable).parent / "mlflow"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return require_binary("mlflow", package="mlflow (pip install 'mlctl[tracking]')")


def mlflow_server_spec(
    workdir: Path,
    port: int,
    *,
    backend_store_uri: str | None = None,
    artifacts_destination: Path | None = None,
) -> EngineSpec:
    """``mlflow server`` on loopback with one worker and job execution off (DESIGN.md).

    ``backend_store_uri`` defaults to SQLite in ``workdir``; a PostgreSQL store is given as
    ``postgresql+psycopg://USER@HOST:PORT/DB``. Artifacts are proxied by the server and stored under
    ``artifacts_destination`` (default ``workdir/artifacts``). Ready when ``GET /health`` answers 200.
    """
    import sys

    binary = _mlflow_binary()
    backend = backend_store_uri or f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    artifacts = Path(artifacts_destination or workdir / "artifacts").resolve()
    url = f"http://{LOOPBACK}:{port}"
    argv = [binary, "server", *flag_pairs({
        "--backend-store-uri": backend,
        "--artifacts-destination": str(artifacts),
        "--host": LOOPBACK,
        "--port": str(port),
        "--workers": "1",
    })]
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # else it starts job runners (2.3 GB, DESIGN.md)
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    return EngineSpec(
        argv=argv,
        url=url,
        ready=lambda: http_ready(url + "/health"),
        env=env,
        setup=lambda: artifacts.mkdir(parents=True, exist_ok=True),
        info={"backend_store_uri": backend, "artifacts_destination": str(artifacts)},
    )


def mlflow_recipe(backend_store_uri: str | None = None, artifacts_destination: Path | None = None) -> Recipe:
    """A recipe for :func:`engine` running ``mlflow server`` on the given backend store."""

    def build(workdir: Path, port: int) -> EngineSpec:
        return mlflow_server_spec(workdir, port, backend_store_uri=backend_store_uri,
                                  artifacts_destination=artifacts_destination)

    return build


engine("mlflow", package="mlflow (pip install 'mlctl[tracking]')", probe=http_probe("/health"),
       start_timeout=180.0)(mlflow_recipe())
