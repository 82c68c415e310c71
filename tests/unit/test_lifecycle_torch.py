"""Torch models through the lifecycle: spelling, the estimator, TorchScript files, training, serving."""

from __future__ import annotations

import asyncio
import shutil
import zipfile
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from mlctl.core.errors import ConfigError, OperationFailed, UsageError
from mlctl.lifecycle.deploy.base import ModelArtifact
from mlctl.lifecycle.estimators import (
    build_estimator,
    check_model_name,
    default_search_space,
    is_custom,
    is_torch,
    supports,
    with_preprocessing,
)
from mlctl.lifecycle.serialize import ArtifactTampered, load_model, save_mlflow_model, save_model
from mlctl.lifecycle.spec import TrainSpec

torch = pytest.importorskip("torch")

from mlctl.lifecycle.torch_model import AdamW, TorchEstimator, TorchScriptModel, load_torch_model  # noqa: E402

SUPPORT = "tests.support.torch_models"
MLP = f"torch:{SUPPORT}:mlp"
FAST = {"epochs": 15, "lr": 0.05}


def table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 3)
    df = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1] * 100, "x3": x[:, 2]})
    df["label"] = np.where(x[:, 0] + x[:, 1] > 1.0, "good", "bad")
    df["three"] = np.digitize(x[:, 0], [0.33, 0.66])  # 0, 1, 2
    df["price"] = x[:, 0] * 10 + x[:, 2] * 3
    return df


FEATURES = ["x1", "x2", "x3"]


def fitted(
    task: str = "classification", target: str = "label", model: str = MLP, seed: int = 3, **params: Any
) -> tuple[Any, pd.DataFrame]:
    df = table()
    est = build_estimator(model, task, {**FAST, **params}, seed=seed)
    return est.fit(df[FEATURES], df[target]), df


def artifact(path: Path, sha: str, **kw: Any) -> ModelArtifact:
    return ModelArtifact(name="tnet", version="1", alias=None, path=path, sha256=sha, flavor="torch", **kw)


# --------------------------------------------------------------------------- spelling and spec


def test_torch_spelling_is_recognised_and_validated() -> None:
    assert is_torch(MLP) and not is_custom(MLP) and supports(MLP, "regression") and supports(MLP, "classification")
    assert check_model_name(MLP) == MLP
    with pytest.raises(ValueError, match="torch:module:function"):
        check_model_name("torch:just_a_module")
    assert TrainSpec(task="regression", model=MLP).model == MLP
    with pytest.raises(ValueError, match="torch:module:function"):
        TrainSpec(task="regression", model="torch:pkg.mod")
    space = default_search_space(MLP)
    assert space is not None and {"lr", "epochs"} <= set(space)
    assert set(space) <= set(TorchEstimator(module=len).get_params())


def test_build_checks_parameters_against_the_function_and_the_table() -> None:
    est = build_estimator(MLP, "regression", {"module__hidden": 5, "epochs": 2}, seed=9)
    assert isinstance(est, TorchEstimator) and est.random_state == 9 and est.module_params == {"hidden": 5}
    assert est.get_params()["module__hidden"] == 5 and est.get_params()["task"] == "regression"
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) module__depth, n_estimators") as info:
        build_estimator(MLP, "regression", {"n_estimators": 3, "module__depth": 2})
    assert "module__hidden" in (info.value.hint or "") and "lr" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="lr must be a number > 0"):
        build_estimator(MLP, "regression", {"lr": -1.0})
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1"):
        build_estimator(MLP, "regression", {"epochs": 2.5})
    with pytest.raises(ConfigError, match="cannot import module"):
        build_estimator("torch:no_such_module_here:make", "regression")
    # a function taking **kwargs accepts any module__ parameter
    assert build_estimator(f"torch:{SUPPORT}:sized_by_kwargs", "regression", {"module__width": 3}).module_params


def test_torch_models_are_never_wrapped_in_the_sklearn_pipeline() -> None:
    df = table()
    df.loc[0, "x1"] = np.nan
    est = build_estimator(MLP, "classification")
    assert with_preprocessing(est, df[FEATURES]) is est


# --------------------------------------------------------------------------- the estimator


def test_classifier_learns_is_deterministic_and_gives_probabilities() -> None:
    est, df = fitted()
    proba = est.predict_proba(df[FEATURES])
    assert list(est.classes_) == ["bad", "good"] and proba.shape == (len(df), 2)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (est.predict(df[FEATURES]) == df["label"]).mean() > 0.9
    assert est.loss_curve_[-1] < est.loss_curve_[0] and len(est.loss_curve_) == FAST["epochs"]
    again, _ = fitted()
    assert np.array_equal(again.predict_proba(df[FEATURES]), proba)
    other, _ = fitted(seed=4)
    assert not np.array_equal(other.predict_proba(df[FEATURES]), proba)


def test_multiclass_and_regression() -> None:
    est, df = fitted(target="three", epochs=40)
    assert list(est.classes_) == [0, 1, 2] and est.predict_proba(df[FEATURES]).shape == (len(df), 3)
    assert (est.predict(df[FEATURES]) == df["three"]).mean() > 0.8
    reg, df = fitted("regression", "price", epochs=40)
    pred = reg.predict(df[FEATURES])
    assert pred.dtype == np.float64 and pred.shape == (len(df),)
    r2 = 1 - ((pred - df["price"]) ** 2).sum() / ((df["price"] - df["price"].mean()) ** 2).sum()
    assert r2 > 0.95
    with pytest.raises(AttributeError):
        reg.predict_proba(df[FEATURES])


def test_gaps_are_filled_with_training_medians_and_columns_are_matched_by_name() -> None:
    df = table()
    df.loc[:9, "x2"] = np.nan
    est = build_estimator(MLP, "regression", FAST, seed=1).fit(df[FEATURES], df["price"])
    median = float(df["x2"].median())
    gap = pd.DataFrame({"x1": [0.5], "x2": [np.nan], "x3": [0.2]})
    filled = gap.fillna({"x2": median})
    assert np.isfinite(est.predict(gap)).all()
    assert est.predict(gap)[0] == pytest.approx(est.predict(filled)[0], abs=1e-6)
    shuffled = df[["x3", "x1", "x2"]].iloc[10:20]
    assert np.array_equal(est.predict(shuffled), est.predict(df[FEATURES].iloc[10:20]))
    with pytest.raises(ValueError, match="missing feature column"):
        est.predict(df[["x1", "x2"]])


def test_bad_functions_and_inputs_give_clear_errors() -> None:
    df = table()
    with pytest.raises(UsageError, match=r"returned dict, not a torch.nn.Module") as info:
        build_estimator(f"torch:{SUPPORT}:not_a_module", "classification", FAST).fit(df[FEATURES], df["label"])
    assert "n_features" in (info.value.hint or "")
    with pytest.raises(UsageError, match=r"returns shape \(2, 5\).*expected \(batch, 2\)"):
        build_estimator(f"torch:{SUPPORT}:wrong_width", "classification", FAST).fit(df[FEATURES], df["label"])
    with_text = df.assign(colour="red")
    with pytest.raises(ConfigError, match="not numeric: colour"):
        build_estimator(MLP, "classification", FAST).fit(with_text[[*FEATURES, "colour"]], df["label"])
    with pytest.raises(ValueError, match="not fitted"):
        build_estimator(MLP, "classification").predict(df[FEATURES])


def test_the_optimizer_matches_torch_adamw() -> None:
    torch.manual_seed(0)
    ours = torch.nn.Linear(4, 3)
    theirs = torch.nn.Linear(4, 3)
    theirs.load_state_dict(ours.state_dict())
    mine = AdamW(torch, ours.parameters(), lr=0.05, weight_decay=0.1)
    reference = torch.optim.AdamW(theirs.parameters(), lr=0.05, weight_decay=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 3)
    for _ in range(25):
        for net, opt in ((ours, mine), (theirs, reference)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(ours.weight, torch.nn.Linear(4, 3).weight)


def test_diverging_training_is_reported() -> None:
    df = table()
    y = df["price"] * 1e30
    with pytest.raises(OperationFailed, match="diverged") as info:
        build_estimator(f"torch:{SUPPORT}:linear", "regression", {"epochs": 5, "lr": 1e30}).fit(df[FEATURES], y)
    assert isinstance(info.value, ValueError)  # a tuning trial counts it as failed, not the whole study


# --------------------------------------------------------------------------- files


def test_torchscript_file_round_trips_with_its_metadata(tmp_path: Path) -> None:
    est, df = fitted(target="three", epochs=20)
    path = tmp_path / "m" / "model.pt"
    sha = save_model(est, path)
    assert zipfile.is_zipfile(path)
    loaded = load_model(artifact(path, sha))
    assert isinstance(loaded, TorchScriptModel)
    assert np.array_equal(loaded.predict_proba(df[FEATURES]), est.predict_proba(df[FEATURES]))
    assert np.array_equal(loaded.predict(df[FEATURES]), est.predict(df[FEATURES]))
    assert list(loaded.feature_names_in_) == FEATURES and loaded.classes_.tolist() == [0, 1, 2]
    rows = df[FEATURES].to_numpy()  # plain arrays work too (columns in fitted order)
    assert np.array_equal(loaded.predict(rows), est.predict(df[FEATURES]))


def test_a_module_torchscript_cannot_compile_is_traced(tmp_path: Path) -> None:
    est, df = fitted("regression", "price", model=f"torch:{SUPPORT}:python_only")
    sha = save_model(est, tmp_path / "model.pt")
    loaded = load_torch_model(tmp_path / "model.pt", sha256=sha)
    assert np.array_equal(loaded.predict(df[FEATURES]), est.predict(df[FEATURES]))


def test_a_tampered_file_is_refused_before_it_is_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    est, _ = fitted()
    path = tmp_path / "model.pt"
    sha = save_model(est, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    opened: list[str] = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: opened.append("x"))
    with pytest.raises(ArtifactTampered, match="refusing to load"):
        load_model(artifact(path, sha))
    assert opened == []


@pytest.mark.filterwarnings("ignore:.*torch.jit:DeprecationWarning")
def test_a_foreign_torchscript_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 1)), str(path))
    from mlctl.lifecycle.serialize import sha256_file

    with pytest.raises(OperationFailed, match="no mlctl metadata"):
        load_model(artifact(path, sha256_file(path)))
    path.write_bytes(b"not a zip at all")
    with pytest.raises(OperationFailed, match="not a TorchScript model"):
        load_model(artifact(path, sha256_file(path)))


def test_mlflow_folder_records_the_torch_flavor(tmp_path: Path) -> None:
    est, df = fitted()
    signature = {
        "inputs": [{"name": n, "type": "double"} for n in FEATURES],
        "outputs": [{"name": "label", "type": "string"}],
    }
    saved = save_mlflow_model(est, tmp_path / "model", signature=signature, input_example=df[FEATURES].head())
    assert saved.flavor == "torch" and saved.model_file.name == "model.pt" and saved.trusted_types == []
    from mlctl.lifecycle.serialize import sha256_file

    assert saved.sha256 == sha256_file(saved.model_file)
    mlmodel = yaml.safe_load((saved.directory / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["torch"]
    assert flavor["model_file"] == "model.pt" and flavor["format"] == "torchscript"
    assert flavor["task"] == "classification" and flavor["classes"] == ["bad", "good"]
    assert flavor["feature_names"] == FEATURES and flavor["torch_version"] == torch.__version__.split("+")[0]
    assert "sklearn" not in mlmodel["flavors"]
    from mlctl.lifecycle.registry import read_signature

    assert read_signature(saved.directory / "MLmodel") == signature
    assert any(r.startswith("torch==") for r in (saved.directory / "requirements.txt").read_text().split())
    assert not list(saved.directory.glob("*.pkl")) and not list(saved.directory.glob("*.skops"))


# --------------------------------------------------------------------------- serving


def test_the_predictor_serves_a_loaded_torch_model(tmp_path: Path) -> None:
    from mlctl.serving import Predictor, create_app

    est, df = fitted()
    sha = save_model(est, tmp_path / "model.pt")
    # the signature lists the columns in another order than the model was fitted on
    sig = {
        "inputs": [{"name": n, "type": "double"} for n in ["x3", "x1", "x2"]],
        "outputs": [{"name": "label", "type": "string"}],
    }
    predictor = Predictor.from_artifact(artifact(tmp_path / "model.pt", sha, signature=sig))
    assert not predictor.fast_path and predictor.metadata()["flavor"] == "torch"
    rows = df[FEATURES].iloc[:20]
    expected = est.predict(rows).tolist()
    assert predictor.predict(rows[["x3", "x1", "x2"]].to_numpy()) == expected

    async def main() -> None:
        app = create_app(predictor)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://model") as client:
            async with app.router.lifespan_context(app):
                r = await client.post("/v1/predict", json={"records": rows.to_dict(orient="records")})
                assert r.status_code == 200, r.text
                assert r.json() == {"predictions": expected, "model": "tnet", "version": "1"}
                r = await client.get("/metadata")
                assert r.json()["flavor"] == "torch"

    asyncio.run(main())


# --------------------------------------------------------------------------- training end to end


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlctl.lifecycle.tracking import quiet_mlflow

    quiet_mlflow()
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-torch") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def project(root: Path, store: Path, **train: Any) -> Any:
    from mlctl.core.config import load_config

    (root / "data").mkdir(parents=True)
    df = table(240)
    df.loc[[5, 50], "x3"] = np.nan
    df.to_csv(root / "data" / "train.csv", index=False)
    spec = {
        "data": "data/train.csv",
        "target": "label",
        "features": FEATURES,
        "task": "classification",
        "model": MLP,
        "params": dict(FAST),
        "seed": 7,
    } | train
    (root / "mlctl.yaml").write_text(yaml.safe_dump({"project": {"name": "demo"}, "train": spec}), encoding="utf-8")
    (root / ".mlctl").mkdir()
    shutil.copy(store, root / ".mlctl" / "mlflow.db")
    return load_config(start=root, use_user_file=False)


def registered_artifact(root: Path, name: str, version: str) -> ModelArtifact:
    """The registered version's folder downloaded, described by its version tags."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    from mlctl.lifecycle.registry import TAG_FLAVOR, TAG_PATH, TAG_SHA256, read_signature

    uri = f"sqlite:///{root / '.mlctl' / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = c.get_model_version(name, version)
    source = c.get_model_version_download_uri(name, version)
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(root / "dl"), tracking_uri=uri))
    return ModelArtifact(
        name=name,
        version=version,
        alias=None,
        path=folder / mv.tags[TAG_PATH],
        sha256=mv.tags[TAG_SHA256],
        flavor=mv.tags[TAG_FLAVOR],
        signature=read_signature(folder / "MLmodel"),
        run_id=mv.run_id,
    )


def test_train_registers_a_torch_classifier_that_loads_back_identically(isolated_env: Path, mlflow_store: Path) -> None:
    from mlctl.lifecycle.train import TrainOptions, train

    root = isolated_env / "proj"
    loaded = project(root, mlflow_store, cv=2, params={**FAST, "module__hidden": 6}, gates={"min_accuracy": 0.8})
    result = train(loaded, TrainOptions(register="tnet"))
    assert result.registered is not None and result.registered.version == "1"
    assert result.metrics["accuracy"] > 0.8 and 0.5 < result.metrics["roc_auc"] <= 1.0
    assert result.params["module__hidden"] == 6 and result.params["model"] == MLP
    art = registered_artifact(root, "tnet", "1")
    assert art.flavor == "torch" and art.path.name == "model.pt" and art.sha256 == result.artifact_sha256
    assert [c["name"] for c in art.signature["inputs"]] == FEATURES
    model = load_model(art)
    # cv: the final model is fitted on every row; the same spec and seed give the same network
    df = pd.read_csv(root / "data" / "train.csv")
    again = build_estimator(MLP, "classification", {**FAST, "module__hidden": 6}, seed=7).fit(df[FEATURES], df["label"])
    assert np.array_equal(model.predict_proba(df[FEATURES]), again.predict_proba(df[FEATURES]))
    assert np.array_equal(model.predict(df[FEATURES]), again.predict(df[FEATURES]))
    # the registry resolves it by alias (model.pt, hash checked) and the server's Predictor runs it
    from mlctl.lifecycle.registry import resolve_model
    from mlctl.serving.predictor import Predictor

    resolved = resolve_model("tnet@challenger", loaded)
    assert resolved.flavor == "torch" and resolved.path.name == "model.pt"
    assert resolved.sha256 == result.artifact_sha256
    served = Predictor.from_artifact(resolved)
    rows = df[[c["name"] for c in served.signature["inputs"]]].to_numpy(dtype=float)[:5]
    assert [str(p) for p in served.predict(rows)] == [str(p) for p in again.predict(df[FEATURES])[:5]]


def test_train_a_torch_regressor_with_tuning(isolated_env: Path, mlflow_store: Path) -> None:
    from mlctl.lifecycle.train import TrainOptions, plan_training, train

    root = isolated_env / "proj"
    loaded = project(
        root,
        mlflow_store,
        task="regression",
        target="price",
        metrics=["r2", "rmse"],
        search_space={
            "lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
            "epochs": {"type": "int", "low": 5, "high": 10},
        },
    )
    result = train(loaded, TrainOptions(register="treg", tune=2))
    assert result.tuning is not None and result.tuning.trials_run == 2
    assert set(result.tuning.best_params) == {"lr", "epochs"}
    assert result.params["lr"] == result.tuning.best_params["lr"]
    assert result.metrics["r2"] > 0.5
    art = registered_artifact(root, "treg", "1")
    assert art.flavor == "torch"
    preds = load_model(art).predict(pd.read_csv(root / "data" / "train.csv")[FEATURES])
    assert preds.shape == (240,) and np.isfinite(preds).all()
    # without a search space in the spec, --tune uses the torch default
    loaded.config.train.search_space = {}
    plan = plan_training(loaded, TrainOptions(tune=3))
    assert plan.tuning is not None and set(plan.tuning["search_space"]) == {
        "lr",
        "epochs",
        "weight_decay",
        "batch_size",
    }
    assert any("TorchScript" in step for step in plan.steps)
