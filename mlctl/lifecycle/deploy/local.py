"""The ``local`` target, the embedded default: supervised server processes on this machine.

Each deployment has a folder ``.mlctl/deploy/NAME/`` with ``control.json`` (what should run),
``status.json`` (what runs, written by the supervisor), ``supervisor.pid``, and ``logs/``.
Deploying starts the supervisor (:mod:`mlctl.lifecycle.deploy.supervisor`) or, when it already
runs, writes a new revision into ``control.json`` and sends it ``SIGHUP``: the new servers start
on the same socket and the old ones stop only once the new ones are ready.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlctl.core.errors import OperationFailed, UsageError
from mlctl.lifecycle.deploy.base import DeploymentStatus, DeployPlan, DeploySpec, DeployTarget
from mlctl.lifecycle.deploy.supervisor import CONTROL, PIDFILE, STATUS, read_json, write_json

SUPERVISOR_MODULE = "mlctl.lifecycle.deploy.supervisor"


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


class LocalTarget(DeployTarget):
    """Model servers as local processes, one supervisor per deployment."""

    kind = "local"

    def __init__(self, state_dir: Path, *, host: str = "127.0.0.1") -> None:
        self.root = Path(state_dir) / "deploy"
        self.host = host

    # -- helpers -------------------------------------------------------------------------------
    def folder(self, name: str) -> Path:
        return self.root / name

    def supervisor_pid(self, name: str) -> int | None:
        """The PID of this deployment's supervisor if it is alive (checked by its command line)."""
        folder = self.folder(name)
        try:
            pid = int((folder / PIDFILE).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if SUPERVISOR_MODULE.encode() in cmdline and str(folder).encode() in cmdline:
            return pid
        return None

    def _wait(self, name: str, revision: int, timeout: float, pid: int | None = None) -> dict[str, Any]:
        folder = self.folder(name)
        deadline = time.monotonic() + timeout
        status: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            status = read_json(folder / STATUS)
            alive = self.supervisor_pid(name) is not None
            if (
                status
                and status.get("revision") == revision
                and status.get("state") == "running"
                and status.get("ready_replicas") == status.get("desired_replicas")
            ):
                return status
            if (
                status
                and status.get("last_error")
                and (f"revision {revision}:" in status["last_error"] or status.get("state") == "failed")
            ):
                raise OperationFailed(
                    f"deployment {name} revision {revision} failed: {status['last_error']}",
                    hint=f"see `mlctl deploy logs {name}`",
                )
            if not alive and (pid is None or not _pid_alive(pid)):
                why = (status or {}).get("last_error") or self._log_tail(name, 3)
                raise OperationFailed(
                    f"deployment {name} stopped while starting: {why}", hint=f"see `mlctl deploy logs {name}`"
                )
            time.sleep(0.1)
        raise OperationFailed(
            f"deployment {name} revision {revision} not ready after {timeout:.0f}s",
            hint=f"see `mlctl deploy logs {name}`; raise --timeout for slow models",
        )

    def _log_tail(self, name: str, n: int) -> str:
        return " | ".join(self.logs(name, n).strip().splitlines()[-n:])

    # -- DeployTarget --------------------------------------------------------------------------
    def plan(self, spec: DeploySpec) -> DeployPlan:
        pid = self.supervisor_pid(spec.name)
        control = read_json(self.folder(spec.name) / CONTROL) or {}
        endpoint = f"http://{self.host}:{spec.port}"
        if pid is None:
            actions = [
                f"start a supervisor for {spec.name} listening on {endpoint}",
                f"start {spec.replicas} server process(es) of {spec.model.ref} and wait until ready",
            ]
        elif int(control.get("port", -1)) != spec.port:
            actions = [
                f"stop {spec.name} on port {control.get('port')}",
                f"start it again on {endpoint} with {spec.replicas} server(s) of {spec.model.ref}",
            ]
        else:
            actions = [
                f"start {spec.replicas} server(s) of {spec.model.ref} on {endpoint} beside the running ones",
                "wait until they are ready, then stop the old servers gracefully",
            ]
        return DeployPlan(self.kind, actions)

    def apply(self, spec: DeploySpec) -> DeploymentStatus:
        folder = self.folder(spec.name)
        folder.mkdir(parents=True, exist_ok=True)
        pid = self.supervisor_pid(spec.name)
        control = read_json(folder / CONTROL) or {}
        if pid is not None and int(control.get("port", -1)) != spec.port:
            self.stop(spec.name)
            pid = None
        if pid is None and port_in_use(self.host, spec.port):
            raise UsageError(
                f"port {spec.port} is already in use on {self.host}",
                hint="pass --port with a free port, or --port 0 to pick one",
            )
        revision = int(control.get("revision", 0)) + 1
        release_dir = folder / "releases" / f"rev{revision}"
        release_dir.mkdir(parents=True, exist_ok=True)
        spec.model.to_json(release_dir / "artifact.json")
        new_control = {
            "revision": revision,
            "artifact": str(release_dir / "artifact.json"),
            "host": self.host,
            "port": spec.port,
            "replicas": spec.replicas,
            "ready_timeout_s": spec.ready_timeout_s,
            "env": spec.env,
            "model": spec.model.name,
            "version": spec.model.version,
            "alias": spec.model.alias,
            "sha256": spec.model.sha256,
            "config_hash": spec.config_hash(),
        }
        write_json(folder / CONTROL, new_control)
        if pid is None:
            log = open(folder / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", SUPERVISOR_MODULE, "--dir", str(folder)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=str(spec.project_root),
                )
            finally:
                log.close()
            started_pid: int | None = proc.pid
        else:
            os.kill(pid, signal.SIGHUP)
            started_pid = pid
        self._wait(spec.name, revision, spec.ready_timeout_s + 15, started_pid)
        status = self.status(spec.name)
        assert status is not None
        return status

    def status(self, name: str) -> DeploymentStatus | None:
        folder = self.folder(name)
        control = read_json(folder / CONTROL)
        if control is None:
            return None
        live = read_json(folder / STATUS) or {}
        alive = self.supervisor_pid(name) is not None
        desired = int(control.get("replicas", 1))
        ready = int(live.get("ready_replicas", 0)) if alive else 0
        health = "down" if not alive else "healthy" if ready == desired else "degraded" if ready else "down"
        return DeploymentStatus(
            name=name,
            target=self.kind,
            model=control.get("model", name),
            version=str(control.get("version")),
            alias=control.get("alias"),
            replicas_desired=desired,
            replicas_ready=ready,
            endpoint=f"http://{control.get('host', self.host)}:{control.get('port')}" if alive else None,
            health=health,
            digest=control.get("sha256"),
            details={
                "revision": live.get("revision"),
                "supervisor_pid": self.supervisor_pid(name),
                "workers": live.get("workers", []),
                "last_error": live.get("last_error"),
                "folder": str(folder),
            },
        )

    def stop(self, name: str, timeout: float = 30.0) -> bool:
        pid = self.supervisor_pid(name)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        return True

    def logs(self, name: str, tail: int = 100) -> str:
        logs = sorted((self.folder(name) / "logs").glob("*.log")) + [self.folder(name) / "supervisor.log"]
        chunks = []
        for path in logs:
            try:
                lines = path.read_text(errors="replace").splitlines()[-tail:]
            except OSError:
                continue
            chunks.append(f"==> {path.name} <==\n" + "\n".join(lines))
        return "\n".join(chunks) + ("\n" if chunks else "")

    def list(self) -> list[str]:
        """Names of every deployment with a folder here."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CONTROL).is_file())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True
