"""Running the model server: one uvicorn process on a port or on an inherited listening socket.

:func:`run_server` binds ``host:port`` itself (so a port in use is a clear
:class:`~mlctl.core.errors.OperationFailed`, not a log line) or adopts an already-listening
socket by file descriptor, which lets a supervisor hand the same socket to an old and a new
server process and swap them without refusing a connection. Once the app is ready to serve it
writes ``ready_file`` (the pid); SIGTERM stops it gracefully (no new connections, in-flight
requests finish, queued batches drain) and it returns; SIGINT does the same and then raises
KeyboardInterrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from mlctl.core.errors import OperationFailed, UsageError
from mlctl.core.graceful import GracefulStop
from mlctl.serving.app import create_app
from mlctl.serving.predictor import Predictor
from mlctl.serving.startup import settle, starting

log = logging.getLogger("mlctl.serving")

#: Seconds SIGTERM waits for in-flight requests before cancelling them.
GRACEFUL_TIMEOUT_S = 30
#: Seconds between closing the listener and closing idle connections, on SIGTERM: a connection
#: accepted just before may not have delivered its first request yet; closing it with that request
#: unread would reset it. With the listener shared, new connections already go to the other servers.
ACCEPT_GRACE_S = 0.5


@dataclass(frozen=True)
class ServerInfo:
    """What a started server reports: where it listens and what it serves."""

    model: str
    version: str
    alias: str | None
    sha256: str
    endpoint: str
    pid: int


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: the OS picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve host {host!r}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE (Linux, macOS): a usage problem (exit 2), as for `mlctl deploy`
            from mlctl.core.ports import port_in_use_error

            raise port_in_use_error(host, port, "choose another --port, or stop what listens there") from None
        raise OperationFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


def adopt_socket(fd: int) -> socket.socket:
    """The listening socket behind an inherited file descriptor (family detected from the fd)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise UsageError(f"file descriptor {fd} is not a usable socket: {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise UsageError(f"file descriptor {fd} is not a stream socket")
    sock.setblocking(False)
    return sock


def _endpoint(sock: socket.socket) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return f"http://[{address[0]}]:{address[1]}"
    if sock.family == socket.AF_INET:
        return f"http://{address[0]}:{address[1]}"
    return f"unix:{address}"


def _write_ready_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="utf-8")
    os.replace(tmp, path)


def _remove_ready_file(path: Path) -> None:
    """Remove the ready file if it is still ours (a newer process may have written its own)."""
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8").strip() == str(os.getpid()):
            path.unlink()


def run_server(
    predictor: Predictor,
    *,
    host: str = "127.0.0.1",
    port: int | None = 8000,
    fd: int | None = None,
    ready_file: Path | None = None,
    on_ready: Callable[[ServerInfo], None] | None = None,
    log_level: str = "info",
    **batching: Any,
) -> None:
    """Serve ``predictor`` until SIGTERM (returns) or SIGINT (raises KeyboardInterrupt).

    ``fd`` (an inherited, listening socket) wins over ``host``/``port``. ``batching`` goes to
    :func:`mlctl.serving.create_app` (``max_batch``, ``max_wait_ms``, ``queue_size``,
    ``max_body_bytes``, ``workers``). ``on_ready`` is called once the server accepts
    connections, after ``ready_file`` is written. Uses uvloop and httptools when installed.
    """
    app = create_app(predictor, **batching)

    def describe(endpoint: str) -> ServerInfo:
        return ServerInfo(predictor.name, predictor.version, predictor.artifact.alias, predictor.artifact.sha256,
                          endpoint, os.getpid())

    def announce(info: ServerInfo) -> None:
        log.info("serving %s version %s at %s (pid %d)", info.model, info.version, info.endpoint, info.pid)
        if on_ready is not None:
            on_ready(info)

    run_asgi(app, describe, host=host, port=port, fd=fd, ready_file=ready_file, on_ready=announce,
             log_level=log_level)


def run_asgi(app: Any, describe: Callable[[str], Any], *, host: str = "127.0.0.1", port: int | None = 8000,
             fd: int | None = None, ready_file: Path | None = None, on_ready: Callable[[Any], None] | None = None,
             log_level: str = "info") -> None:
    """Serve an ASGI app (the model server, the gateway) with uvicorn until SIGTERM or SIGINT.

    ``describe(endpoint)`` makes what ``on_ready`` receives once the server accepts connections
    (after the app's lifespan started).
    """
    if fd is None and port is None:
        raise UsageError("give a port or an inherited socket file descriptor (fd)")
    sock = adopt_socket(fd) if fd is not None else bind_socket(host, int(port or 0))
    endpoint = _endpoint(sock)
    config = uvicorn.Config(app, loop="auto", http="auto", lifespan="on", log_level=log_level,
                            log_config=_log_config(log_level), access_log=False, server_header=False,
                            proxy_headers=False, timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S)

    def ready() -> None:  # described once started: the app's lifespan has run
        if on_ready is not None:
            on_ready(describe(endpoint))

    server = _Server(config, ready_file=ready_file, on_ready=ready)
    settle()  # collect the start's garbage once, freeze the long-lived rest, end a start's GC pause
    try:
        server.run(sockets=[sock])
    finally:
        gc.unfreeze()
        sock.close()
        if ready_file is not None:
            _remove_ready_file(ready_file)
    if server.interrupted:
        raise KeyboardInterrupt
    if not server.started:
        raise OperationFailed("the server failed to start; see the log lines above")


class _Server(uvicorn.Server):
    """uvicorn's server, plus a ready file, and signal handling that returns instead of re-raising."""

    def __init__(self, config: uvicorn.Config, *, ready_file: Path | None, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.ready_file = ready_file
        self.on_ready = on_ready
        self.interrupted = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit or not self.started:
            return
        if self.ready_file is not None:
            _write_ready_file(self.ready_file)
        self.on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # stop accepting at once...
            server.close()
        await asyncio.sleep(ACCEPT_GRACE_S)  # ...let just-accepted connections send their request...
        await super().shutdown(sockets=sockets)  # ...then uvicorn's drain: idle closed, in-flight finished

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT through mlctl's one graceful stop, calling uvicorn's ``handle_exit`` (a
        second SIGINT forces the exit); afterwards return instead of re-raising the signal."""
        with GracefulStop(on_signal=self.handle_exit) as stop:
            yield
        self.interrupted = stop.interrupted


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging set-up, with mlctl's serving logger on the same handler."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["mlctl.serving"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def serve_model(
    ref: str,
    loaded: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[ServerInfo], None] | None = None,
    fast_path: bool = True,
    **batching: Any,
) -> None:
    """Resolve a registry reference (``NAME@ALIAS`` or ``NAME:VERSION``) and serve it in the foreground.

    ``loaded`` is the effective configuration (:func:`mlctl.core.config.load_config`).
    ``fast_path=False``: always the estimator's own predict (no verified tree fast path).
    ``batching`` goes to :func:`run_server` (``max_batch``, ``max_wait_ms``, ``queue_size``,
    ``workers``, ``max_body_bytes``, ``log_level``). The registry is read without MLflow where
    possible (:func:`mlctl.lifecycle.registry.resolve_model`). Raises
    :class:`~mlctl.core.errors.NotFound` for an unknown model, an
    :class:`~mlctl.core.errors.OperationFailed` for a tampered artifact, a
    :class:`~mlctl.core.errors.UsageError` for a port in use.
    """
    from mlctl.lifecycle.registry import resolve_model

    with starting():
        artifact = resolve_model(ref, loaded)
        predictor = Predictor.from_artifact(artifact, fast_path=fast_path)
        run_server(predictor, host=host, port=port, on_ready=on_ready, **batching)
