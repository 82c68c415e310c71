"""Locating, starting and stopping local engines (PostgreSQL, Redis, Prometheus, Kafka, MLflow...).

The integration tests, and ``mlctl platform`` for users, run real engines on loopback ports.
This package holds everything needed for that, with the standard library only: a registry of
engine *recipes*, one module per engine. A recipe turns ``(workdir, port)`` into an
:class:`EngineSpec` (argv, env, readiness check, URL, user to run as, setup hook); adding an
engine is a few lines::

    @engine("redis", package="redis-server")
    def _redis(workdir: Path, port: int) -> EngineSpec:
        return EngineSpec(
            argv=[require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"],
            url=f"redis://127.0.0.1:{port}/0",
            ready=lambda: redis_ready("127.0.0.1", port),
        )

:func:`start_engine` starts a registered engine and waits until it answers;
:func:`external_or_start` first honours ``MLCTL_TEST_<NAME>_URL`` (an engine that is already
running) and starts one only when that is unset or unreachable. Either returns a
:class:`Service` to ``.stop()``.

=============================== ==============================================================
module                          engines
=============================== ==============================================================
:mod:`mlctl.engines.postgres`   ``postgres``: a private cluster run as the ``postgres`` user
:mod:`mlctl.engines.redis`      ``redis``: no persistence
:mod:`mlctl.engines.prometheus` ``prometheus``, ``alertmanager``, ``pushgateway``
:mod:`mlctl.engines.kafka`      ``kafka``: the tansu broker, in memory
:mod:`mlctl.engines.opensearch` ``opensearch``: osmem-server, in memory
:mod:`mlctl.engines.mlflow`     ``mlflow``: ``mlflow server``, one worker (:func:`mlflow_recipe`)
:mod:`mlctl.engines.docker`     ``docker``: a private dockerd (:func:`release_docker_dirs`)
=============================== ==============================================================

Processes are supervised by :mod:`mlctl.core.proc` (:class:`LocalService`: stopped by PID only)
and readiness is checked by :mod:`mlctl.core.probes`, which speaks each engine's protocol.

>>> isinstance(free_port(), int)
True
>>> {'alertmanager', 'postgres', 'prometheus'} <= set(registered_engines())
True
"""

from __future__ import annotations

from mlctl.core.proc import ExternalService, LocalService, Service, free_port, wait_until

# the built-in engines register themselves when their module is imported
from mlctl.engines import docker, kafka, mlflow, opensearch, postgres, prometheus, redis  # noqa: F401
from mlctl.engines._base import DEFAULT_EXTRA_DIRS, EngineNotInstalled, find_binary, private_dir, require_binary
from mlctl.engines._registry import (
    EngineRecipe,
    EngineSpec,
    Recipe,
    engine,
    env_var_for,
    external_or_start,
    get_recipe,
    http_probe,
    registered_engines,
    start_engine,
    tcp_probe,
    unregister_engine,
)
from mlctl.engines.docker import release_docker_dirs
from mlctl.engines.mlflow import mlflow_recipe, mlflow_server_spec

__all__ = [
    "DEFAULT_EXTRA_DIRS",
    "EngineNotInstalled",
    "EngineRecipe",
    "EngineSpec",
    "ExternalService",
    "LocalService",
    "Recipe",
    "Service",
    "engine",
    "env_var_for",
    "external_or_start",
    "find_binary",
    "free_port",
    "get_recipe",
    "http_probe",
    "mlflow_recipe",
    "mlflow_server_spec",
    "private_dir",
    "registered_engines",
    "release_docker_dirs",
    "require_binary",
    "start_engine",
    "tcp_probe",
    "unregister_engine",
    "wait_until",
]
