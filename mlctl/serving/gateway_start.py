"""``mlctl serve start``: load the models a gateway serves, from the registry, and run it.

For each model the gateway loads its default version (the ``champion`` alias, else the latest)
and every version a running experiment on it names (variants and shadow); every version is a
SHA-256-checked artifact with its own micro-batcher. Experiments come from the store
``serve.state`` names; outside a project with the embedded store, the gateway runs without
experiments. Every ``alias_check_s`` the registry's aliases are read again: a version an alias
moved to is loaded in the background and swapped in (refused when its input signature differs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl.core.errors import NotAProject, NotFound, UsageError
from mlctl.core.output import Result, Table
from mlctl.serving.app import create_app
from mlctl.serving.gateway import Gateway, ServedModel, rss_bytes
from mlctl.serving.predictor import Predictor
from mlctl.serving.startup import starting

if TYPE_CHECKING:
    from mlctl.core.config import LoadedConfig
    from mlctl.serving.experiments.store import ExperimentStore


@dataclass(frozen=True)
class GatewayInfo:
    """A started gateway: where it listens, what it serves, where its experiments live."""

    endpoint: str
    pid: int
    models: list[dict[str, Any]]
    store: str | None
    warnings: list[str]


class GatewayReady(Result):
    """``mlctl serve start`` once it accepts connections: ``{"endpoint", "pid", "store", "models",
    "warnings"}``; for people, one line per model on stderr."""

    def __init__(self, info: GatewayInfo) -> None:
        self.info = info

    def document(self) -> dict[str, Any]:
        i = self.info
        return {"endpoint": i.endpoint, "pid": i.pid, "store": i.store, "models": i.models, "warnings": i.warnings}

    def tables(self) -> Iterable[Table]:
        return []

    def notes(self) -> Iterable[str]:
        i = self.info
        lines = [f"Gateway at {i.endpoint} (pid {i.pid}; Ctrl-C to stop)"]
        for m in i.models:
            exp = f", experiment {m['experiment']}" if m["experiment"] else ""
            lines.append(f"  {i.endpoint}/v1/models/{m['name']}/predict: versions {', '.join(m['versions'])} "
                         f"(default {m['default']}{exp})")
        return [*lines, *i.warnings]


def _ref(name: str, variant: str) -> str:
    return f"{name}:{variant}" if variant.isdigit() else f"{name}@{variant}"


def _open_store(loaded: LoadedConfig) -> ExperimentStore | None:
    from mlctl.serving.experiments.manage import store_for

    try:
        return store_for(loaded)
    except NotAProject:
        return None


def _model_names(loaded: LoadedConfig, models: list[str] | None, all_models: bool) -> list[str]:
    if all_models and models:
        raise UsageError("give --models or --all, not both")
    if all_models:
        from mlctl.lifecycle.registry_fast import CannotAnswer, reader_for

        try:
            reader = reader_for(loaded)
        except CannotAnswer as exc:
            raise UsageError(f"--all needs a registry mlctl can list ({exc}); name the models with --models") \
                from exc
        try:
            names = reader.model_names(limit=1000)
        finally:
            reader.close()
        if not names:
            raise NotFound("no registered models to serve", hint="train and register one (mlctl train --register)")
        return names
    if not models:
        raise UsageError("name the models to serve (--models a,b) or serve every registered model (--all)")
    return list(dict.fromkeys(models))


def build_gateway(loaded: LoadedConfig, *, models: list[str] | None = None, all_models: bool = False,
                  fast_path: bool = True, flush_interval_s: float = 1.0, alias_check_s: float = 5.0,
                  **batching: Any) -> Gateway:
    """Load the gateway's models from the registry (see the module docstring)."""
    from mlctl.lifecycle.registry import resolve_model

    names = _model_names(loaded, models, all_models)
    store = _open_store(loaded)
    experiments = [e for e in (store.experiments() if store is not None else [])
                   if e.status == "running" and e.model in names]
    served: dict[str, ServedModel] = {}
    predictors: dict[tuple[str, str], Predictor] = {}

    memory: dict[tuple[str, str], int] = {}

    def load(name: str, ref: str) -> str:
        artifact = resolve_model(ref, loaded)
        key = (name, artifact.version)
        if key not in predictors:
            before = rss_bytes()
            predictors[key] = Predictor.from_artifact(artifact, fast_path=fast_path)
            memory[key] = max(0, rss_bytes() - before)
        return artifact.version

    with starting():
        for name in names:
            default = load(name, name)
            aliases: dict[str, str] = {}
            for exp in (e for e in experiments if e.model == name):
                targets = [*exp.variant_names, *([exp.shadow.target] if exp.shadow else [])]
                for variant in targets:
                    version = load(name, _ref(name, variant))
                    if not variant.isdigit():
                        aliases[variant] = version
            versions = {v: create_app(p, **batching) for (n, v), p in predictors.items() if n == name}
            default_alias = predictors[(name, default)].artifact.alias
            if default_alias:
                aliases.setdefault(default_alias, default)
            served[name] = ServedModel(name, versions, aliases, default, default_alias,
                                       {v: m for (n, v), m in memory.items() if n == name})

    def load_version(name: str, version: str) -> Any:
        """A version an alias moved to, loaded while the gateway serves (in a worker thread)."""
        artifact = resolve_model(f"{name}:{version}", loaded)
        return create_app(Predictor.from_artifact(artifact, fast_path=fast_path), **batching)

    return Gateway(served, store=store, flush_interval_s=flush_interval_s, aliases_of=_aliases_reader(loaded),
                   load_version=load_version, alias_check_s=alias_check_s)


def _aliases_reader(loaded: LoadedConfig) -> Callable[[str], dict[str, str] | None]:
    """The registry's aliases of a model now (None when the registry cannot be read without MLflow)."""
    from mlctl.lifecycle.registry_fast import CannotAnswer, reader_for

    def aliases(name: str) -> dict[str, str] | None:
        try:
            reader = reader_for(loaded)
        except CannotAnswer:
            return None
        try:
            record = reader.model(name)
            return dict(record.aliases) if record is not None else None
        finally:
            reader.close()

    return aliases


def serve_gateway(loaded: LoadedConfig, *, models: list[str] | None = None, all_models: bool = False,
                  host: str = "127.0.0.1", port: int = 8000, fd: int | None = None, ready_file: Path | None = None,
                  on_ready: Callable[[GatewayInfo], None] | None = None, fast_path: bool = True,
                  log_level: str = "warning", **batching: Any) -> None:
    """Load the models and run the gateway in the foreground until Ctrl-C or SIGTERM (on ``fd``, an
    inherited listening socket, when a supervisor runs several)."""
    from mlctl.serving.runner import run_asgi

    gateway = build_gateway(loaded, models=models, all_models=all_models, fast_path=fast_path, **batching)

    def describe(endpoint: str) -> GatewayInfo:
        gateway_models = [{k: m[k] for k in ("name", "versions", "aliases", "default", "experiment")}
                          for m in gateway.describe()]
        return GatewayInfo(endpoint, os.getpid(), gateway_models,
                           None if gateway.store is None else gateway.store.url, list(gateway.warnings))

    try:
        run_asgi(gateway, describe, host=host, port=port, fd=fd, ready_file=ready_file, on_ready=on_ready,
                 log_level=log_level)
    finally:
        if gateway.store is not None:
            gateway.store.close()


def serve_replicas(loaded: LoadedConfig, *, replicas: int, models: list[str] | None = None,
                   all_models: bool = False, host: str = "127.0.0.1", port: int = 8000,
                   on_ready: Callable[[GatewayInfo], None] | None = None, fast_path: bool = True,
                   log_level: str = "warning", ready_timeout_s: float = 600.0, **batching: Any) -> None:
    """Run ``replicas`` gateway processes on one listening socket under the deployment supervisor
    (it binds the port, restarts a crashed process with backoff, and stops them all gracefully on
    SIGTERM or Ctrl-C), in the foreground. The models are resolved once here first, so a bad name
    fails at once and the processes start from verified local copies."""
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    from mlctl.core.errors import OperationFailed
    from mlctl.core.graceful import GracefulStop
    from mlctl.core.http import get_json
    from mlctl.core.proc import free_port
    from mlctl.lifecycle.deploy.supervisor import CONTROL, STATUS, read_json, write_json
    from mlctl.lifecycle.registry import resolve_model

    names = _model_names(loaded, models, all_models)
    for name in names:
        resolve_model(name, loaded)
    port = port or free_port()
    if loaded.project_file is not None:
        run = loaded.state_dir / "gateway" / str(port)
    else:
        run = Path(tempfile.mkdtemp(prefix="mlctl-gateway-"))
    run.mkdir(parents=True, exist_ok=True)
    (run / STATUS).unlink(missing_ok=True)
    server = ["mlctl.serving.gateway_worker", "--models", ",".join(names), "--log-level", log_level]
    if batching.get("workers") is not None:
        server += ["--workers", str(batching["workers"])]
    if not fast_path:
        server.append("--no-fast-path")
    write_json(run / CONTROL, {"revision": 1, "host": host, "port": port, "replicas": replicas, "server": server,
                               "ready_timeout_s": ready_timeout_s,
                               **{k: batching[k] for k in ("max_batch", "max_wait_ms", "queue_size") if k in batching}})
    with open(run / "supervisor.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mlctl.lifecycle.deploy.supervisor", "--dir", str(run)],
                                cwd=loaded.root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://{host}:{port}"

    def forward(*_: Any) -> None:  # the supervisor stops every process gracefully
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    with GracefulStop(on_signal=forward) as stop:
        deadline = time.monotonic() + ready_timeout_s + 30
        while True:
            status = read_json(run / STATUS) or {}
            if status.get("state") == "failed" or proc.poll() is not None:
                proc.wait()
                why = status.get("last_error") or f"see {run / 'supervisor.log'}"
                raise OperationFailed(f"the gateway replicas did not start: {why}")
            if status.get("state") == "running" and status.get("ready_replicas", 0) >= replicas:
                break
            if stop.is_set() or time.monotonic() > deadline:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
                if stop.is_set():
                    raise KeyboardInterrupt
                raise OperationFailed(f"the gateway replicas were not ready in {ready_timeout_s:.0f} s; "
                                      f"see {run / 'logs'}")
            time.sleep(0.2)
        listing = get_json(endpoint + "/v1/models", what="the gateway")
        keys = ("name", "versions", "aliases", "default", "experiment")
        store = str(loaded.config.serve.state)
        if on_ready is not None:
            on_ready(GatewayInfo(endpoint, proc.pid, [{k: m[k] for k in keys} for m in listing["models"]],
                                 store, [f"{replicas} gateway processes on {endpoint}, supervised "
                                         f"(logs in {run / 'logs'})"]))
        while proc.poll() is None:
            stop.wait(0.5)
        proc.wait()
    if "SIGINT" in stop.received:
        raise KeyboardInterrupt
