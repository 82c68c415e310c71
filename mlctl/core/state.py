"""The project's state store: one SQLite file under ``.mlctl/``.

It holds runs, releases, deployments and alerts (with the detect loop's alert outbox). The
schema is versioned with ``PRAGMA user_version`` and moved forward by :data:`MIGRATIONS`; a file from a newer
mlctl, or one that is not a database, raises :class:`StateError` and is never touched.
WAL mode and a busy timeout make concurrent CLI invocations safe: every write is one
``BEGIN IMMEDIATE`` transaction, retried while another process holds the lock; creating and
migrating the file happens under an inter-process lock (:func:`mlctl.core.locks.store_lock`).

Commands that only read open the store with ``readonly=True``: an SQLite ``mode=ro`` connection
that never writes, never migrates (a file with an older schema is refused with a clear error) and
works on a read-only file or folder.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlctl.core.errors import StateError
from mlctl.core.locks import check_writable, store_lock

STATE_FILE = "state.db"
_SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 30.0

#: Forward migrations: MIGRATIONS[i] moves the schema from version i to i + 1.
MIGRATIONS: list[Sequence[str]] = [
    (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT,
            status TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            params TEXT NOT NULL DEFAULT '{}',
            metrics TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE releases (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            target TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            previous_id INTEGER REFERENCES releases(id),
            details TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE deployments (
            name TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            target TEXT NOT NULL,
            status TEXT NOT NULL,
            url TEXT,
            updated_at TEXT NOT NULL,
            spec TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            fingerprint TEXT NOT NULL,
            source TEXT NOT NULL,
            severity TEXT NOT NULL,
            status TEXT NOT NULL,
            summary TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            started_at TEXT NOT NULL,
            resolved_at TEXT
        )""",
        "CREATE INDEX alerts_fingerprint ON alerts(fingerprint, status)",
        "CREATE INDEX releases_model ON releases(model, id)",
    ),
    (  # 2: releases belong to a named deployment and carry its revision number
        "ALTER TABLE releases ADD COLUMN deployment TEXT",
        "ALTER TABLE releases ADD COLUMN revision INTEGER",
        "UPDATE releases SET deployment = model, revision = id WHERE deployment IS NULL",
        "CREATE INDEX releases_deployment ON releases(deployment, revision)",
    ),
    (  # 3: alert state for the detect loop (series, dedup, resolution) and the durable alert outbox
        "ALTER TABLE alerts ADD COLUMN series TEXT",
        "ALTER TABLE alerts ADD COLUMN annotations TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE alerts ADD COLUMN last_anomaly_ts REAL",
        "ALTER TABLE alerts ADD COLUMN normal_count INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE alerts ADD COLUMN last_sent_ts REAL",
        "CREATE INDEX alerts_source_status ON alerts(source, status)",
        """CREATE TABLE alert_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            source TEXT NOT NULL,
            sink TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        )""",
        "CREATE INDEX alert_outbox_pending ON alert_outbox(source, status, sink, id)",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)
#: The tables ``counts()`` reports (what ``mlctl status`` shows).
TABLES = ("runs", "releases", "deployments", "alerts")
#: Internal tables, readable and writable through the same methods but not counted.
INTERNAL_TABLES = ("alert_outbox",)
_JSON_COLUMNS = {"params", "metrics", "details", "spec", "labels", "annotations", "payload"}


def utcnow() -> str:
    """An ISO-8601 UTC timestamp with microseconds, sortable as text."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class StateStore:
    """Access to one project's state database.

    >>> import tempfile, pathlib
    >>> store = StateStore(pathlib.Path(tempfile.mkdtemp()) / "state.db")
    >>> _ = store.insert("runs", {"id": "r1", "kind": "train", "status": "ok", "started_at": utcnow()})
    >>> store.counts()["runs"]
    1
    """

    def __init__(self, path: Path, *, create: bool = True, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._create = create and not readonly
        self._conn: sqlite3.Connection | None = None

    # -- opening ---------------------------------------------------------------------------------
    def _check_file(self) -> None:
        if not self.path.exists():
            return
        try:
            with self.path.open("rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc.strerror}") from exc
        if head and head != _SQLITE_MAGIC:
            raise StateError(
                f"state file {self.path} is corrupt (not an SQLite database)",
                hint="mlctl left it untouched; move it aside to start a fresh state, or restore a backup",
            )

    def connect(self) -> sqlite3.Connection:
        """Open (and on first use create and migrate) the database; ``readonly``: open it as it is."""
        if self._conn is not None:
            return self._conn
        self._check_file()
        if not self.path.exists() and not self._create:
            raise StateError(f"no state file at {self.path}")
        if self.readonly:
            return self._connect_readonly()
        if not self.path.exists():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"cannot create {self.path.parent}: {exc.strerror}", hint="check the folder's permissions"
                ) from exc
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn = conn
            if self._version(conn) != SCHEMA_VERSION:
                # Creating or migrating: one process at a time (the others wait, then find it done).
                with store_lock(self.path, what=f"state file {self.path} (being migrated by another process)"):
                    self._setup(conn)
            else:
                self._setup(conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            if _is_readonly_error(exc):
                check_writable(self.path, what="state file")
                raise StateError(f"cannot write to the state file {self.path}: {exc}",
                                 hint="check the file and folder permissions") from exc
            raise StateError(
                f"state file {self.path} is corrupt: {exc}",
                hint="mlctl left it untouched; move it aside to start a fresh state, or restore a backup",
            ) from exc
        except BaseException:
            self.close()
            raise
        return conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._migrate(conn)

    def _connect_readonly(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection; no write, no migration, whatever the file's permissions."""
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            try:
                conn = self._open_uri(uri)
            except sqlite3.OperationalError as exc:
                # A WAL database whose folder we cannot write: SQLite cannot create the shared-memory
                # file a reader needs. With no write-ahead log on disk no one is writing it, so
                # the file alone is the whole database: open it as immutable.
                wal = Path(f"{self.path}-wal")
                if not _is_readonly_error(exc) or (wal.exists() and wal.stat().st_size > 0):
                    raise
                conn = self._open_uri(uri + "&immutable=1")
            self._conn = conn
            version = self._version(conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            if _is_readonly_error(exc):
                raise StateError(f"cannot read state file {self.path}: {exc}",
                                 hint="check the file and folder permissions") from exc
            raise StateError(
                f"state file {self.path} is corrupt: {exc}",
                hint="mlctl left it untouched; move it aside to start a fresh state, or restore a backup",
            ) from exc
        if version != SCHEMA_VERSION:
            self.close()
            if version > SCHEMA_VERSION:
                self._refuse_newer(version)
            raise StateError(
                f"state file {self.path} has schema version {version}, older than this mlctl's "
                f"({SCHEMA_VERSION}); it was opened read-only, so it was not migrated",
                hint="the next command that records state (mlctl train, mlctl deploy) migrates it",
            )
        return conn

    def _open_uri(self, uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA query_only = ON")
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the file for real
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> StateStore:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _retry(fn: Any, attempts: int = 50) -> Any:
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(min(0.01 * (i + 1), 0.2))
        return None  # pragma: no cover

    def _version(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _refuse_newer(self, version: int) -> None:
        raise StateError(
            f"state file {self.path} has schema version {version}, newer than this mlctl "
            f"understands ({SCHEMA_VERSION})",
            hint="upgrade mlctl (pip install -U mlctl); the file was left untouched",
        )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = self._version(conn)
        if version > SCHEMA_VERSION:
            self._refuse_newer(version)
        if version == SCHEMA_VERSION:
            return
        with self.transaction() as tx:
            version = self._version(tx)  # another process may have migrated meanwhile
            for target in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[target]:
                    tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def schema_version(self) -> int:
        return self._version(self.connect())

    # -- writing ---------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), retried while the database is locked."""
        if self.readonly:
            raise StateError(f"state file {self.path} was opened read-only; this change needs a writable store")
        conn = self._conn if self._conn is not None else self.connect()
        try:
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        except sqlite3.OperationalError as exc:
            self._raise_unwritable(exc)
            raise
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                self._raise_unwritable(exc)
            raise
        else:
            try:
                self._retry(lambda: conn.execute("COMMIT"))
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._raise_unwritable(exc)
                raise

    def _raise_unwritable(self, exc: sqlite3.OperationalError) -> None:
        """One line naming the file and the cause for a store that turned out not to be writable."""
        if _is_readonly_error(exc):
            check_writable(self.path, what="state file")
            raise StateError(f"cannot write to the state file {self.path}: {exc}",
                             hint="check the file and folder permissions") from exc

    @staticmethod
    def encode_row(row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: json.dumps(v, sort_keys=True) if k in _JSON_COLUMNS and not isinstance(v, str) else v
            for k, v in row.items()
        }

    @staticmethod
    def _decode(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for k in _JSON_COLUMNS & out.keys():
            if isinstance(out[k], str):
                out[k] = json.loads(out[k])
        return out

    def _check_table(self, table: str) -> None:
        if table not in TABLES and table not in INTERNAL_TABLES:
            raise ValueError(f"unknown state table {table!r}")

    def insert(self, table: str, row: Mapping[str, Any], *, replace: bool = False) -> int:
        """Insert one row (``replace`` upserts on the primary key); returns its rowid."""
        self._check_table(table)
        data = self.encode_row(row)
        cols = ", ".join(data)
        marks = ", ".join(f":{k}" for k in data)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self.transaction() as tx:
            cur = tx.execute(f"{verb} INTO {table} ({cols}) VALUES ({marks})", data)
            return int(cur.lastrowid or 0)

    def update(self, table: str, where: Mapping[str, Any], values: Mapping[str, Any]) -> int:
        """Update matching rows; returns how many changed."""
        self._check_table(table)
        data = self.encode_row(values)
        sets = ", ".join(f"{k} = :v_{k}" for k in data)
        conds = " AND ".join(f"{k} = :w_{k}" for k in where) or "1"
        params = {f"v_{k}": v for k, v in data.items()} | {f"w_{k}": v for k, v in where.items()}
        with self.transaction() as tx:
            return tx.execute(f"UPDATE {table} SET {sets} WHERE {conds}", params).rowcount

    # -- reading ---------------------------------------------------------------------------------
    def select(
        self,
        table: str,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str = "rowid",
        limit: int | None = None,
        descending: bool = False,
    ) -> list[dict[str, Any]]:
        """Rows of a table matching ``where`` (equality on each column)."""
        self._check_table(table)
        where = where or {}
        conds = " AND ".join(f"{k} = :{k}" for k in where) or "1"
        direction = "DESC" if descending else "ASC"
        sql = f"SELECT * FROM {table} WHERE {conds} ORDER BY {order_by} {direction}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [self._decode(r) for r in self.connect().execute(sql, dict(where))]

    def counts(self) -> dict[str, int]:
        """Row count of every table."""
        conn = self.connect()
        return {t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in TABLES}


def read_counts(path: Path) -> dict[str, int] | None:
    """Counts for ``mlctl status``, or None when the project has no state yet (nothing is created)."""
    if not path.exists():
        return None
    with StateStore(path, readonly=True) as store:
        return store.counts()


def _is_readonly_error(exc: BaseException) -> bool:
    """An SQLite error that means "this file or its folder cannot be written" (or opened)."""
    text = str(exc).lower()
    return any(s in text for s in ("readonly database", "read-only", "unable to open database"))
