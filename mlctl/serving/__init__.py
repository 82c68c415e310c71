"""The model server: an ASGI app with adaptive micro-batching, and the process that runs it.

Public API (imported on first use, so ``import mlctl.serving`` stays light and a missing
``serve`` extra is reported by name):

* :class:`Predictor` -- a :class:`~mlctl.lifecycle.artifact.ModelArtifact` plus its loaded
  estimator; ``Predictor.from_artifact(artifact)`` loads and verifies it.
* :func:`create_app` -- the ASGI app (:class:`~mlctl.serving.app.ModelApp`, FastAPI behind it):
  ``POST /v1/predict``, ``GET /health``, ``/ready``, ``/metadata``, ``/metrics``.
* :func:`run_server` -- uvicorn on ``host:port`` or an inherited socket ``fd``, ready file,
  graceful SIGTERM.
* :func:`serve_model` -- resolve ``NAME@ALIAS`` in the registry and serve it (``mlctl serve model``).
* :class:`MicroBatcher` and its errors, :class:`InputSchema`, :class:`ServerMetrics`.
* :func:`gateway_rules`, :func:`gateway_dashboard` -- Prometheus alerting rules and a Grafana
  dashboard for the model gateway (``mlctl serve rules``, ``mlctl serve dashboard``).

``python -m mlctl.serving --artifact DIR/artifact.json --port 8000`` runs one server process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlctl.core.lazy import lazy_exports

if TYPE_CHECKING:
    from mlctl.serving.app import create_app
    from mlctl.serving.batching import MicroBatcher, NotRunning, QueueFull, TooManyRows
    from mlctl.serving.metrics import ServerMetrics
    from mlctl.serving.observability import gateway_dashboard, gateway_rules
    from mlctl.serving.predictor import Predictor
    from mlctl.serving.runner import ServerInfo, run_server, serve_model
    from mlctl.serving.schema import InputSchema, RecordsInvalid

_EXPORTS = {
    "Predictor": "mlctl.serving.predictor",
    "create_app": "mlctl.serving.app",
    "run_server": "mlctl.serving.runner",
    "serve_model": "mlctl.serving.runner",
    "ServerInfo": "mlctl.serving.runner",
    "MicroBatcher": "mlctl.serving.batching",
    "QueueFull": "mlctl.serving.batching",
    "TooManyRows": "mlctl.serving.batching",
    "NotRunning": "mlctl.serving.batching",
    "InputSchema": "mlctl.serving.schema",
    "RecordsInvalid": "mlctl.serving.schema",
    "ServerMetrics": "mlctl.serving.metrics",
    "gateway_rules": "mlctl.serving.observability",
    "gateway_dashboard": "mlctl.serving.observability",
}
#: third-party modules the server needs, and the pip extra that brings them
_EXTRA_OF = {"fastapi": "serve", "starlette": "serve", "uvicorn": "serve", "prometheus_client": "serve",
             "numpy": "ml"}

__all__ = [
    "InputSchema",
    "MicroBatcher",
    "NotRunning",
    "Predictor",
    "QueueFull",
    "RecordsInvalid",
    "ServerInfo",
    "ServerMetrics",
    "TooManyRows",
    "create_app",
    "gateway_dashboard",
    "gateway_rules",
    "run_server",
    "serve_model",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, extras=_EXTRA_OF)
