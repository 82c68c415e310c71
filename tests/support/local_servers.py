"""Trivial local servers for the process, probe and engine unit tests.

* :func:`http_server` -- a :class:`~mlctl.core.proc.LocalService` running ``python -m http.server``;
* :class:`FakeServers` -- TCP servers on loopback that answer every connection with fixed bytes;
* :func:`gone` -- whether a process id no longer runs.
"""

from __future__ import annotations

import os
import socketserver
import sys
import threading
from pathlib import Path

from mlctl.core.probes import http_ready
from mlctl.core.proc import LocalService

PY = sys.executable


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def http_server(workdir: Path, port: int, name: str = "web") -> LocalService:
    """``python -m http.server`` on ``127.0.0.1:port`` serving ``workdir``; not started yet."""
    return LocalService(
        name=name,
        argv=[PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(workdir)],
        workdir=workdir,
        ready=lambda: http_ready(f"http://127.0.0.1:{port}/"),
        url=f"http://127.0.0.1:{port}",
        port=port,
    )


class FakeServers:
    """Call with the bytes to answer: starts a TCP server on loopback and returns its port.

    Each connection reads once, answers ``reply`` and waits for the client to close (an empty
    ``reply`` closes at once). :meth:`close` stops every server started.
    """

    def __init__(self) -> None:
        self._servers: list[socketserver.TCPServer] = []

    def __call__(self, reply: bytes) -> int:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(1)
                if not reply:
                    return  # close at once
                try:
                    self.request.recv(4096)
                    self.request.sendall(reply)
                    self.request.recv(4096)
                except OSError:
                    pass

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self._servers.append(server)
        return int(server.server_address[1])

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
