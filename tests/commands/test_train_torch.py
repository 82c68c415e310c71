"""``mlctl train`` with a torch model (``torch:module:function``) from the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("torch")

NETS = """
import torch


def make_net(n_features, n_outputs, hidden=8):
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, n_outputs))


def not_a_net(n_features, n_outputs):
    return "a string"
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlctl.lifecycle.tracking import quiet_mlflow

    quiet_mlflow()
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-torch-cli") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def proj(isolated_env: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = isolated_env / "proj"
    (root / "data").mkdir(parents=True)
    rng = np.random.RandomState(1)
    x = rng.rand(200, 2)
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "flag": rng.rand(200) > 0.5})
    df["label"] = np.where(x[:, 0] > x[:, 1], "up", "down")
    df.to_csv(root / "data" / "train.csv", index=False)
    (root / "torchnets_cli.py").write_text(NETS, encoding="utf-8")
    spec = {
        "data": "data/train.csv",
        "target": "label",
        "task": "classification",
        "model": "torch:torchnets_cli:make_net",
        "params": {"epochs": 20, "lr": 0.05},
    }
    (root / "mlctl.yaml").write_text(yaml.safe_dump({"project": {"name": "demo"}, "train": spec}), encoding="utf-8")
    (root / ".mlctl").mkdir()
    shutil.copy(store, root / ".mlctl" / "mlflow.db")
    monkeypatch.chdir(root)
    return root


def set_train(root: Path, **changes: object) -> None:
    doc = yaml.safe_load((root / "mlctl.yaml").read_text())
    doc["train"].update(changes)
    (root / "mlctl.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")


def test_train_a_torch_model_from_the_cli(cli, proj: Path) -> None:
    r = cli("train", "--register", "tnet", "--param", "module__hidden=4", "-o", "json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["registered"] == {"name": "tnet", "version": "1", "alias": "challenger"}
    assert out["params"]["model"] == "torch:torchnets_cli:make_net" and out["params"]["module__hidden"] == 4
    assert out["metrics"]["accuracy"] > 0.8 and set(out["metrics"]) == {"f1", "accuracy", "roc_auc"}
    model_file = next((proj / ".mlctl" / "mlartifacts").rglob("model/model.pt"))
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == out["artifact_sha256"]
    mlmodel = yaml.safe_load((model_file.parent / "MLmodel").read_text())
    assert mlmodel["flavors"]["torch"]["classes"] == ["down", "up"]
    assert mlmodel["flavors"]["torch"]["feature_names"] == ["a", "b", "flag"]
    from mlflow import MlflowClient

    uri = f"sqlite:///{proj / '.mlctl' / 'mlflow.db'}"
    version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("tnet", "1")
    assert version.tags["mlctl.flavor"] == "torch" and version.tags["mlctl.artifact_path"] == "model.pt"
    assert version.tags["mlctl.artifact_sha256"] == out["artifact_sha256"]
    run = MlflowClient(tracking_uri=uri).get_run(out["run_id"])
    assert run.data.params["module"] == "torchnets_cli:make_net" and run.data.params["epochs"] == "20"


def test_dry_run_shows_torch_plan_and_default_search_space(cli, proj: Path) -> None:
    r = cli("train", "--dry-run", "--tune", "4", "-o", "json")
    assert r.code == 0, r.err
    plan = json.loads(r.out)
    assert plan["estimator"].startswith("torch:torchnets_cli:make_net")
    assert set(plan["tuning"]["search_space"]) == {"lr", "epochs", "weight_decay", "batch_size"}
    assert any("state_dict + module reference" in step for step in plan["steps"])


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"params": {"lr": -1}}, "train.params: lr must be a number > 0"),
        ({"params": {"n_estimators": 5}}, "unknown parameter(s) n_estimators for model 'torch:torchnets_cli:make_net'"),
        ({"model": "torch:torchnets_cli"}, "must be written torch:module:function"),
        ({"model": "torch:torchnets_cli:not_a_net"}, "returned str, not a torch.nn.Module"),
    ],
)
def test_bad_torch_settings_exit_2_with_one_line(cli, proj: Path, changes: dict, fragment: str) -> None:
    set_train(proj, **changes)
    r = cli("train", "-o", "json")
    assert r.code == 2, r.err
    err = json.loads(r.err)["error"]
    assert fragment in err["message"] and err["type"] in {"ConfigError", "UsageError"}
