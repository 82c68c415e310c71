"""Supervised local processes: start one engine or server, wait until it answers, stop it by PID.

Standard library only. :class:`LocalService` runs one process in its own session with its output
in a log file, waits until a readiness check passes (failing early, with the log tail, if the
process dies), and stops it by its PID only: its stop signal (SIGTERM by default), then SIGKILL.
:class:`ExternalService` stands for one somebody else runs; both fit the :class:`Service` protocol.
Small helpers: :func:`free_port`, :func:`wait_until` and :func:`user_kwargs` (drop to an engine's
own user when we are root).

Readiness checks that speak an engine's protocol live in :mod:`mlctl.core.probes`; recipes that
locate and start the engines mlctl knows (PostgreSQL, Redis, Prometheus...) in :mod:`mlctl.engines`.

>>> isinstance(free_port(), int)
True
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from mlctl.core.errors import ServiceUnavailable

LOOPBACK = "127.0.0.1"

_T = TypeVar("_T")


# --------------------------------------------------------------------------- small helpers


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the OS picks it).

    Another process may take it before you bind it; :func:`mlctl.engines.start_engine` retries on a new
    port when an engine it started on a port of its own choosing dies at once.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], _T],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "the condition",
) -> _T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value; return that.

    Exceptions raised by ``predicate`` propagate at once (use that to fail early). After
    ``timeout`` seconds raises :class:`ServiceUnavailable` naming ``what``.

    >>> wait_until(lambda: 42, timeout=1)
    42
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServiceUnavailable(
                f"timed out after {timeout:.1f}s waiting for {what}",
                hint="the engine may be slow to start or misconfigured; check its log",
            )
        time.sleep(min(interval, remaining))


# --------------------------------------------------------------------------- running as another user


def user_kwargs(user: str | None) -> dict[str, Any]:
    """Popen keyword arguments that drop to ``user`` -- only when we are root and it is someone else."""
    if not user or os.name != "posix" or os.geteuid() != 0:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ServiceUnavailable(
            f"the user {user!r} that this engine runs as does not exist",
            hint=f"create it (the engine's package usually does: useradd --system {user}) or run as non-root",
        ) from None
    if entry.pw_uid == 0:
        return {}
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups}


# --------------------------------------------------------------------------- one process


class Service(Protocol):
    """What a fixture yields: an engine to talk to, started here or already running elsewhere."""

    name: str
    url: str
    host: str
    port: int | None

    @property
    def pid(self) -> int | None: ...

    def stop(self, timeout: float = 10.0) -> int | None: ...


#: Started and not yet stopped, by id: strong references, so the atexit net below sees them all.
_LIVE: dict[int, LocalService] = {}
_PR_SET_PDEATHSIG = 1


def _parent_death_hook(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when we die (or None elsewhere)."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - Linux only
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return None

    def hook() -> None:  # pragma: no cover - runs in the child, between fork and exec
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return hook


@dataclass(eq=False)
class LocalService:
    """One engine process started and owned by us; stopped by its PID only.

    Use :meth:`start` then :meth:`wait_ready`, or ``with LocalService(...) as svc:`` which does
    both and stops it on exit. Output (stdout and stderr) goes to ``log_path``, by default
    ``workdir/<name>.log``.

    ``die_with_parent`` (Linux) makes the kernel signal the engine when the thread that started
    it ends, so a test run killed from outside leaves no engine behind: start engines from a
    thread that lives as long as you need them (the main thread, in pytest).
    """

    name: str
    argv: Sequence[str]
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready: Callable[[], bool] | None = None
    url: str = ""
    host: str = LOOPBACK
    port: int | None = None
    user: str | None = None
    stop_signal: int = signal.SIGTERM
    log_path: Path | None = None
    cleanup: list[Path] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    die_with_parent: bool = True
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owner_pid: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        if self.log_path is None:
            self.log_path = self.workdir / f"{self.name}.log"

    # -- state
    @property
    def pid(self) -> int | None:
        """The process id, or None before :meth:`start`."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process has been started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has exited (negative: killed by that signal)."""
        return self._proc.poll() if self._proc is not None else None

    # -- lifecycle
    def start(self) -> LocalService:
        """Start the process (in a new session, output appended to the log file)."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        run_as = user_kwargs(self.user)
        if run_as:
            import pwd

            entry = pwd.getpwuid(run_as["user"])
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        preexec = _parent_death_hook(self.stop_signal) if self.die_with_parent else None
        with open(self.log_path, "ab") as log:
            try:
                self._proc = subprocess.Popen(
                    list(self.argv),
                    cwd=str(self.cwd or self.workdir),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=preexec,
                    **run_as,
                )
            except OSError as exc:
                raise ServiceUnavailable(
                    f"{self.name}: could not run {self.argv[0]}: {exc}",
                    hint="check that the engine is installed and executable",
                ) from exc
        self._owner_pid = os.getpid()
        _LIVE[id(self)] = self
        return self

    def _check(self) -> bool:
        if self._proc is None:
            raise ServiceUnavailable(f"{self.name} was never started", hint="call start() first")
        code = self._proc.poll()
        if code is not None:
            raise ServiceUnavailable(
                f"{self.name} exited with status {code} before it was ready; last lines of "
                f"{self.log_path}:\n{self.log_tail()}",
                hint="read the engine's log above; a port clash or a bad flag are the usual causes",
                details={"returncode": code, "log": str(self.log_path)},
            )
        return True if self.ready is None else bool(self.ready())

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.05) -> LocalService:
        """Wait until the readiness check passes; fail at once (with the log tail) if the process exits."""
        try:
            wait_until(self._check, timeout=timeout, interval=interval, what=f"{self.name} to be ready")
        except ServiceUnavailable as exc:
            if "returncode" in exc.details:  # the process died: the message already carries the log
                raise
            raise ServiceUnavailable(
                f"{exc.message}; last lines of {self.log_path}:\n{self.log_tail()}",
                hint=exc.hint,
                details={"log": str(self.log_path)},
            ) from None
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the process: ``stop_signal`` to its PID, wait ``timeout``, then SIGKILL.

        Only the PID we started is signalled (plus, on SIGKILL, its own process group, which
        holds nothing but its children). Removes the ``cleanup`` paths afterwards. Returns the
        exit status, or None when it was never started. Safe to call twice.
        """
        proc = self._proc
        code: int | None = None
        if proc is not None:
            code = proc.poll()
            if code is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, self.stop_signal)
                try:
                    code = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    # Not reaped yet, so the group id (== its pid) cannot belong to anyone else.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    code = proc.wait(timeout=timeout)
        _LIVE.pop(id(self), None)
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)
        self.cleanup = []
        return code

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` lines of the log file ('' when there is none)."""
        assert self.log_path is not None
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 64 * 1024))
                data = fh.read()
        except OSError:
            return ""
        lines = data.decode("utf-8", errors="replace").splitlines()
        return "\n".join(lines[-n:]) if n > 0 else ""

    def __enter__(self) -> LocalService:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(eq=False)
class ExternalService:
    """An engine somebody else runs (given by URL); :meth:`stop` leaves it alone."""

    name: str
    url: str
    host: str
    port: int | None
    pid: None = None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Do nothing: we did not start it."""
        return None

    def __enter__(self) -> ExternalService:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _stop_leftovers() -> None:
    """atexit safety net: stop engines this process started and nobody stopped."""
    for svc in list(_LIVE.values()):
        if svc._owner_pid == os.getpid():
            with contextlib.suppress(Exception):
                svc.stop(timeout=5.0)


atexit.register(_stop_leftovers)
