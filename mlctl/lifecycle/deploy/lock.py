"""One change at a time per deployment: an advisory file lock in the deployment's folder.

``mlctl deploy``, ``rollback`` and ``deploy stop`` (and :class:`~mlctl.lifecycle.deploy.local.LocalTarget`
used as a library) hold ``.mlctl/deploy/NAME/deploy.lock`` with ``fcntl.flock`` while they change
deployment NAME, whatever its target. A second one fails at once with :class:`DeploymentBusy`
(exit 1) naming the holder: the lock file holds one JSON line written by the holder
(``{"pid", "command", "operation", "since"}``), and ``/proc/locks`` names the pid when that line is
not written yet. The kernel frees the lock when its holder exits, however it exits, so a crashed
deploy never leaves the deployment locked; the file itself is left in place (removing a lock file
races with the next holder).

The lock is re-entrant within one thread (``releases.deploy`` holds it while the local target's
``apply`` takes it again); another thread or process waits for nobody and gets the error.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> with deployment_lock(folder, "demo", "deploy"):
...     with deployment_lock(folder, "demo", "deploy"):  # re-entrant in this thread
...         holder(folder)["operation"]
'deploy'
>>> holder(folder) is None
True
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlctl.core.errors import OperationFailed

LOCK_FILE = "deploy.lock"
#: How long a loser waits for the winner to write its JSON line before naming it from /proc/locks.
_HOLDER_WAIT_S = 1.0

_held: dict[tuple[str, int], int] = {}
_held_guard = threading.Lock()


class DeploymentBusy(OperationFailed):
    """Another mlctl is changing this deployment right now (exit 1); ``details["holder"]`` names it."""


def lock_folder(state_dir: Path, name: str) -> Path:
    """Where deployment ``name``'s lock lives: its local folder, ``STATE_DIR/deploy/NAME``."""
    return Path(state_dir) / "deploy" / name


def _command() -> str:
    argv = list(sys.argv) or ["python"]
    argv[0] = Path(argv[0]).name or argv[0]
    return " ".join(shlex.quote(a) for a in argv)


def _read_holder(fh: Any) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        fh.seek(0)
        text = fh.read().strip()
        if text:
            data = json.loads(text.splitlines()[0])
            if isinstance(data, dict) and data.get("pid"):
                return data
    return None


def flock_holder_pid(path: Path) -> int | None:
    """The pid holding a flock on ``path``, from /proc/locks (Linux); None when unknown."""
    try:
        st = path.stat()
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if "FLOCK" not in fields or "->" in fields:  # "->" marks a waiter, not the holder
            continue
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            same = (int(major, 16), int(minor, 16), int(inode)) == (os.major(st.st_dev), os.minor(st.st_dev),
                                                                   st.st_ino)
        except (IndexError, ValueError):
            continue
        if same:
            return pid
    return None


def _cmdline(pid: int) -> str | None:
    try:
        parts = [p.decode(errors="replace") for p in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if p]
    except OSError:
        return None
    return " ".join(shlex.quote(p) for p in parts) or None


def holder(folder: Path) -> dict[str, Any] | None:
    """Who holds the deployment lock in ``folder`` now (``{"pid", "command", ...}``), or None.

    Takes no lock itself (a probe would make a deploy starting at that instant fail): the pid
    comes from ``/proc/locks``, the rest from the holder's JSON line when it names that pid.
    """
    path = Path(folder) / LOCK_FILE
    pid = flock_holder_pid(path)
    if pid is None:
        return None
    with contextlib.suppress(OSError), open(path) as fh:
        info = _read_holder(fh)
        if info is not None and info.get("pid") == pid:
            return info
    return {"pid": pid, "command": _cmdline(pid), "operation": None, "since": None}


def _describe(fh: Any, path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        info = _read_holder(fh)
        if info is not None or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if info is None:
        pid = flock_holder_pid(path)
        info = {"pid": pid, "command": _cmdline(pid) if pid else None, "operation": None, "since": None}
    return info


def _busy_error(name: str, info: dict[str, Any]) -> DeploymentBusy:
    who = f"pid {info['pid']}" if info.get("pid") else "another process"
    if info.get("command"):
        who += f" (`{info['command']}`)"
    what = f" for a {info['operation']}" if info.get("operation") else ""
    since = f" since {info['since']}" if info.get("since") else ""
    return DeploymentBusy(
        f"deployment {name} is busy: {who} holds its lock{what}{since}",
        hint="wait for it to finish and run the command again (the lock frees itself when that process ends)",
        details={"deployment": name, "holder": info},
    )


@contextlib.contextmanager
def deployment_lock(folder: Path, name: str, operation: str) -> Iterator[None]:
    """Hold deployment ``name``'s lock (in ``folder``) for the block, or raise :class:`DeploymentBusy`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    key = (str(path.resolve()), threading.get_ident())
    with _held_guard:
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fh = os.fdopen(fd, "r+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy_error(name, _describe(fh, path)) from None
        info = {"pid": os.getpid(), "command": _command(), "operation": operation,
                "since": datetime.now(UTC).isoformat(timespec="seconds")}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info, sort_keys=True) + "\n")
        fh.flush()
        with _held_guard:
            _held[key] = 1
        try:
            yield
        finally:
            with _held_guard:
                del _held[key]
            with contextlib.suppress(OSError):  # clear the holder before letting go, never after
                fh.seek(0)
                fh.truncate()
                fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()
