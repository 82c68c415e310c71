"""Inter-process store locks and the write check (mlctl.core.locks)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlctl.core import locks
from mlctl.core.errors import StateError
from mlctl.core.locks import FileLock, LockTimeout, check_writable, lock_path, store_lock
from tests.support.readonly import make_read_only, make_writable, unprivileged


def test_lock_file_is_hidden_beside_the_store(tmp_path: Path) -> None:
    assert lock_path(tmp_path / ".mlctl" / "mlflow.db") == tmp_path / ".mlctl" / ".mlflow.db.lock"


def test_store_lock_serialises_processes(tmp_path: Path) -> None:
    """Five processes each read-modify-write one file three times under the lock: nothing is lost,
    and no two critical sections overlap."""
    store = tmp_path / "new" / "store.db"  # the folder does not exist yet: the lock creates it
    counter = tmp_path / "counter"
    counter.write_text("0")
    worker = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from mlctl.core.locks import store_lock
        spans = []
        for _ in range(3):
            with store_lock(Path({str(store)!r})):
                start = time.monotonic()
                n = int(Path({str(counter)!r}).read_text())
                time.sleep(0.05)
                Path({str(counter)!r}).write_text(str(n + 1))
                spans.append((start, time.monotonic()))
        print(json.dumps(spans))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE, text=True) for _ in range(5)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 5
    assert counter.read_text() == "15"
    spans = sorted(s for out in outs for s in json.loads(out))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert lock_path(store).exists() and lock_path(store).read_text() == ""  # the holder is cleared on release


def test_a_held_lock_times_out_naming_its_holder_and_frees_when_the_holder_dies(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from mlctl.core.locks import FileLock
        FileLock(Path({str(path)!r})).acquire()
        print("held", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock = FileLock(path, what="deployment cc")
        started = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            lock.acquire(timeout=0.3)
        assert time.monotonic() - started < 5
        assert info.value.message.startswith(f"deployment cc is locked by pid {holder.pid}: ")
        assert info.value.exit_code == 1 and info.value.details["lock"] == str(path)
        with pytest.raises(LockTimeout):
            lock.acquire(timeout=0)  # non-blocking
        assert not lock.held
    finally:
        holder.kill()
        holder.wait(timeout=30)
    lock.acquire(timeout=5)  # the kernel dropped the dead holder's lock
    assert lock.held
    lock.release()


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    with store_lock(store, timeout=1) as outer, store_lock(store, timeout=1) as inner:
        assert outer and inner
    with store_lock(store, timeout=1):  # released: taken again at once
        pass


def test_a_lock_file_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match=f"cannot write to {blocker}"):
        with store_lock(blocker / "state.db"):
            pass
    with store_lock(blocker / "state.db", required=False) as locked:  # a reader goes on unlocked
        assert locked is False


def test_check_writable_names_the_file_and_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated (root may write anything): the real check is the test below and tests/integration."""
    ro = tmp_path / ".mlctl"
    ro.mkdir()
    db = ro / "state.db"
    db.write_text("")
    check_writable(db)  # writable: no error
    denied = {db}
    monkeypatch.setattr(locks, "_can_write", lambda p: Path(p) not in denied)
    with pytest.raises(StateError) as info:
        check_writable(db, what="state file")
    assert info.value.message == f"cannot write to the state file {db}: permission denied"
    assert "writable" in (info.value.hint or "")
    denied = {ro}
    with pytest.raises(StateError, match=f"its folder {ro} is not writable \\(permission denied\\)"):
        check_writable(db, what="state file")
    with pytest.raises(StateError, match=f"cannot create the Optuna study store {ro / 'optuna.db'}: {ro}: "
                                         "permission denied"):
        check_writable(ro / "optuna.db", what="Optuna study store")
    with pytest.raises(StateError, match="cannot create"):
        check_writable(ro / "a" / "b" / "c.db")  # the nearest existing folder decides


def test_check_writable_on_a_real_read_only_folder(tmp_path: Path) -> None:
    prefix = unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    ro = tmp_path / ".mlctl"
    ro.mkdir()
    (ro / "state.db").write_text("")
    make_read_only(ro)
    try:
        code = textwrap.dedent(f"""
            from pathlib import Path
            from mlctl.core.errors import StateError
            from mlctl.core.locks import check_writable, store_lock
            for p in ("state.db", "optuna.db"):
                try:
                    check_writable(Path({str(ro)!r}) / p, what="store")
                except StateError as exc:
                    print(exc.message)
            with store_lock(Path({str(ro)!r}) / "state.db", required=False) as locked:
                print("locked" if locked else "unlocked")
        """)
        r = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        make_writable(ro)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"cannot write to the store {ro / 'state.db'}: permission denied",
                                     f"cannot create the store {ro / 'optuna.db'}: {ro}: permission denied",
                                     "unlocked"]
