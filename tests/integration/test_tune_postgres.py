"""Optuna on PostgreSQL: two ``mlctl train --tune`` processes, started together, share one study."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlctl.engines import Service
from mlctl.lifecycle.tracking import sqlalchemy_url
from tests.commands.test_train_cmd import make_project, mlflow_db_template  # noqa: F401 - fixture
from tests.integration.conftest import create_database

pytestmark = pytest.mark.integration


def test_two_workers_share_one_study_on_postgres(postgres: Service, tmp_path: Path,
                                                 mlflow_db_template: Path) -> None:  # noqa: F811
    storage = create_database(postgres, "optuna")
    # Two projects with the same data (two machines, say), each with its own embedded MLflow store.
    roots = [make_project(tmp_path / f"worker{i}", mlflow_db_template, model="decision_tree", params={})
             for i in (1, 2)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCTL_") or k.startswith("MLCTL_TEST_")}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / ".config"))
    argv = [sys.executable, "-m", "mlctl", "train", "--tune", "5", "--tune-storage", storage, "-o", "json"]
    procs = [subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for root in roots]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=280)
        assert proc.returncode == 0, err
        results.append(json.loads(out)["tuning"])

    assert results[0]["study"] == results[1]["study"]
    assert [r["trials_run"] for r in results] == [5, 5]
    assert all(r["storage"].startswith("postgresql+psycopg://") for r in results)
    import optuna

    study = optuna.load_study(study_name=results[0]["study"], storage=sqlalchemy_url(storage))
    assert len(study.trials) == 10  # the counts add up: nothing lost, nothing doubled
    workers = [t.user_attrs["mlctl.worker"] for t in study.trials]
    pids = {w.rsplit(":", 1)[1] for w in workers}
    assert pids == {str(p.pid) for p in procs}  # both processes contributed
    assert sorted(workers.count(w) for w in set(workers)) == [5, 5]
    assert max(r["study_trials"] for r in results) == 10
