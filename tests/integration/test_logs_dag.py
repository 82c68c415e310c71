"""The retraining DAG loads in Apache Airflow and runs with Airflow's own test runner (``dag.test()``).

Airflow lives in its own virtual environment (its pins clash with the serving stack); ``make test``
creates it and sets ``MLCTL_TEST_AIRFLOW_PYTHON``. The DAG's tasks run this mlctl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlctl.core.config import load_config
from mlctl.logs.classify import META_FILE
from mlctl.logs.dag import dag_spec, write_dag
from mlctl.logs.pipeline import LogPipeline, build_router
from mlctl.logs.record import LogRecord
from tests.support.logs import FORMAT, lines

REPO = Path(__file__).resolve().parents[2]
RUNNER = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
if bag.import_errors:
    print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}))
    sys.exit(3)
dag = bag.get_dag(sys.argv[2])
run = dag.test()
states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
print(json.dumps({"state": str(run.state), "tasks": states}))
"""


def _airflow_python() -> str:
    configured = os.environ.get("MLCTL_TEST_AIRFLOW_PYTHON")
    if configured:
        assert Path(configured).is_file(), f"MLCTL_TEST_AIRFLOW_PYTHON={configured} does not exist"
        return configured
    default = REPO / ".venv-airflow" / "bin" / "python"
    if not default.is_file():
        pytest.skip("Apache Airflow's environment is missing: `make test` creates .venv-airflow")
    return str(default)


def test_retrain_dag_runs_in_airflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = _airflow_python()
    project = tmp_path / "proj"
    project.mkdir()
    (project / "mlctl.yaml").write_text(f"project:\n  name: logs-demo\nlogs:\n  log_format: '{FORMAT}'\n"
                                        "  registered_model: logs-clf\n")  # fmt: skip
    monkeypatch.chdir(project)
    loaded = load_config()
    pipe = LogPipeline(loaded)
    records = pipe.process([LogRecord(i, text, source="app.log") for i, text in enumerate(lines(600), 1)])
    router = build_router(loaded)
    router.write(records)
    router.close()

    spec = dag_spec(loaded, dag_id="logs_retrain_test", schedule=None, since="3650d",
                    mlctl=str(Path(sys.executable).parent / "mlctl"))  # fmt: skip
    dag_file = write_dag(spec, tmp_path / "dags" / "retrain.py")
    home = tmp_path / "airflow"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent), "NO_COLOR": "1"}  # fmt: skip
    airflow = str(Path(python).parent / "airflow")
    migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
    proc = subprocess.run([python, "-c", RUNNER, str(dag_file.parent), spec.dag_id], env=env, cwd=project,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["state"] == "success", result
    assert result["tasks"] == {"pull": "success", "train": "success", "evaluate": "success", "better": "success",
                               "register": "success", "publish": "success"}  # fmt: skip
    # the published classifier is the project's now, and the registry holds version 1
    meta = json.loads((project / ".mlctl" / "logs" / "model" / META_FILE).read_text())
    assert set(meta["classes"]) >= {"normal", "security", "resource", "network"}
    (workdir,) = (project / ".mlctl" / "logs" / "retrain").iterdir()
    assert json.loads((workdir / "registered.json").read_text())["version"] == "1"
