"""``mlctl train`` end to end on the embedded defaults (SQLite tracking, local artifacts)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mlctl.core.proc import free_port

TRAIN_KEYS = {"run_id", "experiment", "metrics", "params", "dataset", "gates", "registered", "artifact_sha256",
              "tuning"}


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised MLflow SQLite store, copied into each project (creating one costs seconds)."""
    from mlctl.lifecycle.tracking import quiet_mlflow

    quiet_mlflow()
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def write_data(path: Path, n: int = 240, seed: int = 0) -> None:
    """A learnable classification/regression table with a text column."""
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 3)
    df = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2],
                       "colour": np.array(["red", "green", "blue"])[rng.randint(0, 3, n)]})
    df["label"] = np.where(x[:, 0] + x[:, 1] > 1.0, "good", "bad")
    df["price"] = x[:, 0] * 10 + x[:, 2] * 3 + rng.rand(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def make_project(root: Path, template: Path | None, **train: Any) -> Path:
    """A project folder with data/train.csv, an mlctl.yaml train: section and (from ``template``) a
    ready embedded MLflow store."""
    root.mkdir(parents=True, exist_ok=True)
    write_data(root / "data" / "train.csv")
    spec = {"data": "data/train.csv", "target": "label", "features": ["x1", "x2", "x3", "colour"],
            "task": "classification", "model": "random_forest", "params": {"n_estimators": 10}} | train
    (root / "mlctl.yaml").write_text(yaml.safe_dump({"project": {"name": "demo"}, "train": spec}), encoding="utf-8")
    if template is not None:
        (root / ".mlctl").mkdir(exist_ok=True)
        shutil.copy(template, root / ".mlctl" / "mlflow.db")
    return root


@pytest.fixture
def proj(isolated_env: Path, mlflow_db_template: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(isolated_env / "proj", mlflow_db_template)
    monkeypatch.chdir(root)
    return root


def set_train(root: Path, **changes: Any) -> None:
    doc = yaml.safe_load((root / "mlctl.yaml").read_text())
    doc["train"].update(changes)
    (root / "mlctl.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")


def client(root: Path):  # noqa: ANN201
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / '.mlctl' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def state_runs(root: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(root / ".mlctl" / "state.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY rowid")]


def test_train_registers_logs_everything_and_records_state(cli, proj: Path) -> None:
    r = cli("train", "--register", "demo", "-o", "json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert set(out) == TRAIN_KEYS
    assert out["registered"] == {"name": "demo", "version": "1", "alias": "challenger"}
    assert set(out["metrics"]) == {"f1", "accuracy", "roc_auc"} and out["metrics"]["accuracy"] > 0.7
    assert out["params"]["n_estimators"] == 10 and out["params"]["model"] == "random_forest"
    assert out["tuning"] is None and out["gates"] == [] and out["experiment"] == "default"
    data = (proj / "data" / "train.csv").read_bytes()
    assert out["dataset"] == {"path": "data/train.csv", "format": "csv", "sha256": hashlib.sha256(data).hexdigest(),
                              "rows": 240, "columns": 6, "schema": out["dataset"]["schema"]}
    assert out["dataset"]["schema"]["x1"] == "float64"

    c = client(proj)
    run = c.get_run(out["run_id"])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["mlctl.artifact_sha256"] == out["artifact_sha256"]
    assert tags["mlctl.git_commit"] == "none" and tags["mlctl.dataset.sha256"] == out["dataset"]["sha256"]
    assert tags["mlctl.dataset.rows"] == "240" and tags["mlctl.env.python"] and tags["mlctl.env.scikit-learn"]
    assert run.data.params["n_estimators"] == "10" and run.data.params["max_depth"] == "None"
    assert run.data.metrics["accuracy"] == pytest.approx(out["metrics"]["accuracy"])
    artifacts = proj / ".mlctl" / "mlartifacts"
    model_file = next(artifacts.rglob("model/model.skops"))
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == out["artifact_sha256"]
    mlmodel = yaml.safe_load((model_file.parent / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    assert "input_example.json" in {p.name for p in model_file.parent.iterdir()}
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [(i["name"], i["type"]) for i in inputs] == [("x1", "double"), ("x2", "double"), ("x3", "double"),
                                                        ("colour", "string")]
    assert {p.name for p in artifacts.rglob("*.json")} >= {"dataset.json", "environment.json"}
    version = c.get_model_version("demo", "1")
    assert version.tags["mlctl.artifact_sha256"] == out["artifact_sha256"] and version.run_id == out["run_id"]

    rows = state_runs(proj)
    assert [(x["id"], x["kind"], x["name"], x["status"]) for x in rows] == [(out["run_id"], "train", "demo", "ok")]
    assert json.loads(rows[0]["metrics"])["accuracy"] == pytest.approx(out["metrics"]["accuracy"])
    status = json.loads(cli("status", "-o", "json").out)
    assert status["counts"]["runs"] == 1


def test_table_output_and_param_override(cli, proj: Path) -> None:
    r = cli("train", "--param", "n_estimators=3", "-p", "max_depth=2", "--experiment", "exp2")
    assert r.code == 0, r.err
    assert "metric accuracy" in r.out and "artifact sha256" in r.out
    run = client(proj).search_runs([client(proj).get_experiment_by_name("exp2").experiment_id])[0]
    assert run.data.params["n_estimators"] == "3" and run.data.params["max_depth"] == "2"
    assert not client(proj).search_registered_models()  # nothing registered without --register


def test_dry_run_prints_the_plan_and_changes_nothing(cli, proj: Path) -> None:
    before = (proj / ".mlctl" / "mlflow.db").read_bytes()
    r = cli("train", "--dry-run", "--tune", "5", "--param", "n_estimators=7", "--register", "demo", "-o", "json")
    assert r.code == 0, r.err
    plan = json.loads(r.out)
    assert plan["dry_run"] is True and plan["register"] == "demo"
    assert plan["spec"]["params"] == {"n_estimators": 7}
    assert plan["estimator"] == "sklearn.ensemble:RandomForestClassifier"
    assert plan["tuning"]["trials"] == 5 and "n_estimators" not in plan["tuning"]["search_space"]
    assert plan["tracking_uri"] == f"sqlite:///{proj / '.mlctl' / 'mlflow.db'}"
    assert any("challenger" in s for s in plan["steps"])
    assert (proj / ".mlctl" / "mlflow.db").read_bytes() == before
    assert not (proj / ".mlctl" / "state.db").exists()
    table = cli("train", "--dry-run")
    assert table.code == 0 and "nothing was run" in table.out and "step 1" in table.out


def test_failing_gate_exits_3_and_registers_nothing(cli, proj: Path) -> None:
    set_train(proj, gates={"min_accuracy": 0.99999, "max_log_loss": 100})
    r = cli("train", "--register", "demo", "-o", "json")
    assert r.code == 3 and r.out == ""
    err = json.loads(r.err)["error"]
    assert err["type"] == "CheckFailed" and "min_accuracy" in err["message"]
    assert "nothing was registered" in err["message"]
    gates = {g["name"]: g for g in err["details"]["gates"]}
    assert not gates["min_accuracy"]["passed"] and gates["max_log_loss"]["passed"]
    assert set(gates["min_accuracy"]) == {"name", "value", "threshold", "passed"}
    assert not client(proj).search_registered_models()
    run = client(proj).get_run(err["details"]["run_id"])
    assert run.data.tags["mlctl.gates"] == "failed" and run.info.status == "FINISHED"
    assert [x["status"] for x in state_runs(proj)] == ["gate_failed"]
    text = cli("train", "--register", "demo")
    assert text.code == 3 and text.err.startswith("Error: gate failed: min_accuracy: ")


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"data": "data/missing.csv"}, "train.data: data file "),
    ({"target": "nope"}, "train.target: column 'nope' not found in train.csv"),
    ({"features": ["x1", "ghost"]}, "train.features: column(s) ghost not found in train.csv"),
    ({"target": "price"}, "train.target: column 'price' is continuous"),
    ({"target": "colour", "task": "regression", "features": ["x1"]}, "is not numeric"),
    ({"model": "svm_forest"}, "unknown model 'svm_forest'"),
    ({"params": {"n_trees": 3}}, "unknown parameter(s) n_trees"),
    ({"task": None, "target": "price", "features": ["x1"], "model": "logistic_regression"},
     "train.task is not set and was inferred as regression"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(cli, proj: Path, changes: dict, fragment: str) -> None:
    set_train(proj, **changes)
    r = cli("train", "--register", "demo")
    assert r.code == 2, r.err
    lines = r.err.splitlines()
    assert lines[0].startswith("Error: ") and fragment in lines[0] and "Traceback" not in r.err
    assert len(lines) <= 2
    assert not (proj / ".mlctl" / "state.db").exists()


def test_unknown_param_from_the_flag_and_bad_flags(cli, proj: Path) -> None:
    assert cli("train", "--param", "n_trees=3").code == 2
    r = cli("train", "--param", "oops", "-o", "json")
    assert r.code == 2 and json.loads(r.err)["error"]["message"] == "--param 'oops': expected NAME=VALUE"
    assert cli("train", "--tune", "0").code == 2
    r = cli("train", "--tune", "2", "--tune-storage", "redis://h/0")
    assert r.code == 2 and "unsupported storage URL" in r.err
    r = cli("train", "--param", "n_estimators=-1")  # a value scikit-learn rejects when fitting
    assert r.code == 2 and r.err.startswith("Error: train.params: The 'n_estimators' parameter")
    [row] = state_runs(proj)
    assert row["status"] == "failed" and client(proj).get_run(row["id"]).info.status == "FAILED"


def test_unreachable_tracking_server_exits_4(cli, proj: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = cli("train", "--tracking-uri", url, "-o", "json")
    assert r.code == 4
    err = json.loads(r.err)["error"]
    assert err["type"] == "ServiceUnavailable" and url in err["message"] and "tracking.uri" in err["hint"]
    assert cli("models", "list", "--tracking-uri", url).code == 4
    assert not (proj / ".mlctl" / "state.db").exists()


def test_tune_runs_nested_trials_and_refits_the_best(cli, proj: Path) -> None:
    set_train(proj, model="decision_tree", params={})
    r = cli("train", "--tune", "4", "--register", "tuned", "-o", "json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    t = out["tuning"]
    assert t["trials_run"] == 4 and t["study_trials"] == 4 and t["n_trials"] == 4 and t["metric"] == "f1"
    assert t["direction"] == "maximize" and t["storage"] == f"sqlite:///{proj / '.mlctl' / 'optuna.db'}"
    assert t["complete"] + t["pruned"] + t["failed"] == 4 and t["study"].startswith("default.decision_tree.f1.")
    for k, v in t["best_params"].items():
        assert out["params"][k] == v  # the final model is refit with the best params
    c = client(proj)
    children = c.search_runs([c.get_run(out["run_id"]).info.experiment_id],
                             filter_string=f"tags.mlflow.parentRunId = '{out['run_id']}'")
    assert len(children) == 4 and {ch.data.tags["mlctl.kind"] for ch in children} == {"trial"}
    assert all("max_depth" in ch.data.params for ch in children)
    again = json.loads(cli("train", "--tune", "2", "-o", "json").out)
    assert again["tuning"]["study_trials"] == 6 and again["tuning"]["trials_run"] == 2  # the study continues


def test_tune_timeout_stops_early(cli, proj: Path) -> None:
    set_train(proj, model="decision_tree", params={})
    r = cli("train", "--tune", "500", "--timeout", "0.05", "-o", "json")
    assert r.code == 0, r.err
    t = json.loads(r.out)["tuning"]
    assert 1 <= t["trials_run"] < 500 and t["timed_out"] is True


def test_regression_with_cross_validation(cli, proj: Path) -> None:
    set_train(proj, target="price", task="regression", model="ridge", params={"alpha": 0.5}, cv=3,
              gates={"max_rmse": 5.0, "min_r2": 0.5})
    r = cli("train", "-o", "json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert set(out["metrics"]) == {"rmse", "mae", "r2"} and out["metrics"]["r2"] > 0.5
    assert [g["passed"] for g in out["gates"]] == [True, True]
    assert client(proj).get_run(out["run_id"]).data.tags["mlctl.evaluation"] == "3-fold cross-validation"


def test_train_help_has_an_example(cli) -> None:
    r = cli("train", "--help")
    assert r.code == 0 and "Example: mlctl train" in r.out and "--tune-storage" in r.out


@pytest.mark.parametrize("args", [["train", "--help"], ["models", "--help"], ["models", "list", "--help"]])
def test_help_imports_nothing_heavy(args: list[str], project: Path) -> None:
    from tests.commands.test_fast_start import HEAVY, loaded

    assert loaded(args, project, HEAVY) == {"code": 0, "heavy": []}


@pytest.mark.parametrize(("cell", "message"), [
    ("inf", "train.data: column 'x2' has an infinite value (inf) on line 7 of train.csv"),
    ("abc", "train.data: column 'x2' holds numbers, but 'abc' on line 7 of train.csv is not a number"),
])
def test_a_bad_cell_exits_2_naming_column_and_line(cli, proj: Path, cell: str, message: str) -> None:
    path = proj / "data" / "train.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[6].split(",")
    row[header.index("x2")] = cell
    lines[6] = ",".join(row)
    path.write_text("\n".join(lines) + "\n")
    r = cli("train", "-o", "json")
    assert r.code == 2 and r.out == ""
    assert json.loads(r.err)["error"] == {"type": "ConfigError", "message": message,
                                          "hint": json.loads(r.err)["error"]["hint"]}
    assert not (proj / ".mlctl" / "state.db").exists()


def test_a_read_only_store_is_one_json_error(cli, proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated permission denied on .mlctl (root ignores file modes; the real thing runs in
    tests/integration/test_embedded_stores.py): exit 1, stderr one JSON document naming the file
    and the cause, no MLflow log lines, no traceback, no run."""
    from mlctl.core import locks

    state = proj / ".mlctl"
    monkeypatch.setattr(locks, "_can_write", lambda p: not Path(p).resolve().is_relative_to(state.resolve()))

    def runs() -> int:
        with sqlite3.connect(state / "mlflow.db") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    runs_before = runs()
    message = f"cannot create the state file {state / 'state.db'}: {state}: permission denied"
    r = cli("train", "-o", "json")
    assert r.code == 1 and r.out == ""
    assert json.loads(r.err) == {"error": {
        "type": "StateError", "message": message,
        "hint": "make .mlctl/ and the files in it writable by this user (chmod u+w), or work in a writable copy"}}
    assert len(r.err.strip().splitlines()) == 1
    text = cli("train")
    assert text.code == 1 and text.err.splitlines()[0] == f"Error: {message}"
    assert runs() == runs_before
    assert not (state / "state.db").exists()


@pytest.mark.parametrize(("target", "features", "task", "why"), [
    ("label", ["x1", "x2", "x3", "colour"], "classification", "'label' holds labels (2 distinct)"),
    ("price", ["x1", "x2", "x3"], "regression", "'price' holds numbers with 240 distinct values"),
    ("digit", ["x1", "x2", "x3"], "classification", "'digit' has 3 distinct whole-number values"),
])
def test_an_unset_task_is_inferred_from_the_target_and_said(cli, proj: Path, target: str, features: list[str],
                                                            task: str, why: str) -> None:
    df = pd.read_csv(proj / "data" / "train.csv")
    df["digit"] = (df["x1"] * 3).astype(int)
    df.to_csv(proj / "data" / "train.csv", index=False)
    doc = yaml.safe_load((proj / "mlctl.yaml").read_text())
    del doc["train"]["task"]
    doc["train"].update(target=target, features=features)
    (proj / "mlctl.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    r = cli("train", "--dry-run", "-o", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["spec"]["task"] == task
    assert r.err == f"train.task not set: inferred {task} ({why}); set train.task to choose\n"


def test_an_inferred_task_that_does_not_fit_the_model_is_a_config_error(cli, proj: Path) -> None:
    doc = yaml.safe_load((proj / "mlctl.yaml").read_text())
    del doc["train"]["task"]
    doc["train"].update(target="price", features=["x1", "x2"], model="logistic_regression")
    (proj / "mlctl.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    r = cli("train", "--dry-run")
    assert r.code == 2 and "train.task is not set and was inferred as regression" in r.err
