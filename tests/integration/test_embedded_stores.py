"""The embedded stores (MLflow SQLite, Optuna SQLite, state.db) under concurrent first use and
read-only, with the real CLI in separate processes.

* Four ``mlctl train`` started at once in a fresh project: the first creates each store, the
  others wait for it (mlctl.core.locks.store_lock); every run is recorded, no migration is left
  half-done.
* A read-only ``.mlctl`` (``chmod 555``, files ``444``), enforced even under root by dropping
  CAP_DAC_OVERRIDE (tests/support/readonly.py): ``train`` is one line naming the file and the
  cause, exit 1, with nothing from MLflow on stderr; read-only commands still work.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.commands.test_train_cmd import make_project
from tests.support.readonly import make_read_only, make_writable, unprivileged

pytestmark = pytest.mark.slow


def mlctl(*args: str, cwd: Path, prefix: list[str] | None = None) -> subprocess.Popen[str]:
    """The CLI in its own process (``prefix``: e.g. without the power to override file modes)."""
    return subprocess.Popen([*(prefix or []), sys.executable, "-m", "mlctl", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def one_json_error(stderr: str) -> dict:
    """stderr holds exactly one JSON document: the error."""
    assert len(stderr.strip().splitlines()) == 1, stderr
    error = json.loads(stderr)["error"]
    assert error["type"] != "MlctlError", error  # an unexpected error
    return error


@pytest.mark.timeout(900)  # four trainings on two busy cores: about 150 s under stress-ng --cpu 2
def test_concurrent_first_trainings_in_a_fresh_project(isolated_env: Path) -> None:
    root = make_project(isolated_env / "fresh", None)  # no .mlctl at all: every store is created now
    args = [("train", "-o", "json"), ("train", "-o", "json"),
            ("train", "--tune", "2", "-o", "json"), ("train", "--tune", "2", "-o", "json")]
    procs = [mlctl(*a, cwd=root) for a in args]
    results = [finish(p) for p in procs]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], [err[-2000:] for _, _, err in results]
    run_ids = {json.loads(out)["run_id"] for _, out, _ in results}
    assert len(run_ids) == 4
    with sqlite3.connect(root / ".mlctl" / "mlflow.db") as conn:
        leftovers = conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '\\_alembic\\_tmp\\_%' ESCAPE '\\'")
        assert leftovers.fetchall() == []
        trained = conn.execute("SELECT run_uuid FROM tags WHERE key = 'mlctl.kind' AND value = 'train'").fetchall()
        assert {r[0] for r in trained} == run_ids
        # four trainings, two of them with two trials each (a trial may be pruned: KILLED)
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
        assert sum(statuses.values()) == 4 + 2 * 2 and set(statuses) <= {"FINISHED", "KILLED"}, statuses
    with sqlite3.connect(root / ".mlctl" / "state.db") as conn:
        assert {r[0] for r in conn.execute("SELECT id FROM runs WHERE status = 'ok'")} == run_ids
    with sqlite3.connect(root / ".mlctl" / "optuna.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM studies").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 4


@pytest.fixture
def read_only_project(isolated_env: Path):  # noqa: ANN201 - a trained project whose .mlctl is read-only
    prefix = unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    root = make_project(isolated_env / "ro", None)
    code, _, err = finish(mlctl("train", "--register", "demo", "-o", "json", cwd=root))
    assert code == 0, err
    make_read_only(root / ".mlctl")
    yield root, prefix
    make_writable(root / ".mlctl")


def test_train_on_a_read_only_store_is_one_line_naming_the_file(read_only_project: tuple[Path, list[str]]) -> None:
    root, prefix = read_only_project
    state = root / ".mlctl" / "state.db"
    code, out, err = finish(mlctl("train", "-o", "json", cwd=root, prefix=prefix))
    assert code == 1 and out == ""
    error = one_json_error(err)
    assert error["type"] == "StateError"
    assert error["message"] == f"cannot write to the state file {state}: permission denied"
    code, out, err = finish(mlctl("train", "--tune", "2", cwd=root, prefix=prefix))
    assert code == 1 and "Traceback" not in err and "mlflow" not in err.lower()
    assert err.splitlines()[0] == f"Error: cannot write to the state file {state}: permission denied"
    # only the MLflow store read-only: the same, naming that file
    make_writable(root / ".mlctl")
    (root / ".mlctl" / "mlflow.db").chmod(0o444)
    code, out, err = finish(mlctl("train", "-o", "json", cwd=root, prefix=prefix))
    assert code == 1
    assert one_json_error(err)["message"] == (
        f"cannot write to the MLflow tracking store {root / '.mlctl' / 'mlflow.db'}: permission denied")
    make_read_only(root / ".mlctl")


def test_read_only_commands_work_on_a_read_only_store(read_only_project: tuple[Path, list[str]]) -> None:
    root, prefix = read_only_project
    code, out, err = finish(mlctl("models", "list", "-o", "json", cwd=root, prefix=prefix))
    assert code == 0 and err == "" and [m["name"] for m in json.loads(out)] == ["demo"]
    code, out, err = finish(mlctl("models", "show", "demo", "-o", "json", cwd=root, prefix=prefix))
    assert code == 0 and err == "" and json.loads(out)["name"] == "demo"
    code, out, err = finish(mlctl("models", "promote", "demo", "1", "-o", "json", cwd=root, prefix=prefix))
    assert code == 1 and one_json_error(err)["message"] == (
        f"cannot write to the MLflow tracking store {root / '.mlctl' / 'mlflow.db'}: permission denied")


def test_status_reads_a_read_only_state_file(read_only_project: tuple[Path, list[str]]) -> None:
    root, prefix = read_only_project
    code, out, err = finish(mlctl("status", "-o", "json", cwd=root, prefix=prefix))
    assert code == 0, err
    assert json.loads(out)["counts"]["runs"] == 1
