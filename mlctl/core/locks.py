"""Inter-process file locks, and the write check, for the project's embedded stores.

Several ``mlctl`` processes may start at once in a fresh project (four ``mlctl train`` in CI, a
``detect watch`` beside a ``deploy``). The first to touch an embedded store (the MLflow SQLite
database, the Optuna study database, ``state.db``) creates its schema; done by two processes at
once, that creation fails half-way. :func:`store_lock` serialises it: an exclusive ``flock`` on a
lock file next to the store (``.mlctl/.mlflow.db.lock`` for ``.mlctl/mlflow.db``), so concurrent
first uses simply wait for the first one. The kernel drops a ``flock`` when its process exits,
however it exits, so a crashed holder never leaves a stale lock behind.

:class:`FileLock` is the general tool: blocking with a timeout, or non-blocking (``timeout=0``)
to fail at once naming the holder (its PID and command line are written into the lock file while
it is held). It is re-entrant within one process.

:func:`check_writable` says, before any work starts, that a store cannot be written, naming the
file and the cause (permission denied, or a read-only file system), instead of letting a
database library fail half-way through.

>>> import tempfile, pathlib
>>> store = pathlib.Path(tempfile.mkdtemp()) / "mlflow.db"
>>> lock_path(store).name
'.mlflow.db.lock'
>>> with store_lock(store):
...     pass
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlctl.core.errors import OperationFailed, StateError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: locks are no-ops
    fcntl = None  # type: ignore[assignment]

#: How long a process waits for another one to finish creating a store.
STORE_LOCK_TIMEOUT_S = 300.0
_POLL_S = 0.05


class LockTimeout(OperationFailed):
    """A lock stayed held by another process for longer than the caller would wait."""


def lock_path(store: Path) -> Path:
    """The lock file that guards ``store``: a hidden file beside it."""
    store = Path(store)
    return store.parent / f".{store.name}.lock"


def _describe(path: Path) -> str:
    return f"{path}: {_cause(path)}"


def _cause(path: Path, err: int | None = None) -> str:
    """``read-only file system`` or ``permission denied`` for a path that cannot be written."""
    if err == errno.EROFS:
        return "read-only file system"
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "permission denied"


class FileLock:
    """An exclusive (or shared) ``flock`` on ``path``, created when missing.

    >>> import tempfile, pathlib
    >>> lock = FileLock(pathlib.Path(tempfile.mkdtemp()) / "x.lock")
    >>> with lock:
    ...     lock.held
    True
    >>> lock.held
    False
    """

    # Locks this process holds, by path: flock conflicts between two open files of one process,
    # so a nested acquire of the same path only counts.
    _held: dict[str, int] = {}
    _guard = threading.Lock()

    def __init__(self, path: Path, *, what: str | None = None) -> None:
        self.path = Path(path)
        self.what = what or str(self.path)
        self._fd: int | None = None
        self._nested = False

    @property
    def held(self) -> bool:
        return self._fd is not None or self._nested

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and self.path.exists():
                try:  # an existing lock file that is not ours to write still locks (flock needs no write access)
                    return os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                except OSError:
                    pass
            raise

    def acquire(self, *, timeout: float | None = None, shared: bool = False) -> None:
        """Wait for the lock (forever with ``timeout=None``; not at all with ``timeout=0``).

        Raises :class:`LockTimeout` naming the holder when the wait runs out, and lets
        ``OSError`` through when the lock file cannot be created.
        """
        key = str(self.path.resolve())
        with self._guard:
            if self._held.get(key):
                self._held[key] += 1
                self._nested = True
                return
        if fcntl is None:  # pragma: no cover
            self._nested = True
            return
        fd = self._open()
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, mode | (fcntl.LOCK_NB if deadline is not None else 0))
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        holder = self.holder()
                        who = f"by {holder}" if holder else "by another process"
                        waited = f" (waited {timeout:g} s)" if timeout else ""
                        raise LockTimeout(f"{self.what} is locked {who}{waited}",
                                          hint=f"wait for it to finish and retry; the lock file is {self.path}",
                                          details={"lock": str(self.path), "holder": holder}) from None
                    time.sleep(_POLL_S)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        with self._guard:
            self._held[key] = 1
        if not shared:
            self._write_holder(fd)

    def release(self) -> None:
        key = str(self.path.resolve())
        with self._guard:
            if self._nested:
                self._nested = False
                if key in self._held:
                    self._held[key] -= 1
                return
            self._held.pop(key, None)
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # closing the file drops the flock

    @staticmethod
    def _write_holder(fd: int) -> None:
        text = f"pid {os.getpid()}: {' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))}"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text[:500].encode("utf-8", "replace") + b"\n", 0)
        except OSError:  # opened read-only: the lock holds, unnamed
            pass

    def holder(self) -> str | None:
        """Who holds the lock, as its holder wrote it (``pid 123: mlctl train``), if anyone did."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        return text or None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def store_lock(store: Path, *, required: bool = True, timeout: float | None = STORE_LOCK_TIMEOUT_S,
               what: str | None = None, shared: bool = False) -> Iterator[bool]:
    """Hold the exclusive lock that serialises creating (or migrating) ``store``.

    The store's folder is created when missing. Yields True while the lock is held. A lock file
    that cannot be created raises :class:`~mlctl.core.errors.StateError` naming the folder and
    the cause, unless ``required`` is False (a reader that creates nothing): then it yields False
    and the caller goes on unlocked. ``shared``: many holders at once, none while someone holds it
    exclusively (to look at a store that may be being created, then create it exclusively).
    """
    store = Path(store)
    lock = FileLock(lock_path(store), what=what or f"{store} (being created by another process)")
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=timeout, shared=shared)
    except OSError as exc:
        if not required:
            yield False
            return
        raise StateError(f"cannot write to {store.parent}: {_cause(store.parent, exc.errno)}",
                         hint=f"mlctl keeps {store.name} there; make the folder writable by this user") from exc
    try:
        yield True
    finally:
        lock.release()


def _can_write(path: Path) -> bool:
    """Whether this process may write ``path`` (a seam for tests that simulate a read-only store)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, os.W_OK, effective_ids=True)
    return os.access(path, os.W_OK)  # pragma: no cover


def check_writable(path: Path, *, what: str = "store", database: bool = True) -> None:
    """Raise :class:`~mlctl.core.errors.StateError` when ``path`` cannot be written or created.

    The message names the file (or folder) and the cause, e.g. ``cannot write to the state store
    /p/.mlctl/state.db: permission denied``. A ``database`` (SQLite) also needs its folder
    writable, for its journal files. A path that does not exist yet needs its nearest existing
    folder writable.
    """
    path = Path(path)
    hint = "make .mlctl/ and the files in it writable by this user (chmod u+w), or work in a writable copy"
    if path.exists():
        if not _can_write(path):
            raise StateError(f"cannot write to the {what} {path}: {_cause(path)}", hint=hint)
        folder = path.parent
        if database and not _can_write(folder):
            raise StateError(f"cannot write to the {what} {path}: its folder {folder} is not writable "
                             f"({_cause(folder)})", hint=hint)
        return
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not _can_write(folder):
        raise StateError(f"cannot create the {what} {path}: {_describe(folder)}", hint=hint)
