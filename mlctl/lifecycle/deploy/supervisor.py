"""The supervisor of one local deployment: a detached process that owns the listening socket.

``mlctl deploy --target local`` starts it once per deployment (``python -m
mlctl.lifecycle.deploy.supervisor --dir DIR``). It binds the deployment's port, then runs
``replicas`` model-server processes (``python -m mlctl.serving --fd N``; or the server module
``control.json`` names under ``server``, such as the model gateway's) that all accept from that
one socket, so:

* a crashed server is restarted with exponential backoff while the others keep serving;
* a new revision (``control.json`` rewritten, then ``SIGHUP``) starts new servers on the same
  socket, waits until every one is ready, and only then stops the old ones gracefully: the port
  never closes, and connections waiting in the shared accept queue are served by the new ones;
* if the new servers do not become ready, they are stopped and the old ones keep serving, and
  crashed old servers are restarted with the old revision's settings, never the failed one's;
* a new revision on another host or port binds the new socket first and starts its servers
  there; the old socket closes only once they are ready (and stays when they fail or the port is
  taken);
* a scale (``replicas`` and a higher ``scale_request`` in ``control.json``, then ``SIGHUP``)
  starts the missing servers on the same socket and counts them once ready, or takes the surplus
  out of the pool and stops them gracefully; a failed scale-up leaves the count as it was
  (``scale_error``). A revision that failed is not started again by a later ``SIGHUP``.

Its state is written atomically to ``status.json``: ``revision`` and the ``model``, ``version``,
``alias``, ``sha256``, ``host`` and ``port`` of what actually serves, beside ``requested_revision``
and ``last_error`` for what was asked. Readers take the truth from there, not from
``control.json``, which holds the last request (failed or not). The supervisor holds an exclusive
``flock`` on ``supervisor.lock`` for its whole life, so a second supervisor for one folder exits at
once without touching ``supervisor.pid`` or ``status.json``. ``SIGTERM`` (or ``SIGINT``) stops
everything, through :class:`mlctl.core.graceful.GracefulStop`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.graceful import GracefulStop

CONTROL = "control.json"
STATUS = "status.json"
PIDFILE = "supervisor.pid"
SUPERVISOR_LOCK = "supervisor.lock"
#: What status.json reports about the serving revision, copied from its control.json.
SERVING_KEYS = ("model", "version", "alias", "sha256", "artifact", "config_hash")
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0
TICK_S = 0.1


@dataclass
class Worker:
    slot: int
    revision: int
    proc: subprocess.Popen[bytes]
    ready_file: Path
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    stopping: bool = False

    @property
    def ready(self) -> bool:
        return self.proc.poll() is None and self.ready_file.exists()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class Supervisor:
    """Runs and watches the servers of one deployment folder."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.control: dict[str, Any] = read_json(folder / CONTROL) or {}
        if not self.control:
            raise SystemExit(f"no {CONTROL} in {folder}")
        self.requested: dict[str, Any] = self.control  # the last control.json read; self.control is what serves
        self.workers: list[Worker] = []
        self.revision = 0
        self.state = "starting"
        self.last_error: str | None = None
        self.restart_due: dict[int, tuple[float, int]] = {}  # slot -> (when, restarts so far)
        self._reload = False
        self.graceful = GracefulStop()  # SIGTERM/SIGINT: stop every server gracefully, then exit
        self.attempted = 0  # the last revision started (a failed one is not retried on a later SIGHUP)
        self.scale_request = int(self.control.get("scale_request") or 0)  # the last one of control.json handled
        self.scale_error: str | None = None
        self.sock: socket.socket | None = None
        self.address: tuple[str, int] | None = None
        self._lock_fd: int | None = None
        (folder / "logs").mkdir(exist_ok=True)
        (folder / "run").mkdir(exist_ok=True)

    @property
    def _stop(self) -> bool:
        return self.graceful.is_set()

    # -- processes ------------------------------------------------------------------------------
    def _spawn(self, slot: int, revision: int, restarts: int = 0, *, control: dict[str, Any] | None = None,
               sock: socket.socket | None = None) -> Worker:
        c = self.control if control is None else control
        sock = self.sock if sock is None else sock
        assert sock is not None
        ready = self.dir / "run" / f"rev{revision}-slot{slot}.ready"
        ready.unlink(missing_ok=True)
        # the server module and its own arguments: a model server by default, or what control.json names
        # (``server``: e.g. the model gateway's ``["mlctl.serving.gateway_worker", "--models", "a,b"]``)
        server = [str(a) for a in c["server"]] if c.get("server") else ["mlctl.serving", "--artifact", c["artifact"]]
        argv = [sys.executable, "-m", *server, "--fd", str(sock.fileno()), "--ready-file", str(ready)]
        for key in ("max_batch", "max_wait_ms", "queue_size"):
            if c.get(key) is not None:
                argv += [f"--{key.replace('_', '-')}", str(c[key])]
        log = open(self.dir / "logs" / f"server-{slot}.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
                env={**os.environ, **c.get("env", {})},
            )
        finally:
            log.close()
        self._log(f"started server slot {slot} revision {revision} pid {proc.pid}")
        return Worker(slot, revision, proc, ready, restarts=restarts)

    def _terminate(self, workers: list[Worker], timeout: float = 15.0) -> None:
        for w in workers:
            w.stopping = True
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for w in workers:
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            w.ready_file.unlink(missing_ok=True)

    def _wait_ready(self, workers: list[Worker], timeout: float) -> str | None:
        """None when all are ready; else why not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop:
            dead = [w for w in workers if w.proc.poll() is not None]
            if dead:
                return f"server slot {dead[0].slot} exited with code {dead[0].proc.returncode}: {self._tail(dead[0])}"
            if all(w.ready for w in workers):
                return None
            time.sleep(TICK_S)
        return "stopped" if self._stop else f"servers not ready after {timeout:.0f}s: {self._tail(workers[0])}"

    def _tail(self, w: Worker, n: int = 3) -> str:
        try:
            lines = (self.dir / "logs" / f"server-{w.slot}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    # -- lifecycle ------------------------------------------------------------------------------
    @staticmethod
    def _address(control: dict[str, Any]) -> tuple[str, int]:
        return str(control.get("host", "127.0.0.1")), int(control["port"])

    @staticmethod
    def _bind(address: tuple[str, int]) -> socket.socket:
        host, port = address
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        return sock

    def _start_revision(self, control: dict[str, Any]) -> str | None:
        """Start ``control``'s revision beside the serving one and switch to it once ready.

        None on success; else why not, with the serving revision (servers, socket, settings) untouched.
        """
        revision = int(control["revision"])
        self.attempted = revision
        address = self._address(control)
        sock = self.sock
        if sock is None or address != self.address:  # first start, or a move to another host/port
            try:
                sock = self._bind(address)
            except OSError as exc:
                return f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}"
        replicas = int(control.get("replicas", 1))
        fresh = [self._spawn(slot, revision, control=control, sock=sock) for slot in range(replicas)]
        error = self._wait_ready(fresh, float(control.get("ready_timeout_s", 60)))
        if error is not None:
            self._terminate(fresh, timeout=5)
            if sock is not self.sock:
                sock.close()
            return error
        old, old_sock = self.workers, self.sock
        self.workers, self.sock, self.address, self.control = fresh, sock, address, control
        self.revision = revision
        self.restart_due.clear()
        self._write_status()  # the new revision serves from now on; say so before the old ones drain
        self._terminate(old)
        if old_sock is not None and old_sock is not sock:
            old_sock.close()
        return None

    def _scale(self, replicas: int) -> str | None:
        """Run ``replicas`` servers of the serving revision on its socket; None, or why not (count unchanged).

        Up: new slots start beside the running ones and count once ready. Down: the highest slots
        leave the pool, then stop gracefully (in-flight requests finish; the others keep accepting).
        """
        serving = [w for w in self.workers if w.revision == self.revision and not w.stopping]
        used = {w.slot for w in serving} | set(self.restart_due)
        fresh = [self._spawn(slot, self.revision) for slot in range(replicas) if slot not in used]
        if fresh:
            error = self._wait_ready(fresh, float(self.control.get("ready_timeout_s", 60)))
            if error is not None:
                self._terminate(fresh, timeout=5)
                return error
        surplus = [w for w in serving if w.slot >= replicas]
        for slot in [slot for slot in self.restart_due if slot >= replicas]:
            del self.restart_due[slot]
        self.workers = [w for w in self.workers if w not in surplus] + fresh
        self.control = {**self.control, "replicas": replicas}
        self._write_status()  # the new count serves from now on; say so before the surplus drains
        self._terminate(surplus)
        return None

    def _reap(self) -> None:
        now = time.monotonic()
        for w in list(self.workers):
            if w.stopping or w.proc.poll() is None:
                if w.restarts and now - w.started_at > STABLE_AFTER_S:
                    w.restarts = 0
                continue
            self.workers.remove(w)
            w.ready_file.unlink(missing_ok=True)
            delay = min(BACKOFF_MAX_S, BACKOFF_START_S * 2**w.restarts)
            self._log(f"server slot {w.slot} pid {w.proc.pid} exited with {w.proc.returncode}; restart in {delay:.1f}s")
            self.restart_due[w.slot] = (now + delay, w.restarts + 1)
        for slot, (when, restarts) in list(self.restart_due.items()):
            if now >= when:
                del self.restart_due[slot]
                self.workers.append(self._spawn(slot, self.revision, restarts))

    def status(self) -> dict[str, Any]:
        serving = self.control if self.revision else {}
        return {
            "pid": os.getpid(),
            "state": self.state,
            "revision": self.revision,
            "host": self.address[0] if self.address else None,
            "port": self.address[1] if self.address else None,
            **{key: serving.get(key) for key in SERVING_KEYS},
            "desired_replicas": int(self.control.get("replicas", 1)),
            "ready_replicas": sum(1 for w in self.workers if w.ready and w.revision == self.revision),
            "workers": [
                {"slot": w.slot, "pid": w.proc.pid, "revision": w.revision, "ready": w.ready, "restarts": w.restarts}
                for w in sorted(self.workers, key=lambda w: w.slot)
            ],
            "requested_revision": int(self.requested.get("revision", 0)),
            "scale_request": self.scale_request,
            "scale_error": self.scale_error,
            "last_error": self.last_error,
            "updated_at": time.time(),
        }

    def _write_status(self) -> None:
        write_json(self.dir / STATUS, self.status())

    def _take_lock(self) -> bool:
        """Hold supervisor.lock for this process's life; False when another supervisor holds it."""
        fd = os.open(self.dir / SUPERVISOR_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _remove_pidfile(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int((self.dir / PIDFILE).read_text().strip()) == os.getpid():
                (self.dir / PIDFILE).unlink()

    def _log(self, text: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor: {text}\n")
        sys.stderr.flush()

    def run(self) -> int:
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "_reload", True))
        self.graceful.install()
        if not self._take_lock():
            self._log(f"another supervisor already runs {self.dir}; exiting")
            return 1
        (self.dir / PIDFILE).write_text(f"{os.getpid()}\n")
        self._write_status()
        try:
            error = self._start_revision(self.control)
            if error is not None:
                self.state, self.last_error = "failed", error
                self._write_status()
                return 1
            self.state = "running"
            last: dict[str, Any] = {}
            while not self._stop:
                if self._reload:
                    self._reload = False
                    self.requested = read_json(self.dir / CONTROL) or self.requested
                    wanted = int(self.requested["revision"])
                    if wanted not in (self.revision, self.attempted):
                        self.state = "updating"
                        self._write_status()
                        error = self._start_revision(self.requested)
                        self.last_error = None if error is None else f"revision {wanted}: {error}"
                        if error is not None:
                            self._log(f"revision {wanted} failed, revision {self.revision} keeps serving: {error}")
                        self.state = "running"
                    elif int(self.requested.get("scale_request") or 0) > self.scale_request:
                        replicas = int(self.requested.get("replicas", 1))
                        self.state = "scaling"
                        self._write_status()
                        self.scale_error = self._scale(replicas)
                        if self.scale_error is not None:
                            self._log(f"scaling to {replicas} failed, {self.control.get('replicas')} keep serving: "
                                      f"{self.scale_error}")
                        self.scale_request = int(self.requested["scale_request"])
                        self.state = "running"
                self._reap()
                current = self.status()
                if {k: v for k, v in current.items() if k != "updated_at"} != last:
                    write_json(self.dir / STATUS, current)
                    last = {k: v for k, v in current.items() if k != "updated_at"}
                time.sleep(TICK_S)
            self.state = "stopping"
            self._terminate(self.workers)
            self.workers = []
            if self.sock is not None:
                self.sock.close()
            self.state = "stopped"
            self._write_status()
            return 0
        finally:
            self._remove_pidfile()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlctl.lifecycle.deploy.supervisor")
    parser.add_argument("--dir", required=True, type=Path, help="the deployment's folder (holds control.json)")
    args = parser.parse_args(argv)
    return Supervisor(args.dir.resolve()).run()


if __name__ == "__main__":
    sys.exit(main())
