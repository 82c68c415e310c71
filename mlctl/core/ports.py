"""Local TCP ports: is one in use, and by which process (deploy targets and the model server).

>>> port_in_use("127.0.0.1", 0)
False
"""

from __future__ import annotations

import errno
import os
import shlex
import socket
from pathlib import Path

from mlctl.core.errors import UsageError


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (False when the host cannot be bound at all)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            return False  # not ours to judge (an unknown host, say): the real bind reports it
    return False


def _listening_inodes(port: int) -> set[int]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            try:
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(int(fields[9]))
            except (IndexError, ValueError):
                continue
    return inodes


def port_holder(port: int) -> tuple[int, str] | None:
    """``(pid, command line)`` of a process listening on TCP ``port``, when this user can see it (Linux)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                    command = " ".join(shlex.quote(a.decode(errors="replace")) for a in argv if a)
                    return int(entry.name), command
            except OSError:
                continue
    return None


def port_in_use_error(host: str, port: int, hint: str) -> UsageError:
    """The one "port in use" error of deploy and serve (exit 2), naming the holder when known."""
    who = port_holder(port)
    held = f" by pid {who[0]} ({_shorten(who[1])})" if who else ""
    return UsageError(f"port {port} on {host} is already in use{held}", hint=hint,
                      details={"port": port, "host": host, **({"holder_pid": who[0]} if who else {})})


def ensure_port_free(host: str, port: int, *, hint: str = "choose another --port, or stop what listens there") -> None:
    """Raise the usage error of :func:`port_in_use_error` when something listens on ``host:port``."""
    if port and port_in_use(host, port):
        raise port_in_use_error(host, port, hint)


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
