from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlctl.core import state as st
from mlctl.core.errors import StateError
from mlctl.core.state import StateStore, read_counts, utcnow


def run_row(i: int) -> dict[str, object]:
    return {"id": f"r{i}", "kind": "train", "status": "ok", "started_at": utcnow(), "params": {"i": i}}


def test_creates_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / ".mlctl" / "state.db"
    with StateStore(path) as store:
        assert store.schema_version == st.SCHEMA_VERSION
        assert store.counts() == {"runs": 0, "releases": 0, "deployments": 0, "alerts": 0}
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_insert_select_update_roundtrip(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    store.insert("runs", run_row(1))
    store.insert("runs", run_row(2))
    rows = store.select("runs", order_by="id")
    assert [r["id"] for r in rows] == ["r1", "r2"]
    assert rows[0]["params"] == {"i": 1} and rows[0]["metrics"] == {}
    assert store.update("runs", {"id": "r1"}, {"status": "failed", "metrics": {"f1": 0.5}}) == 1
    (r1,) = store.select("runs", {"id": "r1"})
    assert r1["status"] == "failed" and r1["metrics"] == {"f1": 0.5}
    assert [r["id"] for r in store.select("runs", descending=True, limit=1)] == ["r2"]
    store.insert(
        "deployments",
        {"name": "m", "model": "m", "version": "1", "target": "local", "status": "up", "updated_at": utcnow()},
    )
    store.insert(
        "deployments",
        {"name": "m", "model": "m", "version": "2", "target": "local", "status": "up", "updated_at": utcnow()},
        replace=True,
    )
    assert [d["version"] for d in store.select("deployments")] == ["2"]
    with pytest.raises(ValueError):
        store.select("nope")
    store.close()


def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.db")
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.execute("INSERT INTO runs (id, kind, status, started_at) VALUES ('x', 'k', 's', 't')")
        raise RuntimeError("boom")
    assert store.counts()["runs"] == 0
    with pytest.raises(sqlite3.IntegrityError):
        store.insert("runs", {"id": "x"})
    assert store.counts()["runs"] == 0


def test_read_counts_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / ".mlctl" / "state.db"
    assert read_counts(path) is None
    assert not path.parent.exists()
    StateStore(path).insert("runs", run_row(1))
    assert read_counts(path) == {"runs": 1, "releases": 0, "deployments": 0, "alerts": 0}


def test_corrupt_file_is_reported_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    garbage = b"this is not a database at all" * 100
    path.write_bytes(garbage)
    with pytest.raises(StateError, match="corrupt") as info:
        StateStore(path).connect()
    assert "left it untouched" in (info.value.hint or "")
    assert path.read_bytes() == garbage


def test_damaged_database_pages(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore(path)
    for i in range(50):
        store.insert("runs", run_row(i))
    store.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wreck the schema page, keep the magic header
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match="corrupt"):
        StateStore(path).counts()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path).close()
    StateStore(path).connect().execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="schema version 99, newer") as info:
        StateStore(path).connect()
    assert "upgrade mlctl" in (info.value.hint or "")


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state file"):
        StateStore(tmp_path / "absent.db", create=False).connect()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(StateError):
        StateStore(ro / "sub" / "state.db").connect()


def test_unwritable_parent_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="cannot create"):
        StateStore(blocker / "state.db").connect()


def test_concurrent_processes_lose_nothing(tmp_path: Path) -> None:
    """Several processes write at once (and race to create the schema); every row lands."""
    path = tmp_path / ".mlctl" / "state.db"
    worker = textwrap.dedent(
        f"""
        import sys
        from mlctl.core.state import StateStore, utcnow
        w = int(sys.argv[1])
        store = StateStore(__import__("pathlib").Path({str(path)!r}))
        for i in range(150):
            store.insert("runs", {{"id": f"w{{w}}-{{i}}", "kind": "t", "status": "ok", "started_at": utcnow()}})
            store.insert("alerts", {{"fingerprint": f"{{w}}", "source": "t", "severity": "info",
                                     "status": "firing", "summary": "s", "started_at": utcnow()}})
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", worker, str(w)]) for w in range(5)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 5
    with StateStore(path) as store:
        counts = store.counts()
        ids = {r["id"] for r in store.select("runs")}
    assert counts["runs"] == 750 and counts["alerts"] == 750
    assert ids == {f"w{w}-{i}" for w in range(5) for i in range(150)}


def test_migrates_a_version_1_file_forward(tmp_path: Path) -> None:
    """A store written by schema 1 gains the release columns and keeps its rows."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    for statement in st.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO releases (model, version, target, status, created_at) VALUES ('m', '1', 'local', 'active', 't')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with StateStore(path) as store:
        assert store.schema_version == st.SCHEMA_VERSION
        (row,) = store.select("releases")
    assert row["model"] == "m" and row["deployment"] == "m" and row["revision"] == 1


def test_migrates_a_version_2_file_forward(tmp_path: Path) -> None:
    """A store written by schema 2 gains the alert state columns and the outbox, and keeps its alerts."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    for statements in st.MIGRATIONS[:2]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(
        "INSERT INTO alerts (fingerprint, source, severity, status, summary, labels, started_at) "
        "VALUES ('f', 'detect', 'warning', 'firing', 's', '{\"a\": \"1\"}', 't')"
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with StateStore(path) as store:
        assert store.schema_version == st.SCHEMA_VERSION == 3
        (row,) = store.select("alerts")
        assert row["labels"] == {"a": "1"} and row["annotations"] == {} and row["normal_count"] == 0
        assert row["series"] is None and row["last_sent_ts"] is None
        store.insert(
            "alert_outbox",
            {
                "source": "detect",
                "sink": "am",
                "fingerprint": "f",
                "kind": "firing",
                "payload": {"labels": {"a": "1"}},
                "created_at": utcnow(),
            },
        )
        (queued,) = store.select("alert_outbox")
        assert queued["payload"] == {"labels": {"a": "1"}} and queued["status"] == "pending"
        assert queued["attempts"] == 0
        assert set(store.counts()) == {"runs", "releases", "deployments", "alerts"}  # the outbox is internal


def _old_file(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    for statements in st.MIGRATIONS[:version]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


def test_readonly_open_reads_and_never_writes(tmp_path: Path) -> None:
    folder = tmp_path / ".mlctl"
    path = folder / "state.db"
    with StateStore(path) as store:
        store.insert("runs", run_row(1))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with StateStore(path, readonly=True) as store:
        assert store.counts()["runs"] == 1
        assert [r["id"] for r in store.select("runs")] == ["r1"]
        with pytest.raises(StateError, match="opened read-only"):
            store.insert("runs", run_row(2))
        with pytest.raises(StateError, match="opened read-only"):
            store.update("runs", {"id": "r1"}, {"status": "failed"})
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before
    assert read_counts(path) == {"runs": 1, "releases": 0, "deployments": 0, "alerts": 0}


def test_readonly_open_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no state file"):
        StateStore(tmp_path / ".mlctl" / "state.db", readonly=True).connect()
    assert not (tmp_path / ".mlctl").exists()


def test_readonly_open_never_migrates(tmp_path: Path) -> None:
    """An older schema is refused with a clear error and left as it is; a newer one as before."""
    path = tmp_path / "state.db"
    _old_file(path, 2)
    with pytest.raises(StateError, match="schema version 2, older than this mlctl's .3.; it was opened read-only, "
                                         "so it was not migrated") as info:
        StateStore(path, readonly=True).connect()
    assert "migrates it" in (info.value.hint or "")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
    assert not (tmp_path / ".state.db.lock").exists()
    sqlite3.connect(path).execute("PRAGMA user_version = 99").connection.commit()
    with pytest.raises(StateError, match="schema version 99, newer"):
        StateStore(path, readonly=True).connect()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(StateError, match="corrupt"):
        StateStore(garbage, readonly=True).connect()


def test_migration_happens_under_the_store_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlctl.core.locks import FileLock, lock_path

    path = tmp_path / "state.db"
    _old_file(path, 1)
    held: list[bool] = []
    real = StateStore._migrate

    def spy(self: StateStore, conn: sqlite3.Connection) -> None:
        held.append(str(lock_path(path).resolve()) in FileLock._held)
        real(self, conn)

    monkeypatch.setattr(StateStore, "_migrate", spy)
    with StateStore(path) as store:
        assert store.schema_version == st.SCHEMA_VERSION
    assert held == [True]
    with StateStore(path):  # up to date: no lock needed
        pass
    assert held == [True, False]


def test_a_store_that_refuses_writes_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite says "attempt to write a readonly database"; mlctl names the file and the cause."""
    path = tmp_path / "state.db"
    store = StateStore(path)
    store.connect().execute("PRAGMA query_only = ON")  # what a read-only file looks like to SQLite
    with pytest.raises(StateError, match=f"cannot write to the state file {path}: attempt to write a readonly"):
        store.insert("runs", run_row(1))
    from mlctl.core import locks

    monkeypatch.setattr(locks, "_can_write", lambda p: False)  # and as a user without the permission
    with pytest.raises(StateError) as info:
        store.insert("runs", run_row(1))
    assert info.value.message == f"cannot write to the state file {path}: permission denied"
    store.close()


def test_a_read_only_store_for_real(tmp_path: Path) -> None:
    """chmod 555 .mlctl; chmod 444 state.db: reading works (no "attempt to write a readonly
    database"), writing is one clear error, as a user who cannot override permissions."""
    from tests.support.readonly import make_read_only, make_writable, unprivileged

    prefix = unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    folder = tmp_path / ".mlctl"
    path = folder / "state.db"
    with StateStore(path) as store:
        store.insert("runs", run_row(1))
    make_read_only(folder)
    code = textwrap.dedent(f"""
        from pathlib import Path
        from mlctl.core.errors import StateError
        from mlctl.core.state import StateStore, read_counts
        path = Path({str(path)!r})
        print(read_counts(path)["runs"])
        with StateStore(path, readonly=True) as store:
            print(store.select("runs")[0]["id"])
        try:
            StateStore(path).insert("runs", {{"id": "r2", "kind": "t", "status": "ok", "started_at": "t"}})
        except StateError as exc:
            print(exc.message)
    """)
    try:
        r = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        make_writable(folder)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["1", "r1"]
    assert r.stdout.splitlines()[2] in (f"cannot write to the state file {path}: permission denied",
                                        f"cannot write to the state file {path}: its folder {folder} is not "
                                        "writable (permission denied)")
