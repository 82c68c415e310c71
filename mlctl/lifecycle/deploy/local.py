"""The ``local`` target, the embedded default: supervised server processes on this machine.

Each deployment has a folder ``.mlctl/deploy/NAME/`` with ``control.json`` (the last revision
asked for), ``status.json`` (what serves, written by the supervisor), ``supervisor.pid``,
``supervisor.lock`` (held by the running supervisor), ``deploy.lock`` (held by whoever changes
the deployment, see :mod:`mlctl.lifecycle.deploy.lock`) and ``logs/``.

Deploying starts the supervisor (:mod:`mlctl.lifecycle.deploy.supervisor`) or, when it already
runs, writes a new revision into ``control.json`` and sends it ``SIGHUP``: the new servers start
beside the running ones (on the same socket, or on the new port's socket when the port changes)
and the old ones stop only once the new ones are ready. When the new revision fails, the old one
keeps serving and :meth:`LocalTarget.status` keeps reporting it: status comes from the
supervisor's ``status.json``, never from ``control.json``. A first deploy that fails or is
interrupted stops the supervisor it started, so nothing runs that no release records.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlctl.core.errors import NotFound, OperationFailed
from mlctl.core.ports import ensure_port_free, port_holder, port_in_use, port_in_use_error  # noqa: F401 - re-exported
from mlctl.lifecycle.deploy.base import DeploymentStatus, DeployPlan, DeploySpec, DeployTarget, validate_replicas
from mlctl.lifecycle.deploy.lock import deployment_lock, flock_holder_pid
from mlctl.lifecycle.deploy.supervisor import CONTROL, PIDFILE, STATUS, SUPERVISOR_LOCK, read_json, write_json

SUPERVISOR_MODULE = "mlctl.lifecycle.deploy.supervisor"



class LocalTarget(DeployTarget):
    """Model servers as local processes, one supervisor per deployment."""

    kind = "local"

    def __init__(self, state_dir: Path, *, host: str = "127.0.0.1") -> None:
        self.root = Path(state_dir) / "deploy"
        self.host = host

    # -- helpers -------------------------------------------------------------------------------
    def folder(self, name: str) -> Path:
        return self.root / name

    def _is_supervisor(self, pid: int, folder: Path) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return SUPERVISOR_MODULE.encode() in cmdline and str(folder).encode() in cmdline and _pid_alive(pid)

    def supervisor_pid(self, name: str) -> int | None:
        """The PID of this deployment's supervisor if it is alive (checked by its command line).

        ``supervisor.pid`` first; then whoever holds ``supervisor.lock`` (a supervisor that has not
        written its pid file yet, or whose pid file was overwritten).
        """
        folder = self.folder(name)
        with contextlib.suppress(OSError, ValueError):
            pid = int((folder / PIDFILE).read_text().strip())
            if self._is_supervisor(pid, folder):
                return pid
        holder = flock_holder_pid(folder / SUPERVISOR_LOCK)
        if holder is not None and self._is_supervisor(holder, folder):
            return holder
        return None

    def _stray_supervisors(self, name: str) -> list[int]:
        """Supervisor processes of this folder by command line (left by an mlctl without locks)."""
        folder = self.folder(name)
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._is_supervisor(int(entry.name), folder):
                found.append(int(entry.name))
        return found

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
                serving = status.get("revision") or 0
                keeps = (f"; revision {serving} ({status.get('model')}:{status.get('version')}) keeps serving on "
                         f"port {status.get('port')}") if serving and status.get("state") != "failed" else ""
                raise OperationFailed(
                    f"deployment {name} revision {revision} failed: {status['last_error']}{keeps}",
                    hint=f"see `mlctl deploy logs {name}`",
                    details={"deployment": name, "revision": revision, "serving_revision": serving or None},
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

    def _serving(self, name: str) -> dict[str, Any] | None:
        """status.json of a live supervisor, or None when none runs."""
        if self.supervisor_pid(name) is None:
            return None
        return read_json(self.folder(name) / STATUS) or {}

    # -- DeployTarget --------------------------------------------------------------------------
    def plan(self, spec: DeploySpec) -> DeployPlan:
        live = self._serving(spec.name)
        endpoint = f"http://{self.host}:{spec.port}"
        if live is None:
            actions = [
                f"start a supervisor for {spec.name} listening on {endpoint}",
                f"start {spec.replicas} server process(es) of {spec.model.ref} and wait until ready",
            ]
        elif live.get("port") not in (None, spec.port):
            actions = [
                f"listen on {endpoint} beside port {live.get('port')} and start {spec.replicas} server(s) of "
                f"{spec.model.ref} there",
                f"once they are ready, stop the old servers gracefully and close port {live.get('port')}",
            ]
        else:
            actions = [
                f"start {spec.replicas} server(s) of {spec.model.ref} on {endpoint} beside the running ones",
                "wait until they are ready, then stop the old servers gracefully",
            ]
        return DeployPlan(self.kind, actions)

    def apply(self, spec: DeploySpec) -> DeploymentStatus:
        """Start or update the deployment under its lock; the running revision serves until the new one is ready."""
        with deployment_lock(self.folder(spec.name), spec.name, "deploy"):
            return self._apply(spec)

    def _apply(self, spec: DeploySpec) -> DeploymentStatus:
        folder = self.folder(spec.name)
        folder.mkdir(parents=True, exist_ok=True)
        pid = self.supervisor_pid(spec.name)
        if pid is None:
            for stray in self._stray_supervisors(spec.name):  # from an mlctl that had no locks
                _stop_pid(stray, 30.0)
        control = read_json(folder / CONTROL) or {}
        live = read_json(folder / STATUS) or {}
        serving_port = live.get("port") if pid is not None else None
        if serving_port != spec.port:
            ensure_port_free(self.host, spec.port, hint="pass --port with a free port, or --port 0 to pick one")
        # never reuse a revision number: a failed one stays in control.json and in status.json's last_error
        revision = max(int(control.get("revision", 0)), int(live.get("requested_revision") or 0),
                       int(live.get("revision") or 0)) + 1
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
        started: int | None = None
        try:
            if pid is None:
                (folder / STATUS).unlink(missing_ok=True)  # a dead supervisor's, not to be mistaken for the new one's
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
                started = proc.pid
                self._wait(spec.name, revision, spec.ready_timeout_s + 15, started)
            else:
                os.kill(pid, signal.SIGHUP)
                self._wait(spec.name, revision, spec.ready_timeout_s + 15, pid)
        except BaseException:
            if started is not None:  # a first deploy that failed or was interrupted leaves nothing running
                _stop_pid(started, 10.0)
            raise
        status = self.status(spec.name)
        assert status is not None
        return status

    def status(self, name: str) -> DeploymentStatus | None:
        """What serves now, from the supervisor's status.json; the last request only when nothing runs."""
        folder = self.folder(name)
        control = read_json(folder / CONTROL)
        if control is None:
            return None
        pid = self.supervisor_pid(name)
        live = read_json(folder / STATUS) or {}
        # what serves (or served last, once stopped); the last request only when status.json never said
        served = live if live.get("revision") and "version" in live else {}
        shown = served or control
        serving = served if pid is not None else {}
        desired = int(served.get("desired_replicas") or control.get("replicas", 1))
        ready = int(serving.get("ready_replicas", 0)) if serving else 0
        health = "healthy" if ready and ready == desired else "degraded" if ready else "down"
        endpoint = (f"http://{serving.get('host') or self.host}:{serving.get('port')}"
                    if serving and serving.get("port") else None)
        return DeploymentStatus(
            name=name,
            target=self.kind,
            model=shown.get("model") or control.get("model", name),
            version=str(shown.get("version")),
            alias=shown.get("alias"),
            replicas_desired=desired,
            replicas_ready=ready,
            endpoint=endpoint,
            health=health,
            digest=shown.get("sha256"),
            details={
                "revision": live.get("revision"),
                "requested_revision": live.get("requested_revision", control.get("revision")),
                "state": live.get("state") if pid is not None else "stopped",
                "supervisor_pid": pid,
                "workers": live.get("workers", []) if pid is not None else [],
                "last_error": live.get("last_error"),
                "folder": str(folder),
            },
        )

    def stop(self, name: str, timeout: float = 30.0) -> bool:
        """Stop the supervisor (and so every server) of ``name``; False when none ran. Idempotent."""
        folder = self.folder(name)
        if not folder.is_dir():
            return False
        with deployment_lock(folder, name, "stop"):
            pids = {p for p in [self.supervisor_pid(name), *self._stray_supervisors(name)] if p is not None}
            for pid in pids:
                _stop_pid(pid, timeout)
            return bool(pids)

    def scale(self, name: str, replicas: int, *, timeout: float | None = None) -> DeploymentStatus:
        """Run ``replicas`` server processes of the serving revision, on the same socket.

        The supervisor starts the new processes and waits until they are ready (scaling up), or
        stops the surplus ones gracefully: they finish their in-flight requests while the others
        keep accepting from the shared socket (scaling down). No request is refused either way.
        A failed scale-up stops its new processes and leaves the count as it was
        (:class:`OperationFailed`). The count is kept in ``control.json`` (``replicas``), so a
        supervisor restarted later runs as many; a later deploy sets its own.
        """
        validate_replicas(replicas)
        folder = self.folder(name)
        if read_json(folder / CONTROL) is None:
            raise NotFound(f"no local deployment named {name!r}", hint="see `mlctl status` for deployments")
        with deployment_lock(folder, name, "scale"):
            pid = self.supervisor_pid(name)
            if pid is None:
                raise OperationFailed(f"deployment {name} is not running; nothing to scale",
                                      hint=f"deploy it again: `mlctl deploy ... --name {name} --replicas {replicas}`")
            control = read_json(folder / CONTROL) or {}
            live = read_json(folder / STATUS) or {}
            request = max(int(control.get("scale_request") or 0), int(live.get("scale_request") or 0)) + 1
            write_json(folder / CONTROL, {**control, "replicas": replicas, "scale_request": request})
            os.kill(pid, signal.SIGHUP)
            ready_timeout = float(control.get("ready_timeout_s", 60))
            self._wait_scaled(name, request, replicas, timeout or ready_timeout + 15, pid)
        status = self.status(name)
        assert status is not None
        return status

    def _wait_scaled(self, name: str, request: int, replicas: int, timeout: float, pid: int) -> None:
        folder = self.folder(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = read_json(folder / STATUS) or {}
            if int(live.get("scale_request") or 0) >= request:
                if live.get("scale_error"):
                    raise OperationFailed(
                        f"deployment {name} could not scale to {replicas}: {live['scale_error']}; "
                        f"{live.get('desired_replicas')} replica(s) keep serving",
                        hint=f"see `mlctl deploy logs {name}`",
                        details={"deployment": name, "replicas": replicas})
                if live.get("ready_replicas") == live.get("desired_replicas") == replicas:
                    return
            if not _pid_alive(pid):
                raise OperationFailed(f"the supervisor of {name} stopped while scaling",
                                      hint=f"see `mlctl deploy logs {name}`")
            time.sleep(0.1)
        raise OperationFailed(f"deployment {name} did not reach {replicas} ready replica(s) in {timeout:.0f}s",
                              hint=f"see `mlctl deploy logs {name}`")

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

    def running(self) -> builtins.list[str]:
        """Names of the deployments whose supervisor runs now."""
        return [name for name in self.list() if self.supervisor_pid(name) is not None]


def _stop_pid(pid: int, timeout: float) -> None:
    """SIGTERM ``pid`` (a supervisor: it stops its servers), SIGKILL it after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):  # reap it when it is our child
        os.waitpid(pid, os.WNOHANG)


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
