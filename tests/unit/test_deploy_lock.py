"""The per-deployment lock: one change at a time, the loser told who holds it, freed by the kernel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mlctl.core.errors import OperationFailed, exit_code_for
from mlctl.lifecycle.deploy.lock import LOCK_FILE, DeploymentBusy, deployment_lock, holder, lock_folder

HOLD = """\
import sys
from pathlib import Path
from mlctl.lifecycle.deploy.lock import deployment_lock
with deployment_lock(Path(sys.argv[1]), "churn", "rollback"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def hold_in_another_process(folder: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_the_lock_lives_in_the_deployment_folder(tmp_path: Path) -> None:
    assert lock_folder(tmp_path / ".mlctl", "churn") == tmp_path / ".mlctl" / "deploy" / "churn"


def test_another_process_is_refused_with_the_holder_named(tmp_path: Path) -> None:
    proc = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(DeploymentBusy) as exc, deployment_lock(tmp_path, "churn", "deploy"):
            pytest.fail("entered a lock another process holds")
        error = exc.value
        assert isinstance(error, OperationFailed) and exit_code_for(error) == 1
        assert error.message.startswith(f"deployment churn is busy: pid {proc.pid} (`")
        assert "holds its lock for a rollback since " in error.message
        assert error.details["holder"]["pid"] == proc.pid and error.details["holder"]["operation"] == "rollback"
        assert "-c" in error.details["holder"]["command"]
        assert error.hint and "wait for it to finish" in error.hint
        assert holder(tmp_path)["pid"] == proc.pid
    finally:
        proc.communicate("", timeout=30)
    assert holder(tmp_path) is None
    assert (tmp_path / LOCK_FILE).read_text() == ""  # the holder line is cleared before the lock is let go
    with deployment_lock(tmp_path, "churn", "deploy"):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    proc = hold_in_another_process(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert holder(tmp_path) is None
    with deployment_lock(tmp_path, "churn", "deploy"):  # its stale line does not matter
        assert holder(tmp_path)["pid"] == os.getpid()


def test_re_entrant_in_a_thread_exclusive_between_threads(tmp_path: Path) -> None:
    seen: list[BaseException | None] = []

    def other() -> None:
        try:
            with deployment_lock(tmp_path, "churn", "stop"):
                seen.append(None)
        except DeploymentBusy as exc:
            seen.append(exc)

    with deployment_lock(tmp_path, "churn", "deploy"), deployment_lock(tmp_path, "churn", "deploy"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert holder(tmp_path)["operation"] == "deploy"  # still held after the inner block
    assert isinstance(seen[0], DeploymentBusy) and f"pid {os.getpid()}" in seen[0].message
    other()
    assert seen[1] is None


def test_the_holder_is_named_from_proc_locks_before_it_wrote_its_line(tmp_path: Path) -> None:
    import fcntl

    from mlctl.lifecycle.deploy import lock

    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / LOCK_FILE, "w") as fh:  # a holder that has not written its JSON line yet
        fcntl.flock(fh, fcntl.LOCK_EX)
        t0 = lock._HOLDER_WAIT_S
        lock._HOLDER_WAIT_S = 0.05
        try:
            result: list[DeploymentBusy] = []

            def other() -> None:
                try:
                    with deployment_lock(tmp_path, "churn", "deploy"):
                        pass
                except DeploymentBusy as exc:
                    result.append(exc)

            t = threading.Thread(target=other)
            t.start()
            t.join()
        finally:
            lock._HOLDER_WAIT_S = t0
    assert result and result[0].details["holder"]["pid"] == os.getpid()
